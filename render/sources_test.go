package render

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/dep"
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
	runWatchingTemplates(t, src, tmpl, dest, zerolog.New(&logs))
	expect := func(want string) { t.Helper(); expectFile(t, dest, want) }
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

// TestWatchTemplatesFollowsSwaps: the ways a template file really changes
// on disk, each with real files. The Kubernetes ConfigMap swap (the
// template is a symlink through ..data, and an update re-points ..data at
// a new directory with one rename) produced no event for the template's
// name, so before this it was missed; the others are regressions guards.
func TestWatchTemplatesFollowsSwaps(t *testing.T) {
	type layout struct {
		tmpl   string                       // path given to the runner
		update func(t *testing.T, v string) // writes the template text v
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string) layout
	}{
		{"configmap ..data swap", func(t *testing.T, dir string) layout {
			n := 0
			version := func(text string) {
				n++
				ts := filepath.Join(dir, "..2026_12_01_00_00_0"+string(rune('0'+n)))
				must(t, os.Mkdir(ts, 0o755))
				must(t, os.WriteFile(filepath.Join(ts, "t.ctmpl"), []byte(text), 0o644))
				must(t, os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data_tmp")))
				old, _ := os.Readlink(filepath.Join(dir, "..data"))
				must(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
				if old != "" {
					must(t, os.RemoveAll(filepath.Join(dir, old)))
				}
			}
			version(`v1 {{ len (service "web") }}`)
			must(t, os.Symlink("..data/t.ctmpl", filepath.Join(dir, "t.ctmpl")))
			return layout{filepath.Join(dir, "t.ctmpl"), func(t *testing.T, v string) { version(v) }}
		}},
		{"rename over", func(t *testing.T, dir string) layout {
			p := filepath.Join(dir, "t.ctmpl")
			must(t, os.WriteFile(p, []byte(`v1 {{ len (service "web") }}`), 0o644))
			return layout{p, func(t *testing.T, v string) {
				tmp := filepath.Join(dir, "t.ctmpl~")
				must(t, os.WriteFile(tmp, []byte(v), 0o644))
				must(t, os.Rename(tmp, p))
			}}
		}},
		{"in place", func(t *testing.T, dir string) layout {
			p := filepath.Join(dir, "t.ctmpl")
			must(t, os.WriteFile(p, []byte(`v1 {{ len (service "web") }}`), 0o644))
			return layout{p, func(t *testing.T, v string) {
				f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
				must(t, err)
				_, err = f.WriteString(v)
				must(t, err)
				must(t, f.Close())
			}}
		}},
		{"symlink to a file elsewhere, edited in place", func(t *testing.T, dir string) layout {
			other := t.TempDir()
			target := filepath.Join(other, "real.ctmpl")
			must(t, os.WriteFile(target, []byte(`v1 {{ len (service "web") }}`), 0o644))
			p := filepath.Join(dir, "t.ctmpl")
			must(t, os.Symlink(target, p))
			return layout{p, func(t *testing.T, v string) { must(t, os.WriteFile(target, []byte(v), 0o644)) }}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newMapSource()
			src.set(svcQuery(t, "web"), instances("web", "127.0.0.1"))
			dir := t.TempDir()
			l := tc.setup(t, dir)
			dest := filepath.Join(dir, "out") // beside the template: its writes are events too
			r := runWatchingTemplates(t, src, l.tmpl, dest, zerolog.Nop())
			expect := func(want string) { t.Helper(); expectFile(t, dest, want) }
			expect("v1 1")
			for _, v := range []string{"v2", "v3"} {
				l.update(t, v+` {{ len (service "web") }}`)
				expect(v + " 1")
			}
			// Writing the destination (an event in the same directory) does
			// not make a reload: only a content change does.
			src.set(svcQuery(t, "web"), instances("web", "127.0.0.1", "127.0.0.2"))
			expect("v3 2")
			testenv.Eventually(t, 5*time.Second, func() (bool, string) {
				s := r.Stats()[0]
				return s.Writes == 4, fmt.Sprintf("%+v", s)
			})
			if s := r.Stats()[0]; s.Renders != 4 {
				t.Fatalf("stats %+v, want 4 renders: one per version and one for the data change", s)
			}
		})
	}
}

// runWatchingTemplates runs a Runner rendering tmpl to dest with
// -watch-templates on, until the test ends.
func runWatchingTemplates(t *testing.T, src dep.Source, tmpl, dest string, log zerolog.Logger) *Runner {
	t.Helper()
	r, _ := runRunner(t, src, RunnerOptions{WatchTemplates: true, Log: log}, Config{Source: tmpl, Destination: dest})
	return r
}

// expectFile waits until dest holds want.
func expectFile(t *testing.T, dest, want string) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		got := readFile(t, dest)
		return got == want, got
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
