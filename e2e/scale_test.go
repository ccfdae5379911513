package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autopilot/autopilot/internal/testenv"
)

// The load over a scale-up and scale-down: 3,000 requests, one every 3 ms
// at most, so that they span the whole scenario (about 10 s) rather than
// its first second.
const (
	loadRequests = 3000
	loadInterval = 3 * time.Millisecond
	// drain is the preStop pause of the instance stopped gracefully: the
	// window in which it is out of Consul and the proxy but still running.
	drain = 3 * time.Second
)

func TestNginxScaleUpAndDown(t *testing.T) {
	consul := testenv.StartConsul(t)
	s := newStack(t)
	c1 := s.startCustomers(consul, 0)
	waitPassing(t, consul.Client(t), c1)
	p := s.startNginx(consul, nginxConfigPath())
	scaleScenario(t, s, consul, p)
}

func TestHAProxyScaleUpAndDown(t *testing.T) {
	consul := testenv.StartConsul(t)
	s := newStack(t)
	c1 := s.startCustomers(consul, 0)
	waitPassing(t, consul.Client(t), c1)
	p := s.startHAProxy(consul)
	scaleScenario(t, s, consul, p)
}

func nginxConfigPath() string { return repoRoot + "/examples/nginx/autopilot.json" }

// scaleScenario: one backend (already running) answers through the proxy;
// two more start and the proxy sends requests to all three; one stops
// gracefully and leaves the proxy's configuration while it still runs.
// A paced load through the proxy over all of it sees no error.
func scaleScenario(t *testing.T, s *stack, consul *testenv.Consul, p *proxy) {
	client := consul.Client(t)
	passingNow, _ := passing(client, "customers")
	if len(passingNow) != 1 {
		t.Fatalf("want one customers instance to begin with, have %v", passingNow)
	}
	p.waitUpstream(t, &backend{port: mustPort(t, passingNow[0])})
	c1Addr := passingNow[0]

	status, body, err := testenv.HTTPGet(t, p.url("/customers/data"))
	if err != nil || status != 200 || !strings.Contains(body, `"instance": "customers@`+c1Addr+`"`) {
		t.Fatalf("GET /customers/data through the proxy: %d %v\n%s", status, err, body)
	}

	l := startLoad(p.url("/customers/health"), loadRequests, loadInterval)

	// Scale up: 1 -> 3.
	c2 := s.startCustomers(consul, 0)
	c3 := s.startCustomers(consul, drain)
	c1 := &backend{port: mustPort(t, c1Addr)}
	waitPassing(t, client, c1, c2, c3)
	p.waitUpstream(t, c1, c2, c3)
	seen := map[string]bool{}
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		// Ask through the proxy until every instance has answered, by the
		// instance it names.
		status, body, err := testenv.HTTPGet(t, p.url("/customers/data?own=1"))
		if err != nil || status != 200 {
			return false, fmt.Sprintf("status %d %v", status, err)
		}
		for _, b := range []*backend{c1, c2, c3} {
			if strings.Contains(body, `"customers@`+b.addr()+`"`) {
				seen[b.addr()] = true
			}
		}
		return len(seen) == 3, fmt.Sprintf("answered so far: %v", seen)
	})

	// Graceful stop of c3: deregistered, out of the proxy's file, and only
	// then (after its preStop drain) does its app get SIGTERM.
	c3PID := c3.ap.appPID(t)
	c3.ap.signal(t, syscall.SIGTERM)
	p.waitUpstream(t, c1, c2)
	if !alive(c3PID) {
		t.Fatalf("customers %s exited before the proxy's upstream dropped it:\n%s", c3.addr(), tail(c3.ap.Log(), 20))
	}
	if got, _ := passing(client, "customers"); strings.Contains(strings.Join(got, " "), c3.addr()) {
		t.Fatalf("Consul still lists %s after the proxy dropped it: %v", c3.addr(), got)
	}
	if status, _, err := testenv.HTTPGet(t, "http://"+c3.addr()+"/health"); err != nil || status != 200 {
		t.Fatalf("customers %s should still serve while it drains: %d %v", c3.addr(), status, err)
	}
	if code := c3.ap.wait(t, 20*time.Second); code != 0 {
		t.Fatalf("autopilot of %s exited with %d, want 0 (the app's own code after SIGTERM)", c3.addr(), code)
	}
	if e, ok := c3.ap.find("deregistered"); !ok {
		t.Fatalf("no deregistration in the log of %s", c3.addr())
	} else if _, ok := c3.ap.find("sending SIGTERM to the app"); !ok {
		t.Fatalf("no SIGTERM in the log of %s (deregistered: %v)", c3.addr(), e)
	}

	total, errs, answered := l.finish(t, false, 60*time.Second)
	t.Logf("load: %d requests, %d errors, answered by %v", total, len(errs), answered)
	if len(errs) > 0 {
		t.Errorf("%d of %d requests through the proxy failed, first ones: %q", len(errs), total, errs[:min(len(errs), 5)])
	}
	if total < loadRequests {
		t.Errorf("load sent %d requests, want %d within a minute", total, loadRequests)
	}
}

func mustPort(t *testing.T, addr string) int {
	t.Helper()
	var host string
	var port int
	if _, err := fmt.Sscanf(strings.Replace(addr, ":", " ", 1), "%s %d", &host, &port); err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return port
}
