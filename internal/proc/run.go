package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// waitDelay is how long Run waits for a command's output pipes after the
// command itself has exited. A command may leave a background child holding
// its stdout open; without this bound Wait would block as long as that child
// lives.
const waitDelay = time.Second

// outputLimit is how much output Output keeps: the end, where errors are.
const outputLimit = 64 << 10

// Runner runs the supervisor's short-lived commands: health checks, hooks,
// onChange handlers, template check and reload commands.
//
// Each command runs in its own process group, so cancelling ctx (a timeout or
// shutdown) SIGKILLs the command together with everything it forked.
//
// Set the fields before first use and do not copy a Runner after that. Run
// and Output are safe for concurrent use; change the environment only with
// SetEnv once the Runner is in use.
type Runner struct {
	// Reaper starts and waits for the commands; nil runs them without one.
	Reaper *Reaper
	// Env is appended to os.Environ(); a later entry wins over an earlier
	// one with the same key.
	Env []string
	// Pristine makes Env the whole environment instead of an addition to
	// os.Environ() (consul-template's filtered child environments).
	Pristine bool
	// Dir is the working directory; empty means ours.
	Dir string
	// Stdout and Stderr receive the output of Run (not Output); nil means
	// os.Stdout and os.Stderr.
	Stdout, Stderr io.Writer

	mu sync.Mutex // guards Env
}

// SetEnv sets key=val in Env, replacing an earlier value of key, e.g.
// AUTOPILOT_APP_PID once the app has started. Commands already running keep
// the environment they started with.
func (r *Runner) SetEnv(key, val string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Copy rather than edit in place: Env may share its array with the
	// caller's slice.
	env := make([]string, 0, len(r.Env)+1)
	for _, kv := range r.Env {
		if !strings.HasPrefix(kv, key+"=") {
			env = append(env, kv)
		}
	}
	r.Env = append(env, key+"="+val)
}

func (r *Runner) environ() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Pristine {
		return append([]string{}, r.Env...) // non-nil: an empty Env is an empty environment
	}
	return append(os.Environ(), r.Env...)
}

// Run runs c to completion, its output going to Stdout and Stderr.
//
// It returns nil if c exited 0; an *ExitError if it exited otherwise or was
// killed (wrapping ctx.Err() if ctx ended first); an error wrapping
// ErrNotFound or ErrNotExecutable if it could not be started for those
// reasons; or another error. Use [ExitCode] to turn any of these into a
// status.
func (r *Runner) Run(ctx context.Context, c Command) error {
	stdout, stderr := r.Stdout, r.Stderr
	if stdout == nil {
		stdout = os.Stdout
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	return r.run(ctx, c, stdout, stderr)
}

// Output is Run, but it returns c's stdout and stderr interleaved, keeping only
// the last 64 KiB, for callers that log what a failed check printed. The
// output is returned whatever the error.
func (r *Runner) Output(ctx context.Context, c Command) ([]byte, error) {
	out := &tailBuffer{max: outputLimit}
	err := r.run(ctx, c, out, out) // the same writer: os/exec then writes from one goroutine
	return out.Bytes(), err
}

// CheckFunc adapts c to a check of a candidate file, the form render takes:
// {{.Path}} in its arguments becomes the path it is given; it returns c's
// output. nil for a zero c (no check).
func (r *Runner) CheckFunc(c Command) func(ctx context.Context, path string) ([]byte, error) {
	if c.IsZero() {
		return nil
	}
	return func(ctx context.Context, path string) ([]byte, error) {
		cmd, err := c.Expand(struct{ Path string }{path})
		if err != nil {
			return nil, err
		}
		return r.Output(ctx, cmd)
	}
}

// OutputFunc adapts c to the command form render takes: it runs c and
// returns its output. nil for a zero c (no command).
func (r *Runner) OutputFunc(c Command) func(ctx context.Context) ([]byte, error) {
	if c.IsZero() {
		return nil
	}
	return func(ctx context.Context) ([]byte, error) { return r.Output(ctx, c) }
}

func (r *Runner) run(ctx context.Context, c Command, stdout, stderr io.Writer) error {
	if c.IsZero() {
		return errors.New("run: empty command")
	}
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	cmd.Env = r.environ()
	cmd.Dir = r.Dir
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = waitDelay
	if err := r.Reaper.Start(cmd); err != nil {
		return startError(c, r.Dir, err)
	}
	err := r.Reaper.Wait(cmd)
	var xe *exec.ExitError
	switch {
	case err == nil, errors.Is(err, exec.ErrWaitDelay):
		// ErrWaitDelay: c exited 0 but something it left behind kept the
		// output open; c itself succeeded.
		return nil
	case errors.As(err, &xe):
		return exitErrorFrom(xe, c.String(), ctx.Err())
	default:
		return fmt.Errorf("run %s: %w", c, err)
	}
}

// killGroup is the Cancel function of Runner's commands: SIGKILL the whole
// group, since a timed-out check's children are as stuck as the check.
func killGroup(pid int) error {
	err := SignalGroup(pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone // what os/exec expects for "already gone"
	}
	return err
}

// startError classifies why c could not start, the way a shell would.
func startError(c Command, dir string, err error) error {
	var ee *exec.Error
	var pe *fs.PathError
	switch {
	case errors.As(err, &ee) && errors.Is(ee.Err, exec.ErrNotFound):
		return fmt.Errorf("run %s: %w: %w", c, ErrNotFound, err)
	case errors.As(err, &pe) && pe.Op == "fork/exec":
		switch {
		case errors.Is(pe.Err, syscall.ENOENT) && !exists(dir, pe.Path):
			return fmt.Errorf("run %s: %w: %w", c, ErrNotFound, err)
		case errors.Is(pe.Err, syscall.ENOENT), // the file exists: its #! interpreter does not
			errors.Is(pe.Err, syscall.EACCES),
			errors.Is(pe.Err, syscall.EPERM),
			errors.Is(pe.Err, syscall.ENOEXEC):
			return fmt.Errorf("run %s: %w: %w", c, ErrNotExecutable, err)
		case errors.Is(pe.Err, syscall.ENOTDIR):
			return fmt.Errorf("run %s: %w: %w", c, ErrNotFound, err)
		}
	}
	return fmt.Errorf("run %s: %w", c, err)
}

func exists(dir, path string) bool {
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	_, err := os.Stat(path)
	return err == nil
}
