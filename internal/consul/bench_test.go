package consul

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/dep"
	"github.com/autopilot/autopilot/internal/testenv"
)

// serviceEntries is Consul's /v1/health/service answer for n passing instances.
func serviceEntries(n int) []*api.ServiceEntry {
	out := make([]*api.ServiceEntry, n)
	for i := range out {
		node := fmt.Sprintf("node-%05d", i)
		addr := fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff)
		id := "web-" + strconv.Itoa(i)
		out[i] = &api.ServiceEntry{
			Node: &api.Node{ID: fmt.Sprintf("%08d-0000-0000-0000-000000000000", i), Node: node, Address: addr, Datacenter: "dc1",
				TaggedAddresses: map[string]string{"lan": addr}, Meta: map[string]string{"consul-network-segment": ""}},
			Service: &api.AgentService{ID: id, Service: "web", Tags: []string{"v1", "http"}, Address: addr, Port: 8000 + i%1000,
				Meta: map[string]string{"weight": "1"}, Weights: api.AgentWeights{Passing: 1, Warning: 1}},
			Checks: api.HealthChecks{
				{Node: node, CheckID: "serfHealth", Name: "Serf Health Status", Status: api.HealthPassing},
				{Node: node, CheckID: "service:" + id, Name: "web", Status: api.HealthPassing, ServiceID: id, ServiceName: "web"},
			},
		}
	}
	return out
}

// BenchmarkFetchHealthService is one blocking-query answer for a service
// with 10, 1,000 and 10,000 instances, served from memory over loopback:
// HTTP, JSON decoding and conversion to template values, plus the
// comparison with the previous answer the loop makes before publishing.
// The server alternates two answers that differ in one instance (a change),
// and the fetch either decodes incrementally (the watcher's path: only the
// changed instance is decoded) or decodes everything (a fresh decoder).
func BenchmarkFetchHealthService(b *testing.B) {
	q, err := dep.ParseService("web")
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{10, 1000, 10000} {
		entries := serviceEntries(n)
		body0, err := json.Marshal(entries)
		if err != nil {
			b.Fatal(err)
		}
		entries[n/2].Service.Port++
		body1, err := json.Marshal(entries)
		if err != nil {
			b.Fatal(err)
		}
		for _, mode := range []string{"incremental", "full"} {
			b.Run(fmt.Sprintf("instances=%d/%s", n, mode), func(b *testing.B) {
				var hits int
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "application/json")
					w.Header().Set("X-Consul-Index", "42")
					hits++
					if hits%2 == 0 {
						w.Write(body0)
					} else {
						w.Write(body1)
					}
				}))
				defer srv.Close()
				client, err := NewClient(srv.URL)
				if err != nil {
					b.Fatal(err)
				}
				w := NewWatcher(context.Background(), client, WatchOptions{}, zerolog.Nop())
				defer w.Close()
				f := &fetcher{dec: dep.NewDecoder(q)}
				prev, _, err := w.fetch(context.Background(), q, f, 0, time.Second, false)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(body0)))
				b.ReportAllocs()
				for b.Loop() {
					if mode == "full" {
						f.dec = dep.NewDecoder(q)
					}
					v, _, err := w.fetch(context.Background(), q, f, 0, time.Second, false)
					if err != nil {
						b.Fatal(err)
					}
					if reflect.DeepEqual(prev, v) {
						b.Fatal("answers should differ")
					}
					prev = v
				}
			})
		}
	}
}

// BenchmarkPropagation measures a real agent: 200 single-instance changes
// (register, deregister, ...) 50 ms apart, and the time from the catalog
// API call returning to the watcher signalling a subscriber with the new
// value. The spacing keeps each change outside the previous answer's
// MinInterval, as real changes mostly are.
func BenchmarkPropagation(b *testing.B) {
	agent := testenv.StartConsul(b)
	c := agent.Client(b)
	client, err := NewClient(agent.HTTPAddr)
	if err != nil {
		b.Fatal(err)
	}
	w := NewWatcher(context.Background(), client, WatchOptions{}, zerolog.Nop())
	defer w.Close()
	q, _ := dep.ParseService("prop")
	notify := make(chan struct{}, 1)
	w.Subscribe(q, notify)
	defer w.Unsubscribe(q, notify)

	reg := &api.CatalogRegistration{Node: "prop-node", Address: "127.0.0.2",
		Service: &api.AgentService{ID: "prop-1", Service: "prop", Port: 9000},
		Check:   &api.AgentCheck{Node: "prop-node", CheckID: "service:prop-1", Name: "prop", Status: api.HealthPassing, ServiceID: "prop-1"}}
	dereg := &api.CatalogDeregistration{Node: "prop-node"}
	count := func() int {
		v, ok := w.Get(q)
		if !ok {
			return -1
		}
		return len(v.([]*dep.HealthService))
	}
	// waitFor blocks until the watcher holds want instances.
	waitFor := func(want int) error {
		deadline := time.After(10 * time.Second)
		for count() != want {
			select {
			case <-notify:
			case <-deadline:
				return fmt.Errorf("watcher has %d instances, want %d", count(), want)
			}
		}
		return nil
	}
	if err := waitFor(0); err != nil {
		b.Fatal(err)
	}
	const changes = 200
	var lat []time.Duration
	for b.Loop() {
		lat = lat[:0]
		for i := range changes {
			select { // drop a stale signal
			case <-notify:
			default:
			}
			want := 1
			if i%2 == 0 {
				_, err = c.Catalog().Register(reg, nil)
			} else {
				_, err = c.Catalog().Deregister(dereg, nil)
				want = 0
			}
			if err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			if err := waitFor(want); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
			time.Sleep(50 * time.Millisecond)
		}
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / 1e6
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1])/1e6, "max-ms")
}

// TestSubscribeAgainIsQuiet guards the benchmarks' figures: a template
// subscribes to its queries on every pass, and if re-subscribing signalled
// the channel, every pass would schedule the next and an idle runner
// would spin at 100% CPU.
func TestSubscribeAgainIsQuiet(t *testing.T) {
	body, _ := json.Marshal(serviceEntries(1))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("index") != "" {
			<-r.Context().Done() // block like an unchanged blocking query
			return
		}
		w.Header().Set("X-Consul-Index", "7")
		w.Write(body)
	}))
	defer srv.Close()
	client, err := NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	w := NewWatcher(context.Background(), client, WatchOptions{}, zerolog.Nop())
	defer w.Close()
	q, _ := dep.ParseService("web")
	ch := make(chan struct{}, 1)
	w.Subscribe(q, ch)
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no signal for the first value")
	}
	w.Subscribe(q, ch)
	select {
	case <-ch:
		t.Fatal("subscribing again signalled the channel")
	case <-time.After(100 * time.Millisecond):
	}
	// A new subscriber still hears that data is there.
	other := make(chan struct{}, 1)
	w.Subscribe(q, other)
	select {
	case <-other:
	default:
		t.Fatal("a new subscriber was not signalled")
	}
}

// TestLocalAgentsGetPlainJSON: a local agent is not asked for gzip (it
// costs more CPU than it saves on loopback); a remote one still is.
func TestLocalAgentsGetPlainJSON(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Accept-Encoding")
		w.Header().Set("X-Consul-Index", "1")
		w.Write([]byte("[]"))
	}))
	defer srv.Close()
	client, err := NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := client.API().KV().Get("k", nil); err != nil {
		t.Fatal(err)
	}
	if enc := <-got; enc != "" {
		t.Errorf("Accept-Encoding to a loopback agent = %q, want none", enc)
	}
	for addr, want := range map[string]bool{
		"127.0.0.1:8500": true, "127.0.0.2": true, "localhost:8500": true, "[::1]:8500": true,
		"unix:///run/consul.sock": true, "10.0.0.5:8500": false, "consul.service:8500": false,
	} {
		if got := isLocal(addr); got != want {
			t.Errorf("isLocal(%q) = %v, want %v", addr, got, want)
		}
	}
}
