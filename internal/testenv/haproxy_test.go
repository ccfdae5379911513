package testenv

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

func TestHAProxyForwardsAndReloads(t *testing.T) {
	backend := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, name)
		}))
		t.Cleanup(s.Close)
		return s
	}
	a, b := backend("a"), backend("b")
	healthPort, appPort := FreePort(t), FreePort(t)
	dir := HAProxyMainConf(t, healthPort)
	render := func(s *httptest.Server) {
		writeFile(t, filepath.Join(dir, "haproxy.cfg"), fmt.Sprintf(`
frontend app
    bind 127.0.0.1:%d
    default_backend app

backend app
    server s1 %s
`, appPort, s.Listener.Addr()))
	}
	render(a)
	if err := HAProxyCheck(t, dir); err != nil {
		t.Fatal(err)
	}

	h := StartHAProxy(t, dir)
	get(t, fmt.Sprintf("http://127.0.0.1:%d/health", healthPort), "ok")
	get(t, fmt.Sprintf("http://127.0.0.1:%d/", appPort), "a")

	// Reload returns once the new worker serves and the old one is gone: no polling after it.
	for _, next := range []struct {
		srv  *httptest.Server
		want string
	}{{b, "b"}, {a, "a"}, {b, "b"}} {
		master := h.PID()
		render(next.srv)
		if err := h.Reload(); err != nil {
			t.Fatal(err)
		}
		get(t, fmt.Sprintf("http://127.0.0.1:%d/", appPort), next.want)
		if h.PID() != master {
			t.Fatalf("master pid changed on reload: %d -> %d", master, h.PID())
		}
	}
}

func TestHAProxyReloadRejectsBadConfig(t *testing.T) {
	port := FreePort(t)
	dir := HAProxyMainConf(t, port)
	h := StartHAProxy(t, dir)
	writeFile(t, filepath.Join(dir, "haproxy.cfg"), "frontend broken\n    nonsense here\n")
	if err := HAProxyCheck(t, dir); err == nil {
		t.Fatalf("HAProxyCheck accepted a broken config")
	}
	err := h.Reload()
	if err == nil || !strings.Contains(err.Error(), "unknown keyword 'nonsense'") {
		t.Fatalf("Reload of a broken config: err = %v, want HAProxy's alert", err)
	}
	get(t, fmt.Sprintf("http://127.0.0.1:%d/health", port), "ok")
	writeFile(t, filepath.Join(dir, "haproxy.cfg"), "")
	if err := h.Reload(); err != nil {
		t.Fatal(err)
	}
	get(t, fmt.Sprintf("http://127.0.0.1:%d/health", port), "ok")
}

func TestHAProxyStopLeavesNoProcess(t *testing.T) {
	h := StartHAProxy(t, HAProxyMainConf(t, FreePort(t)))
	pids := append(children(h.PID()), h.PID())
	h.Stop()
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("haproxy process %d (%s) still alive after Stop", pid, cmdline(pid))
		}
	}
}
