package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/autopilot/autopilot/internal/testenv"
)

// The example stack in container-shaped namespaces (testenv.Bridge): each
// "container" has its own network namespace with eth0 on a private /24, its
// own PID namespace with autopilot as PID 1 and its own hostname, as under
// Docker, without Docker. Every service listens on its usual port (Consul
// 8500, customers 4000, sales 3000, nginx 80), since each has its own
// network stack.

// nsStack is the example stack, one container per process.
type nsStack struct {
	t      *testing.T
	br     *testenv.Bridge
	consul *testenv.Container
	client *api.Client
	nginx  *testenv.Container
	conf   string // nginx.conf as autopilot renders it (the nginx container's prefix is on the host's filesystem)
}

const (
	nsCustomersPort = 4000
	nsSalesPort     = 3000
	// nsStopTimeout is the examples' stopTimeout.
	nsStopTimeout = 10 * time.Second
)

func newNSStack(t *testing.T) *nsStack {
	br := testenv.NewBridge(t)
	consulBin := testenv.ConsulBin(t)
	s := &nsStack{t: t, br: br}
	s.consul = br.AddContainer("consul")
	s.consul.Start(t, baseEnv(), consulBin, "agent", "-dev", "-node", "consul",
		"-bind", s.consul.IP, "-client", s.consul.IP, "-log-level", "warn")
	cfg := api.DefaultConfig()
	cfg.Address = s.consul.IP + ":8500"
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.client = client
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		if s.consul.Exited() {
			return false, "consul exited:\n" + s.consul.Log()
		}
		leader, err := client.Status().Leader()
		return err == nil && leader != "", fmt.Sprintf("leader %q, %v", leader, err)
	})
	return s
}

// env is what every autopilot container gets: the examples' settings for
// a container (listen on all addresses, advertise eth0) and fast timings.
func (s *nsStack) env(extra ...string) []string {
	env := append(baseEnv(), "CONSUL_HTTP_ADDR="+s.consul.IP+":8500", "INTERFACE=eth0", "BIND=0.0.0.0")
	return append(append(env, serviceEnv...), extra...)
}

// startApp runs examples/NAME (customers or sales) under autopilot as PID
// 1 of a new container.
func (s *nsStack) startApp(name, app string, port int, drain time.Duration) *testenv.Container {
	c := s.br.AddContainer(name)
	bin := customersBin
	if app == "sales" {
		bin = salesBin
	}
	c.Start(s.t, s.env(fmt.Sprintf("PORT=%d", port), "DRAIN_SECONDS="+fmt.Sprint(drain.Seconds())),
		autopilotBin, "-config", filepath.Join(repoRoot, "examples", app, "autopilot.json"), "--", bin)
	return c
}

// startNginx runs nginx under autopilot with the example's config and
// template in a new container, and waits until it proxies both services.
func (s *nsStack) startNginx() {
	t := s.t
	prefix := t.TempDir()
	for _, d := range []string{filepath.Dir(prefix), prefix} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.conf = filepath.Join(prefix, "nginx.conf")
	s.nginx = s.br.AddContainer("nginx")
	s.nginx.Start(t, s.env("NGINX_PORT=80", "NGINX_LISTEN=80", "NGINX_PREFIX="+prefix,
		"NGINX_PID="+filepath.Join(prefix, "nginx.pid"), "NGINX_BACKENDS=customers,sales",
		"RENDER_TIMEOUT=30s", "NGINX_USER=root root"),
		autopilotBin, "-config", nginxConfig(t, nil), "--",
		"nginx", "-p", prefix+"/", "-e", "stderr", "-c", s.conf, "-g", "daemon off;")
	s.waitPassing("nginx", 80, s.nginx)
	for _, path := range []string{"/customers/health", "/sales/health"} {
		testenv.Eventually(t, 60*time.Second, func() (bool, string) {
			if s.nginx.Exited() {
				return false, "nginx container exited:\n" + tail(s.nginx.Log(), 30)
			}
			status, body, err := testenv.HTTPGet(t, s.url(path))
			return err == nil && status == 200, fmt.Sprintf("GET %s: %d %q %v", path, status, body, err)
		})
	}
}

func (s *nsStack) url(path string) string { return "http://" + s.nginx.IP + path }

func endpoints(port int, cs ...*testenv.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%s:%d", c.IP, port))
	}
	sort.Strings(out)
	return out
}

// waitPassing waits until exactly cs pass as service name in Consul.
func (s *nsStack) waitPassing(name string, port int, cs ...*testenv.Container) {
	s.t.Helper()
	want := endpoints(port, cs...)
	testenv.Eventually(s.t, 60*time.Second, func() (bool, string) {
		got, err := passing(s.client, name)
		return err == nil && slices.Equal(got, want), fmt.Sprintf("passing %v, want %v (%v)", got, want, err)
	})
}

// upstream lists the customers servers of the rendered nginx.conf.
func (s *nsStack) upstream() []string {
	b, _ := os.ReadFile(s.conf)
	out := nginxUpstream(string(b))
	sort.Strings(out)
	return out
}

func (s *nsStack) waitUpstream(timeout time.Duration, cs ...*testenv.Container) time.Duration {
	s.t.Helper()
	start := time.Now()
	want := endpoints(nsCustomersPort, cs...)
	testenv.Eventually(s.t, timeout, func() (bool, string) {
		got := s.upstream()
		return slices.Equal(got, want), fmt.Sprintf("nginx.conf upstream %v, want %v", got, want)
	})
	return time.Since(start)
}

// stopContainer sends SIGTERM to the container's PID 1 (docker stop) and
// returns its exit code and how long it took.
func (s *nsStack) stopContainer(c *testenv.Container, bound time.Duration) (int, time.Duration) {
	s.t.Helper()
	start := time.Now()
	c.Signal(s.t, syscall.SIGTERM)
	select {
	case <-c.Done():
		return c.Code(), time.Since(start)
	case <-time.After(bound):
		s.t.Fatalf("container %s still running %v after SIGTERM:\n%s", c.Name, bound, tail(c.Log(), 30))
		return 0, 0
	}
}

// TestNetnsStack runs the example stack (Consul, sales, customers, nginx)
// with each process in its own container-shaped namespaces and checks what
// a container platform relies on: each service advertises its own eth0
// address, and scaling customers 1 -> 3 -> 1 under a paced load through
// nginx fails no request.
func TestNetnsStack(t *testing.T) {
	s := newNSStack(t)
	sales, c1 := s.startBase()

	t.Run("advertises eth0", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			c    *testenv.Container
		}{{"sales", sales}, {"customers", c1}, {"nginx", s.nginx}} {
			entries, _, err := s.client.Catalog().Service(tc.name, "", nil)
			if err != nil || len(entries) != 1 {
				t.Fatalf("%s: %d registrations, %v", tc.name, len(entries), err)
			}
			if got := entries[0].ServiceAddress; got != tc.c.IP {
				t.Errorf("%s advertises %q, want its container's eth0 address %s", tc.name, got, tc.c.IP)
			}
			if comm := tc.c.Comm(); comm != "autopilot" {
				t.Errorf("%s: PID 1 of its container runs %q, want autopilot", tc.name, comm)
			}
		}
	})

	t.Run("scale 1-3-1 under load", func(t *testing.T) {
		// Paced, bounded (20,000 requests or a stop), and running through
		// the scale-down as well as the scale-up.
		l := startLoad(s.url("/customers/health"), 20000, 5*time.Millisecond)
		sent := func() int { l.mu.Lock(); defer l.mu.Unlock(); return l.total }
		c2 := s.startApp("customers-2", "customers", nsCustomersPort, drain)
		c3 := s.startApp("customers-3", "customers", nsCustomersPort, drain)
		s.waitPassing("customers", nsCustomersPort, c1, c2, c3)
		s.waitUpstream(30*time.Second, c1, c2, c3)
		testenv.Eventually(t, 30*time.Second, func() (bool, string) {
			l.mu.Lock()
			defer l.mu.Unlock()
			return len(l.seen) == 3, fmt.Sprintf("answered so far: %v", l.seen)
		})
		before := sent()
		var wg sync.WaitGroup
		codes := make([]int, 2)
		for i, c := range []*testenv.Container{c2, c3} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.Signal(t, syscall.SIGTERM)
				<-c.Done()
				codes[i] = c.Code()
			}()
		}
		s.waitUpstream(30*time.Second, c1)
		wg.Wait()
		// A few more requests with only c1 left, then stop.
		during := sent() - before
		testenv.Eventually(t, 10*time.Second, func() (bool, string) {
			return sent() > before+during+100, "load stalled"
		})
		for i, c := range []*testenv.Container{c2, c3} {
			if codes[i] != 0 {
				t.Errorf("container %s exited with %d after SIGTERM, want 0 (the app's own code)", c.Name, codes[i])
			}
		}
		total, errs, answered := l.finish(t, true, 60*time.Second)
		t.Logf("load: %d requests (%d during the scale-down), %d errors, answered by %v", total, during, len(errs), answered)
		if len(errs) > 0 {
			t.Errorf("%d of %d requests through nginx failed, first ones: %q", len(errs), total, errs[:min(len(errs), 5)])
		}
		if during < 100 {
			t.Errorf("only %d requests during the scale-down", during)
		}
		if len(answered) != 3 {
			t.Errorf("answered by %v, want all three instances", answered)
		}
	})
}

// confWatch reads nginx.conf continuously and records any state that is
// not a complete config: empty, no customers upstream, or cut short.
type confWatch struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	bad  []string
	n    int
}

func watchConf(path string) *confWatch {
	w := &confWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
			b, err := os.ReadFile(path)
			var why string
			switch {
			case err != nil:
				why = err.Error()
			case len(b) == 0:
				why = "empty"
			case !strings.Contains(string(b), "upstream customers {"):
				why = "no customers upstream"
			case !strings.HasSuffix(strings.TrimRight(string(b), "\n"), "}"):
				why = "does not end with the closing brace"
			}
			w.mu.Lock()
			w.n++
			if why != "" && len(w.bad) < 10 {
				w.bad = append(w.bad, time.Now().Format("15:04:05.000")+": "+why)
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *confWatch) finish() (reads int, bad []string) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n, w.bad
}

// TestNetnsPartition: nginx's container is cut off from Consul's for 30 s
// while customers scale. nginx keeps serving from its last good config,
// which is never empty or partial; within 12 s of the heal, nginx.conf
// holds the change made during the split. A second split, then SIGTERM to
// the nginx container: it exits within its stopTimeout + 6 s.
//
// Two kinds of split: blackhole routes in both namespaces (a new
// connection fails at once with EINVAL, an open one hangs), and a silent
// one, the blackhole in Consul's namespace only (nginx's packets arrive,
// nothing comes back: every call hangs, as with a hung agent or a
// firewall that drops).
func TestNetnsPartition(t *testing.T) {
	for _, tc := range []struct {
		name  string
		split func(s *nsStack)
		heal  func(s *nsStack)
	}{
		{"blackhole both ways",
			func(s *nsStack) { s.nginx.Partition(s.t, s.consul) },
			func(s *nsStack) { s.nginx.Heal(s.t, s.consul) }},
		{"silent",
			func(s *nsStack) { s.consul.Blackhole(s.t, s.nginx) },
			func(s *nsStack) { s.consul.Unblackhole(s.t, s.nginx) }},
	} {
		t.Run(tc.name, func(t *testing.T) { partitionScenario(t, tc.split, tc.heal) })
	}
}

// startBase starts sales and one customers, waits until both pass in
// Consul, then starts nginx in front of them.
func (s *nsStack) startBase() (sales, customers1 *testenv.Container) {
	sales = s.startApp("sales", "sales", nsSalesPort, 0)
	customers1 = s.startApp("customers-1", "customers", nsCustomersPort, 0)
	s.waitPassing("sales", nsSalesPort, sales)
	s.waitPassing("customers", nsCustomersPort, customers1)
	s.startNginx()
	return sales, customers1
}

func partitionScenario(t *testing.T, split, heal func(s *nsStack)) {
	s := newNSStack(t)
	_, c1 := s.startBase()
	s.waitUpstream(30*time.Second, c1)

	conf := watchConf(s.conf)
	// Paced load over the whole split and the heal: 30 s + 12 s at most.
	l := startLoad(s.url("/customers/health"), 2100, 20*time.Millisecond)
	const splitFor = 30 * time.Second
	splitAt := time.Now()
	split(s)
	healed := false
	defer func() {
		if !healed {
			heal(s)
		}
	}()

	// The change nginx cannot see during the split.
	c2 := s.startApp("customers-2", "customers", nsCustomersPort, 0)
	s.waitPassing("customers", nsCustomersPort, c1, c2)
	// nginx keeps serving for the whole split (the load says whether any
	// request failed); wait the split out, checking it is still up.
	for time.Since(splitAt) < splitFor {
		if s.nginx.Exited() {
			t.Fatalf("the nginx container exited during the split:\n%s", tail(s.nginx.Log(), 30))
		}
		status, _, err := testenv.HTTPGet(t, s.url("/customers/health"))
		if err != nil || status != 200 {
			t.Fatalf("nginx during the split: %d %v", status, err)
		}
		time.Sleep(500 * time.Millisecond) // the split's length is the scenario, not a synchronisation
	}
	// The split was real: nginx's autopilot has not seen customers-2.
	if got, want := s.upstream(), endpoints(nsCustomersPort, c1); !slices.Equal(got, want) {
		t.Fatalf("nginx.conf changed during the split (%v, want %v): the partition did not hold", got, want)
	}
	heal(s)
	healed = true
	took := s.waitUpstream(12*time.Second, c1, c2)
	t.Logf("nginx.conf converged %v after the heal", took.Round(10*time.Millisecond))

	total, errs, answered := l.finish(t, true, 30*time.Second)
	t.Logf("load: %d requests, %d errors, answered by %v", total, len(errs), answered)
	if len(errs) > 0 {
		t.Errorf("%d of %d requests through nginx failed, first ones: %q", len(errs), total, errs[:min(len(errs), 5)])
	}
	reads, bad := conf.finish()
	t.Logf("nginx.conf read %d times", reads)
	if len(bad) > 0 {
		t.Errorf("nginx.conf was not a complete config at times: %q", bad)
	}

	// SIGTERM during a split: the shutdown is bounded although Consul
	// cannot be told (deregistration times out).
	split(s)
	defer heal(s)
	bound := nsStopTimeout + 6*time.Second
	code, stopped := s.stopContainer(s.nginx, bound+20*time.Second)
	t.Logf("nginx container exited %d, %v after SIGTERM during a split", code, stopped.Round(10*time.Millisecond))
	if stopped > bound {
		t.Errorf("SIGTERM during a split took %v, want at most stopTimeout + 6 s = %v\n%s", stopped, bound, tail(s.nginx.Log(), 15))
	}
}
