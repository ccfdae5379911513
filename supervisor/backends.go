package supervisor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/consul"
	"github.com/autopilot/autopilot/internal/dep"
	"github.com/autopilot/autopilot/internal/proc"
)

// backend runs a handler when the healthy instances of a service change.
type backend struct {
	cfg     Backend
	q       dep.Query
	watcher *consul.Watcher
	runner  *proc.Runner
	log     zerolog.Logger
	// ready is closed when the app can take an onChange (its services
	// passed their first health check); readyMax bounds the wait for it.
	ready    <-chan struct{}
	readyMax time.Duration
	// last is the (ID, address, port) set the handler last ran for (or was
	// started with). Owned by run; read on reload after run returned.
	last string
}

func (s *Supervisor) newBackends(cfg *Config, old []*backend) []*backend {
	// A service whose check never passes must not hold handlers forever:
	// wait at most the longest TTL, by when Consul would call it dead anyway.
	var readyMax time.Duration
	for _, sc := range cfg.Services {
		readyMax = max(readyMax, sc.TTL.D())
	}
	var out []*backend
	for _, bc := range cfg.Backends {
		q := dep.Query{Kind: dep.KindHealthService, Name: bc.Name, Tag: bc.Tag, DC: bc.DC, Filter: dep.StatusPassing}
		b := &backend{cfg: bc, q: q, watcher: s.watcher, runner: s.runner,
			ready: s.ready.Done(), readyMax: readyMax,
			log: s.log.With().Str("backend", bc.Name).Logger()}
		for _, o := range old {
			if o.q == q {
				b.last = o.last // a reload does not count as a change
			}
		}
		out = append(out, b)
	}
	return out
}

// instanceSet is the canonical form of what onChange reacts to: the sorted
// (ID, address, port) triples. Index-only changes and changes of other
// fields (tags, checks' output) leave it equal.
func instanceSet(v any) string {
	hs, _ := v.([]*dep.HealthService)
	keys := make([]string, 0, len(hs))
	for _, h := range hs {
		keys = append(keys, fmt.Sprintf("%s|%s|%d", h.ID, h.Address, h.Port))
	}
	slices.Sort(keys)
	return strings.Join(keys, ",")
}

// waitReady holds the first onChange until the app is ready, or readyMax
// passed; the watch is already subscribed meanwhile. It reports false if
// ctx ended.
func (b *backend) waitReady(ctx context.Context) bool {
	select {
	case <-b.ready:
		return true
	default:
	}
	b.log.Debug().Dur("max", b.readyMax).Msg("holding onChange until the app's services pass their first health check")
	t := time.NewTimer(b.readyMax)
	defer t.Stop()
	select {
	case <-b.ready:
	case <-t.C:
		b.log.Warn().Msg("the app's services did not pass a health check in time: running onChange anyway")
	case <-ctx.Done():
		return false
	}
	return true
}

// run watches the backend through the shared watcher until ctx ends. A
// change starts the handler unless one runs; changes during a run are
// merged into one follow-up run; two starts are at least poll apart.
// A watch error is never taken as "no instances": the watcher keeps the last
// good answer and only publishes answers.
func (b *backend) run(ctx context.Context) {
	notify := make(chan struct{}, 1)
	b.watcher.Subscribe(b.q, notify)
	defer b.watcher.Unsubscribe(b.q, notify)
	var (
		dirty     bool
		running   bool
		lastStart time.Time
		done      = make(chan struct{}, 1)
		timer     = time.NewTimer(time.Hour)
		seen      = b.last
	)
	timer.Stop()
	defer timer.Stop()
	if !b.waitReady(ctx) {
		return
	}
	update := func() {
		v, ok := b.watcher.Get(b.q)
		if !ok {
			return
		}
		if set := instanceSet(v); set != seen {
			b.log.Info().Str("instances", set).Msg("backend changed")
			seen, dirty = set, true
		} else {
			b.log.Debug().Msg("backend answer without membership change")
		}
	}
	maybeStart := func() {
		if !dirty || running {
			return
		}
		if wait := b.cfg.Poll.D() - time.Since(lastStart); !lastStart.IsZero() && wait > 0 {
			timer.Reset(wait)
			return
		}
		dirty, running, lastStart = false, true, time.Now()
		b.last = seen
		go func() {
			b.log.Info().Stringer("command", b.cfg.OnChange).Msg("running onChange")
			if err := b.runner.Run(ctx, b.cfg.OnChange); err != nil && ctx.Err() == nil {
				b.log.Error().Err(err).Msg("onChange failed")
			}
			done <- struct{}{}
		}()
	}
	update()
	maybeStart()
	for {
		select {
		case <-ctx.Done():
			if running {
				<-done
			}
			return
		case <-notify:
			update()
		case <-done:
			running = false
		case <-timer.C:
		}
		maybeStart()
	}
}
