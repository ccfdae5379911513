package proc

import (
	"errors"
	"fmt"
	"os/exec"
	"syscall"
)

var (
	// ErrNotFound means the program does not exist (shell convention: 127).
	ErrNotFound = errors.New("command not found")
	// ErrNotExecutable means the program exists but cannot be executed:
	// no permission, or not a format the kernel can run (shell convention: 126).
	ErrNotExecutable = errors.New("command not executable")
)

// ExitError reports a command that started but did not exit with status 0.
// Callers branch on it with errors.As; Unwrap yields Cause, so
// errors.Is(err, context.DeadlineExceeded) tells a timeout apart.
type ExitError struct {
	// Command is the command as run, for logs.
	Command string
	// Code is the exit status, or -1 if the process was killed by a signal.
	Code int
	// Signal is the signal that killed the process, or 0 if it exited.
	Signal syscall.Signal
	// Cause is the context error if the command was killed because its
	// context ended (timeout or shutdown); nil otherwise.
	Cause error
}

func (e *ExitError) Error() string {
	var what string
	if e.Signal != 0 {
		what = fmt.Sprintf("killed by signal %d (%v)", int(e.Signal), e.Signal)
	} else {
		what = fmt.Sprintf("exit status %d", e.Code)
	}
	if e.Cause != nil {
		what += fmt.Sprintf(" after %v", e.Cause)
	}
	return fmt.Sprintf("run %s: %s", e.Command, what)
}

func (e *ExitError) Unwrap() error { return e.Cause }

// ExitCode is the status a shell would report: Code, or 128+N for signal N.
func (e *ExitError) ExitCode() int {
	if e.Signal != 0 {
		return 128 + int(e.Signal)
	}
	return e.Code
}

// ExitCode maps the result of [Runner.Run] or [Runner.Output] to a shell-style
// exit status: 0 for nil, the exit code, 128+N for signal N, 127 for
// [ErrNotFound], 126 for [ErrNotExecutable] and 1 for any other error.
func ExitCode(err error) int {
	var ee *ExitError
	var xe *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	case errors.As(err, &xe):
		return exitErrorFrom(xe, "", nil).ExitCode()
	case errors.Is(err, ErrNotFound):
		return 127
	case errors.Is(err, ErrNotExecutable):
		return 126
	default:
		return 1
	}
}

// exitErrorFrom converts os/exec's error, which hides the signal behind
// ProcessState.Sys.
func exitErrorFrom(xe *exec.ExitError, command string, cause error) *ExitError {
	e := &ExitError{Command: command, Code: xe.ExitCode(), Cause: cause}
	if ws, ok := xe.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		e.Code, e.Signal = -1, ws.Signal()
	}
	return e
}
