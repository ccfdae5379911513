package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/autopilot/autopilot/internal/testenv"
)

// authProxy stands in front of a real agent the way a reverse proxy guards
// an exposed Consul (the agent itself has no basic auth): a request without
// the right credentials gets 401, any other is forwarded. It records what
// arrives and how many TCP connections carried it, so that two clients can
// be compared on what they send.
type authProxy struct {
	addr string // host:port

	mu    sync.Mutex
	reqs  []proxyReq
	conns int
}

// proxyReq is one request as the proxy saw it on arrival.
type proxyReq struct {
	path, wait string
	blocking   bool // carries an index
	authorized bool
}

func startAuthProxy(t *testing.T, agentAddr, user, pass string) *authProxy {
	t.Helper()
	target, err := url.Parse("http://" + agentAddr)
	if err != nil {
		t.Fatal(err)
	}
	forward := httputil.NewSingleHostReverseProxy(target)
	p := &authProxy{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, pw, ok := r.BasicAuth()
		authorized := ok && u == user && pw == pass
		q := r.URL.Query()
		p.mu.Lock()
		p.reqs = append(p.reqs, proxyReq{path: r.URL.Path, wait: q.Get("wait"), blocking: q.Get("index") != "", authorized: authorized})
		p.mu.Unlock()
		if !authorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="consul"`)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		forward.ServeHTTP(w, r)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			p.mu.Lock()
			p.conns++
			p.mu.Unlock()
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	p.addr = srv.Listener.Addr().String()
	return p
}

// seen returns the requests so far and the connections that carried them.
func (p *authProxy) seen() ([]proxyReq, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]proxyReq(nil), p.reqs...), p.conns
}

// blocking returns the blocking queries (with an index) for path.
func (p *authProxy) blocking(path string) []proxyReq {
	reqs, _ := p.seen()
	var out []proxyReq
	for _, r := range reqs {
		if r.blocking && r.path == path {
			out = append(out, r)
		}
	}
	return out
}

// TestConsulTemplateClientOptionsSideBySide runs the real consul-template
// v0.42.1 and the symlink through a basic-auth proxy in front of a real
// agent: basic auth as -consul-auth, as consul { auth { } } and as
// CONSUL_HTTP_AUTH, with and without the right credentials (same exit
// codes, same files, and every request authorized when the run succeeds);
// block_query_wait as the wait of every blocking query (the default too);
// and -consul-transport-disable-keep-alives as one connection per request.
func TestConsulTemplateClientOptionsSideBySide(t *testing.T) {
	realCT := realConsulTemplate(t)
	ourCT := filepath.Join(ctBinDir(t), "consul-template")
	agent := testenv.StartConsul(t)
	if _, err := agent.Client(t).KV().Put(&api.KVPair{Key: "app/port", Value: []byte("9090")}, nil); err != nil {
		t.Fatal(err)
	}
	const user, pass = "ct-user", "pa:ss" // a colon in the password: only the first one splits
	files := map[string]string{
		"web.ctmpl": "port={{ key \"app/port\" }}\n",
		"auth.hcl": `
consul {
  address = "PROXY"
  auth {
    enabled  = true
    username = "ct-user"
    password = "pa:ss"
  }
  retry { attempts = 1  backoff = "10ms" }
}
template {
  source      = "web.ctmpl"
  destination = "out/web.conf"
  # consul-template hands the credentials to its commands.
  command     = "printf %s \"$CONSUL_HTTP_AUTH\" > out/auth.env"
}
`,
		// Turned off, the block sends nothing (and CONSUL_HTTP_AUTH, if
		// set, applies).
		"disabled.hcl": `
consul {
  address = "PROXY"
  auth {
    enabled  = false
    username = "ct-user"
    password = "pa:ss"
  }
  retry { attempts = 1  backoff = "10ms" }
}
template {
  source      = "web.ctmpl"
  destination = "out/web.conf"
}
`,
		"wait.hcl": `
block_query_wait = "1500ms"
consul {
  address = "PROXY"
  auth {
    username = "ct-user"
    password = "pa:ss"
  }
}
template {
  source      = "web.ctmpl"
  destination = "out/web.conf"
}
`,
	}
	setup := func(t *testing.T, proxy string) string {
		dir := t.TempDir()
		for name, text := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.ReplaceAll(text, "PROXY", proxy)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Mkdir(filepath.Join(dir, "out"), 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	command := func(bin, dir, proxy string, env, args []string) *exec.Cmd {
		a := make([]string, len(args))
		for i, s := range args {
			a[i] = strings.ReplaceAll(s, "PROXY", proxy)
		}
		cmd := exec.Command(bin, a...)
		cmd.Dir = dir
		cmd.Env = append(append(os.Environ(), "CONSUL_HTTP_ADDR=", "CONSUL_HTTP_TOKEN=", "CONSUL_HTTP_AUTH="), env...)
		return cmd
	}
	run := func(t *testing.T, bin, dir, proxy string, env, args []string) (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := command(bin, dir, proxy, env, args)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		done := make(chan struct{})
		go func() {
			select {
			case <-ctx.Done():
				cmd.Process.Kill() //nolint:errcheck
			case <-done:
			}
		}()
		cmd.Run() //nolint:errcheck // the exit code is the result
		close(done)
		if ctx.Err() != nil {
			t.Fatalf("%s %q: timed out", bin, args)
		}
		return testenv.ExitCode(cmd), stderr.String()
	}
	quick := []string{"-consul-retry-attempts=1", "-consul-retry-backoff=10ms"}
	once := func(extra ...string) []string {
		return append(append([]string{"-once", "-consul-addr", "PROXY", "-template", "web.ctmpl:out/web.conf"}, quick...), extra...)
	}
	cases := []struct {
		name  string
		env   []string
		args  []string
		code  int  // both must exit with it
		authd bool // every request carried the credentials
	}{
		{"-consul-auth", nil, once("-consul-auth", user+":"+pass), 0, true},
		{"auth block", nil, []string{"-once", "-config", "auth.hcl"}, 0, true},
		{"CONSUL_HTTP_AUTH", []string{"CONSUL_HTTP_AUTH=" + user + ":" + pass}, once(), 0, true},
		{"-consul-auth over CONSUL_HTTP_AUTH", []string{"CONSUL_HTTP_AUTH=someone:else"}, once("-consul-auth", user+":"+pass), 0, true},
		{"disabled block leaves CONSUL_HTTP_AUTH", []string{"CONSUL_HTTP_AUTH=" + user + ":" + pass}, []string{"-once", "-config", "disabled.hcl"}, 0, true},
		{"no auth", nil, once(), 14, false},
		{"wrong password", nil, once("-consul-auth", user+":nope"), 14, false},
		{"username only", nil, once("-consul-auth", user), 14, false},
		{"disabled block", nil, []string{"-once", "-config", "disabled.hcl"}, 14, false},
		{"empty -consul-auth", nil, once("-consul-auth="), 13, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var trees [2]string
			for i, bin := range []string{realCT, ourCT} {
				proxy := startAuthProxy(t, agent.HTTPAddr, user, pass)
				dir := setup(t, proxy.addr)
				code, stderr := run(t, bin, dir, proxy.addr, tc.env, tc.args)
				if code != tc.code {
					t.Errorf("%s: exit %d, want %d\n%s", bin, code, tc.code, tail(stderr, 5))
				}
				reqs, _ := proxy.seen()
				for _, r := range reqs {
					if r.authorized != tc.authd {
						t.Errorf("%s: request %s authorized %v, want %v", bin, r.path, r.authorized, tc.authd)
						break
					}
				}
				if tc.code == 14 && len(reqs) == 0 {
					t.Errorf("%s: exit 14 without asking the proxy", bin)
				}
				if bin == ourCT && strings.Contains(stderr, pass) {
					t.Errorf("autopilot logged the password:\n%s", stderr)
				}
				trees[i] = tree(t, filepath.Join(dir, "out"))
			}
			if trees[0] != trees[1] {
				t.Errorf("files differ:\nconsul-template:\n%s\nautopilot:\n%s", trees[0], trees[1])
			}
			if tc.code == 0 && !strings.Contains(trees[1], "web.conf -rw-r--r--\nport=9090\n\n") {
				t.Errorf("autopilot wrote:\n%s", trees[1])
			}
			if tc.name == "auth block" && !strings.Contains(trees[1], "auth.env -rw-r--r--\n"+user+":"+pass+"\n") {
				t.Errorf("the command did not get CONSUL_HTTP_AUTH=%s:%s:\n%s", user, pass, trees[1])
			}
		})
	}

	// Without -once both keep blocking queries open: their wait is
	// block_query_wait (1m when unset), and with keep-alives disabled each
	// request has its own connection.
	type long struct {
		proxy *authProxy
		cmd   *exec.Cmd
		dir   string
		err   *testenv.Buffer
	}
	start := func(t *testing.T, bin string, args ...string) *long {
		l := &long{proxy: startAuthProxy(t, agent.HTTPAddr, user, pass), err: &testenv.Buffer{}}
		l.dir = setup(t, l.proxy.addr)
		l.cmd = command(bin, l.dir, l.proxy.addr, nil, args)
		l.cmd.Stderr = l.err
		if err := l.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.cmd.Process.Kill(); l.cmd.Wait() }) //nolint:errcheck
		return l
	}
	stop := func(t *testing.T, l *long) {
		if err := l.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		l.cmd.Wait() //nolint:errcheck // interrupted: 12 for both
	}
	const kvPath = "/v1/kv/app/port"
	waits := []struct {
		name     string
		args     []string
		want     string // wait= of every blocking query
		requests int    // blocking queries to wait for
	}{
		{"default", []string{"-consul-addr", "PROXY", "-consul-auth", user + ":" + pass, "-template", "web.ctmpl:out/web.conf"}, "60000ms", 1},
		{"block_query_wait", []string{"-config", "wait.hcl"}, "1500ms", 3},
	}
	for _, tc := range waits {
		t.Run("wait "+tc.name, func(t *testing.T) {
			runs := []*long{start(t, realCT, tc.args...), start(t, ourCT, tc.args...)}
			for _, l := range runs {
				testenv.Eventually(t, 20*time.Second, func() (bool, string) {
					n := len(l.proxy.blocking(kvPath))
					return n >= tc.requests, fmt.Sprintf("%s: %d blocking queries\n%s", l.cmd.Path, n, tail(l.err.String(), 5))
				})
			}
			for _, l := range runs {
				stop(t, l)
				for _, r := range l.proxy.blocking(kvPath) {
					if r.wait != tc.want || !r.authorized {
						t.Errorf("%s: blocking query wait=%q authorized %v, want wait=%s authorized", l.cmd.Path, r.wait, r.authorized, tc.want)
					}
				}
			}
		})
	}

	// Keep-alives: a short wait makes several requests; disabled, each one
	// opens a connection, as in consul-template; enabled, they share one.
	for _, disable := range []bool{true, false} {
		t.Run(fmt.Sprintf("disable-keep-alives=%v", disable), func(t *testing.T) {
			args := []string{"-config", "wait.hcl", fmt.Sprintf("-consul-transport-disable-keep-alives=%v", disable)}
			runs := []*long{start(t, realCT, args...), start(t, ourCT, args...)}
			for _, l := range runs {
				testenv.Eventually(t, 20*time.Second, func() (bool, string) {
					n := len(l.proxy.blocking(kvPath))
					return n >= 3, fmt.Sprintf("%s: %d blocking queries\n%s", l.cmd.Path, n, tail(l.err.String(), 5))
				})
				stop(t, l)
				reqs, conns := l.proxy.seen()
				t.Logf("%s: %d requests over %d connections", l.cmd.Path, len(reqs), conns)
				if disable && conns != len(reqs) {
					t.Errorf("%s: %d requests over %d connections, want one each", l.cmd.Path, len(reqs), conns)
				}
				if !disable && conns >= len(reqs) {
					t.Errorf("%s: %d requests over %d connections, want them reused", l.cmd.Path, len(reqs), conns)
				}
			}
		})
	}
}

// TestConsulTemplateMaxStaleSideBySide: with stale reads (max_stale > 0,
// consul-template's default 2s) an answer whose server last heard from the
// leader longer ago than max_stale is dropped and the same query asked
// again consistently. A proxy in front of a real agent claims a 5s-old
// contact on every stale answer; both tools must follow it with a
// consistent read under -max-stale 1s, and not under 10s.
func TestConsulTemplateMaxStaleSideBySide(t *testing.T) {
	realCT := realConsulTemplate(t)
	ourCT := filepath.Join(ctBinDir(t), "consul-template")
	agent := testenv.StartConsul(t)
	if _, err := agent.Client(t).KV().Put(&api.KVPair{Key: "app/port", Value: []byte("9090")}, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		maxStale string
		want     string // how the KV answers begin
	}{
		{"1s", "stale consistent"},
		{"10s", "stale"},
	} {
		t.Run("-max-stale "+tc.maxStale, func(t *testing.T) {
			for _, bin := range []string{realCT, ourCT} {
				proxy := testenv.StartStaleProxy(t, agent.HTTPAddr, "/v1/kv/app/port")
				dir := t.TempDir()
				os.WriteFile(filepath.Join(dir, "t.ctmpl"), []byte(`{{ key "app/port" }}`), 0o644) //nolint:errcheck
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				cmd := exec.CommandContext(ctx, bin, "-once", "-max-stale", tc.maxStale, "-consul-addr", proxy.Addr,
					"-template", "t.ctmpl:out")
				cmd.Dir = dir
				cmd.Env = append(os.Environ(), "CONSUL_HTTP_ADDR=", "CONSUL_HTTP_TOKEN=")
				out, err := cmd.CombinedOutput()
				cancel()
				if err != nil {
					t.Fatalf("%s: %v\n%s", bin, err, tail(string(out), 5))
				}
				if b, _ := os.ReadFile(filepath.Join(dir, "out")); string(b) != "9090" {
					t.Errorf("%s wrote %q", bin, b)
				}
				if got := proxy.Answers(); !strings.HasPrefix(got, tc.want) || strings.HasPrefix(got, tc.want+" consistent") {
					t.Errorf("%s: answers %q; want them to begin %q", bin, got, tc.want)
				}
			}
		})
	}
}
