package consul

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/dep"
	"github.com/autopilot/autopilot/internal/testenv"
)

func newTestWatcher(t *testing.T, addr string, opts WatchOptions) *Watcher {
	t.Helper()
	client, err := NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	w := NewWatcher(context.Background(), client, opts, zerolog.Nop())
	t.Cleanup(w.Close)
	return w
}

func register(t *testing.T, c *api.Client, id, name string, port int, status string) {
	t.Helper()
	err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: id, Name: name, Port: port, Address: "127.0.0.1", Tags: []string{"b", "a"},
		Check: &api.AgentServiceCheck{CheckID: id + ":ttl", TTL: "1m", Status: status},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func instancesOf(w *Watcher, q dep.Query) (int, string) {
	v, ok := w.Get(q)
	if !ok {
		return -1, "no data"
	}
	s := v.([]*dep.HealthService)
	return len(s), fmt.Sprintf("%d instances", len(s))
}

func TestWatcherFollowsHealth(t *testing.T) {
	agent := testenv.StartConsul(t)
	c := agent.Client(t)
	w := newTestWatcher(t, agent.HTTPAddr, WatchOptions{})
	q, _ := dep.ParseService("web")
	anyQ, _ := dep.ParseService("web|any")
	ch := make(chan struct{}, 1)
	w.Subscribe(q, ch)
	w.Subscribe(anyQ, ch)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) { n, s := instancesOf(w, q); return n == 0, s })

	register(t, c, "web-1", "web", 8001, api.HealthPassing)
	register(t, c, "web-2", "web", 8002, api.HealthCritical)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		n, s := instancesOf(w, q)
		m, _ := instancesOf(w, anyQ)
		return n == 1 && m == 2, s
	})
	v, _ := w.Get(q)
	got := v.([]*dep.HealthService)[0]
	if got.ID != "web-1" || got.Address != "127.0.0.1" || got.Port != 8001 || got.Status != "passing" || fmt.Sprint(got.Tags) != "[a b]" {
		t.Fatalf("instance = %+v", got)
	}
	// Flip the TTL checks: web-2 passes, web-1 fails.
	if err := c.Agent().UpdateTTL("web-2:ttl", "", api.HealthPassing); err != nil {
		t.Fatal(err)
	}
	if err := c.Agent().UpdateTTL("web-1:ttl", "", api.HealthCritical); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		v, _ := w.Get(q)
		s := v.([]*dep.HealthService)
		return len(s) == 1 && s[0].ID == "web-2", fmt.Sprintf("%d instances", len(s))
	})
	if err := c.Agent().ServiceDeregister("web-2"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() (bool, string) { n, s := instancesOf(w, q); return n == 0, s })
}

func TestWatcherSharesOneQueryPerDependency(t *testing.T) {
	agent := testenv.StartConsul(t)
	w := newTestWatcher(t, agent.HTTPAddr, WatchOptions{})
	q, _ := dep.ParseService("web")
	var chans []chan struct{}
	for i := 0; i < 50; i++ {
		ch := make(chan struct{}, 1)
		chans = append(chans, ch)
		w.Subscribe(q, ch)
	}
	kq := dep.Query{Kind: dep.KindKVGet, Name: "cfg/x"}
	w.Subscribe(kq, chans[0])
	if st := w.Stats(); st.Watches != 2 {
		t.Fatalf("%d watches for 2 unique queries", st.Watches)
	}
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		_, ok := w.Get(kq)
		return ok, "kv answer"
	})
	if _, err := agent.Client(t).KV().Put(&api.KVPair{Key: "cfg/x", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		v, _ := w.Get(kq)
		kp, _ := v.(*dep.KeyPair)
		return kp != nil && kp.Value == "1", fmt.Sprintf("%+v", kp)
	})
	// Every subscriber was told about the service's first answer.
	for i, ch := range chans {
		select {
		case <-ch:
		default:
			if i != 0 {
				t.Fatalf("subscriber %d was never signalled", i)
			}
		}
	}
	// Requests: a handful per query (initial + one per change), never per subscriber.
	if st := w.Stats(); st.Requests > 10 {
		t.Fatalf("%d requests for 2 queries and one change; want one loop per query", st.Requests)
	}
	for _, ch := range chans {
		w.Unsubscribe(q, ch)
	}
	if st := w.Stats(); st.Watches != 1 {
		t.Fatalf("%d watches after the last subscriber left one query", st.Watches)
	}
}

// TestWatcherKeepsDataThroughOutage: errors never publish, an agent that
// comes back empty is held for the grace period, and re-registered
// instances are published at once.
func TestWatcherKeepsDataThroughOutage(t *testing.T) {
	agent := testenv.StartConsul(t)
	w := newTestWatcher(t, agent.HTTPAddr, WatchOptions{BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, RecoveryGrace: 3 * time.Second})
	q, _ := dep.ParseService("web")
	ch := make(chan struct{}, 1)
	w.Subscribe(q, ch)
	register(t, agent.Client(t), "web-1", "web", 8001, api.HealthPassing)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) { n, s := instancesOf(w, q); return n == 1, s })

	agent.Kill()
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		return w.LastError(q) != nil, "no error seen yet"
	})
	if n, s := instancesOf(w, q); n != 1 {
		t.Fatalf("during the outage: %s, want the last good answer", s)
	}
	select {
	case err := <-w.Failed():
		t.Fatalf("the watch gave up without MaxFailures: %v", err)
	default:
	}
	agent.Restart() // a fresh, empty agent on the same address
	start := time.Now()
	testenv.Eventually(t, 10*time.Second, func() (bool, string) { return w.LastError(q) == nil, "still failing" })
	if n, s := instancesOf(w, q); n != 1 {
		t.Fatalf("right after recovery: %s; want the empty answer held back", s)
	}
	// Re-registration is published at once, well before the grace ends.
	register(t, agent.Client(t), "web-9", "web", 8009, api.HealthPassing)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		v, _ := w.Get(q)
		s := v.([]*dep.HealthService)
		return len(s) == 1 && s[0].ID == "web-9", fmt.Sprintf("%d instances", len(s))
	})
	if time.Since(start) > 3*time.Second {
		t.Logf("re-registration took %v (longer than the grace)", time.Since(start))
	}
	if st := w.client.Stats(); st.EmptyHeld < 1 || st.Total(EndpointHealthService, OutcomeError) < 1 {
		t.Errorf("stats after the outage: %d empty answers held, %d errors; want both counted", st.EmptyHeld, st.Total(EndpointHealthService, OutcomeError))
	}
}

func TestWatcherPublishesEmptyAfterGrace(t *testing.T) {
	agent := testenv.StartConsul(t)
	w := newTestWatcher(t, agent.HTTPAddr, WatchOptions{BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, RecoveryGrace: 500 * time.Millisecond})
	q, _ := dep.ParseService("web")
	w.Subscribe(q, make(chan struct{}, 1))
	register(t, agent.Client(t), "web-1", "web", 8001, api.HealthPassing)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) { n, s := instancesOf(w, q); return n == 1, s })
	agent.Restart()
	// Nobody re-registers: after the grace the empty answer is the truth.
	testenv.Eventually(t, 15*time.Second, func() (bool, string) { n, s := instancesOf(w, q); return n == 0, s })
}

func TestBackoffBounds(t *testing.T) {
	for failures := 1; failures < 20; failures++ {
		d := backoff(failures, 100*time.Millisecond, 2*time.Second)
		if d < 50*time.Millisecond || d > 2*time.Second {
			t.Fatalf("backoff(%d) = %v, outside [50ms, 2s]", failures, d)
		}
	}
	// No upper limit (consul-template's max_backoff = 0): doubling must
	// not overflow into a negative or tiny sleep.
	for _, failures := range []int{10, 40, 63, 64, 100, 1000} {
		d := backoff(failures, 250*time.Millisecond, math.MaxInt64)
		if want := 250 * time.Millisecond << min(failures-1, 20) / 2; d < want {
			t.Fatalf("backoff(%d) with no limit = %v, want at least %v", failures, d, want)
		}
	}
}

// TestWatcherCachedReads: with Cached, health and services queries go
// through the agent's cache (?cached, answered by a real agent, which marks
// them with X-Cache) and KV reads, which the cache does not serve, do not.
func TestWatcherCachedReads(t *testing.T) {
	agent := testenv.StartConsul(t)
	target, _ := url.Parse("http://" + agent.HTTPAddr)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	seen := map[string]string{} // path -> "cached param, X-Cache header"
	proxy.ModifyResponse = func(resp *http.Response) error {
		mu.Lock()
		_, cached := resp.Request.URL.Query()["cached"]
		seen[resp.Request.URL.Path] = fmt.Sprintf("cached=%v x-cache=%s", cached, resp.Header.Get("X-Cache"))
		mu.Unlock()
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	register(t, agent.Client(t), "web-1", "web", 8001, api.HealthPassing)
	if _, err := agent.Client(t).KV().Put(&api.KVPair{Key: "cfg/x", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	w := newTestWatcher(t, srv.URL, WatchOptions{Cached: true})
	hq, _ := dep.ParseService("web")
	kq, _ := dep.ParseKey("cfg/x")
	w.Subscribe(hq, make(chan struct{}, 1))
	w.Subscribe(kq, make(chan struct{}, 1))
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		n, s := instancesOf(w, hq)
		_, ok := w.Get(kq)
		return n == 1 && ok, s
	})
	mu.Lock()
	defer mu.Unlock()
	if got := seen["/v1/health/service/web"]; !strings.HasPrefix(got, "cached=true x-cache=") || strings.HasSuffix(got, "x-cache=") {
		t.Errorf("health query: %s; want ?cached answered by the agent cache (X-Cache set)", got)
	}
	if got := seen["/v1/kv/cfg/x"]; got != "cached=false x-cache=" {
		t.Errorf("kv query: %s; want no ?cached", got)
	}
}

// TestWatcherGivesUpAfterMaxFailures: with MaxFailures (consul-template's
// retry attempts) a watch gives up only after that many failed requests in
// a row, a success in between starts the count again, and giving up keeps
// the last good value. A proxy in front of a real agent fails requests.
func TestWatcherGivesUpAfterMaxFailures(t *testing.T) {
	agent := testenv.StartConsul(t)
	if _, err := agent.Client(t).KV().Put(&api.KVPair{Key: "cfg/x", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	const (
		pass = iota
		alternate
		fail
	)
	var mode, requests, failed atomic.Int64
	target, _ := url.Parse("http://" + agent.HTTPAddr)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		if m := mode.Load(); m == fail || m == alternate && n%2 == 0 {
			failed.Add(1)
			http.Error(w, "injected failure", http.StatusBadGateway)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	w := newTestWatcher(t, srv.URL, WatchOptions{WaitTime: 50 * time.Millisecond, BackoffMin: 2 * time.Millisecond,
		BackoffMax: 10 * time.Millisecond, MaxFailures: 2})
	q, _ := dep.ParseKey("cfg/x")
	w.Subscribe(q, make(chan struct{}, 1))
	testenv.Eventually(t, 10*time.Second, func() (bool, string) { _, ok := w.Get(q); return ok, "no value yet" })

	mode.Store(alternate)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		return failed.Load() >= 6, fmt.Sprintf("%d failures injected", failed.Load())
	})
	select {
	case err := <-w.Failed():
		t.Fatalf("gave up although no two requests in a row failed: %v", err)
	default:
	}

	mode.Store(fail)
	before := failed.Load()
	select {
	case err := <-w.Failed():
		if !strings.Contains(err.Error(), "cfg/x") || !strings.Contains(err.Error(), "gave up after 2 failed requests in a row") {
			t.Errorf("error %q: want the query and the count", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no give-up after %d failed requests", failed.Load()-before)
	}
	if v, ok := w.Get(q); !ok || v.(*dep.KeyPair).Value != "1" {
		t.Errorf("after giving up: %+v %v, want the last good value kept", v, ok)
	}
}

// TestFetchDeadline: a blocking query's deadline stays above the longest
// Consul may hold it (wait plus up to wait/16 of jitter) by the call
// timeout, and a huge wait saturates instead of overflowing into the past.
func TestFetchDeadline(t *testing.T) {
	const call = 5 * time.Second
	tests := []struct {
		wait, want time.Duration
	}{
		{0, call},
		{16 * time.Millisecond, 17*time.Millisecond + call},
		{time.Minute, time.Minute + 3750*time.Millisecond + call}, // consul-template's block_query_wait default
		{5 * time.Minute, 5*time.Minute + 18750*time.Millisecond + call},
		{10 * time.Minute, 10*time.Minute + 37500*time.Millisecond + call}, // Consul's max_query_time
		{math.MaxInt64 / 2, math.MaxInt64/2 + math.MaxInt64/32 + call},
		{math.MaxInt64 - 1, math.MaxInt64},
		{math.MaxInt64 / 17 * 16, math.MaxInt64}, // only the call timeout overflows
	}
	for _, tt := range tests {
		t.Run(tt.wait.String(), func(t *testing.T) {
			got := fetchDeadline(tt.wait, call)
			if got != tt.want {
				t.Errorf("fetchDeadline(%v) = %v, want %v", tt.wait, got, tt.want)
			}
			if jittered := tt.wait + tt.wait/16; jittered > tt.wait && got <= jittered {
				t.Errorf("deadline %v is not above wait plus jitter %v", got, jittered)
			}
		})
	}
}

// TestWatcherBlocksForWaitTime: every blocking query carries WaitTime as
// its wait, the real agent holds it that long, and the client's deadline
// (wait + wait/16 + CallTimeout) lets the answer arrive: no request fails.
func TestWatcherBlocksForWaitTime(t *testing.T) {
	agent := testenv.StartConsul(t)
	if _, err := agent.Client(t).KV().Put(&api.KVPair{Key: "still", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse("http://" + agent.HTTPAddr)
	proxy := httputil.NewSingleHostReverseProxy(target)
	type held struct {
		wait string
		took time.Duration
	}
	var mu sync.Mutex
	var seen []held
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		proxy.ServeHTTP(w, r)
		mu.Lock()
		seen = append(seen, held{r.URL.Query().Get("wait"), time.Since(start)})
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	client, err := NewClientWithOptions(srv.URL, ClientOptions{CallTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	const wait = 300 * time.Millisecond
	w := NewWatcher(context.Background(), client, WatchOptions{WaitTime: wait}, zerolog.Nop())
	t.Cleanup(w.Close)
	w.Subscribe(dep.Query{Kind: dep.KindKVGet, Name: "still"}, make(chan struct{}, 1))
	testenv.Eventually(t, 15*time.Second, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= 5, fmt.Sprintf("%d requests", len(seen))
	})
	mu.Lock()
	defer mu.Unlock()
	if seen[0].wait != "" {
		t.Errorf("first request (no index yet) carries wait=%s", seen[0].wait)
	}
	for i, h := range seen[1:] {
		if h.wait != "300ms" || h.took < wait-10*time.Millisecond {
			t.Errorf("blocking query %d: wait=%q held %v; want wait=300ms held about that long", i+1, h.wait, h.took)
		}
	}
	if infos := w.Watches(); len(infos) != 1 || infos[0].Errors != 0 {
		t.Errorf("watches %+v: want one without errors", infos)
	}
}

// TestWatcherMaxStale: an answer whose server last heard from the leader
// longer ago than MaxStale is not used; the next request reads
// consistently (no ?stale) and its answer is. A proxy in front of a real
// agent claims a 5s-old contact on every stale answer.
func TestWatcherMaxStale(t *testing.T) {
	agent := testenv.StartConsul(t)
	if _, err := agent.Client(t).KV().Put(&api.KVPair{Key: "cfg/x", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	q, _ := dep.ParseKey("cfg/x")
	for _, tc := range []struct {
		name     string
		maxStale time.Duration
		want     string // the answers' kinds until the value arrives
	}{
		{"too stale: the leader answers", time.Second, "stale consistent"},
		{"within the bound", 10 * time.Second, "stale"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := testenv.StartStaleProxy(t, agent.HTTPAddr, "/v1/kv/")
			w := newTestWatcher(t, "http://"+proxy.Addr, WatchOptions{Stale: true, MaxStale: tc.maxStale})
			w.Subscribe(q, make(chan struct{}, 1))
			testenv.Eventually(t, 10*time.Second, func() (bool, string) { _, ok := w.Get(q); return ok, proxy.Answers() })
			if got := proxy.Answers(); !strings.HasPrefix(got, tc.want) || strings.HasPrefix(got, tc.want+" consistent") {
				t.Errorf("answers %q; want them to begin %q", got, tc.want)
			}
			if n := w.Watches()[0].TooStale; (n > 0) != (tc.maxStale == time.Second) {
				t.Errorf("TooStale = %d", n)
			}
		})
	}
}
