package consul

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/dep"
)

// WatchOptions tune the blocking-query loops. Zero values take the defaults.
type WatchOptions struct {
	// WaitTime is how long Consul may hold a blocking query, sent as its
	// wait parameter (default 5m, Consul's own; Consul caps it at its
	// max_query_time, 10m by default). Each request's deadline stays above
	// it: see fetchDeadline.
	WaitTime time.Duration
	// MinInterval is the least time between two requests of one watch, so a
	// rapidly changing key cannot turn the loop into a busy loop (default 20ms).
	// It never delays delivering an answer, only sending the next request.
	MinInterval time.Duration
	// BackoffMin and BackoffMax bound the jittered exponential backoff after
	// errors (defaults 250ms and 10s).
	BackoffMin, BackoffMax time.Duration
	// MaxFailures, when above 0, is how many failed requests in a row a
	// watch takes before it gives up: it stops and reports its error on
	// Failed (consul-template's retry attempts, plus one). 0 retries
	// forever, which the supervisor does: a Consul outage never ends it.
	MaxFailures int
	// Stale allows any server to answer (?stale), trading freshness for load.
	Stale bool
	// MaxStale, with Stale, bounds how stale an answer may be: one from a
	// server that last heard from the leader more than MaxStale ago
	// (X-Consul-LastContact) is not used, and the next request reads
	// consistently from the leader (consul-template's max_stale). 0: no
	// bound.
	MaxStale time.Duration
	// Cached reads through the local agent's cache (?cached) where the
	// endpoint supports it (services and health). With many renderers on one
	// client agent watching the same large service, the agent then keeps one
	// blocking query to the servers (or one streaming subscription, with
	// use_streaming_backend) and answers them all from memory.
	Cached bool
	// LogEvery is the least time between two log lines about one watch's
	// failures while they persist (default 30s): a partition is logged when
	// it starts, every LogEvery while it lasts, and when it ends; every
	// failure is counted in Stats.
	LogEvery time.Duration
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
	if o.LogEvery == 0 {
		o.LogEvery = 30 * time.Second
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
	client *Client
	agent  *Agent
	opts   WatchOptions
	log    zerolog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	requests atomic.Int64 // HTTP requests sent, for tests and benchmarks
	failed   chan error   // the first watch to give up (MaxFailures)

	mu      sync.Mutex
	watches map[dep.Query]*watch
}

// watch is the state of one query's loop; its fields after q are guarded by Watcher.mu.
type watch struct {
	q          dep.Query
	cancel     context.CancelFunc
	subs       map[chan<- struct{}]struct{}
	value      any
	ok         bool
	err        error
	index      uint64
	lastChange time.Time
	held       bool
	counts     watchCounts
}

// watchCounts are one watch's share of the client's request counters, so
// that an operator can tell which query is erroring or resetting.
type watchCounts struct {
	requests, errors, indexResets, emptyHeld int64
	tooStale                                 int64         // answers not used: older than MaxStale
	answered                                 int64         // requests that answered
	latency                                  time.Duration // their total time
}

// NewWatcher returns a Watcher whose loops live until ctx is done or Close is called.
func NewWatcher(ctx context.Context, client *Client, opts WatchOptions, log zerolog.Logger) *Watcher {
	ctx, cancel := context.WithCancel(ctx)
	return &Watcher{client: client, agent: NewAgent(client), opts: opts.withDefaults(), log: log,
		ctx: ctx, cancel: cancel, watches: map[dep.Query]*watch{}, failed: make(chan error, 1)}
}

// Failed delivers the error of the first watch that gave up after
// MaxFailures failed requests in a row; it never fires when MaxFailures is 0.
// The watch that gave up no longer follows its query: the caller is expected
// to end its run.
func (w *Watcher) Failed() <-chan error {
	return w.failed
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

// WatchInfo describes one watch, for the metrics endpoint and tests.
type WatchInfo struct {
	Query       string
	Subscribers int
	// Instances is how many elements the last published value holds
	// (instances, services, nodes, keys; 0 or 1 for a single key or node).
	Instances int
	// Index is the X-Consul-Index the loop will send next.
	Index uint64
	// LastChange is when a new value was last published (zero: never).
	LastChange time.Time
	// Held reports an empty answer being held back (RecoveryGrace).
	Held bool
	// Err is the last request's error, nil once a request succeeded again.
	Err error
	// Requests and Errors count this watch's requests and failed ones;
	// IndexResets and EmptyHeld its index resets and held-back empty
	// answers. Answered requests took Latency in total (it includes the
	// time Consul held the blocking query). TooStale counts answers not
	// used because they were older than MaxStale.
	Requests, Errors, IndexResets, EmptyHeld, Answered, TooStale int64
	Latency                                                      time.Duration
}

// Watches describes every running watch, sorted by query.
func (w *Watcher) Watches() []WatchInfo {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]WatchInfo, 0, len(w.watches))
	for q, wt := range w.watches {
		n := 0
		if wt.ok {
			n = q.Size(wt.value)
		}
		c := wt.counts
		out = append(out, WatchInfo{Query: q.String(), Subscribers: len(wt.subs), Instances: n,
			Index: wt.index, LastChange: wt.lastChange, Held: wt.held, Err: wt.err,
			Requests: c.requests, Errors: c.errors, IndexResets: c.indexResets, EmptyHeld: c.emptyHeld,
			Answered: c.answered, Latency: c.latency, TooStale: c.tooStale})
	}
	slices.SortFunc(out, func(a, b WatchInfo) int { return strings.Compare(a.Query, b.Query) })
	return out
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
	wt.value, wt.ok, wt.err, wt.held = v, true, nil, false
	wt.lastChange = time.Now()
	for ch := range wt.subs {
		signal(ch)
	}
}

// count adds one request of wt to its counters.
func (w *Watcher) count(wt *watch, err error, took time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	wt.counts.requests++
	if err != nil {
		wt.counts.errors++
		return
	}
	wt.counts.answered++
	wt.counts.latency += took
}

// bump adds one to a counter of a watch.
func (w *Watcher) bump(n *int64) {
	w.mu.Lock()
	*n++
	w.mu.Unlock()
}

func (w *Watcher) setErr(wt *watch, err error) {
	w.mu.Lock()
	wt.err = err
	w.mu.Unlock()
}

func (w *Watcher) setState(wt *watch, index uint64, held bool) {
	w.mu.Lock()
	wt.index, wt.held = index, held
	w.mu.Unlock()
}

// loop is one query's blocking-query loop. It follows Consul's client rules:
// send the last X-Consul-Index back, reset it to 0 when it goes backwards,
// never use an index below 1, rate-limit, and back off with jitter on errors.
// An error never publishes anything: subscribers keep the last good value.
// Failures are logged when they start, every LogEvery while they last, and
// when they end; every one is counted in the client's Stats.
func (w *Watcher) loop(ctx context.Context, wt *watch) {
	log := w.log.With().Str("query", wt.q.String()).Logger()
	f := &fetcher{dec: dep.NewDecoder(wt.q)}
	var (
		index     uint64
		last      any
		have      bool
		failures  int
		suspect   bool      // an error or index reset happened since the last good answer
		heldSince time.Time // when an empty answer after trouble was first held back
		loggedAt  time.Time // when the current run of failures was last logged
		firstFail time.Time // when the current run of failures began
	)
	consistent := false // the last answer was too stale: ask the leader
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
		stale := w.opts.Stale && !consistent
		v, newIndex, err := w.fetch(ctx, wt.q, f, index, waitTime, stale)
		if ctx.Err() != nil {
			return
		}
		var tooStale *tooStaleError
		if consistent = errors.As(err, &tooStale); consistent {
			w.count(wt, nil, time.Since(sent))
			w.bump(&wt.counts.tooStale)
			log.Debug().Dur("last_contact", tooStale.lastContact).Dur("max_stale", w.opts.MaxStale).Msg("answer too stale; asking the leader")
			continue // the same index, consistently
		}
		w.count(wt, err, time.Since(sent))
		if err != nil {
			failures++
			suspect = true
			// The agent may have restarted with a lower index; a blocking
			// query with our old index would then hang until WaitTime.
			// Ask afresh (non-blocking) on the next try.
			index = 0
			w.setErr(wt, err)
			if w.opts.MaxFailures > 0 && failures >= w.opts.MaxFailures {
				log.Error().Err(err).Int("failures", failures).Msg("consul query failed too many times in a row; giving up")
				select {
				case w.failed <- fmt.Errorf("%w (gave up after %d failed requests in a row)", err, failures):
				default: // another watch gave up first
				}
				return
			}
			d := backoff(failures, w.opts.BackoffMin, w.opts.BackoffMax)
			if failures == 1 {
				firstFail, loggedAt = time.Now(), time.Now()
				log.Warn().Err(err).Dur("retry_in", d).Msg("consul query failed; keeping last good data")
			} else if time.Since(loggedAt) >= w.opts.LogEvery {
				loggedAt = time.Now()
				log.Warn().Err(err).Int("failures", failures).Dur("failing_for", time.Since(firstFail).Round(time.Millisecond)).
					Dur("retry_in", d).Msg("consul query still failing; keeping last good data")
			}
			if !sleep(ctx, d) {
				return
			}
			continue
		}
		if failures > 0 {
			log.Info().Int("failures", failures).Dur("failed_for", time.Since(firstFail).Round(time.Millisecond)).Msg("consul query recovered")
			failures = 0
			w.setErr(wt, nil)
		}
		switch {
		case newIndex < index:
			log.Info().Uint64("old_index", index).Uint64("new_index", newIndex).Msg("consul index went backwards; resetting")
			w.client.stats.indexReset()
			w.bump(&wt.counts.indexResets)
			suspect = true
			index = 0
		case newIndex < 1:
			index = 1
		default:
			index = newIndex
		}

		changed := !have || !reflect.DeepEqual(last, v)
		held := false
		switch {
		case !changed:
			heldSince = time.Time{}
			suspect = false
		case have && suspect && w.opts.RecoveryGrace > 0 && wt.q.IsEmpty(v) && !wt.q.IsEmpty(last):
			if heldSince.IsZero() {
				heldSince = time.Now()
				w.client.stats.heldEmpty()
				w.bump(&wt.counts.emptyHeld)
				log.Warn().Dur("grace", w.opts.RecoveryGrace).Msg("empty answer right after a Consul error; holding the last good data while instances re-register")
			}
			if time.Since(heldSince) < w.opts.RecoveryGrace {
				held = true
				break
			}
			log.Warn().Msg("still empty after the recovery grace; publishing it")
			fallthrough
		default:
			last, have = v, true
			heldSince, suspect = time.Time{}, false
			w.publish(wt, v)
		}
		w.setState(wt, index, held)

		// Rate limit: space requests, but never hold back an answer.
		if d := w.opts.MinInterval - time.Since(sent); d > 0 {
			if !sleep(ctx, d) {
				return
			}
		}
	}
}

// tooStaleError is an answer fetch did not use: its server last heard from
// the leader longer ago than MaxStale.
type tooStaleError struct{ lastContact time.Duration }

func (e *tooStaleError) Error() string {
	return fmt.Sprintf("answer too stale (last contact with the leader %s ago)", e.lastContact)
}

// fetch runs one blocking query and decodes the answer into template
// values, through the watch's incremental decoder. Its deadline is the wait
// plus Consul's jitter (wait/16) plus the client's CallTimeout for the answer
// to travel: an agent that hangs (SIGSTOP, a stuck server) fails the request
// instead of holding the loop forever.
func (w *Watcher) fetch(ctx context.Context, q dep.Query, f *fetcher, index uint64, wait time.Duration, stale bool) (any, uint64, error) {
	endpoint := q.Kind.String()
	if q.Kind == dep.KindCatalogNode && q.Name == "" {
		if f.node == "" {
			name, err := w.agent.NodeName(ctx)
			if err != nil {
				return nil, 0, fmt.Errorf("%s: local node name: %w", q, err)
			}
			f.node = name
		}
		q.Name = f.node
	}
	deadline := fetchDeadline(wait, w.client.opts.CallTimeout)
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	start := time.Now()
	a, err := w.client.get(ctx, q, queryOptions{index: index, wait: wait, stale: stale, cached: w.opts.Cached && q.Cacheable()}, &f.buf)
	if w.client.stats.request(endpoint, err, true, time.Since(start)) == OutcomeTimeout {
		err = fmt.Errorf("no answer within %s: %w", deadline, err)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", q, err)
	}
	if stale && w.opts.MaxStale > 0 && a.lastContact > w.opts.MaxStale {
		return nil, 0, &tooStaleError{lastContact: a.lastContact} // not decoded: not used
	}
	v, err := f.dec.Decode(a.body)
	w.client.stats.elements(f.dec.Decoded, f.dec.Reused)
	if f.buf.Cap() > 4*f.buf.Len() && f.buf.Cap() > 1<<20 {
		f.buf = bytes.Buffer{} // the service shrank a lot: let the big buffer go
	}
	if err != nil {
		return nil, 0, err
	}
	return v, a.index, nil
}

// fetchDeadline bounds one blocking query that Consul may hold for wait:
// Consul adds up to wait/16 of jitter, and the answer then has callTimeout
// to arrive. It saturates instead of overflowing, so a huge configured
// wait (block_query_wait) never turns into a deadline in the past.
func fetchDeadline(wait, callTimeout time.Duration) time.Duration {
	d := wait + wait/16
	if d < wait || d > math.MaxInt64-callTimeout {
		return math.MaxInt64
	}
	return d + callTimeout
}

// fetcher is one watch loop's reusable fetch state.
type fetcher struct {
	dec  *dep.Decoder
	buf  bytes.Buffer
	node string // the local node's name, for `node` without a name
}

// backoff is exponential from min to max with full jitter on the upper half,
// so many watches failing together do not retry in lockstep.
func backoff(failures int, min, max time.Duration) time.Duration {
	d := min
	for i := 1; i < failures && d < max; i++ {
		if d > max/2 {
			d = max // doubling would pass max, or overflow when max is huge
			break
		}
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
