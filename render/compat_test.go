package render

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/consul"
	"github.com/autopilot/autopilot/internal/proc"
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
	for k, v := range map[string]string{"app/config/mode": "fast", "app/config/size": "3", "app/config/nested/deep": "x",
		"app/json": `{"name":"n","list":[1,2,3]}`, "app/other/a": "1"} {
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
			r, err := NewRunner(w, []Config{{Source: src, Destination: apOut}}, RunnerOptions{Commands: &proc.Runner{}, Log: zerolog.Nop()})
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
}
