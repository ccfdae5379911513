package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/ctconfig"
	"github.com/autopilot/autopilot/internal/proc"
)

// ctChild is consul-template's -exec child: started after the first
// complete render, in its own process group; on a template change it gets
// the reload signal (after a random splay), or is restarted when there is
// none; its exit ends the run with its exit code.
type ctChild struct {
	argv        []string
	killSignal  syscall.Signal
	killTimeout time.Duration
	reload      *syscall.Signal
	splay       time.Duration
	log         zerolog.Logger
	stdout      io.Writer
	stderr      io.Writer

	exited chan int // the child's own exit (not one we caused), once

	mu      sync.Mutex
	cmd     *exec.Cmd
	waitErr chan error // of the current cmd
	stopped bool
}

func newCTChild(e *ctconfig.Exec, log zerolog.Logger, stdout, stderr io.Writer) *ctChild {
	c := &ctChild{argv: ctCommand(e.Command).Argv, killSignal: syscall.SIGTERM, killTimeout: 30 * time.Second,
		reload: e.ReloadSignal, log: log, stdout: stdout, stderr: stderr, exited: make(chan int, 1)}
	if e.KillSignal != nil {
		c.killSignal = *e.KillSignal
	}
	if e.KillTimeout != nil {
		c.killTimeout = *e.KillTimeout
	}
	if e.Splay != nil {
		c.splay = *e.Splay
	}
	return c
}

// start runs the child (again); it reports its exit on c.exited unless we
// stopped it.
func (c *ctChild) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	cmd := exec.Command(c.argv[0], c.argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, c.stdout, c.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %q: %w", c.argv, err)
	}
	c.log.Info().Strs("command", c.argv).Int("pid", cmd.Process.Pid).Msg("child started")
	waitErr := make(chan error, 1)
	c.cmd, c.waitErr = cmd, waitErr
	go func() {
		err := cmd.Wait()
		waitErr <- err
		c.mu.Lock()
		ours := c.cmd != cmd || c.stopped // replaced or stopped by us
		c.mu.Unlock()
		if !ours {
			select {
			case c.exited <- exitCodeOf(err):
			default: // the run already ends with an earlier exit
			}
		}
	}()
	return nil
}

func exitCodeOf(err error) int {
	if err == nil {
		return 0
	}
	var xe *exec.ExitError
	if errors.As(err, &xe) {
		if ws, ok := xe.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return xe.ExitCode()
	}
	return proc.ExitCode(err)
}

// templateChanged signals or restarts the running child.
func (c *ctChild) templateChanged(ctx context.Context) error {
	c.mu.Lock()
	running := c.cmd != nil && !c.stopped
	c.mu.Unlock()
	if !running {
		return nil // the first render: the child starts after it
	}
	if c.splay > 0 {
		t := time.NewTimer(rand.N(c.splay))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	if c.reload != nil {
		c.signal(*c.reload)
		return nil
	}
	c.mu.Lock()
	cmd, waitErr := c.cmd, c.waitErr
	c.cmd = nil // mark the exit as ours
	c.mu.Unlock()
	c.terminate(cmd, waitErr)
	return c.start()
}

// signal sends sig to the child's process group.
func (c *ctChild) signal(sig syscall.Signal) {
	c.mu.Lock()
	cmd := c.cmd
	c.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		if err := proc.SignalGroup(cmd.Process.Pid, sig); err != nil {
			c.log.Debug().Err(err).Str("signal", sig.String()).Msg("signal to child")
		}
	}
}

// stop ends the child: kill signal, then SIGKILL after the kill timeout.
func (c *ctChild) stop() {
	c.mu.Lock()
	c.stopped = true
	cmd, waitErr := c.cmd, c.waitErr
	c.mu.Unlock()
	c.terminate(cmd, waitErr)
}

func (c *ctChild) terminate(cmd *exec.Cmd, waitErr chan error) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = proc.SignalGroup(cmd.Process.Pid, c.killSignal)
	t := time.NewTimer(c.killTimeout)
	defer t.Stop()
	select {
	case err := <-waitErr:
		waitErr <- err
	case <-t.C:
		_ = proc.SignalGroup(cmd.Process.Pid, syscall.SIGKILL)
		err := <-waitErr
		waitErr <- err
	}
}
