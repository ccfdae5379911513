package consul

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/dep"
)

// WatchOptions tune the blocking-query loops. Zero values take the defaults.
type WatchOptions struct {
	// WaitTime is how long Consul may hold a blocking query (default 5m).
	WaitTime time.Duration
	// MinInterval is the least time between two requests of one watch, so a
	// rapidly changing key cannot turn the loop into a busy loop (default 20ms).
	// It never delays delivering an answer, only sending the next request.
	MinInterval time.Duration
	// BackoffMin and BackoffMax bound the jittered exponential backoff after
	// errors (defaults 250ms and 10s).
	BackoffMin, BackoffMax time.Duration
	// Stale allows any server to answer (?stale), trading freshness for load.
	Stale bool
	// RecoveryGrace is how long an empty answer that follows an error or an
	// index reset (Consul restarted, agent lost its state) is held back when
	// the last good answer was not empty, so that instances have time to
	// re-register before their upstreams are rendered away (default 15s).
	// A non-empty answer is published at once. Negative disables the hold.
	RecoveryGrace time.Duration
}

func (o WatchOptions) withDefaults() WatchOptions {
	if o.WaitTime == 0 {
		o.WaitTime = 5 * time.Minute
	}
	if o.MinInterval == 0 {
		o.MinInterval = 20 * time.Millisecond
	}
	if o.BackoffMin == 0 {
		o.BackoffMin = 250 * time.Millisecond
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = 10 * time.Second
	}
	if o.RecoveryGrace == 0 {
		o.RecoveryGrace = 15 * time.Second
	}
	return o
}

// Watcher runs one blocking-query loop per unique dep.Query, however many
// templates and backends subscribe to it, and serves the latest value of
// each. It implements dep.Source. It is safe for concurrent use.
type Watcher struct {
	client *api.Client
	opts   WatchOptions
	log    zerolog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	requests atomic.Int64 // HTTP requests sent, for tests and benchmarks

	mu      sync.Mutex
	watches map[dep.Query]*watch
}

// watch is the state of one query's loop; its fields after q are guarded by Watcher.mu.
type watch struct {
	q      dep.Query
	cancel context.CancelFunc
	subs   map[chan<- struct{}]struct{}
	value  any
	ok     bool
	err    error
}

// NewWatcher returns a Watcher whose loops live until ctx is done or Close is called.
func NewWatcher(ctx context.Context, client *api.Client, opts WatchOptions, log zerolog.Logger) *Watcher {
	ctx, cancel := context.WithCancel(ctx)
	return &Watcher{client: client, opts: opts.withDefaults(), log: log, ctx: ctx, cancel: cancel, watches: map[dep.Query]*watch{}}
}

// Close stops every loop and waits for them to return.
func (w *Watcher) Close() {
	w.cancel()
	w.wg.Wait()
}

// Subscribe starts watching q if nobody did yet and signals notify on every
// change. A new subscriber is signalled once if a value is already there;
// subscribing again (a template re-subscribes on every pass) is a no-op, or
// each pass would wake the next one and the runner would spin.
func (w *Watcher) Subscribe(q dep.Query, notify chan<- struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	wt, ok := w.watches[q]
	if !ok {
		ctx, cancel := context.WithCancel(w.ctx)
		wt = &watch{q: q, cancel: cancel, subs: map[chan<- struct{}]struct{}{}}
		w.watches[q] = wt
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.loop(ctx, wt)
		}()
	}
	if _, already := wt.subs[notify]; already {
		return
	}
	wt.subs[notify] = struct{}{}
	if wt.ok {
		signal(notify)
	}
}

// Unsubscribe drops notify from q; the last subscriber leaving stops the loop.
func (w *Watcher) Unsubscribe(q dep.Query, notify chan<- struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	wt, ok := w.watches[q]
	if !ok {
		return
	}
	delete(wt.subs, notify)
	if len(wt.subs) == 0 {
		wt.cancel()
		delete(w.watches, q)
	}
}

// Get returns q's latest value; ok is false until the first answer arrived.
func (w *Watcher) Get(q dep.Query) (any, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if wt, ok := w.watches[q]; ok && wt.ok {
		return wt.value, true
	}
	return nil, false
}

// LastError returns the error of q's most recent failed request, or nil
// once a request succeeded again.
func (w *Watcher) LastError(q dep.Query) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if wt, ok := w.watches[q]; ok {
		return wt.err
	}
	return nil
}

// Stats is a snapshot of the watcher's work.
type Stats struct {
	Watches  int   // unique queries being watched
	Requests int64 // HTTP requests sent so far
}

// Stats reports how many loops run and how many requests they sent.
func (w *Watcher) Stats() Stats {
	w.mu.Lock()
	n := len(w.watches)
	w.mu.Unlock()
	return Stats{Watches: n, Requests: w.requests.Load()}
}

func signal(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// publish stores a new value and wakes the subscribers, unless the loop
// was cancelled meanwhile (its watch may already be replaced).
func (w *Watcher) publish(wt *watch, v any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.watches[wt.q] != wt {
		return
	}
	wt.value, wt.ok, wt.err = v, true, nil
	for ch := range wt.subs {
		signal(ch)
	}
}

func (w *Watcher) setErr(wt *watch, err error) {
	w.mu.Lock()
	wt.err = err
	w.mu.Unlock()
}

// loop is one query's blocking-query loop. It follows Consul's client rules:
// send the last X-Consul-Index back, reset it to 0 when it goes backwards,
// never use an index below 1, rate-limit, and back off with jitter on errors.
// An error never publishes anything: subscribers keep the last good value.
func (w *Watcher) loop(ctx context.Context, wt *watch) {
	log := w.log.With().Str("query", wt.q.String()).Logger()
	var (
		index     uint64
		last      any
		have      bool
		failures  int
		suspect   bool      // an error or index reset happened since the last good answer
		heldSince time.Time // when an empty answer after trouble was first held back
	)
	for {
		sent := time.Now()
		waitTime := w.opts.WaitTime
		if !heldSince.IsZero() {
			// Wake up in time to publish the held empty answer if it persists.
			if left := w.opts.RecoveryGrace - time.Since(heldSince); left < waitTime {
				waitTime = max(left, 10*time.Millisecond)
			}
		}
		w.requests.Add(1)
		v, newIndex, err := w.fetch(ctx, wt.q, index, waitTime)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			suspect = true
			// The agent may have restarted with a lower index; a blocking
			// query with our old index would then hang until WaitTime.
			// Ask afresh (non-blocking) on the next try.
			index = 0
			w.setErr(wt, err)
			d := backoff(failures, w.opts.BackoffMin, w.opts.BackoffMax)
			log.Warn().Err(err).Int("failures", failures).Dur("retry_in", d).Msg("consul query failed; keeping last good data")
			if !sleep(ctx, d) {
				return
			}
			continue
		}
		if failures > 0 {
			log.Info().Int("failures", failures).Msg("consul query recovered")
			failures = 0
			w.setErr(wt, nil)
		}
		switch {
		case newIndex < index:
			log.Info().Uint64("old_index", index).Uint64("new_index", newIndex).Msg("consul index went backwards; resetting")
			suspect = true
			index = 0
		case newIndex < 1:
			index = 1
		default:
			index = newIndex
		}

		changed := !have || !reflect.DeepEqual(last, v)
		switch {
		case !changed:
			heldSince = time.Time{}
			suspect = false
		case have && suspect && w.opts.RecoveryGrace > 0 && dep.Empty(v) && !dep.Empty(last):
			if heldSince.IsZero() {
				heldSince = time.Now()
				log.Warn().Dur("grace", w.opts.RecoveryGrace).Msg("empty answer right after a Consul error; holding the last good data while instances re-register")
			}
			if time.Since(heldSince) < w.opts.RecoveryGrace {
				break
			}
			log.Warn().Msg("still empty after the recovery grace; publishing it")
			fallthrough
		default:
			last, have = v, true
			heldSince, suspect = time.Time{}, false
			w.publish(wt, v)
		}

		// Rate limit: space requests, but never hold back an answer.
		if d := w.opts.MinInterval - time.Since(sent); d > 0 {
			if !sleep(ctx, d) {
				return
			}
		}
	}
}

// fetch runs one blocking query and converts the answer to template values.
func (w *Watcher) fetch(ctx context.Context, q dep.Query, index uint64, wait time.Duration) (any, uint64, error) {
	opts := (&api.QueryOptions{
		Datacenter: q.DC,
		AllowStale: w.opts.Stale,
		WaitIndex:  index,
		WaitTime:   wait,
		Near:       q.Near,
	}).WithContext(ctx)
	var (
		v    any
		meta *api.QueryMeta
		err  error
	)
	switch q.Kind {
	case dep.KindHealthService:
		var entries []*api.ServiceEntry
		entries, meta, err = w.client.Health().Service(q.Name, q.Tag, q.PassingOnly(), opts)
		v = dep.FromServiceEntries(q, entries)
	case dep.KindCatalogServices:
		var m map[string][]string
		m, meta, err = w.client.Catalog().Services(opts)
		v = dep.FromCatalogServices(m)
	case dep.KindKVGet:
		var p *api.KVPair
		p, meta, err = w.client.KV().Get(q.Name, opts)
		v = dep.FromKVPair(q.Name, p)
	case dep.KindKVList:
		var ps api.KVPairs
		ps, meta, err = w.client.KV().List(q.Name, opts)
		v = dep.FromKVPairs(q.Name, ps)
	case dep.KindCatalogNode:
		name := q.Name
		if name == "" {
			if name, err = w.client.Agent().NodeName(); err != nil {
				return nil, 0, fmt.Errorf("%s: local node name: %w", q, err)
			}
		}
		var n *api.CatalogNode
		n, meta, err = w.client.Catalog().Node(name, opts)
		v = dep.FromCatalogNode(n)
	case dep.KindCatalogNodes:
		var ns []*api.Node
		ns, meta, err = w.client.Catalog().Nodes(opts)
		v = dep.FromNodes(ns)
	default:
		return nil, 0, fmt.Errorf("%s: unsupported query kind", q)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", q, err)
	}
	if meta == nil {
		return nil, 0, fmt.Errorf("%s: %w", q, errors.New("no query metadata in answer"))
	}
	return v, meta.LastIndex, nil
}

// backoff is exponential from min to max with full jitter on the upper half,
// so many watches failing together do not retry in lockstep.
func backoff(failures int, min, max time.Duration) time.Duration {
	d := min
	for i := 1; i < failures && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
