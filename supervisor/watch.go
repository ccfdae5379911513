package supervisor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/dep"
	"github.com/autopilot/autopilot/supervisor/config"
)

// watch follows the healthy instances of a service through the shared
// blocking-query watcher and publishes changed (source "watch.NAME") when
// their (ID, address, port) set changes. Interval is the least time
// between two events; changes within it are merged into the next one.
type watch struct {
	cfg config.Watch
	q   dep.Query
	g   *generation
	log zerolog.Logger

	mu         sync.Mutex
	last       string // instance set of the last event (carried over a reload)
	instances  int
	lastChange time.Time
	changes    int
}

func newWatch(g *generation, wc config.Watch) *watch {
	return &watch{
		cfg: wc, g: g,
		q:   dep.Query{Kind: dep.KindHealthService, Name: wc.Name, Tag: wc.Tag, DC: wc.DC, Filter: dep.StatusPassing},
		log: g.s.log.With().Str("watch", wc.Name).Logger(),
	}
}

// source is the event source name of the watch.
func (w *watch) source() string { return "watch." + w.cfg.Name }

// instanceSet is the canonical form of what a change means: the sorted
// (ID, address, port) triples. Index-only changes and changes of other
// fields (tags, checks' output) leave it equal.
func instanceSet(v any) (string, int) {
	hs, _ := v.([]*dep.HealthService)
	keys := make([]string, 0, len(hs))
	for _, h := range hs {
		keys = append(keys, fmt.Sprintf("%s|%s|%d", h.ID, h.Address, h.Port))
	}
	slices.Sort(keys)
	return strings.Join(keys, ","), len(keys)
}

// waitReady holds the first event until the generation's health-checked
// jobs have passed once (an app gets no onChange SIGHUP before it could
// install its handler), or readyMax passed.
func (w *watch) waitReady(ctx context.Context) bool {
	ready := w.g.ready.Done()
	select {
	case <-ready:
		return true
	default:
	}
	w.log.Debug().Dur("max", w.g.readyMax).Msg("holding onChange until the app's services pass their first health check")
	t := time.NewTimer(w.g.readyMax)
	defer t.Stop()
	select {
	case <-ready:
	case <-t.C:
		w.log.Warn().Msg("the health-checked jobs did not pass in time: publishing changes anyway")
	case <-ctx.Done():
		return false
	}
	return true
}

func (w *watch) run(ctx context.Context) {
	notify := make(chan struct{}, 1)
	wr := w.g.s.watcher
	wr.Subscribe(w.q, notify)
	defer wr.Unsubscribe(w.q, notify)
	if !w.waitReady(ctx) {
		return
	}
	w.mu.Lock()
	seen := w.last
	w.mu.Unlock()
	var (
		dirty     bool
		lastFired time.Time
		floor     timer
	)
	defer floor.stop()
	update := func() {
		v, ok := wr.Get(w.q)
		if !ok {
			return
		}
		set, n := instanceSet(v)
		w.mu.Lock()
		w.instances = n
		w.mu.Unlock()
		if set != seen {
			w.log.Info().Str("instances", set).Msg("backend changed")
			seen, dirty = set, true
		} else {
			w.log.Debug().Msg("backend answer without membership change")
		}
	}
	fire := func() {
		if !dirty {
			return
		}
		if wait := w.cfg.Interval - time.Since(lastFired); !lastFired.IsZero() && wait > 0 {
			if floor.t == nil {
				floor.arm(wait)
			}
			return
		}
		dirty, lastFired = false, time.Now()
		w.mu.Lock()
		w.last, w.lastChange = seen, lastFired
		w.changes++
		w.mu.Unlock()
		w.g.router.publish(eventKey{w.source(), config.Changed})
	}
	update()
	fire()
	for {
		select {
		case <-ctx.Done():
			return
		case <-notify:
			update()
		case <-floor.c():
			floor.stop()
		}
		fire()
	}
}

func (w *watch) status() WatchStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := WatchStatus{
		Name: w.cfg.Name, Service: w.cfg.Name, Tag: w.cfg.Tag, DC: w.cfg.DC,
		Instances: w.instances, Changes: w.changes, LastChange: w.lastChange,
	}
	if err := w.g.s.watcher.LastError(w.q); err != nil {
		st.LastError = err.Error()
	}
	return st
}
