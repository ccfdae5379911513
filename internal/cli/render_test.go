package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/autopilot/autopilot/internal/haproxy"
	"github.com/autopilot/autopilot/internal/testenv"
)

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code = Run(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const fixtureJSON = `{
  "services": {
    "web": [
      {"ID": "web-1", "Node": "n1", "Address": "127.0.0.1", "Port": 8001},
      {"ID": "web-2", "Node": "n2", "Address": "127.0.0.2", "Port": 8002, "Status": "critical"}
    ]
  },
  "kv": {"app/mode": "fast"}
}`

func TestRenderDryRunFromFixture(t *testing.T) {
	dir := t.TempDir()
	fx := write(t, dir, "data.json", fixtureJSON)
	a := write(t, dir, "a.ctmpl", `{{ range service "web" }}{{ .Address }}:{{ .Port }}{{ end }} {{ key "app/mode" }}`+"\n")
	b := write(t, dir, "b.ctmpl", `{{ len (service "web|any") }}`+"\n")

	code, out, errs := run(t, "render", "-data", fx, "-once", "-dry-run", "-template", a)
	if code != 0 || out != "127.0.0.1:8001 fast\n" {
		t.Fatalf("one template: exit %d, stdout %q, stderr %s", code, out, errs)
	}
	code, out, errs = run(t, "render", "-data", fx, "-once", "-dry-run", "-template", a+":/x/a.conf", "-template", b+":/x/b.conf")
	if code != 0 || !strings.Contains(out, "> /x/a.conf\n127.0.0.1:8001 fast\n") || !strings.Contains(out, "> /x/b.conf\n2\n") {
		t.Fatalf("two templates: exit %d, stdout %q, stderr %s", code, out, errs)
	}
	if _, err := os.Stat("/x/a.conf"); err == nil {
		t.Fatal("dry-run wrote a file")
	}
}

func TestRenderDiff(t *testing.T) {
	dir := t.TempDir()
	fx := write(t, dir, "data.json", fixtureJSON)
	src := write(t, dir, "a.ctmpl", "mode {{ key \"app/mode\" }}\nsame\n")
	dest := write(t, dir, "a.conf", "mode slow\nsame\n")
	code, out, errs := run(t, "render", "-data", fx, "-once", "-diff", "-template", src+":"+dest)
	if code != 0 || !strings.Contains(out, "-mode slow\n+mode fast\n same\n") {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, out, errs)
	}
	if got, _ := os.ReadFile(dest); string(got) != "mode slow\nsame\n" {
		t.Fatalf("-diff changed the destination: %q", got)
	}
}

func TestRenderOnceWritesAndRunsCommand(t *testing.T) {
	dir := t.TempDir()
	fx := write(t, dir, "data.json", fixtureJSON)
	src := write(t, dir, "a.ctmpl", "{{ key \"app/mode\" }}\n")
	dest := filepath.Join(dir, "a.conf")
	marker := filepath.Join(dir, "touched")
	code, _, errs := run(t, "render", "-data", fx, "-once", "-template", src+":"+dest+":touch "+marker)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if got, _ := os.ReadFile(dest); string(got) != "fast\n" {
		t.Fatalf("destination = %q", got)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("command did not run: %v", err)
	}
	// Unchanged output: no write, no command.
	os.Remove(marker)
	if code, _, errs := run(t, "render", "-data", fx, "-once", "-template", src+":"+dest+":touch "+marker); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("command ran although the output did not change")
	}
}

// TestRenderBadInput: every bad input exits non-zero with a message that
// says what and where, and leaves the existing destination untouched.
func TestRenderBadInput(t *testing.T) {
	dir := t.TempDir()
	fx := write(t, dir, "data.json", fixtureJSON)
	good := write(t, dir, "good.ctmpl", "{{ key \"app/mode\" }}\n")
	notDir := write(t, dir, "plainfile", "")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"syntax error", []string{"-data", fx, "-template", write(t, dir, "syntax.ctmpl", "ok\n{{ range service \"web\" }\n")}, 1, "syntax.ctmpl:2:"},
		{"unknown function", []string{"-data", fx, "-template", write(t, dir, "fn.ctmpl", "{{ servic \"web\" }}")}, 1, `fn.ctmpl:1:4: function "servic" not defined`},
		{"missing source", []string{"-data", fx, "-template", filepath.Join(dir, "nope.ctmpl")}, 1, "nope.ctmpl: open"},
		{"unwritable destination", []string{"-data", fx, "-template", good + ":" + filepath.Join(notDir, "x.conf")}, 1, "plainfile/x.conf"},
		{"malformed fixture", []string{"-data", write(t, dir, "bad.json", "{\n  \"services\": {\n    \"web\": [ {\"Port\": \"80\"} ]\n  }\n}"), "-template", good}, 2, "bad.json:3:"},
		{"consul unreachable", []string{"-consul", fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), "-timeout", "1s", "-template", good}, 1, `timed out waiting for data:`},
		{"bad wait", []string{"-data", fx, "-wait", "soon", "-template", good}, 2, `wait "soon"`},
		{"no template", []string{"-data", fx}, 2, "no -template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := write(t, t.TempDir(), "existing.conf", "precious\n")
			args := append([]string{"render", "-once"}, tt.args...)
			for i, a := range args {
				if strings.HasSuffix(a, ".ctmpl") && !strings.Contains(a, ":") {
					args[i] = a + ":" + dest
				}
			}
			code, _, errs := run(t, args...)
			if code != tt.wantCode || !strings.Contains(errs, tt.wantErr) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit %d and %q", code, errs, tt.wantCode, tt.wantErr)
			}
			if got, _ := os.ReadFile(dest); string(got) != "precious\n" {
				t.Fatalf("destination changed to %q", got)
			}
		})
	}
}

// TestRenderSnapshotReplays captures a live agent into a fixture and checks
// the fixture renders exactly what the live agent does.
func TestRenderSnapshotReplays(t *testing.T) {
	agent := testenv.StartConsul(t)
	c := agent.Client(t)
	for i := 1; i <= 3; i++ {
		if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: fmt.Sprintf("web-%d", i), Name: "web", Port: 8000 + i, Address: "127.0.0.1",
			Tags: []string{"v1"}, Check: &api.AgentServiceCheck{TTL: "5m", Status: api.HealthPassing}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.KV().Put(&api.KVPair{Key: "app/mode", Value: []byte("live")}, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src := write(t, dir, "a.ctmpl", `{{ range service "v1.web" }}{{ .ID }} {{ .Address }}:{{ .Port }} {{ .Node }}
{{ end }}{{ key "app/mode" }} {{ range services }}{{ .Name }} {{ end }}{{ range nodes }}{{ .Node }}{{ end }}`)
	code, live, errs := run(t, "render", "-consul", agent.HTTPAddr, "-once", "-dry-run", "-template", src)
	if code != 0 || !strings.Contains(live, "web-3 127.0.0.1:8003") {
		t.Fatalf("live render: exit %d, %q, %s", code, live, errs)
	}
	snap := filepath.Join(dir, "snap.json")
	if code, _, errs := run(t, "render", "-consul", agent.HTTPAddr, "-snapshot", snap); code != 0 {
		t.Fatalf("snapshot: exit %d: %s", code, errs)
	}
	agent.Kill()
	code, replay, errs := run(t, "render", "-data", snap, "-once", "-dry-run", "-template", src)
	if code != 0 || replay != live {
		t.Fatalf("replay: exit %d\n%q\nwant the live output\n%q\n%s", code, replay, live, errs)
	}
}

// TestRenderTimeoutStopsNestedLoops: `render -once -timeout` returns at
// its timeout even when the template loops for hours, and so does a
// cancelled context (what SIGTERM does); the error names the template and
// nothing is written. Before, nested loops ignored both: only SIGKILL
// stopped them.
func TestRenderTimeoutStopsNestedLoops(t *testing.T) {
	dir := t.TempDir()
	fx := write(t, dir, "data.json", fixtureJSON)
	src := write(t, dir, "nested.ctmpl", `{{ range loop 10000 }}{{ range loop 10000 }}{{ range loop 10000 }}{{ end }}{{ end }}{{ end }}`)
	dest := filepath.Join(dir, "out")

	start := time.Now()
	code, _, errs := run(t, "render", "-data", fx, "-once", "-timeout", "500ms", "-template", src+":"+dest)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("-timeout 500ms returned after %v", took)
	}
	if code != 1 || !strings.Contains(errs, "nested.ctmpl") || !strings.Contains(errs, "canceled") {
		t.Fatalf("exit %d, stderr %s", code, errs)
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start = time.Now()
	var out, errb bytes.Buffer
	code = Run(ctx, []string{"render", "-data", fx, "-once", "-timeout", "1h", "-template", src + ":" + dest}, &out, &errb)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("cancel returned after %v", took)
	}
	if code == 0 || !strings.Contains(errb.String(), "nested.ctmpl") {
		t.Fatalf("exit %d, stderr %s", code, errb.String())
	}
	if _, err := os.Stat(dest); err == nil {
		t.Fatal("a stopped render wrote the destination")
	}
}

// TestRenderHAProxyFlags: with -haproxy-runtime a new server reaches the
// running HAProxy without a reload; with -haproxy-master a change outside
// backends reloads through the master CLI, confirmed.
func TestRenderHAProxyFlags(t *testing.T) {
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "cli-hx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	admin := filepath.Join(sockDir, "admin.sock")
	t.Setenv("HX_ADMIN", admin)
	t.Setenv("HX_PORT", fmt.Sprint(testenv.FreePort(t)))
	src := write(t, dir, "haproxy.cfg.tmpl", `global
    stats socket {{ env "HX_ADMIN" }} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend http
    bind 127.0.0.1:{{ env "HX_PORT" }}
    http-request set-header X-Mode {{ key "app/mode" }}
    default_backend web
backend web
{{- range service "web" }}
    server {{ .ID }} {{ .Address }}:{{ .Port }}
{{- end }}
`)
	fixture := func(name, mode string, ports ...int) string {
		var svcs []string
		for i, p := range ports {
			svcs = append(svcs, fmt.Sprintf(`{"ID": "web-%d", "Node": "n1", "Address": "127.0.0.1", "Port": %d}`, i+1, p))
		}
		return write(t, dir, name, fmt.Sprintf(`{"services": {"web": [%s]}, "kv": {"app/mode": %q}}`, strings.Join(svcs, ","), mode))
	}
	dest := filepath.Join(dir, "haproxy.cfg")
	// The first file, before HAProxy runs: nothing to confirm yet.
	if code, _, errs := run(t, "render", "-once", "-data", fixture("1.json", "a", 8001), "-template", src+":"+dest); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	h := testenv.StartHAProxy(t, dest)
	procs := func() string {
		out, err := h.MasterCLI("show proc")
		if err != nil {
			t.Fatal(err)
		}
		l, _, _ := strings.Cut(strings.SplitN(out, "\n", 3)[1], "0d") // "PID master N [failed: F] "
		return strings.Join(strings.Fields(l), " ")
	}
	flags := []string{"-haproxy-runtime", admin, "-haproxy-master", h.MasterSocket, "-template", src + ":" + dest}
	before := procs()
	code, _, errs := run(t, append([]string{"render", "-once", "-data", fixture("2.json", "a", 8001, 8002)}, flags...)...)
	if code != 0 || !strings.Contains(errs, "change applied without a reload") {
		t.Fatalf("server added: exit %d: %s", code, errs)
	}
	if got := procs(); got != before {
		t.Fatalf("reloaded for a new server: %q -> %q", before, got)
	}
	if !strings.Contains(runtimeServers(t, admin), "web-2 127.0.0.1 8002") {
		t.Fatalf("web-2 not running: %s", runtimeServers(t, admin))
	}
	code, _, errs = run(t, append([]string{"render", "-once", "-data", fixture("3.json", "b", 8001, 8002)}, flags...)...)
	if code != 0 || !strings.Contains(errs, "haproxy reload confirmed") {
		t.Fatalf("frontend changed: exit %d: %s", code, errs)
	}
	if got := procs(); got == before {
		t.Fatalf("no reload for a frontend change: %q", got)
	}
}

// runtimeServers is `show servers state` as "name addr port" lines.
func runtimeServers(t *testing.T, sock string) string {
	t.Helper()
	out, err := haproxy.Client{Addr: sock}.Exec(context.Background(), "show servers state")
	if err != nil {
		t.Fatal(err)
	}
	st, err := haproxy.ParseServersState(out)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, s := range st {
		lines = append(lines, fmt.Sprintf("%s %s %d", s.Name, s.Addr, s.Port))
	}
	return strings.Join(lines, "\n")
}

// TestRenderConfigRetryNotUsed: render keeps retrying Consul whatever a
// consul-template config's retry block says, and says so.
func TestRenderConfigRetryNotUsed(t *testing.T) {
	dir := t.TempDir()
	fx := write(t, dir, "data.json", fixtureJSON)
	tmpl := write(t, dir, "a.ctmpl", `{{ key "app/mode" }}`)
	cfg := write(t, dir, "ct.hcl", fmt.Sprintf("consul {\n  retry { attempts = 1 }\n}\ntemplate {\n  source = %q\n  destination = %q\n}\n", tmpl, filepath.Join(dir, "out")))
	code, _, errs := run(t, "render", "-data", fx, "-once", "-config", cfg)
	if code != 0 || !strings.Contains(errs, "consul.retry is not used by autopilot render") {
		t.Fatalf("exit %d, stderr %s", code, errs)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "out")); err != nil || string(b) != "fast" {
		t.Errorf("out = %q, %v", b, err)
	}
}
