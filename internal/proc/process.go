package proc

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// StartOptions are the stdio and extra environment of a long-running
// process started with [Runner.Start].
type StartOptions struct {
	// Stdin, Stdout and Stderr default to nothing (/dev/null) for Stdin and
	// the Runner's Stdout/Stderr (else os.Stdout/os.Stderr) for the others.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Process is a long-running child started by [Runner.Start], leading its own
// process group. Its exit is collected by a goroutine of its own; Done is
// closed then and ExitCode is the shell-style status.
type Process struct {
	Pid     int
	Started time.Time
	cmd     *exec.Cmd
	done    chan struct{}
	code    int
	signal  syscall.Signal
}

// Start starts c in its own process group and returns at once. A command
// that cannot start yields an error for which [ExitCode] gives 127 (not
// found) or 126 (not executable), like a shell. Every process start of the
// supervisor goes through here or through Run/Output, so that reaping and
// exit-code mapping live in one place.
func (r *Runner) Start(c Command, o StartOptions) (*Process, error) {
	if c.IsZero() {
		return nil, errors.New("start: empty command")
	}
	stdout, stderr := o.Stdout, o.Stderr
	if stdout == nil {
		stdout = r.Stdout
	}
	if stderr == nil {
		stderr = r.Stderr
	}
	if stdout == nil {
		stdout = os.Stdout
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
	cmd.Env = r.environ()
	cmd.Dir = r.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A process that exits while a child it forked still holds a pipe we
	// copy must not keep its exit from being seen.
	cmd.WaitDelay = waitDelay
	if err := r.Reaper.Start(cmd); err != nil {
		return nil, startError(c, r.Dir, err)
	}
	p := &Process{Pid: cmd.Process.Pid, Started: time.Now(), cmd: cmd, done: make(chan struct{})}
	go func() {
		err := r.Reaper.Wait(cmd)
		p.code, p.signal = waitStatus(cmd, err)
		close(p.done)
	}()
	return p, nil
}

// waitStatus maps what Wait left to a shell-style status and the killing
// signal (0 if it exited).
func waitStatus(cmd *exec.Cmd, err error) (int, syscall.Signal) {
	if cmd.ProcessState != nil {
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
			if ws.Signaled() {
				return 128 + int(ws.Signal()), ws.Signal()
			}
			return ws.ExitStatus(), 0
		}
	}
	if err != nil {
		return 1, 0
	}
	return 0, 0
}

// Done is closed once the process has exited and been collected.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitCode is the shell-style status (128+N when signal N killed it); valid
// once Done is closed.
func (p *Process) ExitCode() int { <-p.done; return p.code }

// Signaled is the signal that killed the process, or 0; valid once Done is closed.
func (p *Process) Signaled() syscall.Signal { <-p.done; return p.signal }

// SignalGroup sends sig to the process's whole group.
func (p *Process) SignalGroup(sig syscall.Signal) error { return SignalGroup(p.Pid, sig) }

// Stop sends sig to the process's group, SIGKILL to the group if it has not
// exited after timeout, and returns once it has been collected.
func (p *Process) Stop(sig syscall.Signal, timeout time.Duration) {
	_ = p.SignalGroup(sig)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = p.SignalGroup(syscall.SIGKILL)
		<-p.done
	}
}

// Signal sends sig to the process only (not its group), e.g. a reload
// signal meant for a master process that forwards it itself.
func (p *Process) Signal(sig syscall.Signal) error { return syscall.Kill(p.Pid, sig) }
