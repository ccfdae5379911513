package render

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/proc"
	"github.com/autopilot/autopilot/internal/testenv"
)

// TestWatchTemplates: an edited template re-renders at once; an edit that
// does not parse is logged and the previous template keeps rendering;
// editors that replace the file by rename are seen too.
func TestWatchTemplates(t *testing.T) {
	src := newMapSource()
	src.set(svcQuery(t, "web"), instances("web", "127.0.0.1"))
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "t.ctmpl")
	if err := os.WriteFile(tmpl, []byte(`v1 {{ len (service "web") }}`), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "out")
	var logs testenv.Buffer
	r, err := NewRunner(src, []Config{{Source: tmpl, Destination: dest}}, RunnerOptions{
		Commands: &proc.Runner{}, WatchTemplates: true, Log: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	expect := func(want string) {
		t.Helper()
		testenv.Eventually(t, 5*time.Second, func() (bool, string) {
			got := readFile(t, dest)
			return got == want, got
		})
	}
	expect("v1 1")

	if err := os.WriteFile(tmpl, []byte(`v2 {{ len (service "web") }}`), 0o644); err != nil {
		t.Fatal(err)
	}
	expect("v2 1")

	if err := os.WriteFile(tmpl, []byte(`v3 {{ len (service "web") }`), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		return strings.Contains(logs.String(), "does not parse"), logs.String() + " file=" + readFile(t, dest)
	})
	// The old template still renders new data.
	src.set(svcQuery(t, "web"), instances("web", "127.0.0.1", "127.0.0.2"))
	expect("v2 2")

	// Replace by rename, as editors do.
	tmp := filepath.Join(dir, ".t.ctmpl.swp")
	if err := os.WriteFile(tmp, []byte(`v4 {{ len (service "web") }}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, tmpl); err != nil {
		t.Fatal(err)
	}
	expect("v4 2")
}
