package haproxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// Defaults of ReloaderOptions.
const (
	DefaultConfirm  = 5 * time.Second
	DefaultAttempts = 3
)

// ReloaderOptions configure a Reloader.
type ReloaderOptions struct {
	// Master is the master CLI socket (`haproxy -W -S PATH`).
	Master string
	// Trigger asks HAProxy to reload, e.g. SIGUSR2 to the master. nil sends
	// `reload` on the master CLI.
	Trigger func(ctx context.Context) error
	// Confirm is how long one attempt waits for the master to report a new
	// worker before triggering again; 0 means DefaultConfirm.
	Confirm time.Duration
	// Attempts is how many times a reload is triggered before giving up;
	// 0 means DefaultAttempts.
	Attempts int
	Log      zerolog.Logger
}

// Reloader reloads HAProxy and confirms that the reload happened.
//
// HAProxy 2.6's master can miss a SIGUSR2 that arrives while it re-executes
// itself for the previous one; it then keeps serving the older config until
// something else makes it reload. A signal has no answer, so the Reloader
// reads the master's `show proc` before and after: a reload took effect when
// the master's reload counter moved and a worker not seen before runs. If
// the counter did not move within Confirm, the reload is triggered again.
//
// The count is trustworthy because the master answers the CLI only from
// its event loop, never while it re-executes itself: the count read before
// triggering (after the new file is in place) already includes any reload
// in progress, so a higher count later means a reload that started after
// it, and read the new file.
type Reloader struct {
	opts    ReloaderOptions
	master  Client
	retries atomic.Int64
	done    atomic.Int64
}

// ErrRejected means HAProxy tried the new config and refused it; the old
// workers go on serving. The master's alerts are in its log.
var ErrRejected = errors.New("haproxy rejected the new config")

// NewReloader returns a Reloader for the master CLI at opts.Master.
func NewReloader(opts ReloaderOptions) *Reloader {
	if opts.Confirm <= 0 {
		opts.Confirm = DefaultConfirm
	}
	if opts.Attempts <= 0 {
		opts.Attempts = DefaultAttempts
	}
	return &Reloader{opts: opts, master: Client{Addr: opts.Master}}
}

// Retries is how many reloads had to be triggered again because the first
// signal went unanswered.
func (r *Reloader) Retries() int { return int(r.retries.Load()) }

// Confirmed is how many reloads were confirmed.
func (r *Reloader) Confirmed() int { return int(r.done.Load()) }

// Procs reads the master's `show proc`.
func (r *Reloader) Procs(ctx context.Context) (Procs, error) {
	out, err := r.master.Exec(ctx, "show proc")
	if err != nil {
		return Procs{}, err
	}
	return ParseProcs(out)
}

// Reload triggers a reload and returns once the master reports a new
// worker. It returns an error wrapping ErrRejected when HAProxy refused the
// config, and an error when no attempt was confirmed or the master CLI
// cannot be read (then it does not reload blind: the caller's fallback,
// such as rolling the file back, should see that it failed).
func (r *Reloader) Reload(ctx context.Context) error {
	before, err := r.procsSettled(ctx)
	if err != nil {
		return fmt.Errorf("reload: reading the master's state first: %w", err)
	}
	for attempt := 1; ; attempt++ {
		if err := r.trigger(ctx); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
		now, ok, err := r.await(ctx, before)
		if err != nil {
			return err
		}
		if ok {
			r.done.Add(1)
			r.opts.Log.Info().Int("reloads", now.Reloads).Ints("workers", now.Workers).Int("attempt", attempt).Msg("haproxy reload confirmed")
			return nil
		}
		if attempt >= r.opts.Attempts {
			return fmt.Errorf("reload not confirmed after %d attempts %v apart: the master still reports %d reloads and workers %v",
				attempt, r.opts.Confirm, now.Reloads, now.Workers)
		}
		r.retries.Add(1)
		r.opts.Log.Warn().Dur("waited", r.opts.Confirm).Int("reloads", now.Reloads).Int("attempt", attempt).
			Msg("haproxy did not reload (signal missed?); triggering again")
	}
}

// procsSettled reads `show proc`, waiting up to Confirm while the master
// does not answer because it is re-executing itself (a reload someone else
// started). A missing socket fails at once: HAProxy is not running.
func (r *Reloader) procsSettled(ctx context.Context) (Procs, error) {
	deadline := time.Now().Add(r.opts.Confirm)
	for {
		p, err := r.Procs(ctx)
		if err == nil || errors.Is(err, syscall.ENOENT) || time.Now().After(deadline) {
			return p, err
		}
		select {
		case <-ctx.Done():
			return Procs{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (r *Reloader) trigger(ctx context.Context) error {
	if r.opts.Trigger != nil {
		return r.opts.Trigger(ctx)
	}
	// The 2.6 master closes the connection without an answer as it
	// re-executes itself; only a failure to reach it is an error.
	if _, err := r.master.Exec(ctx, "reload"); isDial(err) {
		return err
	}
	return nil
}

// await polls the master until it reports a reload after before, or until
// the attempt's time is up (ok false). The master does not answer while it
// re-executes itself, so errors only end the wait with the context.
func (r *Reloader) await(ctx context.Context, before Procs) (Procs, bool, error) {
	deadline := time.Now().Add(r.opts.Confirm)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	last := before
	for {
		p, err := r.Procs(ctx)
		if err == nil {
			last = p
			if p.Reloads > before.Reloads {
				if p.Failed > before.Failed {
					return p, false, fmt.Errorf("reload %d: %w", p.Reloads, ErrRejected)
				}
				for _, w := range p.Workers {
					if !slices.Contains(before.Workers, w) && !slices.Contains(before.Old, w) {
						return p, true, nil
					}
				}
			}
		}
		if time.Now().After(deadline) {
			return last, false, nil
		}
		select {
		case <-ctx.Done():
			return last, false, fmt.Errorf("reload: %w", ctx.Err())
		case <-tick.C:
		}
	}
}
