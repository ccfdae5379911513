package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ok.ctmpl"), []byte(`{{ key "a" }}`), 0o644)
	os.WriteFile(filepath.Join(dir, "bad.ctmpl"), []byte(`{{ key "a" `), 0o644)
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(text), 0o644)
		return p
	}
	tests := []struct {
		name, config, want string
		code               int
	}{
		{"ok", write("ok.json", `{"templates":[{"source":"ok.ctmpl","destination":"/tmp/x"}]}`), "OK", exitOK},
		{"seed", "../../supervisor/testdata/nginx.containerpilot.json", "OK", exitOK},
		{"unknown field", write("uf.json", `{"services":[{"helth":1}]}`), "services[0].helth: unknown field", exitUsage},
		{"bad template", write("bt.json", `{"templates":[{"source":"bad.ctmpl","destination":"/tmp/x"}]}`), "bad.ctmpl", exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Run(context.Background(), []string{"check", "-config", tt.config}, &out, &errb)
			if code != tt.code || !strings.Contains(out.String()+errb.String(), tt.want) {
				t.Errorf("code %d, output %q %q; want %d and %q", code, out.String(), errb.String(), tt.code, tt.want)
			}
		})
	}
}

func TestSupervisorUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Run(context.Background(), []string{"-config", "{}"}, &out, &errb); code != exitUsage {
		t.Errorf("no command: code %d", code)
	}
	if code := Run(context.Background(), []string{"-config", `{"bogus":1}`, "true"}, &out, &errb); code != exitUsage ||
		!strings.Contains(errb.String(), "bogus: unknown field") {
		t.Errorf("bad config: code %d, %q", code, errb.String())
	}
}
