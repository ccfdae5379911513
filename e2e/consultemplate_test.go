package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/autopilot/autopilot/internal/testenv"
)

// ctBinDir makes a directory holding `consul-template`, a symlink to the
// autopilot under test, and returns it. No real consul-template is put on
// the PATH the tests give their commands.
func ctBinDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Symlink(autopilotBin, filepath.Join(dir, "consul-template")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// httpBackend is a loopback HTTP server that names itself in every answer.
func httpBackend(t *testing.T, name string) (string, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s\n", name, r.URL.Path)
	})}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })
	return "127.0.0.1", ln.Addr().(*net.TCPAddr).Port
}

// articleTemplate is the article's nginx.conf.ctmpl, with the listen port,
// pid and temp paths made test-local through env (consul-template's env).
const articleTemplate = `# nginx.conf rendered by consul-template (the autopilot article's)
worker_processes 1;
{{ if eq (env "NGINX_USER_ROOT") "1" }}user root root;{{ end }}
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
{{ if service "customers" }}
    upstream customers {
      # write the address:port pairs for each healthy Customers node
      {{range service "customers"}}
      server {{.Address}}:{{.Port}};
      {{end}}
      least_conn;
    }
{{ end }}
    server {
        listen 127.0.0.1:{{ env "NGINX_PORT" }};
        location = /health { return 200 "ok"; }
{{ if service "customers" }}
        location ^~ /customers {
          # strip '/customers' from the request before passing
          # it along to the Customers upstream
          rewrite ^/customers(/.*)$ $1 break;
          proxy_pass http://customers;
          proxy_redirect off;
        }
{{end}}
    }
}
`

// The article's nginx ContainerPilot config runs consul-template in its
// preStart and onChange (shared/seed/nginx.containerpilot.json):
//
//	consul-template -once -consul consul:8500 -template SRC:DEST
//	consul-template -once -consul consul:8500 -template SRC:DEST:nginx -s reload
//
// Here those exact command lines run with autopilot behind a
// `consul-template` symlink and no consul-template installed, against a
// real Consul and a real nginx that proxies to real backends.
func TestConsulTemplateSymlinkRunsArticleNginx(t *testing.T) {
	agent := testenv.StartConsul(t)
	client := agent.Client(t)
	regBackend := func(id string) string {
		addr, port := httpBackend(t, id)
		if err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: id, Name: "customers", Address: addr, Port: port,
			Check: &api.AgentServiceCheck{TTL: "10m", Status: api.HealthPassing}}); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%s:%d", addr, port)
	}
	c1, c2 := regBackend("customers-1"), regBackend("customers-2")

	dir := t.TempDir()
	os.Chmod(dir, 0o755) //nolint:errcheck // nginx workers (as root: root) read the rendered file
	tmpl := filepath.Join(dir, "nginx.conf.ctmpl")
	dest := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(tmpl, []byte(articleTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	bin := ctBinDir(t)
	env := append(os.Environ(), "PATH="+bin+":/usr/bin:/bin", fmt.Sprintf("NGINX_PORT=%d", port), "CONSUL_HTTP_ADDR=", "CONSUL_HTTP_TOKEN=")
	if os.Geteuid() == 0 {
		env = append(env, "NGINX_USER_ROOT=1")
	}
	if p, err := lookPathIn("consul-template", bin+":/usr/bin:/bin"); err != nil || p != filepath.Join(bin, "consul-template") {
		t.Fatalf("consul-template on the test PATH is %q (%v), want only the symlink", p, err)
	}
	run := func(argv ...string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = env
		cmd.Dir = dir
		out, _ := cmd.CombinedOutput()
		return testenv.ExitCode(cmd), string(out)
	}

	// preStart, as the article's config spells it (sh looks consul-template up on PATH).
	preStart := []string{"sh", "-c", fmt.Sprintf("consul-template -once -consul %s -template %s:%s", agent.HTTPAddr, tmpl, dest)}
	if code, out := run(preStart...); code != 0 {
		t.Fatalf("preStart exited %d:\n%s", code, out)
	}
	conf := readFile(t, dest)
	for _, want := range []string{"server " + c1 + ";", "server " + c2 + ";", "location ^~ /customers"} {
		if !strings.Contains(conf, want) {
			t.Fatalf("rendered nginx.conf lacks %q:\n%s", want, conf)
		}
	}
	nginx := testenv.StartNginx(t, dest)
	prefix := filepath.Dir(nginx.LogPath)
	// `nginx -s reload`, as the article runs it, must reach this nginx: a
	// wrapper named nginx on the test PATH sends the master its SIGHUP (what
	// -s reload does through the pid file; as root testenv's nginx is init of
	// its own PID namespace, so the pid in its pid file is not ours) and
	// passes anything else to the real nginx with the test's prefix.
	wrapper := fmt.Sprintf("#!/bin/sh\nif [ \"$*\" = \"-s reload\" ]; then exec kill -HUP %d; fi\nexec /usr/sbin/nginx -p %s/ -c %s \"$@\"\n", nginx.PID(), prefix, dest)
	if err := os.WriteFile(filepath.Join(bin, "nginx"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	get := func() string {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/customers/x", port))
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		s := get()
		return strings.HasPrefix(s, "customers-"), s
	})

	// A third instance appears: onChange re-renders and runs `nginx -s reload`.
	c3 := regBackend("customers-3")
	client.Agent().ServiceDeregister("customers-1") //nolint:errcheck
	client.Agent().ServiceDeregister("customers-2") //nolint:errcheck
	onChange := []string{"sh", "-c", fmt.Sprintf("consul-template -once -consul %s -template %q", agent.HTTPAddr, tmpl+":"+dest+":nginx -s reload")}
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		code, out := run(onChange...)
		if code != 0 {
			return false, fmt.Sprintf("onChange exited %d:\n%s", code, out)
		}
		conf := readFile(t, dest)
		return strings.Contains(conf, "server "+c3+";") && !strings.Contains(conf, c1), conf
	})
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		s := get()
		return strings.HasPrefix(s, "customers-3 /x"), "nginx answered " + s + "\n" + tail(readFile(t, nginx.LogPath), 10)
	})
}

func lookPathIn(name, path string) (string, error) {
	for _, d := range filepath.SplitList(path) {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// realConsulTemplate finds consul-template v0.42.1 for side-by-side runs.
func realConsulTemplate(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CONSUL_TEMPLATE_BIN"); p != "" {
		return p
	}
	home, _ := os.UserHomeDir()
	p := filepath.Join(home, ".cache", "autopilot-bench", "bin", "consul-template")
	if _, err := os.Stat(p); err != nil {
		t.Skip("no consul-template binary: run scripts/consul-template-bin.sh or set CONSUL_TEMPLATE_BIN")
	}
	return p
}

// TestConsulTemplateSideBySide gives the real consul-template v0.42.1 and
// autopilot-as-consul-template the same flags and config files against one
// live agent and requires the same exit code and the same files (contents
// and modes), and for -dry the same stdout.
func TestConsulTemplateSideBySide(t *testing.T) {
	realCT := realConsulTemplate(t)
	agent := testenv.StartConsul(t)
	client := agent.Client(t)
	for i, addr := range []string{"127.0.0.1", "127.0.0.2"} {
		if err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: fmt.Sprintf("web-%d", i), Name: "web", Address: addr, Port: 8080 + i,
			Tags: []string{"v1"}, Meta: map[string]string{"zone": "a"}, Check: &api.AgentServiceCheck{TTL: "10m", Status: api.HealthPassing}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.KV().Put(&api.KVPair{Key: "app/port", Value: []byte("9090")}, nil); err != nil {
		t.Fatal(err)
	}
	ourCT := filepath.Join(ctBinDir(t), "consul-template")
	for k, v := range map[string]string{"AP_ENV_FOO": "bar", "AP_ENV_FOO2": "x", "AP_ENV_BAR": "1"} {
		t.Setenv(k, v)
	}

	const tmplText = `{{ range service "web" }}server {{ .Address }}:{{ .Port }} {{ .ServiceMeta.zone }}{{ .ServiceMeta.absent }}
{{ end }}port={{ key "app/port" }}
`
	files := map[string]string{
		"web.ctmpl":    tmplText,
		"bad.ctmpl":    "{{ range service \"web\" }}\n",
		"exec.ctmpl":   `{{ key "app/port" }}`,
		"delims.ctmpl": `[[ key "app/port" ]] {{ literal }}`,
		"basic.hcl": `
consul { address = "CONSUL" }
max_stale = "0s"
log_level = "warn"
template {
  source      = "web.ctmpl"
  destination = "out/web.conf"
  perms       = "0600"
  command     = "touch out/ran-command"
}
template {
  contents    = "{{ key \"app/port\" }}"
  destination = "out/inline.txt"
  backup      = true
}
template {
  source          = "delims.ctmpl"
  destination     = "out/delims.txt"
  left_delimiter  = "[["
  right_delimiter = "]]"
}
`,
		"wait.hcl": `
wait { min = "10ms" max = "50ms" }
consul { address = "CONSUL" }
template {
  source = "web.ctmpl"
  destination = "out/w.conf"
  wait = "5ms:20ms"
  error_on_missing_key = false
  create_dest_dirs = true
}
`,
		"exec.hcl": `
consul { address = "CONSUL" }
template {
  source      = "exec.ctmpl"
  destination = "out/exec.txt"
}
exec {
  command      = ["sh", "-c", "cat out/exec.txt > out/seen-by-child; exit 4"]
  kill_timeout = "2s"
}
`,
		"malformed.hcl":  "template {\n  source = \"web.ctmpl\"\n  destination = \n}\n",
		"unknown.hcl":    "templat {\n  source = \"web.ctmpl\"\n}\n",
		"unknownkey.hcl": "template {\n  source = \"web.ctmpl\"\n  destinaton = \"x\"\n}\n",
		"retry.hcl": `
consul {
  address = "DEAD"
  retry {
    attempts    = 1
    backoff     = "10ms"
    max_backoff = "20ms"
  }
}
template {
  source      = "web.ctmpl"
  destination = "out/x"
}
`,
		"shared.hcl": `
consul { address = "CONSUL" }
template {
  source      = "exec.ctmpl"
  destination = "out/a.txt"
  command     = "cat out/a.txt out/b.txt >> out/log"
}
template {
  source      = "exec.ctmpl"
  destination = "out/b.txt"
  command     = "cat out/a.txt out/b.txt >> out/log"
}
`,
		"quotedbool.hcl": "template {\n  source = \"web.ctmpl\"\n  destination = \"out/x\"\n  backup = \"true\"\n}\n",
		"badretry.hcl":   "consul {\n  retry {\n    attempts = \"2\"\n  }\n}\ntemplate {\n  source = \"web.ctmpl\"\n  destination = \"out/x\"\n}\n",
		// "C" + "ONSUL_..." and [C]ONSUL below: setup replaces the word with the agent's address.
		"childenv.ctmpl": `{{ $p := "C" }}A={{ env (print $p "ONSUL_HTTP_ADDR") }} S={{ env (print $p "ONSUL_HTTP_SSL") }} V={{ env (print $p "ONSUL_HTTP_SSL_VERIFY") }} T={{ envOrDefault (print $p "ONSUL_HTTP_TOKEN") "none" }}`,
		// Each command and the child write what they got of the
		// environment (AP_ENV_* are set by the test; PWD differs by run).
		"envs.hcl": `
consul { address = "CONSUL" }
template {
  contents    = "1"
  destination = "out/t1.txt"
  command     = "loses to exec.command"
  exec {
    command = "env | grep -v ^PWD= | sort > out/t1.env"
    env {
      allowlist = ["AP_ENV_FO*", "PATH"]
      denylist  = "AP_ENV_FOO2"
      custom    = ["AP_ENV_EXTRA=1", "AP_ENV_FOO=custom"]
    }
  }
}
template {
  contents    = "2"
  destination = "out/t2.txt"
  command     = "env | grep -v ^PWD= | sort > out/t2.env"
  exec {
    env {
      pristine = true
      custom   = ["A=b"]
    }
  }
}
template {
  contents    = "3"
  destination = "out/t3.txt"
  command     = "env | grep ^AP_ENV_ | sort > out/t3.env"
}
exec {
  command = ["sh", "-c", "env | grep -e ^AP_ENV_ -e ^[C]ONSUL_ -e ^HOME= | sort > out/child.env"]
  env {
    blacklist = ["HOME"]
    whitelist = ["*"]
  }
}
`,
		"timeout.hcl": `
consul { address = "CONSUL" }
template {
  contents        = "x"
  destination     = "out/timeout.txt"
  command         = "echo never"
  command_timeout = "30s"
  exec {
    command = "sleep 5; touch out/late"
    timeout = "200ms"
  }
}
`,
		"strict.hcl": `
consul { address = "CONSUL" }
template {
  contents = "{{ with service \"web\" }}{{ with index . 0 }}{{ .ServiceMeta.absent }}{{ end }}{{ end }}"
  destination = "out/strict.txt"
  error_on_missing_key = true
}
`,
		// function_denylist and sandbox_path: a denied function fails the
		// render when called, not when merely allowed by the text; file
		// reads only what resolves (symlinks followed) inside the sandbox.
		"denied.hcl": `
consul { address = "CONSUL" }
template {
  contents          = "{{ key \"app/port\" }} {{ env \"HOME\" }}"
  destination       = "out/denied.txt"
  function_denylist = ["env"]
}
`,
		"denied-unused.hcl": `
consul { address = "CONSUL" }
template {
  source            = "web.ctmpl"
  destination       = "out/web.conf"
  function_denylist = ["env", "sprig_*", "plugin", "writeToFile", "executeTemplate"]
}
`,
		"denied-glob.hcl": `
consul { address = "CONSUL" }
template {
  contents           = "{{ key \"app/port\" }}{{ if false }}{{ secret \"x\" }}{{ end }} {{ toUpper \"a\" }}"
  destination        = "out/glob.txt"
  function_denylist  = ["secret"]
  function_blacklist = "sprig_*,plugin"
}
`,
		"denied-sprig.hcl": `
consul { address = "CONSUL" }
template {
  contents           = "{{ key \"app/port\" }} {{ sprig_upper \"a\" }}"
  destination        = "out/sprig.txt"
  function_blacklist = "env,sprig_*"
}
`,
		"sandbox.hcl": `
consul { address = "CONSUL" }
template {
  contents     = "{{ file \"sandbox/in.txt\" }}{{ file \"sandbox/sub/../link-in\" }}{{ key \"app/port\" }}"
  destination  = "out/sandboxed.txt"
  sandbox_path = "sandbox"
}
template {
  contents     = "{{ file \"HERE/sandbox/in.txt\" }}"
  destination  = "out/absolute.txt"
  sandbox_path = "HERE/sandbox/"
}
`,
		"sandbox-outside.hcl": `
consul { address = "CONSUL" }
template {
  contents     = "{{ key \"app/port\" }}{{ file \"sandbox/../secret.txt\" }}"
  destination  = "out/outside.txt"
  sandbox_path = "sandbox"
}
`,
		"sandbox-symlink.hcl": `
consul { address = "CONSUL" }
template {
  contents     = "{{ key \"app/port\" }}{{ file \"HERE/sandbox/escape\" }}"
  destination  = "out/escape.txt"
  sandbox_path = "HERE/sandbox"
}
`,
		"sandbox/in.txt":    "inside\n",
		"sandbox/sub/x.txt": "x\n",
		"secret.txt":        "secret\n",
		"denylist-bad.hcl":  "template {\n  contents = \"x\"\n  destination = \"out/x\"\n  function_denylist = [1]\n}\n",
	}
	// links are symlinks made next to the files: one leaving the sandbox,
	// one that stays inside it.
	links := map[string]string{
		"sandbox/escape":  "../secret.txt",
		"sandbox/link-in": "in.txt",
	}
	cases := []struct {
		name string
		args []string
	}{
		{"once", []string{"-once", "-consul-addr", "CONSUL", "-template", "web.ctmpl:out/web.conf"}},
		{"once with command", []string{"-once", "-consul-addr", "CONSUL", "-template", "web.ctmpl:out/web.conf:touch out/marker && echo ok > out/marker2"}},
		{"two templates", []string{"-once", "-consul-addr", "CONSUL", "-template", "web.ctmpl:out/a.conf", "-template", "exec.ctmpl:out/b.txt"}},
		// consul-template runs a command that several templates rendered in
		// one pass share once, after all of them are written (templates on
		// the same data render in one pass): the log has both files, once.
		{"shared command", []string{"-once", "-consul-addr", "CONSUL", "-template", "exec.ctmpl:out/a.txt:sh -c 'cat out/a.txt out/b.txt >> out/log'",
			"-template", "exec.ctmpl:out/b.txt:sh -c 'cat out/a.txt out/b.txt >> out/log'", "-template", "exec.ctmpl:out/c.txt:sh -c 'echo other >> out/log2'"}},
		{"shared command in a config file", []string{"-once", "-config", "shared.hcl"}},
		{"failing command", []string{"-once", "-consul-addr", "CONSUL", "-template", "web.ctmpl:out/web.conf:false"}},
		{"dry", []string{"-once", "-dry", "-consul-addr", "CONSUL", "-template", "web.ctmpl:out/web.conf"}},
		{"missing template file", []string{"-once", "-consul-addr", "CONSUL", "-template", "nosuch.ctmpl:out/x"}},
		{"bad template", []string{"-once", "-consul-addr", "CONSUL", "-template", "bad.ctmpl:out/x"}},
		{"empty -template", []string{"-once", "-consul-addr", "CONSUL", "-template", ""}},
		{"unknown flag", []string{"-once", "-consul-adr", "CONSUL"}},
		{"bad -wait", []string{"-once", "-wait", "soon", "-consul-addr", "CONSUL", "-template", "web.ctmpl:out/x"}},
		{"extra args", []string{"-once", "-consul-addr", "CONSUL", "-template", "web.ctmpl:out/x", "extra"}},
		{"exec exit code", []string{"-once", "-consul-addr", "CONSUL", "-template", "exec.ctmpl:out/e.txt", "-exec", "sh -c 'exit 3'"}},
		{"config file", []string{"-once", "-config", "basic.hcl"}},
		{"config file and flags", []string{"-once", "-config", "wait.hcl", "-template", "exec.ctmpl:out/flag.txt", "-consul-addr", "CONSUL"}},
		{"config dir", []string{"-once", "-config", "confdir"}},
		{"exec block exit code", []string{"-once", "-config", "exec.hcl"}},
		{"malformed HCL", []string{"-once", "-config", "malformed.hcl"}},
		{"unknown block", []string{"-once", "-config", "unknown.hcl"}},
		{"unknown key", []string{"-once", "-config", "unknownkey.hcl"}},
		{"missing config file", []string{"-once", "-config", "nosuch.hcl"}},
		{"strict missing key", []string{"-once", "-config", "strict.hcl"}},
		// What commands, the child and the env function get: consul-template's
		// CONSUL_HTTP_* settings over ours (runIn empties CONSUL_HTTP_ADDR),
		// and each exec's env block.
		{"child environment", []string{"-once", "-consul-addr", "CONSUL", "-consul-token", "anonymous", "-template",
			"childenv.ctmpl:out/childenv.txt:env | grep -e ^[C]ONSUL_ -e ^VAULT_ | sort > out/cmd.env"}},
		{"exec env blocks and flags", []string{"-once", "-config", "envs.hcl", "-exec-env-custom", "AP_ENV_Z=1", "-exec-env-denylist", "AP_ENV_BAR"}},
		{"pristine exec child", []string{"-once", "-consul-addr", "CONSUL", "-template", "exec.ctmpl:out/e.txt", "-exec-env-pristine",
			"-exec-env-custom", "PATH=/usr/bin:/bin", "-exec", "sh -c 'env | grep -v ^PWD= | sort > out/child.env'"}},
		{"template exec timeout", []string{"-once", "-config", "timeout.hcl"}},
		{"exec settings without a command", []string{"-once", "-consul-addr", "CONSUL", "-template", "exec.ctmpl:out/e.txt", "-exec-kill-timeout", "2s", "-exec-env-pristine"}},
		// Consul unreachable (DEAD is a closed loopback port): both give
		// up once the retries are spent, with or without -once, and write
		// nothing.
		{"retries spent", []string{"-once", "-consul-addr", "DEAD", "-consul-retry-attempts", "2", "-consul-retry-backoff", "10ms", "-consul-retry-max-backoff", "20ms", "-template", "web.ctmpl:out/x"}},
		{"retries spent without -once", []string{"-consul-addr", "DEAD", "-consul-retry-attempts", "3", "-consul-retry-backoff", "5ms", "-template", "web.ctmpl:out/x"}},
		{"retry disabled", []string{"-once", "-consul-addr", "DEAD", "-consul-retry=false", "-template", "web.ctmpl:out/x"}},
		{"retry block", []string{"-once", "-config", "retry.hcl"}},
		{"quoted boolean", []string{"-once", "-consul-addr", "CONSUL", "-config", "quotedbool.hcl"}},
		{"quoted retry attempts", []string{"-once", "-config", "badretry.hcl", "-consul-addr", "DEAD"}},
		{"bad -consul-retry-attempts", []string{"-once", "-consul-addr", "DEAD", "-consul-retry-attempts", "x", "-template", "web.ctmpl:out/x"}},
		{"denied function called", []string{"-once", "-config", "denied.hcl"}},
		{"denied functions not called", []string{"-once", "-config", "denied-unused.hcl"}},
		{"denylist globs and old name", []string{"-once", "-config", "denied-glob.hcl"}},
		{"denylist glob called", []string{"-once", "-config", "denied-sprig.hcl"}},
		{"denylist of numbers", []string{"-once", "-config", "denylist-bad.hcl"}},
		{"sandbox allows inside", []string{"-once", "-config", "sandbox.hcl"}},
		{"sandbox refuses outside", []string{"-once", "-config", "sandbox-outside.hcl"}},
		{"sandbox refuses a symlink out", []string{"-once", "-config", "sandbox-symlink.hcl"}},
	}
	// A closed loopback port: nothing listens on port 1.
	const dead = "127.0.0.1:1"
	setup := func(t *testing.T) string {
		dir := t.TempDir()
		for name, text := range files {
			text = strings.NewReplacer("CONSUL", agent.HTTPAddr, "DEAD", dead, "HERE", dir).Replace(text)
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for name, target := range links {
			if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
		os.Mkdir(filepath.Join(dir, "out"), 0o755)                                                                                                                //nolint:errcheck
		os.Mkdir(filepath.Join(dir, "confdir"), 0o755)                                                                                                            //nolint:errcheck
		os.WriteFile(filepath.Join(dir, "confdir", "1-consul.hcl"), []byte(fmt.Sprintf("consul {\n address = %q\n}\n", agent.HTTPAddr)), 0o644)                   //nolint:errcheck
		os.WriteFile(filepath.Join(dir, "confdir", "2-template.hcl"), []byte("template {\n source = \"web.ctmpl\"\n destination = \"out/dir.conf\"\n}\n"), 0o644) //nolint:errcheck
		return dir
	}
	runIn := func(bin, dir string, args []string) (int, string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		a := make([]string, len(args))
		for i, s := range args {
			a[i] = strings.ReplaceAll(strings.ReplaceAll(s, "CONSUL", agent.HTTPAddr), "DEAD", dead)
		}
		cmd := exec.CommandContext(ctx, bin, a...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CONSUL_HTTP_ADDR=", "CONSUL_HTTP_TOKEN=")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Run()
		if ctx.Err() != nil {
			t.Fatalf("%s %q: timed out", bin, a)
		}
		return testenv.ExitCode(cmd), stdout.String(), stderr.String()
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			realDir, ourDir := setup(t), setup(t)
			wantCode, wantOut, wantErr := runIn(realCT, realDir, tc.args)
			gotCode, gotOut, gotErr := runIn(ourCT, ourDir, tc.args)
			if gotCode != wantCode {
				t.Errorf("exit code %d, consul-template's %d\nconsul-template stderr:\n%s\nautopilot stderr:\n%s", gotCode, wantCode, tail(wantErr, 5), tail(gotErr, 5))
			}
			if strings.Contains(strings.Join(tc.args, " "), "-dry") && gotOut != wantOut {
				t.Errorf("stdout differs:\nconsul-template:\n%s\nautopilot:\n%s", wantOut, gotOut)
			}
			want, got := tree(t, filepath.Join(realDir, "out")), tree(t, filepath.Join(ourDir, "out"))
			if want != got {
				t.Errorf("files differ:\nconsul-template:\n%s\nautopilot:\n%s", want, got)
			}
			t.Logf("exit %d; autopilot stderr: %s", gotCode, tail(gotErr, 3))
		})
	}
	// `autopilot render -config` reads the same files to the same result
	// (its own exit codes: 0, 1 for a failed render, 2 for bad usage).
	for _, cfg := range []string{"basic.hcl", "wait.hcl", "confdir"} {
		t.Run("autopilot render -config "+cfg, func(t *testing.T) {
			realDir, ourDir := setup(t), setup(t)
			wantCode, _, wantErr := runIn(realCT, realDir, []string{"-once", "-config", cfg})
			gotCode, _, gotErr := runIn(autopilotBin, ourDir, []string{"render", "-once", "-config", cfg})
			if wantCode != 0 || gotCode != 0 {
				t.Fatalf("exit codes: consul-template %d, autopilot render %d\n%s\n%s", wantCode, gotCode, tail(wantErr, 5), tail(gotErr, 5))
			}
			if want, got := tree(t, filepath.Join(realDir, "out")), tree(t, filepath.Join(ourDir, "out")); want != got {
				t.Errorf("files differ:\nconsul-template:\n%s\nautopilot render:\n%s", want, got)
			}
		})
	}
}

// tree lists a directory's files with their modes and contents.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error { //nolint:errcheck
		if err != nil || fi.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		data, _ := os.ReadFile(p)
		fmt.Fprintf(&b, "%s %v\n%s\n", rel, fi.Mode().Perm(), data)
		return nil
	})
	return b.String()
}

// Without -once the symlinked consul-template keeps rendering: the reload
// signal re-reads its config files (a new template block takes effect), a
// KV change re-renders, and SIGTERM ends it with consul-template's
// interrupt code (12).
func TestConsulTemplateReloadSignalAndTerm(t *testing.T) {
	agent := testenv.StartConsul(t)
	kv := agent.Client(t).KV()
	if _, err := kv.Put(&api.KVPair{Key: "k", Value: []byte("one")}, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ct.hcl")
	conf := func(dest string) {
		text := fmt.Sprintf("consul { address = %q }\ntemplate {\n  contents = \"{{ key \\\"k\\\" }}\"\n  destination = %q\n}\n", agent.HTTPAddr, filepath.Join(dir, dest))
		if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf("first.txt")
	var stderr testenv.Buffer
	cmd := exec.Command(filepath.Join(ctBinDir(t), "consul-template"), "-config", cfg, "-log-level", "debug")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() }) //nolint:errcheck
	read := func(name string) string { b, _ := os.ReadFile(filepath.Join(dir, name)); return string(b) }
	testenv.Eventually(t, 15*time.Second, func() (bool, string) { return read("first.txt") == "one", stderr.String() })
	if _, err := kv.Put(&api.KVPair{Key: "k", Value: []byte("two")}, nil); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 15*time.Second, func() (bool, string) { return read("first.txt") == "two", stderr.String() })

	conf("second.txt")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 15*time.Second, func() (bool, string) { return read("second.txt") == "two", stderr.String() })

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if code := testenv.ExitCode(cmd); code != 12 {
			t.Fatalf("exit %d after SIGTERM, want 12\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10s after SIGTERM\n%s", stderr.String())
	}
}

// TestConsulTemplateExecRestartsOncePerChange: with -exec and no reload
// signal, consul-template restarts its child once per pass, however many
// templates the change re-rendered. The real consul-template and the
// symlink run side by side with two templates on one key; three changes
// must give each child exactly four starts.
func TestConsulTemplateExecRestartsOncePerChange(t *testing.T) {
	realCT := realConsulTemplate(t)
	ourCT := filepath.Join(ctBinDir(t), "consul-template")
	agent := testenv.StartConsul(t)
	kv := agent.Client(t).KV()
	put := func(v string) {
		t.Helper()
		if _, err := kv.Put(&api.KVPair{Key: "e", Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	put("v0")
	type run struct {
		dir    string
		cmd    *exec.Cmd
		stderr *testenv.Buffer
	}
	start := func(bin string) *run {
		dir := t.TempDir()
		child := "echo start >> starts; trap 'exit 0' INT TERM; while :; do sleep 0.05; done"
		r := &run{dir: dir, stderr: &testenv.Buffer{}}
		r.cmd = exec.Command(bin, "-consul-addr", agent.HTTPAddr, "-template", "in.ctmpl:a.txt", "-template", "in.ctmpl:b.txt",
			"-exec", "sh -c \""+child+"\"", "-exec-kill-timeout", "2s", "-log-level", "info")
		r.cmd.Dir, r.cmd.Stderr = dir, r.stderr
		r.cmd.Env = append(os.Environ(), "CONSUL_HTTP_ADDR=", "CONSUL_HTTP_TOKEN=")
		if err := os.WriteFile(filepath.Join(dir, "in.ctmpl"), []byte(`{{ key "e" }}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := r.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.cmd.Process.Kill(); r.cmd.Wait() }) //nolint:errcheck
		return r
	}
	read := func(r *run, name string) string { b, _ := os.ReadFile(filepath.Join(r.dir, name)); return string(b) }
	starts := func(r *run) int { return strings.Count(read(r, "starts"), "start") }
	runs := []*run{start(realCT), start(ourCT)}
	for i := 0; i <= 3; i++ {
		v := fmt.Sprintf("v%d", i)
		if i > 0 {
			put(v)
		}
		for _, r := range runs {
			testenv.Eventually(t, 15*time.Second, func() (bool, string) {
				return read(r, "a.txt") == v && read(r, "b.txt") == v && starts(r) >= i+1,
					fmt.Sprintf("%s: starts %d, files %q %q\n%s", r.cmd.Path, starts(r), read(r, "a.txt"), read(r, "b.txt"), tail(r.stderr.String(), 5))
			})
		}
	}
	for _, r := range runs {
		if err := r.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		r.cmd.Wait() //nolint:errcheck // the child's exit code
	}
	if want, got := starts(runs[0]), starts(runs[1]); want != 4 || got != 4 {
		t.Errorf("child starts over three changes: consul-template %d, autopilot %d; want 4 each", want, got)
	}
	if n := strings.Count(runs[1].stderr.String(), "child started"); n != 4 {
		t.Errorf("autopilot started its child %d times, want 4:\n%s", n, runs[1].stderr.String())
	}
}

// TestConsulTemplateWatchModeErrorsSideBySide: without -once, consul-template
// exits 14 when a template fails to execute (unless error_fatal = false,
// when it logs and renders again on the next change) and when a command
// fails; the symlink does the same, against the same agent and data.
func TestConsulTemplateWatchModeErrorsSideBySide(t *testing.T) {
	realCT := realConsulTemplate(t)
	ourCT := filepath.Join(ctBinDir(t), "consul-template")
	agent := testenv.StartConsul(t)
	kv := agent.Client(t).KV()
	const tmpl = `{{ with parseJSON (key "KEY") }}{{ .a }}{{ end }}`
	cases := []struct {
		name     string
		args     []string // KEY, ADDR and DIR are replaced
		bad      string   // the value that makes the render fail
		wantExit bool     // both exit 14; else both keep rendering
	}{
		{"template error", []string{"-template", "DIR/t.ctmpl:DIR/out"}, "notjson", true},
		{"template error with -template-error-fatal=false", []string{"-template-error-fatal=false", "-template", "DIR/t.ctmpl:DIR/out"}, "notjson", false},
		{"template error with error_fatal = false", []string{"-config", "DIR/nonfatal.hcl"}, "notjson", false},
		{"failing command", []string{"-template", "DIR/t.ctmpl:DIR/out:grep -qv 9 DIR/out"}, `{"a":9}`, true},
	}
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for bi, bin := range []string{realCT, ourCT} {
				key := fmt.Sprintf("watch/%d/%d", ci, bi)
				if _, err := kv.Put(&api.KVPair{Key: key, Value: []byte(`{"a":1}`)}, nil); err != nil {
					t.Fatal(err)
				}
				dir := t.TempDir()
				os.WriteFile(filepath.Join(dir, "t.ctmpl"), []byte(strings.ReplaceAll(tmpl, "KEY", key)), 0o644) //nolint:errcheck
				nonfatal := fmt.Sprintf("template {\n  source = %q\n  destination = %q\n  error_fatal = false\n}\n", filepath.Join(dir, "t.ctmpl"), filepath.Join(dir, "out"))
				os.WriteFile(filepath.Join(dir, "nonfatal.hcl"), []byte(nonfatal), 0o644) //nolint:errcheck
				args := append([]string{"-consul-addr", agent.HTTPAddr}, tc.args...)
				for i := range args {
					args[i] = strings.ReplaceAll(args[i], "DIR", dir)
				}
				var stderr testenv.Buffer
				cmd := exec.Command(bin, args...)
				cmd.Stderr = &stderr
				cmd.Env = append(os.Environ(), "CONSUL_HTTP_ADDR=", "CONSUL_HTTP_TOKEN=")
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				exited := make(chan struct{})
				go func() { cmd.Wait(); close(exited) }()          //nolint:errcheck
				t.Cleanup(func() { cmd.Process.Kill(); <-exited }) //nolint:errcheck
				read := func() string { b, _ := os.ReadFile(filepath.Join(dir, "out")); return string(b) }
				testenv.Eventually(t, 15*time.Second, func() (bool, string) { return read() == "1", stderr.String() })
				if _, err := kv.Put(&api.KVPair{Key: key, Value: []byte(tc.bad)}, nil); err != nil {
					t.Fatal(err)
				}
				if tc.wantExit {
					select {
					case <-exited:
						if code := testenv.ExitCode(cmd); code != 14 {
							t.Errorf("%s: exit %d, want 14\n%s", bin, code, tail(stderr.String(), 5))
						}
					case <-time.After(15 * time.Second):
						t.Errorf("%s: still running 15s after the failure\n%s", bin, tail(stderr.String(), 5))
					}
					continue
				}
				// Still rendering: the next good value reaches the file.
				if _, err := kv.Put(&api.KVPair{Key: key, Value: []byte(`{"a":2}`)}, nil); err != nil {
					t.Fatal(err)
				}
				testenv.Eventually(t, 15*time.Second, func() (bool, string) { return read() == "2", stderr.String() })
				cmd.Process.Signal(syscall.SIGINT) //nolint:errcheck
				select {
				case <-exited:
					if code := testenv.ExitCode(cmd); code != 12 {
						t.Errorf("%s: exit %d after SIGINT, want 12", bin, code)
					}
				case <-time.After(15 * time.Second):
					t.Errorf("%s: still running 15s after SIGINT", bin)
				}
			}
		})
	}
}
