package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/autopilot/autopilot/internal/testenv"
)

// A template change that makes nginx's config invalid: nginx -t rejects the
// candidate, the old file stays in place, nginx keeps serving and the log
// says why; the next data change is tried (and rejected) again; a fixed
// template is applied.
func TestNginxInvalidTemplateKeepsServing(t *testing.T) {
	consul := testenv.StartConsul(t)
	s := newStack(t)
	c1 := s.startCustomers(consul, 0)
	waitPassing(t, consul.Client(t), c1)
	config := nginxConfig(t, nil)
	p := s.startNginx(consul, config)
	p.waitUpstream(t, c1)
	nginxPID := p.ap.appPID(t)
	before := readFile(t, p.rendered)

	// Break the template and have autopilot re-read its config (SIGHUP).
	tmpl := filepath.Join(filepath.Dir(config), "nginx.conf.tmpl")
	text := readFile(t, tmpl)
	broken := strings.Replace(text, "http {\n", "http {\n    no_such_directive on;\n", 1)
	if broken == text {
		t.Fatal("template has no `http {` line to break")
	}
	if err := os.WriteFile(tmpl, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	p.ap.signal(t, syscall.SIGHUP)

	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		for _, e := range p.ap.entries() {
			if e.msg() == "check failed; destination and service left alone" {
				out, _ := e["output"].(string)
				return strings.Contains(out, `unknown directive "no_such_directive"`), fmt.Sprintf("check failed with output %q", out)
			}
		}
		return false, "no failed check in the log yet:\n" + tail(p.ap.Log(), 10)
	})
	if after := readFile(t, p.rendered); after != before {
		t.Errorf("the destination changed after a failed check:\n%s", after)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(p.rendered), ".nginx.conf.autopilot-*")); len(left) > 0 {
		t.Errorf("candidate files left behind: %v", left)
	}
	if !alive(nginxPID) || p.ap.exited() {
		t.Fatalf("nginx (pid %d) or its autopilot stopped", nginxPID)
	}
	if status, _, err := testenv.HTTPGet(t, p.url("/customers/health")); err != nil || status != 200 {
		t.Fatalf("nginx stopped proxying after the failed check: %d %v", status, err)
	}
	if n := p.ap.count("reloadSignal"); n != 0 {
		t.Errorf("nginx was signalled %d times for a config that failed its check", n)
	}

	// The next change tries again, and fails again: the file stays.
	c2 := s.startCustomers(consul, 0)
	waitPassing(t, consul.Client(t), c1, c2)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		n := p.ap.count("check failed; destination and service left alone")
		return n >= 2, fmt.Sprintf("%d failed checks", n)
	})
	if after := readFile(t, p.rendered); after != before {
		t.Errorf("the destination changed after a second failed check:\n%s", after)
	}

	// The template fixed and the config re-read: the file catches up with
	// the data and nginx reloads.
	if err := os.WriteFile(tmpl, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	p.ap.signal(t, syscall.SIGHUP)
	p.waitUpstream(t, c1, c2)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		n := p.ap.count("reloadSignal")
		return n >= 1, fmt.Sprintf("%d reloads of nginx", n)
	})
	if !alive(nginxPID) {
		t.Fatalf("nginx (pid %d) is gone", nginxPID)
	}
	p.waitServing(t, "/customers/health")
}

// A burst of 50 registrations within one second, with wait 200ms:1s,
// becomes at most 3 reloads.
func TestNginxBurstOfRegistrations(t *testing.T) {
	consul := testenv.StartConsul(t)
	client := consul.Client(t)
	s := newStack(t)

	// One real instance, served by the test, for nginx to start with.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	register(t, client, "burst-0", port)

	// Count reloads with a reload command in place of reloadSignal. The
	// command also runs for the first render, before nginx starts: only
	// runs with an app to signal are counted.
	counter := filepath.Join(t.TempDir(), "reloads")
	reload := fmt.Sprintf(`"reload": ["sh", "-c", "if [ -n \"$AUTOPILOT_APP_PID\" ]; then echo reload >> %s; kill -HUP $AUTOPILOT_APP_PID; fi"]`, counter)
	config := nginxConfig(t, func(s string) string {
		out := strings.Replace(s, `"reloadSignal": "SIGHUP"`, reload, 1)
		out = strings.Replace(out, `"${RENDER_WAIT:-200ms:1s}"`, `"200ms:1s"`, 1)
		if out == s || !strings.Contains(out, `"wait": "200ms:1s"`) {
			t.Fatalf("examples/nginx/autopilot.json has changed: no reloadSignal or wait to replace:\n%s", s)
		}
		return out
	})
	p := s.startNginx(consul, config)
	p.waitUpstream(t, &backend{port: port})
	p.ap.appPID(t)
	reloads := func() int { return strings.Count(readFile(t, counter), "reload\n") }
	base := reloads()

	// Spread over about 800 ms: closer together than the 200 ms quiet
	// period, so only the 1 s maximum wait can force a render in the middle
	// of the burst. Each registration starts on schedule in its own
	// goroutine, so a slow answer from a loaded agent does not push the
	// later ones back.
	start := time.Now()
	var (
		wg      sync.WaitGroup
		errMu   sync.Mutex
		regErrs []error
	)
	for i := 1; i <= 50; i++ {
		wg.Add(1)
		time.AfterFunc(time.Duration(i-1)*16*time.Millisecond, func() {
			defer wg.Done()
			reg := &api.AgentServiceRegistration{ID: fmt.Sprintf("burst-%d", i), Name: "customers", Address: "127.0.0.1", Port: 20000 + i}
			if err := client.Agent().ServiceRegister(reg); err != nil {
				errMu.Lock()
				regErrs = append(regErrs, err)
				errMu.Unlock()
			}
		})
	}
	wg.Wait()
	burst := time.Since(start)
	if len(regErrs) > 0 {
		t.Fatalf("registrations failed: %v", regErrs)
	}
	// The burst is meant to fit in one max wait (1 s); on a loaded machine
	// it can run longer, and each further second may force one more render.
	maxReloads := 2 + int((burst+time.Second-1)/time.Second)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		n := len(p.upstream(t))
		return n == 51, fmt.Sprintf("%d servers in the upstream, want 51", n)
	})
	// Every write after nginx started is followed by its reload: wait for
	// the last one before counting.
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		// The upstream can show 51 servers before the write's log line
		// is out: wait for at least one write since nginx started.
		writes := p.ap.count("file updated") - 1 // the first render, before nginx ran
		return writes >= 1 && reloads()-base >= writes, fmt.Sprintf("%d writes since nginx started, %d reloads", writes, reloads()-base)
	})
	n := reloads() - base
	t.Logf("50 registrations in %s: %d reloads", burst.Round(time.Millisecond), n)
	if n < 1 || n > maxReloads {
		t.Errorf("%d reloads for a burst of 50 registrations in %s, want 1 to %d", n, burst.Round(time.Millisecond), maxReloads)
	}
	if status, _, err := testenv.HTTPGet(t, p.url("/health")); err != nil || status != 200 {
		t.Fatalf("nginx after the burst: %d %v", status, err)
	}
}

func register(t *testing.T, client *api.Client, id string, port int) {
	t.Helper()
	err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: id, Name: "customers", Address: "127.0.0.1", Port: port})
	if err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
}

// Consul killed mid-run: the nginx config stays as it was and nginx keeps
// serving; a fresh agent comes back, the supervisors register their
// services again (one of them started during the outage) and the config
// converges on them.
func TestNginxConsulRestart(t *testing.T) {
	consul := testenv.StartConsul(t)
	client := consul.Client(t)
	s := newStack(t)
	c1 := s.startCustomers(consul, 0)
	waitPassing(t, client, c1)
	p := s.startNginx(consul, nginxConfigPath())
	p.waitUpstream(t, c1)
	before := readFile(t, p.rendered)

	// Watch the rendered file all along: every version must keep an upstream.
	var (
		mu       sync.Mutex
		versions = map[string]bool{}
		stopped  atomic.Bool
		watchWG  sync.WaitGroup
	)
	watchWG.Add(1)
	go func() {
		defer watchWG.Done()
		for !stopped.Load() {
			if b, err := os.ReadFile(p.rendered); err == nil {
				mu.Lock()
				versions[string(b)] = true
				mu.Unlock()
			}
			time.Sleep(10 * time.Millisecond) // sampling, not synchronisation
		}
	}()
	defer func() { stopped.Store(true); watchWG.Wait() }()
	l := startLoad(p.url("/customers/health"), 1_000_000, 5*time.Millisecond)

	consul.Kill()
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		return p.ap.count("consul query failed; keeping last good data") > 0, "nginx's autopilot has not noticed the outage yet"
	})
	// A new instance starts while Consul is down: it runs, but cannot register yet.
	c2 := s.startCustomers(consul, 0)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		status, _, err := testenv.HTTPGet(t, "http://"+c2.addr()+"/health")
		return err == nil && status == 200, fmt.Sprintf("customers %s during the outage: %d %v", c2.addr(), status, err)
	})
	if got := readFile(t, p.rendered); got != before {
		t.Fatalf("the nginx config changed while Consul was down:\n%s", got)
	}
	if status, _, err := testenv.HTTPGet(t, p.url("/customers/health")); err != nil || status != 200 {
		t.Fatalf("nginx while Consul is down: %d %v", status, err)
	}

	consul.Restart()
	waitPassing(t, client, c1, c2)
	p.waitUpstream(t, c1, c2)
	p.waitServing(t, "/customers/health")

	total, errs, answered := l.finish(t, true, 30*time.Second)
	t.Logf("load: %d requests, %d errors, answered by %v", total, len(errs), answered)
	if len(errs) > 0 {
		t.Errorf("%d of %d requests through nginx failed, first ones: %q", len(errs), total, errs[:min(len(errs), 5)])
	}
	stopped.Store(true)
	watchWG.Wait()
	mu.Lock()
	defer mu.Unlock()
	versions[readFile(t, p.rendered)] = true
	for v := range versions {
		if len(nginxUpstream(v)) == 0 {
			t.Errorf("the rendered config lost its customers upstream at some point:\n%s", v)
		}
	}
	t.Logf("%d versions of nginx.conf seen", len(versions))
}
