package proc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// reapFallback is how often Run drains even without SIGCHLD. Signals coalesce
// and Notify drops what does not fit its channel; the poll makes a lost
// wake-up cost at most this long.
const reapFallback = time.Second

// Reaper reaps orphaned children (zombies re-parented to PID 1 or to a
// subreaper) without stealing the exit status of processes whose owner waits
// for them through os/exec.
//
// It never calls wait on "any child". It peeks with waitid(WNOWAIT), which
// leaves the zombie in place, and reaps the pid only if it was not started
// through [Reaper.Start]. For a pid that was, it waits until the owner's
// [Reaper.Wait] has collected it. This holds whether os/exec waits with a
// pidfd (Go 1.23+ on Linux) or with wait4(pid): either needs the zombie to
// still be there.
//
// Contract: while Run is active, every child of this process must be started
// with Start and collected with Wait; a child started any other way may be
// reaped as an orphan under its owner's feet. Every successful Start must be
// followed by Wait, or the reaper stalls behind that child once it exits.
//
// A nil *Reaper is valid: Start and Wait then just call cmd.Start and
// cmd.Wait, so commands can run without a reaper (for example in tests).
type Reaper struct {
	log zerolog.Logger

	mu sync.Mutex
	// active maps the commands started by Start and not yet collected by
	// Wait to their pid. Keyed by command, not pid, because after the owner
	// reaps pid P and before it unregisters, P may already be reused.
	active map[*exec.Cmd]int
	// changed is closed and replaced whenever active shrinks, to wake a
	// drain waiting for an owner.
	changed chan struct{}
}

// NewReaper returns a Reaper that logs reaped orphans at debug level.
func NewReaper(log zerolog.Logger) *Reaper {
	return &Reaper{
		log:     log,
		active:  make(map[*exec.Cmd]int),
		changed: make(chan struct{}),
	}
}

// BecomeSubreaper makes orphans of our descendants re-parent to this process
// rather than to PID 1 (prctl PR_SET_CHILD_SUBREAPER), so the same reaping
// applies when autopilot is not PID 1 (in tests, or under another init). As
// PID 1 it does nothing: orphans come to us anyway.
func BecomeSubreaper() error {
	if os.Getpid() == 1 {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}
	return nil
}

// Start starts cmd and registers it as owned, so Run leaves it for Wait.
// The lock is held across cmd.Start: Run peeks under the same lock, so it
// cannot see our child exit before the child is registered.
func (r *Reaper) Start(cmd *exec.Cmd) error {
	if r == nil {
		return cmd.Start()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	r.active[cmd] = cmd.Process.Pid
	return nil
}

// Wait waits for cmd, which must have been started by Start, then
// unregisters it and wakes Run if it was waiting for this child.
func (r *Reaper) Wait(cmd *exec.Cmd) error {
	err := cmd.Wait()
	if r == nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.active[cmd]; ok {
		delete(r.active, cmd)
		close(r.changed)
		r.changed = make(chan struct{})
	}
	return err
}

// Run reaps orphans until ctx is done, on SIGCHLD and every reapFallback.
// Call it once, in its own goroutine.
func (r *Reaper) Run(ctx context.Context) {
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGCHLD)
	defer signal.Stop(sigc)
	tick := time.NewTicker(reapFallback)
	defer tick.Stop()
	for {
		r.drain(ctx)
		select {
		case <-ctx.Done():
			return
		case <-sigc:
		case <-tick.C:
		}
	}
}

// drain handles exited children until none is left or ctx is done.
func (r *Reaper) drain(ctx context.Context) {
	for ctx.Err() == nil {
		wait, more := r.reapOne()
		if wait != nil {
			select {
			case <-wait:
			case <-ctx.Done():
				return
			}
		}
		if !more {
			return
		}
	}
}

// reapOne peeks at one exited child. If it is an orphan it reaps it and
// reports more=true. If it is owned it returns a channel that is closed when
// an owner has collected its child; the caller waits on it and peeks again.
// The peek happens under the lock, so an owned pid seen here is an exited
// child that its owner has not unregistered yet.
func (r *Reaper) reapOne() (wait <-chan struct{}, more bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := peekExited()
	switch {
	case errors.Is(err, unix.ECHILD):
		return nil, false
	case err != nil:
		r.log.Error().Err(err).Msg("reaper: waitid")
		return nil, false
	case pid == 0:
		return nil, false
	}
	for _, p := range r.active {
		if p == pid {
			r.log.Debug().Int("pid", pid).Msg("reaper: child exited; leaving it to its owner")
			return r.changed, true
		}
	}
	var ws unix.WaitStatus
	got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	if err != nil || got != pid {
		// Cannot happen while every start goes through Start; say so
		// rather than spin on the same zombie.
		r.log.Error().Err(err).Int("pid", pid).Int("got", got).Msg("reaper: wait4 of orphan failed")
		return nil, false
	}
	ev := r.log.Debug().Int("pid", pid)
	if ws.Signaled() {
		ev = ev.Str("signal", ws.Signal().String())
	} else {
		ev = ev.Int("status", ws.ExitStatus())
	}
	ev.Msg("reaped orphan")
	return nil, true
}

// siginfoChild is the SIGCHLD layout of the kernel's siginfo_t, which
// unix.Siginfo leaves opaque. Mirrors the struct in syscall.os_checkClonePidfd.
type siginfoChild struct {
	Signo int32
	_     [2]int32                  // errno and code (swapped on MIPS)
	_     [is64bit]int32            // the union is pointer-aligned
	Pid   int32                     // si_pid
	_     [128 - (4+is64bit)*4]byte // pad to sizeof(siginfo_t)
}

const is64bit = ^uint(0) >> 63 // 1 on 64-bit, 0 on 32-bit

// peekExited returns the pid of an exited child without reaping it, 0 if no
// child has exited yet, or ECHILD if there are no children.
func peekExited() (int, error) {
	for {
		var info siginfoChild
		err := unix.Waitid(unix.P_ALL, 0, (*unix.Siginfo)(unsafe.Pointer(&info)),
			unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if err == unix.EINTR {
			continue
		}
		return int(info.Pid), err
	}
}
