package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/autopilot/autopilot/internal/testenv"
)

// Timing of the supervised services: fast enough for tests, slow enough
// for a loaded 2-core machine with the race detector on.
var serviceEnv = []string{"POLL=500ms", "TTL=5s", "LOG_FORMAT=json", "LOG_LEVEL=info"}

// backend is one instance of the example customers app under autopilot.
type backend struct {
	ap   *autopilot
	port int
}

func (b *backend) addr() string { return "127.0.0.1:" + strconv.Itoa(b.port) }

// startCustomers runs examples/customers under autopilot with the example's
// own config. drain is its preStop pause between deregistering and stopping
// the app.
func (s *stack) startCustomers(consul *testenv.Consul, drain time.Duration) *backend {
	port := testenv.FreePort(s.t)
	env := append([]string{
		"PORT=" + strconv.Itoa(port),
		"CONSUL_HTTP_ADDR=" + consul.HTTPAddr,
		"DRAIN_SECONDS=" + strconv.FormatFloat(drain.Seconds(), 'f', -1, 64),
	}, serviceEnv...)
	ap := s.start(fmt.Sprintf("customers-%d", port), customersConfig(s.t, port), env, customersBin)
	return &backend{ap: ap, port: port}
}

// customersConfig is examples/customers/autopilot.json with an explicit
// service ID per port. Without templates the config reads as ContainerPilot
// 2, whose default ID is NAME-HOSTNAME: one per container, but here every
// instance runs on this one host, as no container would.
func customersConfig(t *testing.T, port int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "examples/customers/autopilot.json"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), `"name": "customers",`, fmt.Sprintf(`"name": "customers", "id": "customers-vm-%d",`, port), 1)
	if s == string(b) {
		t.Fatal(`examples/customers/autopilot.json has changed: no "name": "customers", to add an id to`)
	}
	p := filepath.Join(t.TempDir(), "autopilot.json")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// passing lists the host:port of the passing instances of service name.
func passing(client *api.Client, name string) ([]string, error) {
	entries, _, err := client.Health().Service(name, "", true, nil)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		out = append(out, fmt.Sprintf("%s:%d", e.Service.Address, e.Service.Port))
	}
	sort.Strings(out)
	return out, nil
}

// waitPassing waits until exactly the backends bs pass in Consul.
func waitPassing(t *testing.T, client *api.Client, bs ...*backend) {
	t.Helper()
	want := addrs(bs)
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		got, err := passing(client, "customers")
		if err != nil {
			return false, err.Error()
		}
		return slices.Equal(got, want), fmt.Sprintf("passing %v, want %v", got, want)
	})
}

func addrs(bs []*backend) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.addr())
	}
	sort.Strings(out)
	return out
}

// proxy is nginx or HAProxy under autopilot, with the file it renders.
type proxy struct {
	ap       *autopilot
	port     int
	rendered string                // the destination file autopilot renders
	servers  func(string) []string // host:port of the customers servers in a rendered file
}

func (p *proxy) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", p.port, path) }

// upstream lists the customers servers in the rendered file, sorted.
func (p *proxy) upstream(t *testing.T) []string {
	t.Helper()
	out := p.servers(readFile(t, p.rendered))
	sort.Strings(out)
	return out
}

// waitUpstream waits until the rendered file lists exactly the backends bs.
func (p *proxy) waitUpstream(t *testing.T, bs ...*backend) {
	t.Helper()
	want := addrs(bs)
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		got := p.upstream(t)
		return slices.Equal(got, want), fmt.Sprintf("upstream %v, want %v", got, want)
	})
}

// waitServing waits until the proxy answers path with 200.
func (p *proxy) waitServing(t *testing.T, path string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		if p.ap.exited() {
			return false, fmt.Sprintf("%s exited with %d:\n%s", p.ap.name, p.ap.code, tail(p.ap.Log(), 30))
		}
		status, body, err := testenv.HTTPGet(t, p.url(path))
		return err == nil && status == 200, fmt.Sprintf("GET %s: %d %q %v", path, status, body, err)
	})
}

var nginxServer = regexp.MustCompile(`(?m)^\s*server\s+([0-9.]+:[0-9]+);`)

// nginxUpstream lists the servers of `upstream customers { ... }`.
func nginxUpstream(conf string) []string {
	i := strings.Index(conf, "upstream customers {")
	if i < 0 {
		return nil
	}
	block := conf[i:]
	if j := strings.Index(block, "}"); j >= 0 {
		block = block[:j]
	}
	var out []string
	for _, m := range nginxServer.FindAllStringSubmatch(block, -1) {
		out = append(out, m[1])
	}
	return out
}

// nginxConfig copies examples/nginx (autopilot.json and its template) into
// a temporary directory, with edit applied to the JSON, and returns the
// config's path. A test can then change the template or the config.
func nginxConfig(t *testing.T, edit func(string) string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"autopilot.json", "nginx.conf.tmpl"} {
		b, err := os.ReadFile(filepath.Join(repoRoot, "examples/nginx", name))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if name == "autopilot.json" && edit != nil {
			s = edit(s)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "autopilot.json")
}

// startNginx runs nginx in the foreground under autopilot with config (the
// example's, or a copy from nginxConfig), its prefix in a temporary
// directory, proxying the customers service on a free port, and waits until
// nginx proxies /customers/health.
func (s *stack) startNginx(consul *testenv.Consul, config string, env ...string) *proxy {
	t := s.t
	t.Helper()
	port := testenv.FreePort(t)
	prefix := t.TempDir()
	// As root, nginx's workers run as another user unless told otherwise;
	// the example template takes NGINX_USER, and the temp dirs under the
	// prefix must be reachable either way.
	for _, d := range []string{filepath.Dir(prefix), prefix} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() == 0 {
		env = append(env, "NGINX_USER=root root")
	}
	env = append(append([]string{
		"CONSUL_HTTP_ADDR=" + consul.HTTPAddr,
		"NGINX_PORT=" + strconv.Itoa(port),
		"NGINX_LISTEN=127.0.0.1:" + strconv.Itoa(port),
		"NGINX_PREFIX=" + prefix,
		"NGINX_PID=" + filepath.Join(prefix, "nginx.pid"),
		"NGINX_BACKENDS=customers",
		"RENDER_TIMEOUT=30s",
	}, serviceEnv...), env...)
	conf := filepath.Join(prefix, "nginx.conf")
	ap := s.start("nginx", config, env,
		"nginx", "-p", prefix+"/", "-e", "stderr", "-c", conf, "-g", "daemon off;")
	p := &proxy{ap: ap, port: port, rendered: conf, servers: nginxUpstream}
	p.waitServing(t, "/customers/health")
	return p
}

var haproxyServer = regexp.MustCompile(`(?m)^\s*server\s+\S+\s+([0-9.]+:[0-9]+)`)

// haproxyBackend lists the servers of `backend customers`.
func haproxyBackend(conf string) []string {
	i := strings.Index(conf, "\nbackend customers\n")
	if i < 0 {
		return nil
	}
	block := conf[i+1:]
	if j := strings.Index(block, "\n\n"); j >= 0 {
		block = block[:j]
	}
	var out []string
	for _, m := range haproxyServer.FindAllStringSubmatch(block, -1) {
		out = append(out, m[1])
	}
	return out
}

// startHAProxy runs `haproxy -W -db` (master-worker in the foreground)
// under autopilot with testdata/haproxy.json, which renders the stock
// templates/haproxy.cfg.tmpl and reloads with SIGUSR2.
func (s *stack) startHAProxy(consul *testenv.Consul) *proxy {
	t := s.t
	t.Helper()
	port := testenv.FreePort(t)
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	env := append([]string{
		"CONSUL_HTTP_ADDR=" + consul.HTTPAddr,
		"HAPROXY_PORT=" + strconv.Itoa(port),
		"HAPROXY_BIND=127.0.0.1:" + strconv.Itoa(port),
		"HAPROXY_CFG=" + cfg,
	}, serviceEnv...)
	config, err := filepath.Abs("testdata/haproxy.json")
	if err != nil {
		t.Fatal(err)
	}
	ap := s.start("haproxy", config, env, "haproxy", "-W", "-db", "-f", cfg)
	p := &proxy{ap: ap, port: port, rendered: cfg, servers: haproxyBackend}
	p.waitServing(t, "/customers/health")
	return p
}

// load sends GET requests to a URL from a few workers, paced, until it has
// sent max or is stopped, and records failures and who answered.
type load struct {
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	total  int
	errors []string
	seen   map[string]int // X-Instance -> requests
}

// startLoad starts sending up to max requests to url, one every interval
// (spread over workers), each on a fresh connection so that every request
// goes through the proxy's current configuration.
func startLoad(url string, max int, interval time.Duration) *load {
	l := &load{stop: make(chan struct{}), done: make(chan struct{}), seen: map[string]int{}}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	tick := time.NewTicker(interval)
	jobs := make(chan struct{})
	go func() {
		defer close(jobs)
		defer tick.Stop()
		for i := 0; i < max; i++ {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			select {
			case <-l.stop:
				return
			case jobs <- struct{}{}:
			}
		}
	}()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				l.one(client, url)
			}
		}()
	}
	go func() {
		wg.Wait()
		client.CloseIdleConnections()
		close(l.done)
	}()
	return l
}

func (l *load) one(client *http.Client, url string) {
	resp, err := client.Get(url)
	var fail string
	inst := ""
	if err != nil {
		fail = err.Error()
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		inst = resp.Header.Get("X-Instance")
		if resp.StatusCode != http.StatusOK {
			fail = fmt.Sprintf("%s: %s (X-Upstream %q)", time.Now().Format("15:04:05.000"), resp.Status, resp.Header.Get("X-Upstream"))
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total++
	if fail != "" {
		l.errors = append(l.errors, fail)
	} else {
		l.seen[inst]++
	}
}

// finish stops the load (if stop) or lets it run to max, waits at most
// timeout, and returns what it counted.
func (l *load) finish(t *testing.T, stop bool, timeout time.Duration) (total int, errs []string, seen map[string]int) {
	t.Helper()
	if stop {
		close(l.stop)
	}
	select {
	case <-l.done:
	case <-time.After(timeout):
		if !stop {
			close(l.stop)
		}
		<-l.done
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, l.errors, l.seen
}
