package haproxy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/consul"
	"github.com/autopilot/autopilot/internal/haproxy"
	"github.com/autopilot/autopilot/internal/proc"
	"github.com/autopilot/autopilot/internal/testenv"
	"github.com/autopilot/autopilot/render"
)

// lbTemplate is a minimal template in the stock one's conventions: servers
// named by Consul service ID, one per line, a literal IP and port.
// {{ key }} puts a KV value in a frontend rule, for changes outside backends.
const lbTemplate = `global
    maxconn 512
    hard-stop-after {{ env "HX_HARDSTOP" }}
    stats socket {{ env "HX_ADMIN" }} mode 600 level admin
    stats socket {{ env "HX_OPERATOR" }} mode 600 level operator

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s

frontend http
    bind 127.0.0.1:{{ env "HX_PORT" }}
    http-request deny if { path_beg {{ keyOrDefault "lb/deny" "/denied" }} }
    default_backend web

backend web
    balance roundrobin
{{- range service "web" }}
    server {{ .ID }} {{ .Address }}:{{ .Port }} check inter 1s
{{- end }}
`

// lb is HAProxy under a render.Runner that applies server changes through
// the runtime API and reloads, confirmed, for the rest.
type lb struct {
	t        testing.TB
	consul   *api.Client
	agent    *testenv.Consul
	port     int
	cfg      string // the rendered haproxy.cfg
	admin    string // stats socket, level admin
	operator string // stats socket, level operator
	h        *testenv.HAProxy
	runner   *render.Runner
	rt       *haproxy.Runtime
	reloader *haproxy.Reloader
	log      *testenv.Buffer
	stop     func()
	base     render.Stats
}

type lbOptions struct {
	socket    func(l *lb) string // the socket Runtime uses; default the admin one
	drain     time.Duration
	noRuntime bool   // every change reloads (the path without this package's Apply)
	hardStop  string // hard-stop-after; default 5s
}

// startLB renders lbTemplate from agent once, starts HAProxy on the file
// and keeps rendering until the test ends.
func startLB(t testing.TB, agent *testenv.Consul, o lbOptions) *lb {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "hx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	l := &lb{t: t, agent: agent, consul: agent.Client(t), port: testenv.FreePort(t),
		cfg: filepath.Join(t.TempDir(), "haproxy.cfg"), admin: filepath.Join(sockDir, "admin.sock"),
		operator: filepath.Join(sockDir, "operator.sock"), log: &testenv.Buffer{}}
	t.Setenv("HX_ADMIN", l.admin)
	t.Setenv("HX_OPERATOR", l.operator)
	t.Setenv("HX_PORT", strconv.Itoa(l.port))
	if o.hardStop == "" {
		o.hardStop = "5s"
	}
	t.Setenv("HX_HARDSTOP", o.hardStop)
	tmpl := filepath.Join(t.TempDir(), "haproxy.cfg.tmpl")
	if err := os.WriteFile(tmpl, []byte(lbTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	log := zerolog.New(l.log).Level(zerolog.DebugLevel)
	socket := l.admin
	if o.socket != nil {
		socket = o.socket(l)
	}
	l.rt = haproxy.NewRuntime(haproxy.RuntimeOptions{Socket: socket, Drain: o.drain, Log: log})
	t.Cleanup(l.rt.Close)
	check, err := proc.ParseCommand("/usr/sbin/haproxy -c -q -f {{.Path}}")
	if err != nil {
		t.Fatal(err)
	}
	client, err := consul.NewClient(agent.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := consul.NewWatcher(ctx, client, consul.WatchOptions{}, zerolog.Nop())
	apply := l.rt.Apply
	if o.noRuntime {
		apply = nil
	}
	l.runner, err = render.NewRunner(w, []render.Config{{Source: tmpl, Destination: l.cfg, Check: (&proc.Runner{}).CheckFunc(check), CheckName: check.String(),
		Apply: apply,
		Reload: func(ctx context.Context) error {
			if l.reloader == nil { // the first file, before HAProxy runs
				return nil
			}
			return l.reloader.Reload(ctx)
		},
	}}, render.RunnerOptions{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	octx, ocancel := context.WithTimeout(ctx, 30*time.Second)
	defer ocancel()
	if err := l.runner.Once(octx); err != nil {
		t.Fatal(err)
	}
	l.base = l.runner.Stats()[0]
	l.h = testenv.StartHAProxy(t, l.cfg)
	l.reloader = haproxy.NewReloader(haproxy.ReloaderOptions{Master: l.h.MasterSocket, Log: log, Trigger: func(context.Context) error {
		return syscall.Kill(l.h.PID(), syscall.SIGUSR2)
	}})
	done := make(chan struct{})
	go func() { l.runner.Run(ctx); close(done) }()
	l.stop = func() { cancel(); <-done; w.Close() }
	t.Cleanup(l.stop)
	return l
}

// stats are the runner's counters since startLB returned (the first file,
// written before HAProxy ran, went down the reload path).
func (l *lb) stats() render.Stats {
	s := l.runner.Stats()[0]
	s.Renders -= l.base.Renders
	s.Writes -= l.base.Writes
	s.Commands -= l.base.Commands
	s.Reloads -= l.base.Reloads
	s.RuntimeApplied -= l.base.RuntimeApplied
	s.RuntimeFallbacks -= l.base.RuntimeFallbacks
	return s
}

// procs is the master's `show proc`, waiting out a re-exec in progress and
// the old workers' exit (hard-stop-after is 5s).
func (l *lb) procs() haproxy.Procs {
	l.t.Helper()
	var p haproxy.Procs
	testenv.Eventually(l.t, 15*time.Second, func() (bool, string) {
		out, err := l.h.MasterCLI("show proc")
		if err != nil {
			return false, err.Error()
		}
		p, err = haproxy.ParseProcs(out)
		return err == nil && len(p.Old) == 0, fmt.Sprint(out, err)
	})
	return p
}

// running is `show servers state` of the web backend on the admin socket.
func (l *lb) running() map[string]haproxy.ServerState {
	l.t.Helper()
	out, err := haproxy.Client{Addr: l.admin}.Exec(context.Background(), "show servers state web")
	if err != nil {
		l.t.Fatal(err)
	}
	st, err := haproxy.ParseServersState(out)
	if err != nil {
		l.t.Fatal(err)
	}
	m := map[string]haproxy.ServerState{}
	for _, s := range st {
		m[s.Name] = s
	}
	return m
}

// matchesFile reports whether HAProxy runs what the file on disk says.
func (l *lb) matchesFile() error {
	b, err := os.ReadFile(l.cfg)
	if err != nil {
		return err
	}
	c, err := haproxy.ParseConfig(b)
	if err != nil {
		return err
	}
	out, err := haproxy.Client{Addr: l.admin}.Exec(context.Background(), "show servers state")
	if err != nil {
		return err
	}
	st, err := haproxy.ParseServersState(out)
	if err != nil {
		return err
	}
	return haproxy.Compare(st, c)
}

func (l *lb) register(id string, port int) {
	l.t.Helper()
	if err := l.consul.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: id, Name: "web", Address: "127.0.0.1", Port: port,
		Check: &api.AgentServiceCheck{CheckID: id + ":ttl", TTL: "10m", Status: api.HealthPassing},
	}); err != nil {
		l.t.Fatal(err)
	}
}

func (l *lb) deregister(id string) {
	l.t.Helper()
	if err := l.consul.Agent().ServiceDeregister(id); err != nil {
		l.t.Fatal(err)
	}
}

// instance is a backend app that counts its requests.
type instance struct {
	id       string
	srv      *httptest.Server
	hits     atomic.Int64
	inflight atomic.Int64
}

func newInstance(t testing.TB, id string) *instance {
	in := &instance{id: id}
	in.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in.hits.Add(1)
		in.inflight.Add(1)
		defer in.inflight.Add(-1)
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, id)
	}))
	t.Cleanup(in.srv.Close)
	return in
}

func (in *instance) port() int { return in.srv.Listener.Addr().(*net.TCPAddr).Port }

// load runs keep-alive clients against the proxy, each at most one request
// per interval, and counts failures and new connections.
type load struct {
	requests, failures, dials atomic.Int64
	done                      []atomic.Int64 // per client: requests completed
	mu                        sync.Mutex
	lastErr                   string
	cancel                    context.CancelFunc
	wg                        sync.WaitGroup
}

func startLoad(url string, clients int, interval time.Duration, path string) *load {
	ld := &load{}
	ctx, cancel := context.WithCancel(context.Background())
	ld.cancel = cancel
	ld.done = make([]atomic.Int64, clients)
	for k := range clients {
		tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				ld.dials.Add(1)
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			}}
		c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
		ld.wg.Add(1)
		go func() {
			defer ld.wg.Done()
			defer tr.CloseIdleConnections()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				req, _ := http.NewRequestWithContext(ctx, "GET", url+path, nil)
				resp, err := c.Do(req)
				if ctx.Err() != nil {
					return
				}
				ld.requests.Add(1)
				ld.done[k].Add(1)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					ld.failures.Add(1)
					ld.mu.Lock()
					ld.lastErr = err.Error()
					ld.mu.Unlock()
				}
			}
		}()
	}
	return ld
}

// progress returns each client's completed requests so far.
func (ld *load) progress() []int64 {
	out := make([]int64, len(ld.done))
	for i := range ld.done {
		out[i] = ld.done[i].Load()
	}
	return out
}

// advanced reports whether every client completed n requests since p.
// Each client's requests are sequential, so every request sent before p
// was taken has then been answered.
func (ld *load) advanced(p []int64, n int64) bool {
	for i := range ld.done {
		if ld.done[i].Load() < p[i]+n {
			return false
		}
	}
	return true
}

func (ld *load) Stop() {
	ld.cancel()
	ld.wg.Wait()
}

// TestScaleWithoutReload scales a backend 1 -> 20 -> 1 under keep-alive load:
// every change goes through the runtime API, HAProxy never reloads, no
// request fails, no client reconnects, each new instance gets traffic and a
// removed one gets no new request.
func TestScaleWithoutReload(t *testing.T) {
	agent := testenv.StartConsul(t)
	const n = 20
	fleet := make([]*instance, n)
	for i := range fleet {
		fleet[i] = newInstance(t, fmt.Sprintf("web-%d", i+1))
	}
	c := agent.Client(t)
	reg := func(i int) {
		if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: fleet[i].id, Name: "web", Address: "127.0.0.1", Port: fleet[i].port(),
			Check: &api.AgentServiceCheck{CheckID: fleet[i].id + ":ttl", TTL: "10m", Status: api.HealthPassing}}); err != nil {
			t.Fatal(err)
		}
	}
	reg(0)
	l := startLB(t, agent, lbOptions{drain: 5 * time.Second})
	before := l.procs()
	ld := startLoad(fmt.Sprintf("http://127.0.0.1:%d", l.port), 4, 10*time.Millisecond, "/")
	defer ld.Stop()
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		return fleet[0].hits.Load() > 0, "web-1 has no traffic"
	})
	for i := 1; i < n; i++ {
		reg(i)
		testenv.Eventually(t, 15*time.Second, func() (bool, string) {
			return fleet[i].hits.Load() > 0, fmt.Sprintf("%s got no request; running %v", fleet[i].id, l.running())
		})
	}
	after := make([]int64, n)
	for i := n - 1; i >= 1; i-- {
		l.deregister(fleet[i].id)
		testenv.Eventually(t, 15*time.Second, func() (bool, string) {
			s, ok := l.running()[fleet[i].id]
			return !ok || s.Maint(), fmt.Sprintf("%s still serving: %+v", fleet[i].id, s)
		})
		// A request HAProxy sent it just before maintenance may still be on
		// its way: count from when every client has had two more answers.
		p := ld.progress()
		testenv.Eventually(t, 15*time.Second, func() (bool, string) {
			return ld.advanced(p, 2), fmt.Sprintf("clients at %v, from %v", ld.progress(), p)
		})
		after[i] = fleet[i].hits.Load()
	}
	// Traffic keeps flowing to web-1 for a while after the last removal,
	// so that a late request to a removed server would show.
	last := fleet[0].hits.Load()
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		return fleet[0].hits.Load() > last+50, "web-1 traffic"
	})
	ld.Stop()
	for i := 1; i < n; i++ {
		if got := fleet[i].hits.Load(); got != after[i] {
			t.Errorf("%s got %d requests after it left Consul and HAProxy put it in maintenance", fleet[i].id, got-after[i])
		}
	}
	if f := ld.failures.Load(); f != 0 {
		t.Errorf("%d of %d requests failed; last: %s", f, ld.requests.Load(), ld.lastErr)
	}
	if d := ld.dials.Load(); d != 4 {
		t.Errorf("clients opened %d connections, want 4 (one each, kept alive)", d)
	}
	now := l.procs()
	if now.Reloads != before.Reloads || fmt.Sprint(now.Workers) != fmt.Sprint(before.Workers) || len(now.Old) != 0 {
		t.Errorf("HAProxy reloaded: before %+v, after %+v", before, now)
	}
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		st := l.stats()
		return st.RuntimeApplied == 2*(n-1), fmt.Sprintf("stats %+v: want %d changes applied at runtime", st, 2*(n-1))
	})
	st := l.stats()
	if st.Reloads != 0 || st.RuntimeFallbacks != 0 {
		t.Errorf("stats %+v: want no reload, no fallback", st)
	}
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		return l.rt.Draining() == 0 && len(l.running()) == 1, fmt.Sprintf("draining %d, running %v", l.rt.Draining(), l.running())
	})
	if err := l.matchesFile(); err != nil {
		t.Error(err)
	}
	t.Logf("%d requests, %d failures, %d connections; stats %+v", ld.requests.Load(), ld.failures.Load(), ld.dials.Load(), st)
}

// TestChangeOutsideBackendsReloads: a frontend rule from KV changes, so
// HAProxy reloads (confirmed) from the file, which it then runs; a server
// change after that reload is applied at runtime again.
func TestChangeOutsideBackendsReloads(t *testing.T) {
	agent := testenv.StartConsul(t)
	a, b := newInstance(t, "web-1"), newInstance(t, "web-2")
	l := startLB(t, agent, lbOptions{})
	l.register("web-1", a.port())
	url := fmt.Sprintf("http://127.0.0.1:%d", l.port)
	testenv.Eventually(t, 15*time.Second, func() (bool, string) {
		code, body, err := testenv.HTTPGet(t, url+"/x")
		return code == 200 && body == "web-1", fmt.Sprint(code, body, err)
	})
	before := l.procs()
	if _, err := l.consul.KV().Put(&api.KVPair{Key: "lb/deny", Value: []byte("/x")}, nil); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 15*time.Second, func() (bool, string) {
		code, _, err := testenv.HTTPGet(t, url+"/x")
		return code == 403 && l.stats().Reloads == 1, fmt.Sprint(code, err, l.stats())
	})
	st := l.stats()
	if st.Reloads != 1 || st.RuntimeFallbacks != 0 {
		t.Fatalf("stats %+v: want one reload, no fallback", st)
	}
	if p := l.procs(); p.Reloads != before.Reloads+1 {
		t.Fatalf("master reloads %d -> %d, want one", before.Reloads, p.Reloads)
	}
	if err := l.matchesFile(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(l.log.String(), "change outside backend servers") {
		t.Errorf("log does not say why it reloaded:\n%s", l.log)
	}
	// The new worker's stats socket takes runtime changes again.
	afterReload := l.procs()
	l.register("web-2", b.port())
	testenv.Eventually(t, 15*time.Second, func() (bool, string) {
		return l.stats().RuntimeApplied == 1, fmt.Sprintf("%+v", l.stats())
	})
	testenv.Eventually(t, 15*time.Second, func() (bool, string) {
		code, body, err := testenv.HTTPGet(t, url+"/y")
		return code == 200 && body == "web-2", fmt.Sprint(code, body, err)
	})
	if p := l.procs(); p.Reloads != afterReload.Reloads {
		t.Fatalf("reloaded for a server change: %+v -> %+v", afterReload, p)
	}
	if err := l.matchesFile(); err != nil {
		t.Fatal(err)
	}
}

// TestRuntimeFailureFallsBack: when the runtime API cannot be used (no
// socket; a socket whose level refuses `add server`), the change is made by
// a reload from the file, logged and counted.
func TestRuntimeFailureFallsBack(t *testing.T) {
	tests := []struct {
		name   string
		socket func(l *lb) string
		logged string
	}{
		{"socket missing", func(l *lb) string { return l.admin + ".missing" }, "no such file or directory"},
		{"command refused", func(l *lb) string { return l.operator }, "Permission denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			agent := testenv.StartConsul(t)
			a, b := newInstance(t, "web-1"), newInstance(t, "web-2")
			l := startLB(t, agent, lbOptions{socket: tt.socket})
			l.register("web-1", a.port())
			testenv.Eventually(t, 15*time.Second, func() (bool, string) {
				_, ok := l.running()["web-1"]
				return ok && l.stats().Writes >= 1, fmt.Sprintf("%+v", l.stats())
			})
			before := l.procs()
			l.register("web-2", b.port())
			testenv.Eventually(t, 15*time.Second, func() (bool, string) {
				_, ok := l.running()["web-2"]
				return ok && l.stats().Reloads >= 2, fmt.Sprintf("%+v", l.stats())
			})
			st := l.stats()
			if st.RuntimeApplied != 0 || st.RuntimeFallbacks != 2 || st.Reloads != 2 {
				t.Fatalf("stats %+v: want both changes reloaded after a runtime failure", st)
			}
			if p := l.procs(); p.Reloads <= before.Reloads {
				t.Fatalf("no reload: %+v -> %+v", before, p)
			}
			if err := l.matchesFile(); err != nil {
				t.Fatal(err)
			}
			log := l.log.String()
			if !strings.Contains(log, "reloading from the file") || !strings.Contains(log, tt.logged) {
				t.Fatalf("log does not report the fallback with %q:\n%s", tt.logged, log)
			}
		})
	}
}

// TestRestartAfterRuntimeChanges: after 100 changes applied at runtime
// (adds, moves, removals), HAProxy restarted from the file runs the same
// servers: the file stayed the truth.
func TestRestartAfterRuntimeChanges(t *testing.T) {
	agent := testenv.StartConsul(t)
	l := startLB(t, agent, lbOptions{drain: time.Second})
	l.register("web-0", 20000)
	testenv.Eventually(t, 15*time.Second, func() (bool, string) {
		_, ok := l.running()["web-0"]
		return ok, "web-0 not running"
	})
	base := l.stats().RuntimeApplied
	// live is what Consul has: service ID -> port. Each change is awaited
	// until the file lists exactly that and HAProxy runs the file, rather
	// than by counting renders: re-registering an ID can show Consul's
	// intermediate state to the watch, which is one more (correct) change.
	live := map[string]int{"web-0": 20000}
	next := 1
	for i := 0; i < 100; i++ {
		switch {
		case i%4 == 3 && len(live) > 1: // remove one
			for id := range live {
				if id != "web-0" {
					delete(live, id)
					l.deregister(id)
					break
				}
			}
		case i%4 == 2: // move one
			for id := range live {
				live[id] = 21000 + i
				l.register(id, 21000+i)
				break
			}
		default: // add one
			id := fmt.Sprintf("web-%d", next)
			next++
			live[id] = 20000 + next
			l.register(id, 20000+next)
		}
		testenv.Eventually(t, 15*time.Second, func() (bool, string) {
			got := fileServers(t, l.cfg)
			if fmt.Sprint(got) != fmt.Sprint(live) {
				return false, fmt.Sprintf("change %d: file has %v, want %v", i, got, live)
			}
			err := l.matchesFile()
			return err == nil, fmt.Sprintf("change %d: %v", i, err)
		})
	}
	// The counter moves after Apply's last check, a moment after HAProxy
	// runs the change.
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		st := l.stats()
		return st.RuntimeApplied >= base+100, fmt.Sprintf("stats %+v: want at least 100 changes applied at runtime", st)
	})
	if st := l.stats(); st.Reloads != 0 || st.RuntimeFallbacks != 0 {
		t.Fatalf("stats %+v: want no reload", st)
	}
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		return l.rt.Draining() == 0, fmt.Sprintf("%d servers draining", l.rt.Draining())
	})
	if err := l.matchesFile(); err != nil {
		t.Fatal(err)
	}
	describe := func(m map[string]haproxy.ServerState) string {
		var lines []string
		for name, s := range m {
			lines = append(lines, fmt.Sprintf("%s %s:%d w%d maint=%v", name, s.Addr, s.Port, s.Weight, s.Maint()))
		}
		return strings.Join(sorted(lines), "\n")
	}
	runtime := describe(l.running())
	if got := strings.Count(runtime, "\n") + 1; got != len(live) {
		t.Fatalf("running %d servers, want %d (%v):\n%s\nfile:\n%s", got, len(live), live, runtime, readFile(l.cfg))
	}
	l.stop()
	l.h.Stop()
	l.h = testenv.StartHAProxy(t, l.cfg)
	if restarted := describe(l.running()); restarted != runtime {
		t.Fatalf("after 100 runtime changes HAProxy ran:\n%s\nrestarted from the file it runs:\n%s", runtime, restarted)
	}
}

func sorted(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

// TestMissedReloadIsRetried: the first reload signal is lost (as HAProxy
// 2.6's master loses a SIGUSR2 during its re-exec); the Reloader sees the
// master's counter stand still, signals again and confirms the new worker.
// A config HAProxy refuses is reported as ErrRejected, not retried.
func TestMissedReloadIsRetried(t *testing.T) {
	port := testenv.FreePort(t)
	dir := testenv.HAProxyMainConf(t, port)
	h := testenv.StartHAProxy(t, dir)
	var calls atomic.Int64
	r := haproxy.NewReloader(haproxy.ReloaderOptions{Master: h.MasterSocket, Confirm: time.Second,
		Trigger: func(context.Context) error {
			if calls.Add(1) == 1 {
				return nil // lost
			}
			return syscall.Kill(h.PID(), syscall.SIGUSR2)
		}})
	before, err := r.Procs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	after, err := r.Procs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Retries() != 1 || calls.Load() != 2 || after.Reloads != before.Reloads+1 || fmt.Sprint(after.Workers) == fmt.Sprint(before.Workers) {
		t.Fatalf("retries %d, triggers %d, procs %+v -> %+v: want one retry and one reload", r.Retries(), calls.Load(), before, after)
	}
	// A reload triggered while the master may be re-executing itself for
	// another one: whether or not HAProxy misses our signal, Reload returns
	// nil only once a reload that began after its first look has happened.
	if err := syscall.Kill(h.PID(), syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	sig := haproxy.NewReloader(haproxy.ReloaderOptions{Master: h.MasterSocket, Confirm: time.Second,
		Trigger: func(context.Context) error { return syscall.Kill(h.PID(), syscall.SIGUSR2) }})
	if err := sig.Reload(context.Background()); err != nil {
		t.Fatalf("reload during a reload: %v", err)
	}
	during, err := r.Procs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Two signals may make one reload (the second arrived while the master
	// was still processing the first, and that reload read the file after
	// Reload's first look at the master): at least one, never none.
	if during.Reloads < after.Reloads+1 {
		t.Fatalf("the master counts %d reloads, want at least %d", during.Reloads, after.Reloads+1)
	}
	t.Logf("reload during a reload: %d retries", sig.Retries())
	// The master CLI's own reload command, as the default trigger.
	m := haproxy.NewReloader(haproxy.ReloaderOptions{Master: h.MasterSocket})
	if err := m.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "10-bad.cfg"), []byte("backend x\n    nonsense\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), haproxy.ErrRejected.Error()) || m.Retries() != 0 {
		t.Fatalf("bad config: err %v, retries %d; want ErrRejected and no retry", err, m.Retries())
	}
	// Without a reachable master it does not reload blind.
	gone := haproxy.NewReloader(haproxy.ReloaderOptions{Master: h.MasterSocket + ".missing", Trigger: func(context.Context) error {
		t.Fatal("triggered without a master to confirm with")
		return nil
	}})
	if err := gone.Reload(context.Background()); err == nil {
		t.Fatal("no error without a master CLI")
	}
}

func readFile(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// fileServers reads the web backend's servers from a rendered file: name -> port.
func fileServers(t *testing.T, path string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := haproxy.ParseConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	if web := c.Backend("web"); web != nil {
		for _, sl := range web.Servers {
			s, err := haproxy.ParseServer(web.Defaults, sl.Text)
			if err != nil {
				t.Fatal(err)
			}
			out[s.Name] = int(s.Port)
		}
	}
	return out
}

// TestRemovalDrains: a removed server with a request in flight goes into
// maintenance at once and the file is swapped without waiting; if it comes
// back while draining it serves again, with no reload; removed again, its
// session is shut down after the drain bound and the server deleted.
func TestRemovalDrains(t *testing.T) {
	agent := testenv.StartConsul(t)
	a, b := newInstance(t, "web-1"), newInstance(t, "web-2")
	l := startLB(t, agent, lbOptions{drain: 2 * time.Second})
	l.register("web-1", a.port())
	l.register("web-2", b.port())
	testenv.Eventually(t, 15*time.Second, func() (bool, string) {
		return len(l.running()) == 2, fmt.Sprint(l.running())
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/?sleep=60s", l.port)
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	long := func() { // a 60 s request; some land on web-2 (round robin)
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	testenv.Eventually(t, 15*time.Second, func() (bool, string) {
		if b.inflight.Load() == 0 {
			long()
		}
		return b.inflight.Load() > 0, "no request in flight on web-2"
	})
	before := l.procs()

	l.deregister("web-2")
	testenv.Eventually(t, 15*time.Second, func() (bool, string) {
		s, ok := l.running()["web-2"]
		_, inFile := fileServers(t, l.cfg)["web-2"]
		return ok && s.Maint() && !inFile, fmt.Sprintf("running %+v (present %v), in file %v", s, ok, inFile)
	})
	if b.inflight.Load() == 0 || l.rt.Draining() != 1 {
		t.Fatalf("in flight %d, draining %d: want the request still running and web-2 draining", b.inflight.Load(), l.rt.Draining())
	}

	l.register("web-2", b.port()) // back before the drain bound
	testenv.Eventually(t, 15*time.Second, func() (bool, string) {
		s, ok := l.running()["web-2"]
		return ok && !s.Maint() && l.rt.Draining() == 0, fmt.Sprintf("running %+v (present %v), draining %d", s, ok, l.rt.Draining())
	})

	l.deregister("web-2")
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		_, ok := l.running()["web-2"]
		return !ok && l.rt.Draining() == 0 && b.inflight.Load() == 0,
			fmt.Sprintf("present %v, draining %d, in flight %d", ok, l.rt.Draining(), b.inflight.Load())
	})
	if st := l.stats(); st.Reloads != 0 || st.RuntimeFallbacks != 0 {
		t.Fatalf("stats %+v: want no reload", st)
	}
	if p := l.procs(); p.Reloads != before.Reloads {
		t.Fatalf("reloaded: %+v -> %+v", before, p)
	}
	if log := l.log.String(); !strings.Contains(log, "shutting them down") {
		t.Errorf("log does not say the sessions were shut down after the bound:\n%s", log)
	}
}
