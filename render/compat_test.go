package render

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/consul"
	"github.com/autopilot/autopilot/internal/testenv"
)

// consulTemplateBin finds the consul-template binary the compatibility
// test compares against (scripts/consul-template-bin.sh builds it).
func consulTemplateBin(t *testing.T) string {
	t.Helper()
	if os.Getenv(testenv.SkipEnv) != "" {
		t.Skipf("%s is set", testenv.SkipEnv)
	}
	if p := os.Getenv("CONSUL_TEMPLATE_BIN"); p != "" {
		return p
	}
	if p, err := exec.LookPath("consul-template"); err == nil {
		return p
	}
	home, _ := os.UserHomeDir()
	p := filepath.Join(home, ".cache", "autopilot-bench", "bin", "consul-template")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	t.Fatal("no consul-template binary: run scripts/consul-template-bin.sh (make test does) or set CONSUL_TEMPLATE_BIN")
	return ""
}

// TestConsulTemplateCompat renders every template in testdata/compat with
// consul-template and with autopilot from the same live agent and requires
// byte-identical output: existing .ctmpl files must work unchanged.
func TestConsulTemplateCompat(t *testing.T) {
	ct := consulTemplateBin(t)
	agent := testenv.StartConsul(t)
	c := agent.Client(t)
	reg := func(id, name, addr string, port int, status string, tags []string, meta map[string]string) {
		t.Helper()
		if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: id, Name: name, Address: addr, Port: port, Tags: tags, Meta: meta,
			Check: &api.AgentServiceCheck{CheckID: id + ":ttl", TTL: "10m", Status: status}}); err != nil {
			t.Fatal(err)
		}
	}
	reg("web-3", "web", "127.0.0.3", 8003, api.HealthPassing, []string{"blue", "v2"}, map[string]string{"version": "2"})
	reg("web-1", "web", "127.0.0.1", 8001, api.HealthPassing, []string{"v1", "green"}, map[string]string{"version": "1"})
	reg("web-2", "web", "", 8002, api.HealthWarning, []string{"v1"}, nil)
	reg("web-4", "web", "127.0.0.4", 8004, api.HealthCritical, nil, nil)
	reg("customers-1", "customers", "127.0.0.1", 4000, api.HealthPassing, nil, nil)
	reg("customers-2", "customers", "127.0.0.2", 4000, api.HealthPassing, nil, nil)
	// External nodes (as an ESM or a client agent would register them) give
	// every value type its full shape: node meta, tagged addresses on nodes
	// and services, weights, service meta, several services per node.
	catReg := func(node, addr string, nodeMeta, tagged map[string]string, svc *api.AgentService, status string) {
		t.Helper()
		if _, err := c.Catalog().Register(&api.CatalogRegistration{Node: node, Address: addr, NodeMeta: nodeMeta, TaggedAddresses: tagged,
			Service: svc, Check: &api.AgentCheck{Node: node, CheckID: "service:" + svc.ID, Name: svc.ID + " check", Status: status, ServiceID: svc.ID, Output: "ok <&>"}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	extA := map[string]string{"rack": "r1", "zone": "eu-1a"}
	extATagged := map[string]string{"lan": "10.1.0.1", "wan": "198.51.100.1"}
	catReg("ext-a", "10.1.0.1", extA, extATagged, &api.AgentService{ID: "api-a1", Service: "api", Port: 9000, Address: "10.1.0.11",
		Tags: []string{"prod", "v2", "http"}, Meta: map[string]string{"version": "2.1", "metrics_path": "/metrics", "weight": "5", "team": "core"},
		Weights:         api.AgentWeights{Passing: 5, Warning: 1},
		TaggedAddresses: map[string]api.ServiceAddress{"lan": {Address: "10.1.0.11", Port: 9000}, "wan": {Address: "198.51.100.11", Port: 19000}}}, api.HealthPassing)
	catReg("ext-a", "10.1.0.1", extA, extATagged, &api.AgentService{ID: "db-a1", Service: "db", Port: 5432,
		Tags: []string{"primary"}, Meta: map[string]string{"role": "primary"}}, api.HealthPassing)
	extB := map[string]string{"rack": "r2"}
	catReg("ext-b", "10.1.0.2", extB, nil, &api.AgentService{ID: "api-b1", Service: "api", Port: 9001,
		Tags: []string{"prod", "v1"}, Meta: map[string]string{"version": "1.9", "weight": "2"}, Weights: api.AgentWeights{Passing: 2, Warning: 1}}, api.HealthWarning)
	catReg("ext-b", "10.1.0.2", extB, nil, &api.AgentService{ID: "db-b1", Service: "db", Port: 5432,
		Tags: []string{"replica"}, Meta: map[string]string{"role": "replica", "lag": "12"}}, api.HealthPassing)
	catReg("ext-c", "10.1.0.3", nil, nil, &api.AgentService{ID: "api-c1", Service: "api", Port: 9002,
		Tags: []string{"canary"}, Meta: map[string]string{"version": "3.0-rc1", "weight": "10"}}, api.HealthPassing)
	catReg("ext-c", "10.1.0.3", nil, nil, &api.AgentService{ID: "metrics-c1", Service: "node-exporter", Port: 9100,
		Tags: []string{"metrics"}, Meta: map[string]string{"metrics_path": "/metrics", "job": "node"}}, api.HealthPassing)
	for k, v := range map[string]string{"app/config/mode": "fast", "app/config/size": "3", "app/config/nested/deep": "x",
		"app/json": `{"name":"n","list":[1,2,3]}`, "app/other/a": "1",
		"app/empty": "", "app/yaml": "a: 1\nb: [x, y]\nc:\n  d: true\n", "app/html": "<b>&amp;</b>",
		"env/prod/DATABASE_URL": "postgres://db:5432/app", "env/prod/LOG_LEVEL": "info", "env/prod/feature.flags": "a,b",
		"proxy/routes/customers": "/customers", "proxy/routes/sales": "/sales", "proxy/timeouts/connect": "5s", "proxy/timeouts/read": "60s",
		"proxy/maintenance": "false", "nginx/extra/": "",
		"prom/scrape_interval": "15s", "prom/labels/env": "prod", "prom/labels/region": "eu"} {
		if _, err := c.KV().Put(&api.KVPair{Key: k, Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("COMPAT_ENV", "from-env")

	sources, err := filepath.Glob("testdata/compat/*.ctmpl")
	if err != nil || len(sources) == 0 {
		t.Fatalf("no compat templates: %v", err)
	}
	for _, src := range sources {
		t.Run(filepath.Base(src), func(t *testing.T) {
			dir := t.TempDir()
			ctOut, apOut := filepath.Join(dir, "ct.out"), filepath.Join(dir, "ap.out")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, ct, "-once", "-consul-addr", agent.HTTPAddr, "-template", src+":"+ctOut)
			cmd.Env = append(os.Environ(), "CONSUL_HTTP_TOKEN=")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("consul-template: %v\n%s", err, out)
			}

			client, err := consul.NewClient(agent.HTTPAddr)
			if err != nil {
				t.Fatal(err)
			}
			w := consul.NewWatcher(ctx, client, consul.WatchOptions{}, zerolog.Nop())
			defer w.Close()
			r, err := NewRunner(w, []Config{{Source: src, Destination: apOut}}, RunnerOptions{Log: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Once(ctx); err != nil {
				t.Fatal(err)
			}
			want, got := readFile(t, ctOut), readFile(t, apOut)
			if got != want {
				t.Fatalf("autopilot output differs from consul-template's:\n%s", UnifiedDiff("consul-template", "autopilot", []byte(want), []byte(got)))
			}
			if strings.TrimSpace(got) == "" {
				t.Fatal("empty output: the template exercises nothing")
			}
		})
	}

	// Templates consul-template refuses must fail here too, writing nothing.
	bad, _ := filepath.Glob("testdata/compat-errors/*.ctmpl")
	for _, src := range bad {
		t.Run("error/"+filepath.Base(src), func(t *testing.T) {
			dir := t.TempDir()
			ctOut, apOut := filepath.Join(dir, "ct.out"), filepath.Join(dir, "ap.out")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// unsupported-*: Vault, Nomad and Connect calls, which
			// consul-template would wait on (no Vault here) rather than refuse.
			if !strings.HasPrefix(filepath.Base(src), "unsupported-") {
				cmd := exec.CommandContext(ctx, ct, "-once", "-consul-addr", agent.HTTPAddr, "-template", src+":"+ctOut)
				cmd.Env = append(os.Environ(), "CONSUL_HTTP_TOKEN=")
				if out, err := cmd.CombinedOutput(); err == nil {
					t.Fatalf("consul-template accepted %s:\n%s", src, out)
				}
			}
			client, err := consul.NewClient(agent.HTTPAddr)
			if err != nil {
				t.Fatal(err)
			}
			w := consul.NewWatcher(ctx, client, consul.WatchOptions{}, zerolog.Nop())
			defer w.Close()
			r, err := NewRunner(w, []Config{{Source: src, Destination: apOut}}, RunnerOptions{Log: zerolog.Nop()})
			if err == nil {
				err = r.Once(ctx)
			}
			if err == nil {
				t.Fatal("autopilot accepted it")
			}
			if !strings.Contains(err.Error(), src+":") {
				t.Errorf("error %q does not name %s with a position", err, src)
			}
			if strings.HasPrefix(filepath.Base(src), "unsupported-") && !strings.Contains(err.Error(), "not supported by autopilot") {
				t.Errorf("error %q does not say why", err)
			}
			t.Logf("autopilot: %v", err)
			for _, p := range []string{ctOut, apOut} {
				if _, err := os.Stat(p); !os.IsNotExist(err) {
					t.Errorf("%s was written", p)
				}
			}
		})
	}
}

// TestCompatCoversEveryFunction keeps the compatibility corpus honest:
// every consul-template function autopilot provides is called by at least
// one template in testdata/compat, so TestConsulTemplateCompat compares it.
func TestCompatCoversEveryFunction(t *testing.T) {
	var corpus strings.Builder
	files, _ := filepath.Glob("testdata/compat/*.ctmpl")
	for _, f := range files {
		corpus.WriteString(readFile(t, f))
	}
	names := append([]string{}, consulNames...)
	for name := range consulTemplateHelpers() {
		names = append(names, name)
	}
	word := func(name string) *regexp.Regexp {
		return regexp.MustCompile(`(^|[^A-Za-z_])` + regexp.QuoteMeta(name) + `($|[^A-Za-z_])`)
	}
	for _, name := range names {
		if !word(name).MatchString(corpus.String()) {
			t.Errorf("no template in testdata/compat calls %s", name)
		}
	}
	if len(files) < 30 {
		t.Errorf("%d compat templates, want at least 30", len(files))
	}
}
