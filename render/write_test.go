package render

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/proc"
	"github.com/autopilot/autopilot/internal/testenv"
)

// mountTmpfs mounts a tmpfs of size bytes on a fresh directory and
// unmounts it when the test ends; it skips the test, saying why, where
// mounting is not permitted (not root, no CAP_SYS_ADMIN, a locked-down
// container).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0755"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v): this test needs root with CAP_SYS_ADMIN, as CI runs", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fill writes to path until the filesystem says ENOSPC.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", path, err)
			}
			return
		}
	}
}

// TestWriteRetriesUntilConverged: a render that cannot be written (disk
// full, read-only filesystem) leaves the previous file intact, is counted,
// and is retried with backoff, so once the fault clears the destination
// holds the current render without any further change in Consul. Before
// the retry, the file stayed stale until some unrelated later change.
func TestWriteRetriesUntilConverged(t *testing.T) {
	for _, tc := range []struct {
		name          string
		fault, repair func(t *testing.T, dir string)
		errno         syscall.Errno
	}{
		{"ENOSPC", func(t *testing.T, dir string) { fill(t, filepath.Join(dir, "filler")) },
			func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
					t.Fatal(err)
				}
			}, syscall.ENOSPC},
		{"EROFS", func(t *testing.T, dir string) {
			if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
				t.Fatalf("remount read-only: %v", err)
			}
		}, func(t *testing.T, dir string) {
			if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT, ""); err != nil {
				t.Fatalf("remount read-write: %v", err)
			}
		}, syscall.EROFS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := mountTmpfs(t, "256k")
			dest := filepath.Join(dir, "upstream.conf")
			src := newMapSource()
			q := svcQuery(t, "web")
			src.set(q, instances("web", "127.0.0.1"))
			var logs testenv.Buffer
			r, _ := runRunner(t, src, RunnerOptions{Log: zerolog.New(&logs)},
				Config{Source: writeTemp(t, "t.ctmpl", upstreamTmpl), Destination: dest})
			const v1, v2 = "server 127.0.0.1:8000;\n", "server 127.0.0.1:8000;\nserver 127.0.0.2:8001;\n"
			testenv.Eventually(t, 5*time.Second, func() (bool, string) {
				got := readFile(t, dest)
				return got == v1, got
			})

			tc.fault(t, dir)
			src.set(q, instances("web", "127.0.0.1", "127.0.0.2"))
			testenv.Eventually(t, 10*time.Second, func() (bool, string) {
				s := r.Stats()[0]
				return s.WriteErrors >= 2, logs.String()
			})
			if got := readFile(t, dest); got != v1 {
				t.Fatalf("during the fault the destination is %q, want the previous file intact", got)
			}
			if !strings.Contains(logs.String(), tc.errno.Error()) || !strings.Contains(logs.String(), "retrying") {
				t.Fatalf("log does not say %q and retrying: %s", tc.errno.Error(), logs.String())
			}
			tc.repair(t, dir)
			start := time.Now()
			testenv.Eventually(t, 15*time.Second, func() (bool, string) {
				got := readFile(t, dest)
				return got == v2, got
			})
			t.Logf("converged %v after the repair, %d failed attempts", time.Since(start).Round(time.Millisecond), r.Stats()[0].WriteErrors)
			leftovers, _ := filepath.Glob(filepath.Join(dir, ".upstream.conf.autopilot-*"))
			if len(leftovers) > 0 {
				t.Fatalf("temporary files left behind: %v", leftovers)
			}
		})
	}
}

// TestOnceRetriesWrite: the first render (Once) retries a failed write
// until its context ends, then returns the write error.
func TestOnceRetriesWrite(t *testing.T) {
	dir := mountTmpfs(t, "64k")
	fill(t, filepath.Join(dir, "filler"))
	src := newMapSource()
	src.set(svcQuery(t, "web"), instances("web", "127.0.0.1"))
	dest := filepath.Join(dir, "out")
	r, err := NewRunner(src, []Config{{Source: writeTemp(t, "t.ctmpl", upstreamTmpl), Destination: dest}}, RunnerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Free the space once the first write has failed (not after a fixed
	// time: on a loaded machine the first attempt can come later).
	go func() {
		for ctx.Err() == nil && r.Stats()[0].WriteErrors < 1 {
			time.Sleep(5 * time.Millisecond)
		}
		os.Remove(filepath.Join(dir, "filler"))
	}()
	if err := r.Once(ctx); err != nil {
		t.Fatalf("Once: %v", err)
	}
	if s := r.Stats()[0]; s.WriteErrors < 1 || s.Writes != 1 {
		t.Fatalf("stats %+v, want at least one write error then one write", s)
	}

	fill(t, filepath.Join(dir, "filler"))
	src.set(svcQuery(t, "web"), instances("web", "127.0.0.9"))
	ctx, cancel = context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	r2, _ := NewRunner(src, []Config{{Source: writeTemp(t, "t.ctmpl", upstreamTmpl), Destination: dest}}, RunnerOptions{})
	err = r2.Once(ctx)
	var we *WriteError
	if !errors.As(err, &we) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Once on a full disk: %v, want a WriteError wrapping ENOSPC", err)
	}
	if got := readFile(t, dest); got != "server 127.0.0.1:8000;\n" {
		t.Fatalf("destination %q, want the previous file", got)
	}
}

// TestSymlinkDestinationKeepsLink: a destination that is a symlink (the
// sites-enabled pattern) stays a symlink; its target is replaced
// atomically. A dangling link gets its target created. Before, the link
// was replaced by a regular file and the target went stale.
func TestSymlinkDestinationKeepsLink(t *testing.T) {
	root := t.TempDir()
	avail := filepath.Join(root, "sites-available")
	enabled := filepath.Join(root, "sites-enabled")
	for _, d := range []string{avail, enabled} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(avail, "app"), []byte("old\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(enabled, "app")
	if err := os.Symlink("../sites-available/app", link); err != nil {
		t.Fatal(err)
	}
	// A chain: enabled/alias -> enabled/app -> ../sites-available/app.
	alias := filepath.Join(enabled, "alias")
	if err := os.Symlink("app", alias); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(enabled, "new")
	if err := os.Symlink("../sites-available/new", dangling); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ dest, target string }{
		{link, filepath.Join(avail, "app")},
		{alias, filepath.Join(avail, "app")},
		{dangling, filepath.Join(avail, "new")},
	} {
		if err := WriteFile(tc.dest, []byte("new "+tc.dest+"\n"), 0); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Lstat(tc.dest); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("%s is no longer a symlink (%v)", tc.dest, err)
		}
		if got := readFile(t, tc.target); got != "new "+tc.dest+"\n" {
			t.Fatalf("target %s holds %q", tc.target, got)
		}
	}
	if fi, _ := os.Stat(filepath.Join(avail, "app")); fi.Mode().Perm() != 0o640 {
		t.Fatalf("target mode %v, want the existing 0640 kept", fi.Mode().Perm())
	}
	if leftovers, _ := filepath.Glob(filepath.Join(enabled, ".*")); len(leftovers) > 0 {
		t.Fatalf("staged files in the link's directory: %v", leftovers)
	}

	// Through a Runner too, with a check that reads the candidate.
	src := newMapSource()
	src.set(svcQuery(t, "web"), instances("web", "127.0.0.1"))
	startRunner(t, src, Config{Source: writeTemp(t, "t.ctmpl", upstreamTmpl), Destination: link,
		Check: (&proc.Runner{}).CheckFunc(proc.Command{Argv: []string{"grep", "-q", "server", "{{.Path}}"}})})
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		got := readFile(t, filepath.Join(avail, "app"))
		return got == "server 127.0.0.1:8000;\n", got
	})
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the Runner replaced the link (%v)", err)
	}
}

// TestDuplicateDestinationRefused: two templates that write one file (the
// same path spelled differently, or through a symlink) are refused when
// the runner is built, naming both templates. Before, both were accepted
// and overwrote each other on every change.
func TestDuplicateDestinationRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("out.conf", filepath.Join(dir, "link.conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(".", filepath.Join(dir, "dirlink")); err != nil {
		t.Fatal(err)
	}
	a := writeTemp(t, "a.ctmpl", "a")
	b := writeTemp(t, "b.ctmpl", "b")
	out := filepath.Join(dir, "out.conf")
	for _, tc := range []struct {
		name, other string
		wantErr     bool
	}{
		{"same path", out, true},
		{"unclean path", filepath.Join(dir, "sub", "..", "out.conf"), true},
		{"symlink to it", filepath.Join(dir, "link.conf"), true},
		{"through a symlinked directory", filepath.Join(dir, "dirlink", "out.conf"), true},
		{"another file", filepath.Join(dir, "other.conf"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewRunner(newMapSource(), []Config{{Source: a, Destination: out}, {Source: b, Destination: tc.other}}, RunnerOptions{})
			if !tc.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), a) || !strings.Contains(err.Error(), b) || !strings.Contains(err.Error(), "one destination") {
				t.Fatalf("err = %v, want a refusal naming both templates", err)
			}
		})
	}
}
