package proc

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// SignalGroup sends sig to every process in the process group pid leads
// (kill(-pid, sig)). Commands run by [Runner] lead their own group, so this
// reaches the children they forked too. pid must be > 1: kill(0) and kill(-1)
// would signal our own group or every process. A group with no process left
// yields an error wrapping syscall.ESRCH.
func SignalGroup(pid int, sig syscall.Signal) error {
	if pid <= 1 {
		return fmt.Errorf("signal process group %d with %v: refusing a pid <= 1", pid, sig)
	}
	if err := syscall.Kill(-pid, sig); err != nil {
		return fmt.Errorf("signal process group %d with %v: %w", pid, sig, err)
	}
	return nil
}

// HandledSignals returns the signals the supervisor acts on itself and so
// must not forward blindly: SIGTERM, SIGINT, SIGHUP and SIGUSR1. SIGCHLD
// belongs to the [Reaper]; SIGKILL and SIGSTOP cannot be caught. It returns a
// fresh slice each call.
func HandledSignals() []os.Signal {
	return []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1}
}

// ForwardableSignals returns the catchable signals the supervisor should pass
// on to the app unchanged, e.g. SIGUSR2, SIGQUIT (thread dumps), SIGWINCH
// (graceful stop for httpd) and SIGTTIN/SIGTTOU (HAProxy). It excludes
// [HandledSignals], SIGCHLD, SIGKILL and SIGSTOP, and also signals that are
// about the supervisor itself rather than the app: SIGURG and SIGPROF (used by
// the Go runtime for preemption and profiling), SIGPIPE (raised by our own
// writes), the synchronous faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP,
// SIGSYS) and SIGABRT (left to crash the supervisor with a stack dump). It
// returns a fresh slice each call.
func ForwardableSignals() []os.Signal {
	return []os.Signal{
		syscall.SIGUSR2,
		syscall.SIGQUIT,
		syscall.SIGWINCH,
		syscall.SIGALRM,
		syscall.SIGVTALRM,
		syscall.SIGTSTP,
		syscall.SIGCONT,
		syscall.SIGTTIN,
		syscall.SIGTTOU,
		syscall.SIGIO,
		syscall.SIGPWR,
		syscall.SIGXCPU,
		syscall.SIGXFSZ,
	}
}

// Catcher relays signals to one channel. Catch enables them in the
// background: the Go runtime enables one signal at a time, each a round
// trip to its signal thread (the first one starts that thread), 0.2-0.3 ms
// for the supervisor's four, which a caller that starts a Catcher before
// loading its config overlaps with the load instead of spending it before
// its app's fork (issue 13: 0.1-0.45 ms less from exec to the app's start
// in paired runs of 300 starts).
type Catcher struct {
	ch    chan os.Signal
	ready chan struct{}
}

// Catch starts catching sigs and returns at once; until C returns, one of
// them may still get Go's default handling.
func Catch(sigs ...os.Signal) *Catcher {
	c := &Catcher{ch: make(chan os.Signal, 32), ready: make(chan struct{})}
	go func() {
		signal.Notify(c.ch, sigs...)
		close(c.ready)
	}()
	return c
}

// C waits until the signals given to Catch are caught and returns the
// channel every caught signal arrives on.
func (c *Catcher) C() <-chan os.Signal {
	<-c.ready
	return c.ch
}

// Add catches sigs too, on the same channel, before it returns.
func (c *Catcher) Add(sigs ...os.Signal) {
	<-c.ready
	signal.Notify(c.ch, sigs...)
}

// Stop stops relaying signals to the channel; it may be called again.
func (c *Catcher) Stop() {
	<-c.ready
	signal.Stop(c.ch)
}
