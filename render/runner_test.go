package render

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/dep"
	"github.com/autopilot/autopilot/internal/proc"
	"github.com/autopilot/autopilot/internal/testenv"
)

const upstreamTmpl = `{{ range service "web" }}server {{ .Address }}:{{ .Port }};
{{ end }}`

func startRunner(t *testing.T, src *mapSource, cfg Config) (*Runner, context.CancelFunc) {
	t.Helper()
	return runRunner(t, src, RunnerOptions{Log: zerolog.Nop()}, cfg)
}

// runRunner runs a Runner over cfgs until the test ends or cancel is
// called, and waits for it to return.
func runRunner(t *testing.T, src dep.Source, opts RunnerOptions, cfgs ...Config) (*Runner, context.CancelFunc) {
	t.Helper()
	r, err := NewRunner(src, cfgs, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r, cancel
}

func TestRunnerWritesOnChangeOnly(t *testing.T) {
	src := newMapSource()
	q := svcQuery(t, "web")
	src.set(q, instances("web", "127.0.0.1"))
	dest := filepath.Join(t.TempDir(), "out.conf")
	marker := filepath.Join(t.TempDir(), "ran")
	r, _ := startRunner(t, src, Config{Source: writeTemp(t, "t.ctmpl", upstreamTmpl), Destination: dest,
		Command: (&proc.Runner{}).OutputFunc(proc.Command{Argv: []string{"sh", "-c", "echo x >> " + marker}})})
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		got := readFile(t, dest)
		return got == "server 127.0.0.1:8000;\n", got
	})
	// Same data again (a new slice, equal content): rendered, not written.
	src.set(q, instances("web", "127.0.0.1"))
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		s := r.Stats()[0]
		return s.Renders >= 2, "renders " + string(rune('0'+s.Renders))
	})
	if s := r.Stats()[0]; s.Writes != 1 || s.Commands != 1 {
		t.Fatalf("stats %+v, want 1 write and 1 command for unchanged output", s)
	}
	src.set(q, instances("web", "127.0.0.1", "127.0.0.2"))
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		got := readFile(t, dest)
		return strings.Count(got, "server") == 2, got
	})
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		got := readFile(t, marker)
		return got == "x\nx\n", got
	})
}

func TestRunnerCheckFailureKeepsGoodFile(t *testing.T) {
	src := newMapSource()
	q := svcQuery(t, "web")
	src.set(q, instances("web", "127.0.0.1"))
	dest := filepath.Join(t.TempDir(), "out.conf")
	// The check rejects any candidate that mentions 127.0.0.9.
	check := proc.Command{Argv: []string{"sh", "-c", "! grep -q 127.0.0.9 {{.Path}}"}}
	r, _ := startRunner(t, src, Config{Source: writeTemp(t, "t.ctmpl", upstreamTmpl), Destination: dest, Check: (&proc.Runner{}).CheckFunc(check)})
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		got := readFile(t, dest)
		return got == "server 127.0.0.1:8000;\n", got
	})
	src.set(q, instances("web", "127.0.0.9"))
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		return r.Stats()[0].CheckFailures == 1, "no check failure yet"
	})
	if got := readFile(t, dest); got != "server 127.0.0.1:8000;\n" {
		t.Fatalf("destination = %q after a failed check, want the last good file", got)
	}
	entries, _ := os.ReadDir(filepath.Dir(dest))
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the destination (candidate removed)", len(entries))
	}
	// The next change is tried again.
	src.set(q, instances("web", "127.0.0.3"))
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		got := readFile(t, dest)
		return got == "server 127.0.0.3:8000;\n", got
	})
}

func TestRunnerReloadFailureRestoresPrevious(t *testing.T) {
	src := newMapSource()
	q := svcQuery(t, "web")
	src.set(q, instances("web", "127.0.0.1"))
	dest := filepath.Join(t.TempDir(), "out.conf")
	var reloads atomic.Int32
	reload := func(ctx context.Context) error {
		n := reloads.Add(1)
		b, _ := os.ReadFile(dest)
		if strings.Contains(string(b), "127.0.0.9") {
			return errors.New("proxy refused the config")
		}
		_ = n
		return nil
	}
	r, _ := startRunner(t, src, Config{Source: writeTemp(t, "t.ctmpl", upstreamTmpl), Destination: dest, Reload: reload})
	testenv.Eventually(t, 5*time.Second, func() (bool, string) { return reloads.Load() == 1, "first reload" })
	src.set(q, instances("web", "127.0.0.9"))
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		s := r.Stats()[0]
		return s.ReloadFailures == 1 && reloads.Load() == 3, "waiting for failed reload + reload of restored file"
	})
	if got := readFile(t, dest); got != "server 127.0.0.1:8000;\n" {
		t.Fatalf("destination = %q, want the previous file restored", got)
	}
}

func TestRunnerWaitCoalescesBurst(t *testing.T) {
	src := newMapSource()
	q := svcQuery(t, "web")
	src.set(q, instances("web", "127.0.0.1"))
	dest := filepath.Join(t.TempDir(), "out.conf")
	r, _ := startRunner(t, src, Config{Source: writeTemp(t, "t.ctmpl", upstreamTmpl), Destination: dest,
		Wait: Wait{Min: 100 * time.Millisecond, Max: time.Second}})
	testenv.Eventually(t, 5*time.Second, func() (bool, string) { return r.Stats()[0].Writes == 1, "first write" })
	addrs := []string{}
	for i := 0; i < 20; i++ {
		addrs = append(addrs, "127.0.1."+string(rune('0'+i%10)))
		src.set(q, instances("web", addrs...))
	}
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		got := readFile(t, dest)
		return strings.Count(got, "server") == 20, got
	})
	if w := r.Stats()[0].Writes; w > 3 {
		t.Fatalf("%d writes for a burst of 20 changes with wait 100ms:1s, want at most 2 after the first", w)
	}
}

func TestParseWait(t *testing.T) {
	tests := []struct {
		in      string
		want    Wait
		wantErr bool
	}{
		{"", Wait{}, false},
		{"200ms:1s", Wait{200 * time.Millisecond, time.Second}, false},
		{"2s", Wait{2 * time.Second, 8 * time.Second}, false},
		{"1", Wait{time.Second, 4 * time.Second}, false},
		{"1s:500ms", Wait{}, true},
		{"soon", Wait{}, true},
	}
	for _, tt := range tests {
		got, err := ParseWait(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseWait(%q) = %v, %v; want %v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestStageKeepsModeAndCommitsAtomically(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "f.conf")
	if err := os.WriteFile(dest, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Stage(dest, []byte("new"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, dest); got != "old" {
		t.Fatalf("destination changed before commit: %q", got)
	}
	if got := readFile(t, s.Path()); got != "new" {
		t.Fatalf("candidate = %q", got)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat(dest)
	if info.Mode().Perm() != 0o600 || readFile(t, dest) != "new" {
		t.Fatalf("after commit: mode %v content %q, want 0600 new", info.Mode().Perm(), readFile(t, dest))
	}
	if err := WriteFile(filepath.Join(dir, "fresh"), []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(filepath.Join(dir, "fresh")); info.Mode().Perm() != DefaultPerms {
		t.Fatalf("new file mode %v, want %v", info.Mode().Perm(), DefaultPerms)
	}
	if err := WriteFile(filepath.Join(dir, "missing-dir", "f"), []byte("x"), 0); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

func TestUnifiedDiff(t *testing.T) {
	a := "a\nb\nc\nd\n"
	b := "a\nB\nc\nd\ne\n"
	want := "--- old\n+++ new\n@@ -1,4 +1,5 @@\n a\n-b\n+B\n c\n d\n+e\n"
	if got := UnifiedDiff("old", "new", []byte(a), []byte(b)); got != want {
		t.Fatalf("diff:\n%s\nwant:\n%s", got, want)
	}
	if got := UnifiedDiff("a", "b", []byte(a), []byte(a)); got != "" {
		t.Fatalf("diff of equal inputs = %q", got)
	}
}

// TestRunnerApplyHook: a change Apply makes live is swapped in without a
// reload; one it declines, or fails to apply, goes down the reload path,
// and each outcome is counted apart.
func TestRunnerApplyHook(t *testing.T) {
	type answer struct {
		applied bool
		err     error
	}
	tests := []struct {
		name string
		answer
		want Stats // the counters after the second write
	}{
		{"applied", answer{true, nil}, Stats{Writes: 2, Reloads: 1, RuntimeApplied: 1}},
		{"needs a reload", answer{false, nil}, Stats{Writes: 2, Reloads: 2}},
		{"failed", answer{false, errors.New("socket gone")}, Stats{Writes: 2, Reloads: 2, RuntimeFallbacks: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newMapSource()
			q := svcQuery(t, "web")
			src.set(q, instances("web", "127.0.0.1"))
			dest := filepath.Join(t.TempDir(), "out.conf")
			var reloads atomic.Int64
			var seen atomic.Value
			r, _ := startRunner(t, src, Config{Source: writeTemp(t, "t.ctmpl", upstreamTmpl), Destination: dest,
				Reload: func(context.Context) error { reloads.Add(1); return nil },
				Apply: func(_ context.Context, old, new []byte) (bool, error) {
					if b, _ := os.ReadFile(dest); string(b) != string(new) {
						return false, errors.New("Apply called before the swap")
					}
					seen.Store(string(old) + "->" + string(new))
					return tt.applied, tt.err
				}})
			testenv.Eventually(t, 5*time.Second, func() (bool, string) {
				return r.Stats()[0].Writes == 1, readFile(t, dest)
			})
			if seen.Load() != nil {
				t.Fatal("Apply offered the first file")
			}
			src.set(q, instances("web", "127.0.0.1", "127.0.0.2"))
			testenv.Eventually(t, 5*time.Second, func() (bool, string) {
				s := r.Stats()[0]
				return s.Writes == 2 && s.Reloads+s.RuntimeApplied == 2, readFile(t, dest)
			})
			s := r.Stats()[0]
			got := Stats{Writes: s.Writes, Reloads: s.Reloads, RuntimeApplied: s.RuntimeApplied, RuntimeFallbacks: s.RuntimeFallbacks}
			if !reflect.DeepEqual(got, tt.want) || int(reloads.Load()) != tt.want.Reloads {
				t.Fatalf("stats %+v, reloads run %d; want %+v", s, reloads.Load(), tt.want)
			}
			if got := seen.Load(); got != "server 127.0.0.1:8000;\n->server 127.0.0.1:8000;\nserver 127.0.0.2:8001;\n" {
				t.Fatalf("Apply saw %q", got)
			}
		})
	}
}

// TestRunnerSplayDelaysReload: with a splay the file is in place at once
// and the reload waits its random delay; a long delay is cut short by
// cancellation (no reload) rather than holding up shutdown.
func TestRunnerSplayDelaysReload(t *testing.T) {
	for range 100 {
		if d := splay(10 * time.Millisecond); d < 0 || d >= 10*time.Millisecond {
			t.Fatalf("splay(10ms) = %v, want [0, 10ms)", d)
		}
	}
	if d := splay(0); d != 0 {
		t.Fatalf("splay(0) = %v", d)
	}

	src := newMapSource()
	q := svcQuery(t, "web")
	src.set(q, instances("web", "127.0.0.1"))
	dest := filepath.Join(t.TempDir(), "out.conf")
	var reloads atomic.Int32
	reload := func(ctx context.Context) error { reloads.Add(1); return nil }
	r, cancel := startRunner(t, src, Config{Source: writeTemp(t, "t.ctmpl", upstreamTmpl), Destination: dest, Reload: reload, Splay: time.Hour})
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		got := readFile(t, dest)
		return got == "server 127.0.0.1:8000;\n", got
	})
	cancel()
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		return r.Stats()[0].Writes == 1, "write not counted"
	})
	if n := reloads.Load(); n != 0 {
		t.Fatalf("%d reloads within an hour's splay, want 0", n)
	}

	dest2 := filepath.Join(t.TempDir(), "out2.conf")
	startRunner(t, src, Config{Source: writeTemp(t, "t2.ctmpl", upstreamTmpl), Destination: dest2, Reload: reload, Splay: 50 * time.Millisecond})
	testenv.Eventually(t, 5*time.Second, func() (bool, string) { return reloads.Load() == 1, "reload after a short splay" })
}

// TestRunnerErrorPolicies: what a failed execution or command does to Once
// and Run (consul-template's error_fatal, and its exit on a failed command).
func TestRunnerErrorPolicies(t *testing.T) {
	const text = `{{ range service "web" }}{{ if eq .Address "bad" }}{{ fail "bad address" }}{{ end }}{{ .Address }}{{ end }}`
	tmpl := writeTemp(t, "t.ctmpl", text)
	q := svcQuery(t, "web")
	// start runs a Runner for cfg until the subtest ends; logs is what it
	// logged, for the subtests that wait for a failure.
	start := func(t *testing.T, cfg Config, once bool) (src *mapSource, dest string, done <-chan error, logs *testenv.Buffer) {
		logs = &testenv.Buffer{}
		src = newMapSource()
		src.set(q, instances("web", "127.0.0.1"))
		cfg.Source = tmpl
		if cfg.Destination == "" {
			cfg.Destination = filepath.Join(t.TempDir(), "out")
		}
		r, err := NewRunner(src, []Config{cfg}, RunnerOptions{Log: zerolog.New(logs)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		result, ended := make(chan error, 1), make(chan struct{})
		go func() {
			defer close(ended)
			if once {
				result <- r.Once(ctx)
				return
			}
			result <- r.Run(ctx)
		}()
		t.Cleanup(func() { cancel(); <-ended })
		return src, cfg.Destination, result, logs
	}
	awaitFile := func(t *testing.T, dest, want string) {
		t.Helper()
		testenv.Eventually(t, 5*time.Second, func() (bool, string) { got := readFile(t, dest); return got == want, got })
	}
	awaitEnd := func(t *testing.T, done <-chan error, want string) {
		t.Helper()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("run ended with %v; want an error containing %q", err, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("run still going 10s after the failure")
		}
	}

	t.Run("ErrorsExit ends Run, the good file stays", func(t *testing.T) {
		src, dest, done, _ := start(t, Config{ExecuteErrors: ErrorsExit}, false)
		awaitFile(t, dest, "127.0.0.1")
		src.set(q, instances("web", "bad"))
		awaitEnd(t, done, "bad address")
		if got := readFile(t, dest); got != "127.0.0.1" {
			t.Errorf("file = %q after the failure; want the last good one", got)
		}
	})
	t.Run("ErrorsDefault keeps Run going", func(t *testing.T) {
		src, dest, done, logs := start(t, Config{}, false)
		awaitFile(t, dest, "127.0.0.1")
		src.set(q, instances("web", "bad"))
		testenv.Eventually(t, 5*time.Second, func() (bool, string) {
			return strings.Contains(logs.String(), "template failed to execute; keeping the last good file"), logs.String()
		})
		src.set(q, instances("web", "127.0.0.2"))
		awaitFile(t, dest, "127.0.0.2")
		select {
		case err := <-done:
			t.Fatalf("Run ended: %v", err)
		default:
		}
	})
	t.Run("ErrorsLogged makes Once wait for data it can execute with", func(t *testing.T) {
		src := newMapSource()
		src.set(q, instances("web", "bad"))
		dest := filepath.Join(t.TempDir(), "out")
		var logs testenv.Buffer
		r, err := NewRunner(src, []Config{{Source: tmpl, Destination: dest, ExecuteErrors: ErrorsLogged}}, RunnerOptions{Log: zerolog.New(&logs)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- r.Once(ctx) }()
		testenv.Eventually(t, 5*time.Second, func() (bool, string) {
			return strings.Contains(logs.String(), "template failed to execute; waiting for the next change"), logs.String()
		})
		select {
		case err := <-done:
			t.Fatalf("Once returned %v on an execution error; want it to wait", err)
		default:
		}
		src.set(q, instances("web", "127.0.0.3"))
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Once still waiting after good data")
		}
		if got := readFile(t, dest); got != "127.0.0.3" {
			t.Errorf("file = %q", got)
		}
	})
	t.Run("ErrorsDefault: Once returns the execution error", func(t *testing.T) {
		src := newMapSource()
		src.set(q, instances("web", "bad"))
		r, err := NewRunner(src, []Config{{Source: tmpl, Destination: filepath.Join(t.TempDir(), "out")}}, RunnerOptions{Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := r.Once(ctx); err == nil || !strings.Contains(err.Error(), "bad address") {
			t.Fatalf("Once = %v; want the execution error", err)
		}
	})
	t.Run("ExitOnCommandError ends Run, the previous file back", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "out")
		failOn9 := func(context.Context) ([]byte, error) {
			if readFile(t, dest) == "127.0.0.9" {
				return []byte("refused"), errors.New("reload refused")
			}
			return nil, nil
		}
		src, _, done, _ := start(t, Config{Destination: dest, ExitOnCommandError: true, Command: failOn9}, false)
		awaitFile(t, dest, "127.0.0.1")
		src.set(q, instances("web", "127.0.0.9"))
		awaitEnd(t, done, "reload refused")
		if got := readFile(t, dest); got != "127.0.0.1" {
			t.Errorf("file = %q after the failed command; want the previous one restored", got)
		}
	})
}
