package cli

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
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
	cmd         proc.Command
	runner      *proc.Runner
	killSignal  syscall.Signal
	killTimeout time.Duration
	reload      *syscall.Signal
	splay       time.Duration
	log         zerolog.Logger

	exited chan int // the child's own exit (not one we caused), once

	mu      sync.Mutex
	p       *proc.Process // the running child; nil once we stop it
	stopped bool
}

// newCTChild prepares the child; its environment is autopilot's filtered
// by the exec's env block, then childEnv (see [ctconfig.Config.ChildEnv]).
func newCTChild(e *ctconfig.Exec, childEnv []string, log zerolog.Logger, stdout, stderr io.Writer) *ctChild {
	runner := &proc.Runner{Stdout: stdout, Stderr: stderr, Pristine: true, Env: e.Env.Environ(os.Environ(), childEnv)}
	c := &ctChild{cmd: ctCommand(e.Command), runner: runner,
		killSignal: syscall.SIGTERM, killTimeout: 30 * time.Second,
		reload: e.ReloadSignal, log: log, exited: make(chan int, 1)}
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
	p, err := c.runner.Start(c.cmd, proc.StartOptions{Stdin: os.Stdin})
	if err != nil {
		return fmt.Errorf("exec %q: %w", c.cmd.Argv, err)
	}
	c.log.Info().Strs("command", c.cmd.Argv).Int("pid", p.Pid).Msg("child started")
	c.p = p
	go func() {
		<-p.Done()
		c.mu.Lock()
		ours := c.p != p || c.stopped // replaced or stopped by us
		c.mu.Unlock()
		if !ours {
			select {
			case c.exited <- p.ExitCode():
			default: // the run already ends with an earlier exit
			}
		}
	}()
	return nil
}

// templateChanged signals or restarts the running child.
func (c *ctChild) templateChanged(ctx context.Context) error {
	c.mu.Lock()
	running := c.p != nil && !c.stopped
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
	p := c.p
	c.p = nil // mark the exit as ours
	c.mu.Unlock()
	c.terminate(p)
	return c.start()
}

// signal sends sig to the child's process group.
func (c *ctChild) signal(sig syscall.Signal) {
	c.mu.Lock()
	p := c.p
	c.mu.Unlock()
	if p != nil {
		if err := p.SignalGroup(sig); err != nil {
			c.log.Debug().Err(err).Str("signal", sig.String()).Msg("signal to child")
		}
	}
}

// stop ends the child: kill signal, then SIGKILL after the kill timeout.
func (c *ctChild) stop() {
	c.mu.Lock()
	c.stopped = true
	p := c.p
	c.mu.Unlock()
	c.terminate(p)
}

func (c *ctChild) terminate(p *proc.Process) {
	if p != nil {
		p.Stop(c.killSignal, c.killTimeout)
	}
}
