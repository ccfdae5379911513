package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autopilot/autopilot/internal/testenv"
)

// TestFirstRenderBounded: the supervisor's first render of a template
// that loops for hours (three nested loop 10000) ends at renderTimeout,
// and a SIGTERM during it stops autopilot with 143 at once; the app never
// starts and nothing is written. Before templates checked their context,
// both waited for the loops (hours): only SIGKILL stopped them.
func TestFirstRenderBounded(t *testing.T) {
	consul := testenv.StartConsul(t)
	for _, tc := range []struct {
		name, renderTimeout string
		sigterm             bool
	}{
		{"renderTimeout", "1s", false},
		{"SIGTERM", "1h", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			nested := `{{ range loop 10000 }}{{ range loop 10000 }}{{ range loop 10000 }}{{ end }}{{ end }}{{ end }}`
			if err := os.WriteFile(filepath.Join(dir, "nested.ctmpl"), []byte(nested), 0o644); err != nil {
				t.Fatal(err)
			}
			dest := filepath.Join(dir, "out.conf")
			cfg := filepath.Join(dir, "autopilot.json")
			if err := os.WriteFile(cfg, []byte(`{"consul": "`+consul.HTTPAddr+`", "logging": {"format": "json"},
  "renderTimeout": "`+tc.renderTimeout+`",
  "templates": [{"source": "nested.ctmpl", "destination": "`+dest+`"}]}`), 0o644); err != nil {
				t.Fatal(err)
			}
			s := newStack(t)
			start := time.Now()
			ap := s.start("nested", cfg, nil, "sh", "-c", "echo app-started; sleep 100")
			if tc.sigterm {
				testenv.Eventually(t, 10*time.Second, func() (bool, string) {
					return strings.Contains(ap.Log(), "rendering templates"), ap.Log()
				})
				start = time.Now()
				ap.signal(t, syscall.SIGTERM)
			}
			code := ap.wait(t, 15*time.Second)
			took := time.Since(start)
			t.Logf("exit %d after %v", code, took.Round(time.Millisecond))
			if took > 6*time.Second {
				t.Errorf("took %v, want about the renderTimeout or at once after SIGTERM", took)
			}
			if tc.sigterm && code != 143 {
				t.Errorf("exit %d after SIGTERM, want 143:\n%s", code, tail(ap.Log(), 10))
			}
			if !tc.sigterm && (code == 0 || !strings.Contains(ap.Log(), "nested.ctmpl")) {
				t.Errorf("exit %d, want a failure naming the template:\n%s", code, tail(ap.Log(), 10))
			}
			if strings.Contains(ap.Log(), "app-started") {
				t.Errorf("the app started although the first render never completed")
			}
			if _, err := os.Stat(dest); err == nil {
				t.Errorf("a stopped render wrote %s", dest)
			}
		})
	}
}
