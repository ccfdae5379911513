package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/autopilot/autopilot/internal/testenv"
)

// TestConsulTemplateTLSSideBySide runs the real consul-template v0.42.1 and
// the symlinked autopilot with the same -once command line against one
// agent that serves HTTPS and requires a client certificate, with TLS given
// as flags, as a config file's consul { ssl { } } and as CONSUL_* variables.
// Both must exit alike and leave the same files. The failing cases give
// both one retry (-consul-retry-attempts=1) and require that both gave up
// (exit 14), that nothing was written and that autopilot named the problem.
func TestConsulTemplateTLSSideBySide(t *testing.T) {
	realCT := realConsulTemplate(t)
	ourCT := filepath.Join(ctBinDir(t), "consul-template")
	files, other := testenv.NewTLSFiles(t), testenv.NewTLSFiles(t)
	agent := testenv.StartConsul(t, testenv.WithTLS(files))
	client := agent.Client(t)
	if _, err := client.KV().Put(&api.KVPair{Key: "app/port", Value: []byte("9090")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-1", Name: "web", Address: "127.0.0.1", Port: 8080,
		Check: &api.AgentServiceCheck{TTL: "10m", Status: api.HealthPassing}}); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(agent.HTTPSAddr)
	caDir := files.CADir(t)

	combined := filepath.Join(t.TempDir(), "client-combined.pem") // the client's certificate and key in one file
	{
		cert, err1 := os.ReadFile(files.ClientCert)
		key, err2 := os.ReadFile(files.ClientKey)
		if err := errors.Join(err1, err2); err != nil || os.WriteFile(combined, append(cert, key...), 0o600) != nil {
			t.Fatalf("combined pem: %v", err)
		}
	}

	const tmpl = "{{ range service \"web\" }}server {{ .Address }}:{{ .Port }}\n{{ end }}port={{ key \"app/port\" }}\n"
	tlsFlags := func(ca, cert, key string) []string {
		return []string{"-consul-ssl", "-consul-ssl-ca-cert", ca, "-consul-ssl-cert", cert, "-consul-ssl-key", key}
	}
	hcl := func(addr, ssl string) string {
		return fmt.Sprintf("consul {\n  address = %q\n  ssl {\n%s  }\n}\ntemplate {\n  source = \"web.ctmpl\"\n  destination = \"out/web.conf\"\n}\n", addr, ssl)
	}
	sslBlock := func(ca, cert, key, extra string) string {
		return fmt.Sprintf("    enabled = true\n    verify = true\n    ca_cert = %q\n    cert = %q\n    key = %q\n%s", ca, cert, key, extra)
	}
	clientEnv := func(ca string) []string {
		return []string{"CONSUL_CACERT=" + ca, "CONSUL_CLIENT_CERT=" + files.ClientCert, "CONSUL_CLIENT_KEY=" + files.ClientKey}
	}
	cases := []struct {
		name   string
		args   []string
		config string   // written to ct.hcl when set
		env    []string // added to a CONSUL_*-free environment
		fails  string   // "": both render; else what autopilot's error must name ("-": any failure)
	}{
		{name: "flags", args: append([]string{"-consul-addr", agent.HTTPSAddr}, tlsFlags(files.CAFile, files.ClientCert, files.ClientKey)...)},
		{name: "flags, localhost", args: append([]string{"-consul-addr", "localhost:" + port}, tlsFlags(files.CAFile, files.ClientCert, files.ClientKey)...)},
		{name: "flags, server name", args: append([]string{"-consul-addr", agent.HTTPSAddr, "-consul-ssl-server-name", testenv.TLSServerName}, tlsFlags(files.CAFile, files.ClientCert, files.ClientKey)...)},
		{name: "flags, ca path without -consul-ssl", args: []string{"-consul-addr", agent.HTTPSAddr, "-consul-ssl-ca-path", caDir, "-consul-ssl-cert", files.ClientCert, "-consul-ssl-key", files.ClientKey}},
		{name: "flags, no verify", args: []string{"-consul-addr", agent.HTTPSAddr, "-consul-ssl", "-consul-ssl-verify=false", "-consul-ssl-cert", files.ClientCert, "-consul-ssl-key", files.ClientKey}},
		{name: "config file", config: hcl(agent.HTTPSAddr, sslBlock(files.CAFile, files.ClientCert, files.ClientKey, fmt.Sprintf("    server_name = %q\n", testenv.TLSServerName)))},
		{name: "config file, ca_path", config: hcl(agent.HTTPSAddr, fmt.Sprintf("    ca_path = %q\n    cert = %q\n    key = %q\n", caDir, files.ClientCert, files.ClientKey))},
		{name: "env", env: append([]string{"CONSUL_HTTP_ADDR=" + agent.HTTPSAddr, "CONSUL_HTTP_SSL=true", "CONSUL_TLS_SERVER_NAME=" + testenv.TLSServerName}, clientEnv(files.CAFile)...)},
		{name: "env, https address", env: append([]string{"CONSUL_HTTP_ADDR=https://" + agent.HTTPSAddr}, clientEnv(files.CAFile)...)},
		{name: "flags, certificate and key in one file", args: []string{"-consul-addr", agent.HTTPSAddr, "-consul-ssl-ca-cert", files.CAFile, "-consul-ssl-cert", combined}},
		// Flags that turn TLS on replace the CONSUL_* TLS variables, not add to them.
		{name: "flags over env", args: append([]string{"-consul-addr", agent.HTTPSAddr}, tlsFlags(files.CAFile, files.ClientCert, files.ClientKey)...),
			env: []string{"CONSUL_CACERT=" + other.CAFile, "CONSUL_HTTP_SSL_VERIFY=false"}},
		{name: "env, no verify", env: []string{"CONSUL_HTTP_ADDR=" + agent.HTTPSAddr, "CONSUL_HTTP_SSL=true", "CONSUL_HTTP_SSL_VERIFY=false", "CONSUL_CLIENT_CERT=" + files.ClientCert, "CONSUL_CLIENT_KEY=" + files.ClientKey}},

		{name: "flags, wrong CA", args: append([]string{"-consul-addr", agent.HTTPSAddr}, tlsFlags(other.CAFile, files.ClientCert, files.ClientKey)...),
			fails: "certificate signed by unknown authority"},
		{name: "config file, wrong CA", config: hcl(agent.HTTPSAddr, sslBlock(other.CAFile, files.ClientCert, files.ClientKey, "")),
			fails: "certificate signed by unknown authority"},
		{name: "env, wrong CA", env: append([]string{"CONSUL_HTTP_ADDR=" + agent.HTTPSAddr, "CONSUL_HTTP_SSL=true"}, clientEnv(other.CAFile)...),
			fails: "certificate signed by unknown authority"},
		{name: "flags, wrong server name", args: append([]string{"-consul-addr", agent.HTTPSAddr, "-consul-ssl-server-name", "wrong.example"}, tlsFlags(files.CAFile, files.ClientCert, files.ClientKey)...),
			fails: "certificate is valid for"},
		// The agent refuses the handshake after it completed (TLS 1.3), so
		// what the client reads depends on timing; autopilot says why.
		{name: "flags, no client cert", args: []string{"-consul-addr", agent.HTTPSAddr, "-consul-ssl", "-consul-ssl-ca-cert", files.CAFile},
			fails: "no client certificate is configured"},
		{name: "flags turn TLS on, CA only in env", args: []string{"-consul-addr", agent.HTTPSAddr, "-consul-ssl", "-consul-ssl-cert", files.ClientCert, "-consul-ssl-key", files.ClientKey},
			env: []string{"CONSUL_CACERT=" + files.CAFile}, fails: "certificate signed by unknown authority"},
		{name: "flags, client cert of another CA", args: append([]string{"-consul-addr", agent.HTTPSAddr}, tlsFlags(files.CAFile, other.ClientCert, other.ClientKey)...),
			fails: "-"},
	}
	// run runs bin to its end.
	run := func(t *testing.T, bin, dir string, args, env []string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Dir = dir
		// baseEnv drops CONSUL_HTTP_*; the other variables consul/api reads are cleared here.
		cmd.Env = append(baseEnv(), "CONSUL_CACERT=", "CONSUL_CAPATH=", "CONSUL_CLIENT_CERT=", "CONSUL_CLIENT_KEY=", "CONSUL_TLS_SERVER_NAME=")
		cmd.Env = append(cmd.Env, env...)
		var stderr testenv.Buffer
		cmd.Stderr = &stderr
		cmd.Run() //nolint:errcheck // the exit code is the result
		if ctx.Err() != nil {
			t.Fatalf("%s %q: timed out\n%s", bin, args, stderr.String())
		}
		return testenv.ExitCode(cmd), stderr.String()
	}
	setup := func(t *testing.T, config string) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "web.ctmpl"), []byte(tmpl), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(dir, "out"), 0o755); err != nil {
			t.Fatal(err)
		}
		if config != "" {
			if err := os.WriteFile(filepath.Join(dir, "ct.hcl"), []byte(config), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"-once"}, tc.args...), "-template", "web.ctmpl:out/web.conf")
			if tc.config != "" {
				args = []string{"-once", "-config", "ct.hcl"}
			}
			if tc.fails != "" {
				// Both give up after one retry (exit 14) instead of
				// retrying for minutes.
				args = append(args, "-consul-retry-attempts=1", "-consul-retry-backoff=10ms", "-consul-retry-max-backoff=20ms")
			}
			realDir, ourDir := setup(t, tc.config), setup(t, tc.config)
			wantCode, wantErr := run(t, realCT, realDir, args, tc.env)
			gotCode, gotErr := run(t, ourCT, ourDir, args, tc.env)
			if gotCode != wantCode {
				t.Errorf("exit code %d, consul-template's %d\nconsul-template stderr:\n%s\nautopilot stderr:\n%s", gotCode, wantCode, tail(wantErr, 5), tail(gotErr, 5))
			}
			want, got := tree(t, filepath.Join(realDir, "out")), tree(t, filepath.Join(ourDir, "out"))
			if want != got {
				t.Errorf("files differ:\nconsul-template:\n%s\nautopilot:\n%s", want, got)
			}
			switch {
			case tc.fails == "" && (gotCode != 0 || !strings.Contains(got, "server 127.0.0.1:8080\nport=9090\n")):
				t.Errorf("exit %d and files:\n%s\nwant exit 0 and web.conf rendered\nautopilot stderr:\n%s", gotCode, got, tail(gotErr, 5))
			case tc.fails != "" && (gotCode != 14 || got != ""):
				t.Errorf("exit %d and files:\n%s\nwant exit 14 (retries spent) and no file", gotCode, got)
			case tc.fails != "" && tc.fails != "-" && !strings.Contains(gotErr, tc.fails):
				t.Errorf("autopilot stderr does not name %q:\n%s", tc.fails, tail(gotErr, 5))
			}
			t.Logf("exit %d; autopilot stderr: %s", gotCode, tail(gotErr, 2))
		})
	}
}

// TestSupervisorTLS runs autopilot with a ContainerPilot 3 config against an
// agent that serves HTTPS and requires a client certificate; the test checks
// Consul through the agent's plain HTTP port. With the consul { scheme, tls }
// block, or with the CONSUL_* variables, the job's service registers and
// passes, a watch fires its job and a template renders and follows a KV
// change. With a wrong CA or no client certificate, autopilot logs the
// failure, nothing is registered, and the destination that existed before
// keeps its bytes while the app runs on it.
func TestSupervisorTLS(t *testing.T) {
	files, other := testenv.NewTLSFiles(t), testenv.NewTLSFiles(t)
	agent := testenv.StartConsul(t, testenv.WithTLS(files))
	client := agent.Client(t)
	if _, err := client.KV().Put(&api.KVPair{Key: "app/port", Value: []byte("7070")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "db-1", Name: "db", Address: "127.0.0.9", Port: 5432}); err != nil {
		t.Fatal(err)
	}
	tlsBlock := func(ca, cert, key string) string {
		return fmt.Sprintf(`{ address: %q, scheme: "https", tls: { cafile: %q, clientcert: %q, clientkey: %q, servername: %q, verify: true } }`,
			agent.HTTPSAddr, ca, cert, key, testenv.TLSServerName)
	}
	envTLS := func(ca string) []string {
		return []string{"CONSUL_HTTP_SSL=true", "CONSUL_CACERT=" + ca, "CONSUL_CLIENT_CERT=" + files.ClientCert, "CONSUL_CLIENT_KEY=" + files.ClientKey}
	}
	cases := []struct {
		name   string
		consul string // the config's consul value
		env    []string
		fails  string // "": works; else what the logged error must name ("-": any error)
	}{
		{name: "tls block", consul: tlsBlock(files.CAFile, files.ClientCert, files.ClientKey)},
		{name: "env", consul: fmt.Sprintf("%q", agent.HTTPSAddr), env: envTLS(files.CAFile)},
		{name: "wrong CA", consul: tlsBlock(other.CAFile, files.ClientCert, files.ClientKey), fails: "certificate signed by unknown authority"},
		{name: "env, wrong CA", consul: fmt.Sprintf("%q", agent.HTTPSAddr), env: envTLS(other.CAFile), fails: "certificate signed by unknown authority"},
		// TLS 1.3: the agent refuses the certificate after the handshake, and
		// what the client reads then depends on timing; the log says why.
		{name: "no client cert", consul: tlsBlock(files.CAFile, "", ""), fails: "no client certificate is configured"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			dest, onChange := filepath.Join(dir, "out.conf"), filepath.Join(dir, "db-changed")
			const previous = "previous render\n"
			if err := os.WriteFile(dest, []byte(previous), 0o644); err != nil {
				t.Fatal(err)
			}
			tmpl := filepath.Join(dir, "out.ctmpl")
			if err := os.WriteFile(tmpl, []byte(`port={{ key "app/port" }}{{ range service "db" }} db={{ .Address }}:{{ .Port }}{{ end }}`+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg := filepath.Join(dir, "autopilot.json5")
			text := fmt.Sprintf(`{
  consul: %s,
  control: { socket: %q },
  jobs: [
    { name: "web", exec: ["sleep", "300"], port: 8080, interfaces: ["static:127.0.0.1"],
      health: { exec: "true", interval: 1, ttl: 10 } },
    { name: "on-db", exec: ["sh", "-c", "echo changed >> %s"], when: { source: "watch.db", each: "changed" } },
  ],
  watches: [ { name: "db", interval: 1 } ],
  templates: [ { source: %q, destination: %q } ],
  renderTimeout: "2s",
}`, tc.consul, filepath.Join(dir, "control.sock"), onChange, tmpl, dest)
			if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			ap := newStack(t).start("tls", cfg, tc.env, "sleep", "300")
			webStatus := func() string {
				checks, err := client.Agent().Checks()
				if err != nil {
					return "error: " + err.Error()
				}
				for _, ch := range checks {
					if ch.ServiceName == "web" {
						return ch.Status
					}
				}
				return "not registered"
			}
			read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
			if tc.fails == "" {
				testenv.Eventually(t, 20*time.Second, func() (bool, string) {
					st := webStatus()
					return st == api.HealthPassing, "web " + st
				})
				testenv.Eventually(t, 20*time.Second, func() (bool, string) {
					s := read(dest)
					return s == "port=7070 db=127.0.0.9:5432\n", "out.conf " + strconv.Quote(s)
				})
				testenv.Eventually(t, 20*time.Second, func() (bool, string) {
					s := read(onChange)
					return strings.HasPrefix(s, "changed\n"), "on-db wrote " + strconv.Quote(s)
				})
				if _, err := client.KV().Put(&api.KVPair{Key: "app/port", Value: []byte("7071")}, nil); err != nil {
					t.Fatal(err)
				}
				testenv.Eventually(t, 20*time.Second, func() (bool, string) {
					s := read(dest)
					return s == "port=7071 db=127.0.0.9:5432\n", "out.conf " + strconv.Quote(s)
				})
				if _, err := client.KV().Put(&api.KVPair{Key: "app/port", Value: []byte("7070")}, nil); err != nil {
					t.Fatal(err)
				}
				return
			}
			// The app starts on the existing file once renderTimeout is out,
			// and the service's registration is then tried and fails, twice.
			ap.appPID(t)
			testenv.Eventually(t, 20*time.Second, func() (bool, string) {
				n := 0
				for _, e := range ap.entries() {
					err, _ := e["error"].(string)
					svc, _ := e["service"].(string)
					if e.msg() == "consul agent" && strings.HasPrefix(svc, "web-") && strings.Contains(err, "https://"+agent.HTTPSAddr) &&
						(tc.fails == "-" || strings.Contains(err, tc.fails)) {
						n++
					}
				}
				return n >= 2, fmt.Sprintf("%d registration errors naming %q; log:\n%s", n, tc.fails, tail(ap.Log(), 10))
			})
			if e, ok := ap.find("registered"); ok {
				t.Errorf("logged a registration: %v", e)
			}
			if st := webStatus(); st != "not registered" {
				t.Errorf("web is %s in Consul, want not registered", st)
			}
			if got := read(dest); got != previous {
				t.Errorf("out.conf = %q, want the previous file %q kept", got, previous)
			}
			if got := read(onChange); got != "" {
				t.Errorf("on-db ran without data: %q", got)
			}
		})
	}
}
