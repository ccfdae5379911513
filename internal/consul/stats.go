package consul

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
)

// Endpoints named in Stats. A watch's endpoint is its dep.Kind's String.
const (
	EndpointHealthService   = "health.service"
	EndpointCatalogServices = "catalog.services"
	EndpointCatalogNode     = "catalog.node"
	EndpointCatalogNodes    = "catalog.nodes"
	EndpointKVGet           = "kv.get"
	EndpointKVList          = "kv.list"
	EndpointAgentSelf       = "agent.self"
	EndpointAgentRegister   = "agent.register"
	EndpointAgentDeregister = "agent.deregister"
	EndpointAgentTTL        = "agent.ttl"
	EndpointAgentMaint      = "agent.maintenance"
)

// Outcomes of a request, as counted in Stats.
const (
	OutcomeOK       = "ok"
	OutcomeError    = "error"    // an HTTP or connection error
	OutcomeTimeout  = "timeout"  // the request's own deadline passed
	OutcomeCanceled = "canceled" // the caller gave up (shutdown)
)

// LatencyBuckets are the upper bounds of ClientStats.BlockingLatency's
// buckets. A blocking query's latency includes the time Consul held it.
var LatencyBuckets = []time.Duration{
	time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 5 * time.Minute, 10 * time.Minute,
}

// RequestCount is how many requests to one endpoint ended with one outcome.
type RequestCount struct {
	Endpoint string
	Outcome  string
	Count    int64
}

// Histogram is a cumulative histogram: Counts[i] requests took at most
// LatencyBuckets[i]; Count and Sum cover all of them (the +Inf bucket).
type Histogram struct {
	Counts []int64
	Count  int64
	Sum    time.Duration
}

// ClientStats is a copy of a client's counters at one moment, for tests,
// benchmarks and the metrics endpoint. Counters only grow.
type ClientStats struct {
	// Requests by endpoint and outcome, sorted.
	Requests []RequestCount
	// Errors is the number of requests that did not end OK (every outcome
	// but OutcomeOK and OutcomeCanceled).
	Errors int64
	// IndexResets counts blocking queries whose index went backwards (a
	// restarted agent or a snapshot restore) and started over.
	IndexResets int64
	// EmptyHeld counts empty answers held back after trouble (see
	// WatchOptions.RecoveryGrace).
	EmptyHeld int64
	// BlockingLatency of the blocking queries that answered.
	BlockingLatency Histogram
	// LastOK is when a request last succeeded; LastErrorAt and LastError
	// when and why one last failed (a cancellation is not a failure).
	LastOK, LastErrorAt time.Time
	LastError           string
	// ElementsDecoded and ElementsReused count the array elements of
	// answers (instances, keys, nodes) the incremental decoder decoded and
	// took unchanged from the previous answer: work proportional to what
	// changed shows as Reused growing much faster than Decoded.
	ElementsDecoded, ElementsReused int64
}

// Reachable reports whether the agent answered the last request: no
// failure yet, or a success after the last failure.
func (s ClientStats) Reachable() bool {
	return s.LastErrorAt.IsZero() || s.LastOK.After(s.LastErrorAt)
}

// Total is the number of requests to endpoint with outcome; an empty
// argument matches any.
func (s ClientStats) Total(endpoint, outcome string) int64 {
	var n int64
	for _, r := range s.Requests {
		if (endpoint == "" || r.Endpoint == endpoint) && (outcome == "" || r.Outcome == outcome) {
			n += r.Count
		}
	}
	return n
}

type reqKey struct{ endpoint, outcome string }

// counters holds one client's counters. It is a small mutex-guarded type: the
// lock is held only to bump a counter, never across I/O.
type counters struct {
	mu          sync.Mutex
	requests    map[reqKey]int64
	errors      int64
	indexResets int64
	emptyHeld   int64
	latency     Histogram
	decoded     int64
	reused      int64
	lastOK      time.Time
	lastErrAt   time.Time
	lastErr     string
}

func newStats() *counters {
	return &counters{requests: map[reqKey]int64{}, latency: Histogram{Counts: make([]int64, len(LatencyBuckets))}}
}

// request counts one request and returns its outcome. blocking requests
// that answered add to the latency histogram.
func (s *counters) request(endpoint string, err error, blocking bool, took time.Duration) string {
	outcome := outcomeOf(err)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[reqKey{endpoint, outcome}]++
	switch outcome {
	case OutcomeOK:
		s.lastOK = time.Now()
	case OutcomeCanceled:
	default:
		s.errors++
		s.lastErrAt, s.lastErr = time.Now(), err.Error()
	}
	if blocking && outcome == OutcomeOK {
		for i, b := range LatencyBuckets {
			if took <= b {
				s.latency.Counts[i]++
			}
		}
		s.latency.Count++
		s.latency.Sum += took
	}
	return outcome
}

func (s *counters) indexReset() {
	s.mu.Lock()
	s.indexResets++
	s.mu.Unlock()
}

func (s *counters) elements(decoded, reused int) {
	s.mu.Lock()
	s.decoded += int64(decoded)
	s.reused += int64(reused)
	s.mu.Unlock()
}

func (s *counters) heldEmpty() {
	s.mu.Lock()
	s.emptyHeld++
	s.mu.Unlock()
}

func (s *counters) snapshot() ClientStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := ClientStats{
		Errors:          s.errors,
		LastOK:          s.lastOK,
		LastErrorAt:     s.lastErrAt,
		LastError:       s.lastErr,
		IndexResets:     s.indexResets,
		EmptyHeld:       s.emptyHeld,
		ElementsDecoded: s.decoded,
		ElementsReused:  s.reused,
		BlockingLatency: Histogram{
			Counts: slices.Clone(s.latency.Counts),
			Count:  s.latency.Count,
			Sum:    s.latency.Sum,
		},
	}
	for k, n := range s.requests {
		out.Requests = append(out.Requests, RequestCount{Endpoint: k.endpoint, Outcome: k.outcome, Count: n})
	}
	slices.SortFunc(out.Requests, func(a, b RequestCount) int {
		if c := strings.Compare(a.Endpoint, b.Endpoint); c != 0 {
			return c
		}
		return strings.Compare(a.Outcome, b.Outcome)
	})
	return out
}

// outcomeOf classifies a request's error. A deadline is a timeout; a
// cancellation is the caller leaving, not a Consul problem.
func outcomeOf(err error) string {
	switch {
	case err == nil:
		return OutcomeOK
	case errors.Is(err, context.DeadlineExceeded):
		return OutcomeTimeout
	case errors.Is(err, context.Canceled):
		return OutcomeCanceled
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return OutcomeTimeout
	default:
		return OutcomeError
	}
}
