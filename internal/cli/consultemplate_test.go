package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/autopilot/autopilot/internal/ctconfig"
	"github.com/autopilot/autopilot/internal/testenv"
)

func runCT(t *testing.T, ctx context.Context, dir string, args ...string) (int, string, string) {
	t.Helper()
	if dir != "" {
		t.Chdir(dir)
	}
	var out, errb bytes.Buffer
	code := RunAs(ctx, "/usr/local/bin/consul-template", args, &out, &errb)
	return code, out.String(), errb.String()
}

// Under the consul-template name, refusals, usage errors, a denied function
// and a file outside the sandbox exit with consul-template's codes and say
// why; nothing is written.
func TestConsulTemplateNameOffline(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("vault.ctmpl", "{{ with secret \"secret/x\" }}{{ .Data.password }}{{ end }}\n")
	write("ok.ctmpl", "{{ key \"k\" }}\n")
	write("bad.hcl", "template {\n  source = \"ok.ctmpl\"\n  destination = \"out\"\n}\nconsul {\n  namespace = \"ns\"\n}\n")
	write("deny.hcl", "template {\n  contents = \"{{ env \\\"HOME\\\" }}\"\n  destination = \"out\"\n  function_denylist = [\"env\"]\n}\n")
	write("sandbox.hcl", "template {\n  contents = \"{{ file \\\"ok.ctmpl\\\" }}\"\n  destination = \"out\"\n  sandbox_path = \"sandbox\"\n}\n")
	if err := os.Mkdir(filepath.Join(dir, "sandbox"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string
		stderrWant string
	}{
		{"version", []string{"-version"}, ctExitOK, "consul-template v0.42.1 (autopilot ", ""},
		{"help", []string{"-h"}, ctExitOK, "Usage: consul-template [options]", ""},
		{"vault flag", []string{"-vault-addr", "http://127.0.0.1:8200", "-template", "ok.ctmpl:out"}, ctExitParseFlags, "", "-vault-addr: Vault is not supported by autopilot"},
		{"vault template", []string{"-once", "-consul-addr", "127.0.0.1:1", "-template", "vault.ctmpl:out"}, ctExitRunnerError, "", "vault.ctmpl:1:9: secret: Vault is not supported by autopilot"},
		{"vault template parse-only", []string{"-parse-only", "-template", "vault.ctmpl:out"}, ctExitConfigError, "", "secret: Vault is not supported"},
		{"parse-only", []string{"-parse-only", "-template", "ok.ctmpl:out"}, ctExitOK, "", ""},
		{"refused option in a config", []string{"-once", "-config", "bad.hcl"}, ctExitConfigError, "", "bad.hcl:6:3: consul.namespace: Consul Enterprise namespaces are not supported"},
		{"denied function", []string{"-once", "-consul-addr", "127.0.0.1:1", "-config", "deny.hcl"}, ctExitRunnerError, "", "error calling env: function is disabled"},
		{"file outside the sandbox", []string{"-once", "-consul-addr", "127.0.0.1:1", "-config", "sandbox.hcl"}, ctExitRunnerError, "", "error calling file: 'ok.ctmpl' is outside of sandbox"},
		{"no templates", []string{"-once"}, ctExitConfigError, "", "no templates given"},
		{"no destination", []string{"-once", "-template", "ok.ctmpl"}, ctExitConfigError, "", "destination is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCT(t, context.Background(), dir, tt.args...)
			if code != tt.code || !strings.Contains(stdout, tt.stdout) || !strings.Contains(stderr, tt.stderrWant) {
				t.Fatalf("exit %d stdout %q stderr %q; want %d, %q, %q", code, stdout, stderr, tt.code, tt.stdout, tt.stderrWant)
			}
			if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
				t.Fatal("out was written")
			}
		})
	}
}

// execSetup starts a Consul agent holding the key k = "one" and makes a
// temporary directory with k.ctmpl (it renders k) the working directory of
// the test; put sets k, read reads a file of that directory.
func execSetup(t *testing.T) (addr string, put func(v string), read func(name string) string) {
	t.Helper()
	agent := testenv.StartConsul(t)
	kv := agent.Client(t).KV()
	put = func(v string) {
		t.Helper()
		if _, err := kv.Put(&api.KVPair{Key: "k", Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	put("one")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k.ctmpl"), []byte("{{ key \"k\" }}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	read = func(name string) string { b, _ := os.ReadFile(filepath.Join(dir, name)); return string(b) }
	return agent.HTTPAddr, put, read
}

// -exec: the child starts after the first render, gets -exec-reload-signal
// when the file changes, and the kill signal (here: ctx ends) stops it.
func TestConsulTemplateExecReloadSignal(t *testing.T) {
	addr, put, read := execSetup(t)
	child := `trap 'cat out.txt >> hups' HUP; echo started >> starts; while :; do sleep 0.05; done`
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		code, _, _ := runCT(t, ctx, "", "-consul-addr", addr, "-template", "k.ctmpl:out.txt",
			"-exec", "sh -c \""+child+"\"", "-exec-reload-signal", "SIGHUP", "-exec-kill-timeout", "2s")
		done <- code
	}()
	testenv.Eventually(t, 15*time.Second, func() (bool, string) { return read("starts") == "started\n", "starts: " + read("starts") })
	put("two")
	testenv.Eventually(t, 15*time.Second, func() (bool, string) { return read("hups") == "two\n", "hups: " + read("hups") })
	if got := read("starts"); got != "started\n" {
		t.Errorf("child restarted instead of signalled: %q", got)
	}
	cancel()
	select {
	case code := <-done:
		if code != ctExitInterrupt {
			t.Errorf("exit %d, want %d", code, ctExitInterrupt)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("consul-template did not stop")
	}
}

// `autopilot render -config` takes consul-template config files: their
// templates (contents, perms, delimiters, commands), and refuses the
// process-manager options with the way to get them.
func TestRenderConfigHCL(t *testing.T) {
	dir := t.TempDir()
	fx := write(t, dir, "data.json", fixtureJSON)
	write(t, dir, "a.ctmpl", `[[ range service "web" ]][[ .Address ]]:[[ .Port ]][[ end ]]`+"\n")
	cfg := write(t, dir, "ct.hcl", `
log_level = "warn"
template {
  source          = "`+filepath.Join(dir, "a.ctmpl")+`"
  destination     = "`+filepath.Join(dir, "out", "a.conf")+`"
  left_delimiter  = "[["
  right_delimiter = "]]"
  perms           = "0640"
  command         = "touch `+filepath.Join(dir, "ran")+`"
}
template {
  contents    = "{{ key \"app/mode\" }}"
  destination = "`+filepath.Join(dir, "b.txt")+`"
}
`)
	code, _, errs := run(t, "render", "-data", fx, "-once", "-config", cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if got := readFileT(t, filepath.Join(dir, "out", "a.conf")); got != "127.0.0.1:8001\n" {
		t.Errorf("a.conf = %q", got)
	}
	if fi, err := os.Stat(filepath.Join(dir, "out", "a.conf")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("a.conf mode: %v %v", fi, err)
	}
	if got := readFileT(t, filepath.Join(dir, "b.txt")); got != "fast" {
		t.Errorf("b.txt = %q", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err != nil {
		t.Errorf("command did not run: %v", err)
	}

	for _, tc := range []struct{ text, want string }{
		{"exec {\n  command = \"app\"\n}\n", "exec: not supported by autopilot render; run autopilot as consul-template"},
		{"reload_signal = \"SIGHUP\"\n", "reload_signal: not supported by autopilot render"},
		{"template {\n  source = \"x\"\n  destination = \"y\"\n  bogus = 1\n}\n", "bad.hcl:4:3: template.bogus: unknown option"},
		{"vault {\n}\n", "bad.hcl:1:1: vault: Vault is not supported by autopilot"},
		{"template {\n  source = \n", "bad.hcl:"},
	} {
		bad := write(t, dir, "bad.hcl", tc.text)
		code, _, errs := run(t, "render", "-data", fx, "-once", "-config", bad)
		if code != exitUsage || !strings.Contains(errs, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.text, code, errs, exitUsage, tc.want)
		}
	}
}

func readFileT(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// -exec without -exec-reload-signal: a changed file restarts the child (it
// gets the kill signal first), as consul-template does; the child's own
// exit then ends the run with its code.
func TestConsulTemplateExecRestartAndExitCode(t *testing.T) {
	addr, put, read := execSetup(t)
	// The child records each start and each SIGTERM; it exits 7 by itself
	// once the file says "three".
	child := `trap 'echo term >> terms; exit 0' TERM; cat out.txt >> starts; while :; do grep -q three out.txt && exit 7; sleep 0.05; done`
	done := make(chan int, 1)
	go func() {
		code, _, _ := runCT(t, context.Background(), "", "-consul-addr", addr, "-template", "k.ctmpl:out.txt",
			"-exec", "sh -c \""+child+"\"", "-exec-kill-timeout", "5s")
		done <- code
	}()
	testenv.Eventually(t, 15*time.Second, func() (bool, string) { return read("starts") == "one\n", "starts: " + read("starts") })
	put("two")
	testenv.Eventually(t, 15*time.Second, func() (bool, string) {
		return read("starts") == "one\ntwo\n" && read("terms") == "term\n", "starts: " + read("starts") + " terms: " + read("terms")
	})
	put("three")
	select {
	case code := <-done:
		// "three" restarts the child once more; that child sees it and exits 7.
		if code != 7 {
			t.Errorf("exit %d, want the child's 7", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the run did not end with the child")
	}
}

// As in consul-template (its SSLConfig.Finalize), any consul ssl option but
// enabled turns SSL on unless enabled is set; -consul-ssl=false keeps
// plain HTTP. Each case renders a key through a real agent's HTTPS (or, for
// the last, HTTP) port; a case that talks the wrong scheme never renders and
// runs into the deadline.
func TestConsulTemplateSSLImplied(t *testing.T) {
	files := testenv.NewTLSFiles(t)
	agent := testenv.StartConsul(t, testenv.WithTLS(files))
	if _, err := agent.Client(t).KV().Put(&api.KVPair{Key: "k", Value: []byte("over tls")}, nil); err != nil {
		t.Fatal(err)
	}
	caDir := files.CADir(t)
	client := []string{"-consul-ssl-cert", files.ClientCert, "-consul-ssl-key", files.ClientKey}
	cases := []struct {
		name string
		addr string
		args []string
	}{
		{"-consul-ssl", agent.HTTPSAddr, append([]string{"-consul-ssl", "-consul-ssl-ca-cert", files.CAFile}, client...)},
		{"ca cert implies ssl", agent.HTTPSAddr, append([]string{"-consul-ssl-ca-cert", files.CAFile}, client...)},
		{"ca path implies ssl", agent.HTTPSAddr, append([]string{"-consul-ssl-ca-path", caDir}, client...)},
		{"server name implies ssl", agent.HTTPSAddr, append([]string{"-consul-ssl-ca-cert", files.CAFile, "-consul-ssl-server-name", testenv.TLSServerName}, client...)},
		{"verify=false implies ssl", agent.HTTPSAddr, append([]string{"-consul-ssl-verify=false"}, client...)},
		{"-consul-ssl=false wins", agent.HTTPAddr, append([]string{"-consul-ssl=false", "-consul-ssl-ca-cert", files.CAFile}, client...)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CONSUL_HTTP_ADDR", "")
			t.Setenv("CONSUL_HTTP_SSL", "")
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "k.ctmpl"), []byte(`{{ key "k" }}`), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			args := append([]string{"-once", "-consul-addr", tc.addr, "-template", "k.ctmpl:out.txt"}, tc.args...)
			code, _, stderr := runCT(t, ctx, dir, args...)
			out, _ := os.ReadFile(filepath.Join(dir, "out.txt"))
			if code != ctExitOK || string(out) != "over tls" {
				t.Fatalf("exit %d, out.txt %q; want 0 and %q\nstderr:\n%s", code, out, "over tls", stderr)
			}
		})
	}
}

// TestConsulOptionsAuthAndTransport: basic auth and the transport reach
// consul/api's config as consul-template's CreateConsulClient sets them;
// auth that is off leaves CONSUL_HTTP_AUTH in force, as there.
func TestConsulOptionsAuthAndTransport(t *testing.T) {
	t.Setenv("CONSUL_HTTP_AUTH", "env-user:env-pass")
	parse := func(t *testing.T, hcl string, args ...string) ctconfig.Consul {
		t.Helper()
		c, err := ctconfig.Parse("x.hcl", []byte(hcl))
		if err != nil {
			t.Fatal(err)
		}
		fl, err := ctconfig.ParseFlags(args)
		if err != nil {
			t.Fatal(err)
		}
		c.Merge(fl.Config)
		return c.Consul
	}
	tests := []struct {
		name, hcl string
		args      []string
		auth      string // "user:pass" sent, as consul/api will send it
	}{
		{"no auth: CONSUL_HTTP_AUTH", "", nil, "env-user:env-pass"},
		{"flag", "", []string{"-consul-auth", "u:p:w"}, "u:p:w"},
		{"flag without a password", "", []string{"-consul-auth", "u"}, "u:"},
		{"block", "consul {\n  auth {\n    username = \"bu\"\n    password = \"bp\"\n  }\n}\n", nil, "bu:bp"},
		{"block enabled with nothing", "consul {\n  auth { enabled = true }\n}\n", nil, ":"},
		{"block disabled: CONSUL_HTTP_AUTH", "consul {\n  auth {\n    enabled = false\n    username = \"bu\"\n  }\n}\n", []string{"-consul-auth", "f:g"}, "env-user:env-pass"},
		{"flag over block", "consul {\n  auth {\n    username = \"bu\"\n    password = \"bp\"\n  }\n}\n", []string{"-consul-auth", "fu"}, "fu:bp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, opts, err := consulOptions(parse(t, tt.hcl, tt.args...))
			if err != nil {
				t.Fatal(err)
			}
			cfg := api.DefaultConfig()
			opts.Configure(cfg)
			if cfg.HttpAuth == nil || cfg.HttpAuth.Username+":"+cfg.HttpAuth.Password != tt.auth {
				t.Errorf("HttpAuth = %+v, want %s", cfg.HttpAuth, tt.auth)
			}
		})
	}

	// Transport: pool options on consul/api's transport, consul-template's
	// defaults for the rest, dial options on autopilot's dialer.
	_, opts, err := consulOptions(parse(t, "consul {\n  transport {\n    max_idle_conns = 4\n    idle_conn_timeout = \"1m\"\n    dial_timeout = \"7s\"\n  }\n}\n",
		"-consul-transport-disable-keep-alives", "-consul-transport-max-idle-conns-per-host", "2", "-consul-transport-tls-handshake-timeout", "3s",
		"-consul-transport-dial-keep-alive", "11s"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := api.DefaultConfig()
	opts.Configure(cfg)
	tr := cfg.Transport
	if !tr.DisableKeepAlives || tr.MaxIdleConns != 4 || tr.MaxIdleConnsPerHost != 2 || tr.IdleConnTimeout != time.Minute ||
		tr.TLSHandshakeTimeout != 3*time.Second || tr.MaxConnsPerHost != 0 {
		t.Errorf("transport %+v", tr)
	}
	if opts.DialTimeout != 7*time.Second || opts.KeepAlive != 11*time.Second {
		t.Errorf("dial timeout %v keepalive %v, want 7s and 11s", opts.DialTimeout, opts.KeepAlive)
	}
	_, opts, _ = consulOptions(ctconfig.Consul{})
	cfg = api.DefaultConfig()
	opts.Configure(cfg)
	if tr := cfg.Transport; tr.DisableKeepAlives || tr.MaxIdleConnsPerHost != 100 || tr.IdleConnTimeout != 5*time.Second ||
		tr.TLSHandshakeTimeout != 10*time.Second || opts.DialTimeout != 0 || opts.KeepAlive != 0 {
		t.Errorf("defaults: transport %+v, dial %v keepalive %v", tr, opts.DialTimeout, opts.KeepAlive)
	}
}

// TestWatchOptionsBlockQueryWait: block_query_wait is every blocking
// query's wait, consul-template's 1m when unset; 0 leaves Consul's default.
func TestWatchOptionsBlockQueryWait(t *testing.T) {
	d := func(v time.Duration) *time.Duration { return &v }
	tests := []struct {
		set  *time.Duration
		want time.Duration
	}{{nil, time.Minute}, {d(90 * time.Second), 90 * time.Second}, {d(0), 0}}
	for _, tt := range tests {
		if got := watchOptions(&ctconfig.Config{BlockQueryWait: tt.set}).WaitTime; got != tt.want {
			t.Errorf("block_query_wait %v: WaitTime %v, want %v", tt.set, got, tt.want)
		}
	}
}
