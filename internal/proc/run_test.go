package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// newRunner returns a Runner without a Reaper (tests in this process must not
// run one; see isolated) that can run helper commands.
func newRunner() *Runner {
	return &Runner{Env: slices.Clone(helperEnv)}
}

func TestRunExitStatus(t *testing.T) {
	tests := []struct {
		name     string
		cmd      Command
		wantCode int // ExitCode(err)
		wantSig  syscall.Signal
		wantIs   error // errors.Is target, if any
	}{
		{"exit 0", helper("exit", "0"), 0, 0, nil},
		{"exit 1", helper("exit", "1"), 1, 0, nil},
		{"exit 3", helper("exit", "3"), 3, 0, nil},
		{"exit 255", helper("exit", "255"), 255, 0, nil},
		{"SIGKILL", helper("signal", "9"), 137, syscall.SIGKILL, nil},
		{"SIGTERM", helper("signal", "15"), 143, syscall.SIGTERM, nil},
		{"not in PATH", Command{Argv: []string{"autopilot-no-such-program"}}, 127, 0, ErrNotFound},
		{"missing path", Command{Argv: []string{"/nonexistent/autopilot"}}, 127, 0, ErrNotFound},
		{"not executable", Command{Argv: []string{nonExecutable(t)}}, 126, 0, ErrNotExecutable},
		{"directory", Command{Argv: []string{t.TempDir()}}, 126, 0, ErrNotExecutable},
		{"missing interpreter", Command{Argv: []string{badInterpreter(t)}}, 126, 0, ErrNotExecutable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := newRunner().Run(context.Background(), tt.cmd)
			if got := ExitCode(err); got != tt.wantCode {
				t.Fatalf("ExitCode(%v) = %d; want %d", err, got, tt.wantCode)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
			if err != nil && !strings.Contains(err.Error(), tt.cmd.Argv[0]) {
				t.Errorf("error %q does not name the command", err)
			}
			var ee *ExitError
			isExit := errors.As(err, &ee)
			if wantExit := tt.wantCode != 0 && tt.wantIs == nil; isExit != wantExit {
				t.Fatalf("errors.As(%v, *ExitError) = %v; want %v", err, isExit, wantExit)
			}
			if isExit {
				if ee.Signal != tt.wantSig {
					t.Errorf("Signal = %v; want %v", ee.Signal, tt.wantSig)
				}
				if ee.Cause != nil {
					t.Errorf("Cause = %v; want nil without a context error", ee.Cause)
				}
			}
		})
	}
}

func TestRunEmptyCommand(t *testing.T) {
	if err := newRunner().Run(context.Background(), Command{}); err == nil {
		t.Fatal("Run(zero Command) = nil; want an error")
	}
}

func TestRunTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := newRunner().Run(ctx, helper("sleep", "1h"))
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Run took %v after a 100ms timeout", d)
	}
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Signal != syscall.SIGKILL {
		t.Fatalf("Run = %v; want an *ExitError for SIGKILL", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run = %v; want it to wrap context.DeadlineExceeded", err)
	}
	if got := ExitCode(err); got != 137 {
		t.Errorf("ExitCode = %d; want 137", got)
	}
}

// TestRunCancelKillsGroup: cancelling must kill what the command forked too,
// even while that grandchild holds the output pipe open.
func TestRunCancelKillsGroup(t *testing.T) {
	for _, capture := range []bool{false, true} {
		t.Run(fmt.Sprintf("capture=%v", capture), func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				var err error
				if capture {
					_, err = newRunner().Output(ctx, helper("grandchild", pidFile, "stay"))
				} else {
					r := newRunner()
					r.Stdout, r.Stderr = &bytes.Buffer{}, &bytes.Buffer{} // pipes, not files
					err = r.Run(ctx, helper("grandchild", pidFile, "stay"))
				}
				errc <- err
			}()
			grandchild := readPid(t, pidFile)
			t.Cleanup(func() { syscall.Kill(grandchild, syscall.SIGKILL) })

			cancel()
			var err error
			select {
			case err = <-errc:
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return 10s after cancel")
			}
			if !errors.Is(err, context.Canceled) || ExitCode(err) != 137 {
				t.Errorf("Run = %v (exit code %d); want SIGKILL after context.Canceled", err, ExitCode(err))
			}
			waitFor(t, 10*time.Second, "grandchild to die", func() (bool, string) {
				st, _ := statOf(grandchild)
				return dead(grandchild), fmt.Sprintf("%+v", st)
			})
		})
	}
}

// TestRunOrphanHoldsPipe: a command that exits 0 but leaves a child holding
// its stdout must not block Run, and still counts as success.
func TestRunOrphanHoldsPipe(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	start := time.Now()
	out, err := newRunner().Output(context.Background(), helper("grandchild", pidFile, "exit"))
	grandchild := readPid(t, pidFile)
	defer syscall.Kill(grandchild, syscall.SIGKILL)
	if err != nil {
		t.Errorf("Output = %v; want nil (the command itself exited 0)\n%s", err, out)
	}
	if d := time.Since(start); d > waitDelay+5*time.Second {
		t.Errorf("Output took %v; want about waitDelay (%v)", d, waitDelay)
	}
	if dead(grandchild) {
		t.Errorf("grandchild %d died; Run should leave it alone when the command succeeds", grandchild)
	}
}

func TestOutput(t *testing.T) {
	out, err := newRunner().Output(context.Background(), helper("print", "to stdout;", "to stderr"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), "to stdout;to stderr"; got != want {
		t.Errorf("Output = %q; want %q", got, want)
	}

	// Failing checks return their output too.
	out, err = newRunner().Output(context.Background(), helper("exit", "2"))
	if ExitCode(err) != 2 || len(out) != 0 {
		t.Errorf("Output = %q, %v; want no output and exit 2", out, err)
	}
}

func TestOutputKeepsTail(t *testing.T) {
	const n = 3*outputLimit + 123
	out, err := newRunner().Output(context.Background(), helper("spew", fmt.Sprint(n)))
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != outputLimit {
		t.Fatalf("len(Output) = %d; want %d", len(out), outputLimit)
	}
	// The helper writes 'a'+i%26 at offset i; check out is the last outputLimit bytes.
	for i, b := range out {
		if want := byte('a' + (n-outputLimit+i)%26); b != want {
			t.Fatalf("Output[%d] = %q; want %q", i, b, want)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
		want   string
	}{
		{"under limit", 5, []string{"ab", "c"}, "abc"},
		{"exactly limit", 3, []string{"ab", "c"}, "abc"},
		{"spills", 3, []string{"ab", "cd", "e"}, "cde"},
		{"one big write", 3, []string{"abcdefg"}, "efg"},
		{"big then small", 3, []string{"abcdefg", "h"}, "fgh"},
		{"many small", 2, strings.Split("abcdefghij", ""), "ij"},
		{"nothing", 3, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := &tailBuffer{max: tt.max}
			for _, w := range tt.writes {
				if n, err := tb.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if got := string(tb.Bytes()); got != tt.want {
				t.Errorf("Bytes() = %q; want %q", got, tt.want)
			}
		})
	}
}

func TestRunnerEnv(t *testing.T) {
	r := newRunner()
	r.Env = append(r.Env, "AUTOPILOT_TEST_A=from-field")
	get := func(key string) string {
		t.Helper()
		out, err := r.Output(context.Background(), helper("getenv", key))
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	if got := get("AUTOPILOT_TEST_A"); got != "from-field" {
		t.Errorf("AUTOPILOT_TEST_A = %q; want from-field", got)
	}
	if got := get("PATH"); got != os.Getenv("PATH") {
		t.Errorf("PATH = %q; want ours, %q", got, os.Getenv("PATH"))
	}
	r.SetEnv("AUTOPILOT_APP_PID", "123")
	r.SetEnv("AUTOPILOT_TEST_A", "replaced")
	if got := get("AUTOPILOT_APP_PID"); got != "123" {
		t.Errorf("AUTOPILOT_APP_PID = %q; want 123", got)
	}
	if got := get("AUTOPILOT_TEST_A"); got != "replaced" {
		t.Errorf("AUTOPILOT_TEST_A = %q; want replaced", got)
	}
	if n := strings.Count(strings.Join(r.Env, "\n"), "AUTOPILOT_TEST_A="); n != 1 {
		t.Errorf("Env holds AUTOPILOT_TEST_A %d times: %q", n, r.Env)
	}
}

// TestRunnerPristineEnv: with Pristine, Env is all a command gets.
func TestRunnerPristineEnv(t *testing.T) {
	t.Setenv("AUTOPILOT_TEST_OURS", "x")
	r := &Runner{Pristine: true, Env: append(slices.Clone(helperEnv), "AUTOPILOT_TEST_A=a")}
	for key, want := range map[string]string{"AUTOPILOT_TEST_A": "a", "AUTOPILOT_TEST_OURS": "", "PATH": ""} {
		out, err := r.Output(context.Background(), helper("getenv", key))
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != want {
			t.Errorf("%s = %q; want %q", key, out, want)
		}
	}
}

// TestRunnerSetEnvConcurrent is for -race: SetEnv may run while commands start.
func TestRunnerSetEnvConcurrent(t *testing.T) {
	r := newRunner()
	ctx := context.Background()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 100; i++ {
			r.SetEnv("AUTOPILOT_APP_PID", fmt.Sprint(i))
		}
	}()
	for i := 0; i < 5; i++ {
		if err := r.Run(ctx, helper("exit", "0")); err != nil {
			t.Fatal(err)
		}
	}
	<-done
}

func TestRunnerDir(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := newRunner()
	r.Dir = dir
	out, err := r.Output(context.Background(), helper("pwd"))
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != dir {
		t.Errorf("pwd = %q; want %q", out, dir)
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 0},
		{"exit", &ExitError{Code: 3}, 3},
		{"signal", &ExitError{Code: -1, Signal: syscall.SIGTERM}, 143},
		{"wrapped exit", fmt.Errorf("hook: %w", &ExitError{Code: 4}), 4},
		{"not found", fmt.Errorf("run x: %w", ErrNotFound), 127},
		{"not executable", fmt.Errorf("run x: %w", ErrNotExecutable), 126},
		{"context", context.DeadlineExceeded, 1},
		{"other", errors.New("boom"), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ExitCode(tt.err); got != tt.want {
				t.Errorf("ExitCode(%v) = %d; want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestExitErrorMessage(t *testing.T) {
	tests := []struct {
		err  *ExitError
		want string
	}{
		{&ExitError{Command: "nginx -t", Code: 1}, "run nginx -t: exit status 1"},
		{&ExitError{Command: "x", Code: -1, Signal: syscall.SIGKILL}, "run x: killed by signal 9 (killed)"},
		{&ExitError{Command: "x", Code: -1, Signal: syscall.SIGKILL, Cause: context.DeadlineExceeded},
			"run x: killed by signal 9 (killed) after context deadline exceeded"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q; want %q", got, tt.want)
		}
	}
}
