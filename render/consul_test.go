package render

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/consul"
	"github.com/autopilot/autopilot/internal/testenv"
)

// liveRunner renders cfgs from a real agent until the test ends.
func liveRunner(t *testing.T, addr string, cfgs ...Config) *Runner {
	t.Helper()
	client, err := consul.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := consul.NewWatcher(ctx, client, consul.WatchOptions{}, zerolog.Nop())
	r, err := NewRunner(w, cfgs, RunnerOptions{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; w.Close() })
	return r
}

func registerTTL(t *testing.T, c *api.Client, id, name, addr string, port int, status string, tags ...string) {
	t.Helper()
	if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: id, Name: name, Address: addr, Port: port, Tags: tags,
		Check: &api.AgentServiceCheck{CheckID: id + ":ttl", TTL: "5m", Status: status},
	}); err != nil {
		t.Fatal(err)
	}
}

func TestRenderFromConsul(t *testing.T) {
	agent := testenv.StartConsul(t)
	c := agent.Client(t)
	tmpl := writeTemp(t, "app.ctmpl", `{{ range service "web" }}{{ .ID }} {{ .Address }}:{{ .Port }} {{ .Tags }}
{{ end }}max_conns={{ key "app/max_conns" }}
{{ range ls "app/features" }}{{ .Key }}={{ .Value }} {{ end }}
`)
	dest := filepath.Join(t.TempDir(), "app.conf")
	registerTTL(t, c, "web-1", "web", "127.0.0.1", 8001, api.HealthPassing, "z", "a")
	r := liveRunner(t, agent.HTTPAddr, Config{Source: tmpl, Destination: dest})
	expect := func(want string) {
		t.Helper()
		testenv.Eventually(t, 10*time.Second, func() (bool, string) {
			got := readFile(t, dest)
			return got == want, got
		})
	}
	// key blocks rendering until it exists: nothing written yet.
	if got := readFile(t, dest); !strings.HasPrefix(got, "<") {
		t.Fatalf("file written before app/max_conns existed: %q", got)
	}
	kv := c.KV()
	if _, err := kv.Put(&api.KVPair{Key: "app/max_conns", Value: []byte("100")}, nil); err != nil {
		t.Fatal(err)
	}
	expect("web-1 127.0.0.1:8001 [a z]\nmax_conns=100\n\n")

	registerTTL(t, c, "web-2", "web", "127.0.0.2", 8002, api.HealthPassing)
	if _, err := kv.Put(&api.KVPair{Key: "app/features/gzip", Value: []byte("on")}, nil); err != nil {
		t.Fatal(err)
	}
	expect("web-1 127.0.0.1:8001 [a z]\nweb-2 127.0.0.2:8002 []\nmax_conns=100\ngzip=on \n")

	// A failing TTL check takes web-1 out; passing again brings it back.
	if err := c.Agent().UpdateTTL("web-1:ttl", "down", api.HealthCritical); err != nil {
		t.Fatal(err)
	}
	expect("web-2 127.0.0.2:8002 []\nmax_conns=100\ngzip=on \n")
	if err := c.Agent().UpdateTTL("web-1:ttl", "up", api.HealthPassing); err != nil {
		t.Fatal(err)
	}
	expect("web-1 127.0.0.1:8001 [a z]\nweb-2 127.0.0.2:8002 []\nmax_conns=100\ngzip=on \n")

	if err := c.Agent().ServiceDeregister("web-2"); err != nil {
		t.Fatal(err)
	}
	expect("web-1 127.0.0.1:8001 [a z]\nmax_conns=100\ngzip=on \n")
	// A render per change, not a spin: re-subscribing on every pass must
	// not wake the runner again. The runner counts a write just after the
	// file appears, so wait for the count.
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		s := r.Stats()[0]
		return s.Writes >= 5, fmt.Sprintf("%+v", s)
	})
	if s := r.Stats()[0]; s.Renders > s.Writes+4 {
		t.Fatalf("stats %+v: want about one render per change", s)
	}
}

// TestStockTemplatesPassRealChecks renders the shipped templates from a
// live agent and runs them through nginx -t and haproxy -c.
func TestStockTemplatesPassRealChecks(t *testing.T) {
	agent := testenv.StartConsul(t)
	c := agent.Client(t)
	for i := 1; i <= 3; i++ {
		registerTTL(t, c, fmt.Sprintf("customers-%d", i), "customers", "127.0.0.1", 4000+i, api.HealthPassing)
	}
	registerTTL(t, c, "sales-1", "sales", "127.0.0.1", 3001, api.HealthPassing)
	registerTTL(t, c, "broken-1", "broken", "127.0.0.1", 5001, api.HealthCritical)
	dir := t.TempDir()
	t.Setenv("NGINX_PID", filepath.Join(dir, "nginx.pid"))
	t.Setenv("NGINX_LISTEN", "127.0.0.1:18080")
	t.Setenv("HAPROXY_BIND", "127.0.0.1:18081")
	nginxConf, haproxyCfg := filepath.Join(dir, "nginx.conf"), filepath.Join(dir, "haproxy.cfg")
	liveRunner(t, agent.HTTPAddr,
		Config{Source: "../templates/nginx.conf.tmpl", Destination: nginxConf},
		Config{Source: "../templates/haproxy.cfg.tmpl", Destination: haproxyCfg})
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		n, h := readFile(t, nginxConf), readFile(t, haproxyCfg)
		return strings.Count(n, "server 127.0.0.1:") == 4 && strings.Count(h, "    server ") == 4, n + h
	})
	n := readFile(t, nginxConf)
	if strings.Contains(n, "broken") || strings.Contains(n, "upstream consul") {
		t.Fatalf("nginx.conf has a block for a service without healthy instances or for consul:\n%s", n)
	}
	if out, err := exec.Command("nginx", "-t", "-p", dir, "-c", nginxConf).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t rejected the stock template's output: %v\n%s\n%s", err, out, n)
	}
	if out, err := exec.Command("haproxy", "-c", "-f", haproxyCfg).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c rejected the stock template's output: %v\n%s\n%s", err, out, readFile(t, haproxyCfg))
	}
}

// TestOneExecutionPerChange: against a real agent, each single change to a
// watched service executes the template once and writes once: no second
// pass for the same data (re-subscribing, comparing, the watcher's own
// retries), which at 10,000 instances would double the cost of a change.
func TestOneExecutionPerChange(t *testing.T) {
	agent := testenv.StartConsul(t)
	c := agent.Client(t)
	tmpl := writeTemp(t, "up.ctmpl", `{{ range service "web" }}{{ .ID }} {{ .Address }}:{{ .Port }}
{{ end }}`)
	dest := filepath.Join(t.TempDir(), "up.conf")
	registerTTL(t, c, "web-0", "web", "127.0.0.1", 8000, api.HealthPassing)
	r := liveRunner(t, agent.HTTPAddr, Config{Source: tmpl, Destination: dest})
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		got := readFile(t, dest)
		return strings.Contains(got, "web-0 "), got
	})
	testenv.Eventually(t, 5*time.Second, func() (bool, string) { return r.Stats()[0].Writes == 1, "first write not counted yet" })
	base := r.Stats()[0]
	const changes = 6
	for i := 1; i <= changes; i++ {
		id := fmt.Sprintf("web-%d", i)
		// One catalog write: service and its passing check in one index.
		if _, err := c.Catalog().Register(&api.CatalogRegistration{Node: "node-" + id, Address: "127.0.0.1",
			Service: &api.AgentService{ID: id, Service: "web", Port: 8000 + i},
			Check:   &api.AgentCheck{Node: "node-" + id, CheckID: "service:" + id, Name: "web", Status: api.HealthPassing, ServiceID: id}}, nil); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 10*time.Second, func() (bool, string) {
			got := readFile(t, dest)
			return strings.Contains(got, id+" "), got
		})
	}
	// The file is visible a moment before the runner counts the write.
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		w := r.Stats()[0].Writes - base.Writes
		return w >= changes, fmt.Sprintf("%d writes counted", w)
	})
	s := r.Stats()[0]
	if renders, writes := s.Renders-base.Renders, s.Writes-base.Writes; renders != changes || writes != changes {
		t.Fatalf("%d changes gave %d executions and %d writes, want %d of each", changes, renders, writes, changes)
	}
}

// TestSharedCommandFromConsul: two templates with one command over a real
// watcher, which signals their shared channel once per change: each change
// runs the command once, with both files rendered from the same answer; a
// change only one of them uses runs it once too.
func TestSharedCommandFromConsul(t *testing.T) {
	agent := testenv.StartConsul(t)
	c := agent.Client(t)
	if _, err := c.KV().Put(&api.KVPair{Key: "app/x", Value: []byte("1")}, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.conf"), filepath.Join(dir, "b.conf")
	cmd := &sharedCommand{files: []string{a, b}}
	r := liveRunner(t, agent.HTTPAddr,
		Config{Source: writeTemp(t, "a.ctmpl", `{{ len (service "web") }}`), Destination: a, Command: cmd.run, CommandName: "reload"},
		Config{Source: writeTemp(t, "b.ctmpl", `{{ len (service "web") }} x={{ key "app/x" }}`), Destination: b, Command: cmd.run, CommandName: "reload"})
	if sizes := groupSizes(r.groups); sizes != "[2]" {
		t.Fatalf("group sizes %s, want one group of both", sizes)
	}
	waitRuns := func(n int, last string) {
		t.Helper()
		testenv.Eventually(t, 10*time.Second, func() (bool, string) {
			got := cmd.Runs()
			return len(got) >= n && got[len(got)-1] == last, fmt.Sprintf("%q", got)
		})
	}
	// At the start the two queries answer one after the other: a pass
	// may write a.conf before b.conf's key arrived and run the command for
	// it alone, as consul-template would. Changes are counted from there.
	waitRuns(1, "0 | 0 x=1")
	base := len(cmd.Runs())
	for i := 1; i <= 4; i++ {
		registerTTL(t, c, fmt.Sprintf("web-%d", i), "web", "127.0.0.1", 8000+i, api.HealthPassing)
		waitRuns(base+i, fmt.Sprintf("%d | %d x=1", i, i))
	}
	if _, err := c.KV().Put(&api.KVPair{Key: "app/x", Value: []byte("2")}, nil); err != nil {
		t.Fatal(err)
	}
	waitRuns(base+5, "4 | 4 x=2")
	want := []string{"0 | 0 x=1", "1 | 1 x=1", "2 | 2 x=1", "3 | 3 x=1", "4 | 4 x=1", "4 | 4 x=2"}
	if got := cmd.Runs()[base-1:]; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("command runs:\n%s\nwant one per change:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestMemoFromConsul renders a service of 60 instances from a real agent
// twice, with its range remembered and as written, through each kind of
// change: both files stay identical, and a change of one instance runs
// the remembered body for that instance alone.
func TestMemoFromConsul(t *testing.T) {
	agent := testenv.StartConsul(t)
	c := agent.Client(t)
	const n = 60
	for i := range n {
		registerTTL(t, c, fmt.Sprintf("web-%02d", i), "web", "127.0.0.1", 8000+i, api.HealthPassing, "v1")
	}
	tmpl := writeTemp(t, "web.ctmpl", benchUpstream)
	dir := t.TempDir()
	remembered, written := filepath.Join(dir, "remembered"), filepath.Join(dir, "written")
	r := liveRunner(t, agent.HTTPAddr,
		Config{Source: tmpl, Destination: remembered},
		Config{Source: tmpl, Destination: written, Options: Options{noMemo: true}})
	u := r.units[0]
	u.tmplMu.Lock()
	m := u.tmpl.memo
	u.tmplMu.Unlock()
	if m == nil || len(m.ranges) != 1 {
		t.Fatalf("memo %+v, want the range remembered", m)
	}
	runs := &m.ranges[0].runs
	for _, step := range []struct {
		name   string
		change func()
		want   string // in both files afterwards
		runs   int64  // of the remembered body
	}{
		{"first render", func() {}, "server 127.0.0.1:8059; # web-59 v1", n},
		{"one instance's port", func() {
			registerTTL(t, c, "web-07", "web", "127.0.0.1", 9007, api.HealthPassing, "v1")
		}, "server 127.0.0.1:9007; # web-07 v1", 1},
		{"one instance's tags", func() {
			registerTTL(t, c, "web-08", "web", "127.0.0.1", 8008, api.HealthPassing)
		}, "server 127.0.0.1:8008; # web-08\n", 1},
		{"one instance added", func() {
			registerTTL(t, c, "web-60", "web", "127.0.0.1", 8060, api.HealthPassing, "v1")
		}, "server 127.0.0.1:8060; # web-60 v1", 1},
		{"one instance failing", func() {
			if err := c.Agent().UpdateTTL("web-09:ttl", "down", api.HealthCritical); err != nil {
				t.Fatal(err)
			}
		}, "# web-08\n  server 127.0.0.1:8010;", 0},
		{"one instance removed", func() {
			if err := c.Agent().ServiceDeregister("web-00"); err != nil {
				t.Fatal(err)
			}
		}, "upstream web {\n  server 127.0.0.1:8001;", 0},
	} {
		before := runs.Load()
		if step.name == "first render" {
			before = 0 // it may have happened already
		}
		step.change()
		testenv.Eventually(t, 10*time.Second, func() (bool, string) {
			a, b := readFile(t, remembered), readFile(t, written)
			return a == b && strings.Contains(a, step.want), fmt.Sprintf("%s: remembered\n%s\nas written\n%s", step.name, a, b)
		})
		if got := runs.Load() - before; got != step.runs {
			t.Fatalf("%s: the body ran %d times, want %d", step.name, got, step.runs)
		}
	}
}
