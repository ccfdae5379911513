package testenv

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFile writes a config file a test renders, failing the test on error.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// get fetches url and fails the test unless it answers 200 with body want.
func get(t *testing.T, url, want string) {
	t.Helper()
	status, body, err := HTTPGet(t, url)
	if err != nil || status != http.StatusOK || body != want {
		t.Fatalf("GET %s = %d %q, %v; want 200 %q", url, status, body, err, want)
	}
}

func TestNginxServesAndReloads(t *testing.T) {
	healthPort, appPort := FreePort(t), FreePort(t)
	include := filepath.Join(t.TempDir(), "app.conf")
	conf := NginxMainConf(t, include, healthPort)
	appServer := func(body string) string {
		return fmt.Sprintf("server { listen 127.0.0.1:%d; location / { return 200 %q; } }\n", appPort, body)
	}
	writeFile(t, include, appServer("v1"))

	n := StartNginx(t, conf)
	get(t, fmt.Sprintf("http://127.0.0.1:%d/health", healthPort), "ok")
	get(t, fmt.Sprintf("http://127.0.0.1:%d/", appPort), "v1")

	// Reload returns once the new config serves: no polling needed after it.
	for _, v := range []string{"v2", "v3"} {
		master := n.PID()
		writeFile(t, include, appServer(v))
		if err := n.Reload(); err != nil {
			t.Fatal(err)
		}
		get(t, fmt.Sprintf("http://127.0.0.1:%d/", appPort), v)
		if n.PID() != master {
			t.Fatalf("master pid changed on reload: %d -> %d", master, n.PID())
		}
	}
}

func TestNginxProxiesToUpstream(t *testing.T) {
	backend := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, name)
		}))
		t.Cleanup(s.Close)
		return s
	}
	a, b := backend("a"), backend("b")
	healthPort, appPort := FreePort(t), FreePort(t)
	include := filepath.Join(t.TempDir(), "upstreams.conf")
	render := func(s *httptest.Server) {
		writeFile(t, include, fmt.Sprintf(`upstream app { server %s; }
server { listen 127.0.0.1:%d; location / { proxy_pass http://app; } }
`, s.Listener.Addr(), appPort))
	}
	render(a)
	n := StartNginx(t, NginxMainConf(t, include, healthPort))
	get(t, fmt.Sprintf("http://127.0.0.1:%d/", appPort), "a")
	render(b)
	if err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	get(t, fmt.Sprintf("http://127.0.0.1:%d/", appPort), "b")
}

func TestNginxReloadRejectsBadConfig(t *testing.T) {
	port := FreePort(t)
	include := filepath.Join(t.TempDir(), "app.conf")
	n := StartNginx(t, NginxMainConf(t, include, port))
	writeFile(t, include, "this is not nginx;\n")
	err := n.Reload()
	if err == nil || !strings.Contains(err.Error(), "[emerg]") {
		t.Fatalf("Reload of a broken config: err = %v, want nginx's [emerg]", err)
	}
	// The old config goes on serving.
	get(t, fmt.Sprintf("http://127.0.0.1:%d/health", port), "ok")
	// And a fixed config loads again.
	writeFile(t, include, "")
	if err := n.Reload(); err != nil {
		t.Fatal(err)
	}
}

func TestNginxTest(t *testing.T) {
	include := filepath.Join(t.TempDir(), "app.conf")
	conf := NginxMainConf(t, include, FreePort(t))
	if err := NginxTest(t, conf); err != nil {
		t.Fatalf("NginxTest(valid) = %v", err)
	}
	writeFile(t, include, "upstream app { }\n")
	err := NginxTest(t, conf)
	if err == nil || !strings.Contains(err.Error(), "no servers are inside upstream") {
		t.Fatalf("NginxTest(empty upstream) = %v, want nginx's complaint", err)
	}
}

func TestNginxStopLeavesNoProcess(t *testing.T) {
	n := StartNginx(t, NginxMainConf(t, "", FreePort(t)))
	pids := append(children(n.PID()), n.PID())
	n.Stop()
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("nginx process %d (%s) still alive after Stop", pid, cmdline(pid))
		}
	}
	n.Stop() // idempotent; Cleanup calls it again too
}
