package testenv

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// StaleProxy stands in front of a real agent and makes every stale read
// (?stale) of a path under its prefix look as if its server last heard
// from the leader 5s ago (X-Consul-LastContact: 5000), which a max_stale
// bound below 5s must refuse. It records the kind of each such answer.
type StaleProxy struct {
	Addr string // host:port

	mu    sync.Mutex
	kinds []string
}

// StartStaleProxy proxies to agentAddr (host:port) until the test ends.
func StartStaleProxy(t testing.TB, agentAddr, pathPrefix string) *StaleProxy {
	t.Helper()
	target, err := url.Parse("http://" + agentAddr)
	if err != nil {
		t.Fatal(err)
	}
	p := &StaleProxy{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(resp *http.Response) error {
		if !strings.HasPrefix(resp.Request.URL.Path, pathPrefix) {
			return nil
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if _, stale := resp.Request.URL.Query()["stale"]; stale {
			p.kinds = append(p.kinds, "stale")
			resp.Header.Set("X-Consul-LastContact", "5000")
		} else {
			p.kinds = append(p.kinds, "consistent")
		}
		return nil
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	p.Addr = srv.Listener.Addr().String()
	return p
}

// Answers returns the kinds of the answers so far, in order, space
// separated: "stale consistent stale ...".
func (p *StaleProxy) Answers() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.kinds, " ")
}
