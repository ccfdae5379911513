package ctconfig

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseTemplateSpec(t *testing.T) {
	tests := []struct {
		spec                      string
		src, dest, cmd, wantError string
	}{
		{spec: "in.ctmpl", src: "in.ctmpl"},
		{spec: "in.ctmpl:out.conf", src: "in.ctmpl", dest: "out.conf"},
		{spec: "/etc/a.ctmpl:/etc/nginx/nginx.conf:nginx -s reload", src: "/etc/a.ctmpl", dest: "/etc/nginx/nginx.conf", cmd: "nginx -s reload"},
		{spec: "in:out:sh -c 'echo a:b'", src: "in", dest: "out", cmd: "sh -c 'echo a:b'"},
		{spec: "a:b:c", src: "a:b", dest: "c"},  // a one-letter source is a Windows drive to consul-template
		{spec: "a::cmd", src: "a", dest: "cmd"}, // consul-template's split drops empty fields
		{spec: `C:\in.ctmpl:D:\out`, src: `C:\in.ctmpl`, dest: `D:\out`},
		{spec: "", wantError: "empty specification"},
		{spec: "   ", wantError: "empty specification"},
		{spec: ":::", wantError: "want SRC"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParseTemplateSpec(tt.spec)
			if tt.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantError) {
					t.Fatalf("error = %v, want %q", err, tt.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cmd := strings.Join(got.Command, " ")
			if got.Source != tt.src || got.Destination != tt.dest || cmd != tt.cmd {
				t.Fatalf("got %q %q %q, want %q %q %q", got.Source, got.Destination, cmd, tt.src, tt.dest, tt.cmd)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	fl, err := ParseFlags([]string{"-once", "-consul", "consul:8500", "-template", "in:out:c d", "-template", "in2:y",
		"-wait", "2s", "-max-stale", "0s", "-kill-signal", "sigterm", "-reload-signal", "SIGUSR1", "-log-level", "err",
		"-exec", "app --flag", "-exec-reload-signal", "SIGHUP", "-exec-kill-timeout", "3s", "-config", "a.hcl", "-config", "dir",
		"-consul-token", "secret", "-consul-ssl", "-consul-ssl-verify=false", "-dry", "-consul-retry-attempts", "3",
		"-consul-retry-backoff", "1s", "-consul-retry-max-backoff", "0", "-consul-transport-dial-timeout", "5s",
		"-consul-auth", "alice:pa:ss", "-consul-transport-dial-keep-alive", "7s", "-consul-transport-disable-keep-alives",
		"-consul-transport-max-idle-conns-per-host", "9", "-consul-transport-tls-handshake-timeout", "3s"})
	if err != nil {
		t.Fatal(err)
	}
	c := fl.Config
	switch {
	case !c.Once || !c.Dry:
		t.Errorf("once %v dry %v", c.Once, c.Dry)
	case *c.Consul.Address != "consul:8500" || *c.Consul.Token != "secret" || !*c.Consul.SSL.Enabled || *c.Consul.SSL.Verify:
		t.Errorf("consul %+v", c.Consul)
	case len(c.Templates) != 2 || c.Templates[0].Command[0] != "c d" || c.Templates[1].Destination != "y":
		t.Errorf("templates %+v", c.Templates)
	case c.Wait.Min != 2*time.Second || c.Wait.Max != 8*time.Second:
		t.Errorf("wait %+v", c.Wait)
	case *c.MaxStale != 0 || *c.KillSignal != syscall.SIGTERM || *c.ReloadSignal != syscall.SIGUSR1 || *c.LogLevel != "err":
		t.Errorf("max-stale %v kill %v reload %v level %v", *c.MaxStale, *c.KillSignal, *c.ReloadSignal, *c.LogLevel)
	case c.Exec.Command[0] != "app --flag" || *c.Exec.ReloadSignal != syscall.SIGHUP || *c.Exec.KillTimeout != 3*time.Second:
		t.Errorf("exec %+v", c.Exec)
	case strings.Join(fl.ConfigPaths, ",") != "a.hcl,dir":
		t.Errorf("config paths %v", fl.ConfigPaths)
	case *c.Consul.Retry.Attempts != 3 || *c.Consul.Retry.Backoff != time.Second || *c.Consul.Retry.MaxBackoff != 0 || c.Consul.Retry.Enabled != nil:
		t.Errorf("retry %+v", c.Consul.Retry)
	case *c.Consul.Auth.Username != "alice" || *c.Consul.Auth.Password != "pa:ss" || c.Consul.Auth.Enabled != nil || !c.Consul.Auth.On():
		t.Errorf("auth %v", c.Consul.Auth)
	case *c.Consul.Transport.DialTimeout != 5*time.Second || *c.Consul.Transport.DialKeepAlive != 7*time.Second ||
		!*c.Consul.Transport.DisableKeepAlives || *c.Consul.Transport.MaxIdleConnsPerHost != 9 ||
		*c.Consul.Transport.TLSHandshakeTimeout != 3*time.Second || c.Consul.Transport.IdleConnTimeout != nil:
		t.Errorf("transport %+v", c.Consul.Transport)
	case len(c.Warnings) != 0:
		t.Errorf("warnings %v", c.Warnings)
	}
}

// TestParseAuth follows consul-template's ParseAuthConfig and
// AuthConfig.Finalize: the first colon splits, no colon leaves the
// password unset, and auth is on when a username or password is non-empty.
func TestParseAuth(t *testing.T) {
	tests := []struct {
		in         string
		user, pass string
		hasPass    bool
		on         bool
		wantError  string
	}{
		{in: "alice:s3cret", user: "alice", pass: "s3cret", hasPass: true, on: true},
		{in: "alice", user: "alice", on: true},
		{in: "alice:", user: "alice", hasPass: true, on: true},
		{in: ":s3cret", pass: "s3cret", hasPass: true, on: true},
		{in: "a:b:c", user: "a", pass: "b:c", hasPass: true, on: true},
		{in: ":", hasPass: true, on: false}, // nothing given: consul-template sends no auth
		{in: "", wantError: "auth: cannot be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a, err := ParseAuth(tt.in)
			if tt.wantError != "" {
				if !errors.Is(err, ErrAuthEmpty) || err.Error() != tt.wantError {
					t.Fatalf("error = %v, want %q", err, tt.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			user, pass := a.Credentials()
			if user != tt.user || pass != tt.pass || (a.Password != nil) != tt.hasPass || a.On() != tt.on || a.Enabled != nil {
				t.Errorf("got %q %q (password set %v) on %v, want %q %q (%v) on %v", user, pass, a.Password != nil, a.On(), tt.user, tt.pass, tt.hasPass, tt.on)
			}
		})
	}
}

// TestAuthMerge: a later layer wins field by field, as consul-template's
// AuthConfig.Merge, so `enabled = false` in a file keeps a -consul-auth
// flag from turning auth on; and printing a Config never shows a password.
func TestAuthMerge(t *testing.T) {
	file, err := Parse("x.hcl", []byte("consul {\n  auth {\n    enabled = false\n    username = \"a\"\n    password = \"file-secret\"\n  }\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if file.Consul.Auth.On() {
		t.Errorf("auth { enabled = false } is on: %v", file.Consul.Auth)
	}
	fl, err := ParseFlags([]string{"-consul-auth", "b"})
	if err != nil {
		t.Fatal(err)
	}
	file.Merge(fl.Config)
	user, pass := file.Consul.Auth.Credentials()
	if file.Consul.Auth.On() || user != "b" || pass != "file-secret" {
		t.Errorf("merged auth on %v, %q %q; want off, b, file-secret", file.Consul.Auth.On(), user, pass)
	}
	enabled := true
	file.Merge(&Config{Consul: Consul{Auth: Auth{Enabled: &enabled}}})
	if !file.Consul.Auth.On() {
		t.Error("enabled = true in a later layer did not turn auth on")
	}
	for _, s := range []string{fmt.Sprint(file.Consul), fmt.Sprintf("%+v", file.Consul), fmt.Sprintf("%v", *file)} {
		if strings.Contains(s, "file-secret") {
			t.Fatalf("password printed: %s", s)
		}
	}
}

// TestTransportApplyPool: given options are set, the rest take
// consul-template's defaults (config/transport.go).
func TestTransportApplyPool(t *testing.T) {
	var got http.Transport
	Transport{}.ApplyPool(&got)
	if got.DisableKeepAlives || got.IdleConnTimeout != 5*time.Second || got.MaxIdleConns != 0 || got.MaxIdleConnsPerHost != 100 ||
		got.MaxConnsPerHost != 0 || got.TLSHandshakeTimeout != 10*time.Second {
		t.Errorf("defaults: %+v", &got)
	}
	c, err := Parse("x.hcl", []byte(`consul {
  transport {
    dial_keep_alive         = "20s"
    dial_timeout            = "4s"
    disable_keep_alives     = true
    idle_conn_timeout       = "1m"
    max_idle_conns          = 7
    max_idle_conns_per_host = 3
    max_conns_per_host      = 2
    tls_handshake_timeout   = "2s"
  }
}
`))
	if err != nil {
		t.Fatal(err)
	}
	tr := c.Consul.Transport
	got = http.Transport{}
	tr.ApplyPool(&got)
	if !got.DisableKeepAlives || got.IdleConnTimeout != time.Minute || got.MaxIdleConns != 7 || got.MaxIdleConnsPerHost != 3 ||
		got.MaxConnsPerHost != 2 || got.TLSHandshakeTimeout != 2*time.Second {
		t.Errorf("set: %+v", &got)
	}
	if *tr.DialKeepAlive != 20*time.Second || *tr.DialTimeout != 4*time.Second {
		t.Errorf("dial options %v %v", *tr.DialKeepAlive, *tr.DialTimeout)
	}
	// A later layer (the flags) wins field by field.
	fl, err := ParseFlags([]string{"-consul-transport-max-idle-conns-per-host", "50", "-consul-transport-disable-keep-alives=false"})
	if err != nil {
		t.Fatal(err)
	}
	c.Merge(fl.Config)
	got = http.Transport{}
	c.Consul.Transport.ApplyPool(&got)
	if got.DisableKeepAlives || got.MaxIdleConnsPerHost != 50 || got.MaxIdleConns != 7 {
		t.Errorf("merged: %+v", &got)
	}
}

// TestParseJSONConsulClient: the JSON spelling of the same options, with
// and without a plain value beside the blocks (HCL's JSON parser folds a
// block that holds only blocks into a labelled item).
func TestParseJSONConsulClient(t *testing.T) {
	for _, consul := range []string{`"address": "a:1", `, ""} {
		js := `{"consul": {` + consul + `"auth": {"username": "u", "password": "p"}, "transport": {"max_idle_conns": 3, "dial_timeout": "2s"},
  "ssl": {"enabled": true, "verify": false}, "retry": {"attempts": 2}}, "block_query_wait": "2m"}`
		c, err := Parse("c.json", []byte(js))
		if err != nil {
			t.Fatal(err)
		}
		user, pass := c.Consul.Auth.Credentials()
		if !c.Consul.Auth.On() || user != "u" || pass != "p" || *c.Consul.Transport.MaxIdleConns != 3 ||
			*c.Consul.Transport.DialTimeout != 2*time.Second || c.BlockQueryWaitOrDefault() != 2*time.Minute ||
			!*c.Consul.SSL.Enabled || *c.Consul.SSL.Verify || *c.Consul.Retry.Attempts != 2 {
			t.Errorf("%s: auth %v transport %+v ssl %+v retry %+v block_query_wait %v", js, c.Consul.Auth, c.Consul.Transport,
				c.Consul.SSL, c.Consul.Retry, c.BlockQueryWaitOrDefault())
		}
	}
	// Only JSON is unfolded: in HCL a label stays an error.
	if _, err := Parse("x.json", []byte(`{"consul": {"ssl": {"bogus": true}}}`)); err == nil || !strings.Contains(err.Error(), "consul.ssl.bogus: unknown option") {
		t.Errorf("unknown key in a folded JSON block: %v", err)
	}
}

func TestBlockQueryWait(t *testing.T) {
	c, err := Parse("x.hcl", []byte("block_query_wait = \"90s\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.BlockQueryWaitOrDefault(); got != 90*time.Second || len(c.Warnings) != 0 {
		t.Errorf("block_query_wait = %v (warnings %q), want 90s", got, c.Warnings)
	}
	if got := (&Config{}).BlockQueryWaitOrDefault(); got != time.Minute {
		t.Errorf("default = %v, want consul-template's 1m", got)
	}
	c.Merge(&Config{})
	if got := c.BlockQueryWaitOrDefault(); got != 90*time.Second {
		t.Errorf("after merging an empty layer: %v", got)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-vault-addr", "http://v"}, "-vault-addr: Vault is not supported by autopilot"},
		{[]string{"-dedup"}, "-dedup: dedup mode is not supported"},
		{[]string{"-syslog", "-vault-renew-token"}, "-syslog: syslog is not supported"},
		{[]string{"-exec-env-custom", "NOEQUALS"}, `-exec-env-custom: "NOEQUALS": want NAME=VALUE`},
		{[]string{"-exec-env-pristine=maybe"}, "want true or false"},
		{[]string{"-consul-auth="}, `invalid value "" for flag -consul-auth: auth: cannot be empty`},
		{[]string{"-consul-transport-max-idle-conns-per-host", "x"}, "-consul-transport-max-idle-conns-per-host: want a whole number"},
		{[]string{"-consul-transport-max-idle-conns-per-host", "4294967296"}, "want a whole number"}, // consul-template parses 32 bits
		{[]string{"-consul-transport-dial-timeout", "soon"}, `-consul-transport-dial-timeout: "soon" is not a duration`},
		{[]string{"-consul-transport-tls-handshake-timeout", "-1s"}, "must not be negative"},
		{[]string{"-consul-transport-disable-keep-alives=maybe"}, "want true or false"},
		// Config-file only in consul-template.
		{[]string{"-consul-transport-max-conns-per-host", "3"}, "flag provided but not defined: -consul-transport-max-conns-per-host"},
		{[]string{"-block-query-wait", "1m"}, "flag provided but not defined: -block-query-wait"},
		{[]string{"-template", ""}, "empty specification"},
		{[]string{"-wait", "5s:1s"}, "max is less than min"},
		{[]string{"-wait", "1:2:3"}, "want MIN or MIN:MAX"},
		{[]string{"-wait", "-1s"}, "must not be negative"},
		{[]string{"-kill-signal", "SIGNOPE"}, `invalid signal "SIGNOPE"`},
		{[]string{"-log-level", "loud"}, `invalid log level "loud"`},
		{[]string{"-max-stale", "soon"}, "not a duration"},
		{[]string{"-template-error-fatal=maybe"}, "want true or false"},
		{[]string{"-exec", " "}, "empty command"},
		{[]string{"-once", "stray"}, "extra args"},
		{[]string{"-nope"}, "flag provided but not defined: -nope"},
		{[]string{"-consul-retry-attempts", "x"}, `invalid value "x" for flag -consul-retry-attempts: want a whole number`},
		{[]string{"-consul-retry-backoff", "soon"}, "-consul-retry-backoff: "},
		{[]string{"-consul-retry=maybe"}, "want true or false"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := ParseFlags(tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
		})
	}
}

const fullHCL = `
consul {
  address = "consul.service:8500"
  token   = "t0k"
  ssl {
    enabled = true
    verify  = false
    ca_cert = "/ca.pem"
    server_name = "consul"
  }
  retry {
    enabled  = true
    attempts = 12
    backoff  = "250ms"
  }
}
log_level     = "debug"
max_stale     = "10s"
kill_signal   = "SIGTERM"
reload_signal = "SIGUSR2"
pid_file      = "/run/ct.pid"
wait {
  min = "5s"
  max = "10s"
}
default_delimiters {
  left  = "<%"
  right = "%>"
}
exec {
  command       = ["/app", "-x"]
  reload_signal = "SIGHUP"
  kill_signal   = "SIGINT"
  kill_timeout  = "2s"
  splay         = "1s"
}
template {
  source               = "/in.ctmpl"
  destination          = "/out.conf"
  command              = "nginx -s reload"
  command_timeout      = "60s"
  perms                = 0640
  backup               = true
  wait                 = "1s:2s"
  left_delimiter       = "[["
  right_delimiter      = "]]"
  error_on_missing_key = true
  create_dest_dirs     = false
  user                 = "root"
  group                = 0
}
template {
  contents    = <<EOF
{{ key "x" }}
EOF
  destination = "/x"
  perms       = "0600"
  wait {
    min = "1s"
  }
}
`

func TestParseHCL(t *testing.T) {
	c, err := Parse("full.hcl", []byte(fullHCL))
	if err != nil {
		t.Fatal(err)
	}
	t1, t2 := c.Templates[0], c.Templates[1]
	switch {
	case *c.Consul.Address != "consul.service:8500" || *c.Consul.Token != "t0k" || !*c.Consul.SSL.Enabled || *c.Consul.SSL.Verify ||
		*c.Consul.SSL.CACert != "/ca.pem" || *c.Consul.SSL.ServerName != "consul":
		t.Errorf("consul %+v ssl %+v", c.Consul, c.Consul.SSL)
	case *c.LogLevel != "debug" || *c.MaxStale != 10*time.Second || *c.KillSignal != syscall.SIGTERM || *c.ReloadSignal != syscall.SIGUSR2 || *c.PidFile != "/run/ct.pid":
		t.Errorf("globals %+v", c)
	case c.Wait.Min != 5*time.Second || c.Wait.Max != 10*time.Second || *c.LeftDelim != "<%" || *c.RightDelim != "%>":
		t.Errorf("wait %+v delims %v %v", c.Wait, *c.LeftDelim, *c.RightDelim)
	case strings.Join(c.Exec.Command, " ") != "/app -x" || *c.Exec.ReloadSignal != syscall.SIGHUP || *c.Exec.KillSignal != syscall.SIGINT ||
		*c.Exec.KillTimeout != 2*time.Second || *c.Exec.Splay != time.Second:
		t.Errorf("exec %+v", c.Exec)
	case t1.Source != "/in.ctmpl" || t1.Destination != "/out.conf" || t1.Command[0] != "nginx -s reload" || *t1.CommandTimeout != time.Minute ||
		*t1.Perms != fs.FileMode(0o640) || !t1.Backup || t1.Wait.Min != time.Second || t1.Wait.Max != 2*time.Second ||
		t1.LeftDelim != "[[" || t1.RightDelim != "]]" || !t1.ErrorOnMissingKey || *t1.CreateDestDirs || t1.User != "root" || t1.Group != "0":
		t.Errorf("template 1 %+v", t1)
	case t2.Contents != "{{ key \"x\" }}\n" || *t2.Perms != 0o600 || t2.Wait.Min != time.Second || t2.Wait.Max != 4*time.Second:
		t.Errorf("template 2 %+v wait %+v", t2, t2.Wait)
	case t1.At != "full.hcl:37:1":
		t.Errorf("template 1 at %q", t1.At)
	case !*c.Consul.Retry.Enabled || *c.Consul.Retry.Attempts != 12 || *c.Consul.Retry.Backoff != 250*time.Millisecond || c.Consul.Retry.MaxBackoff != nil:
		t.Errorf("retry %+v", c.Consul.Retry)
	case len(c.Warnings) != 0:
		t.Errorf("warnings %q", c.Warnings)
	}
	// The same config as JSON (consul-template reads both).
	js := `{"consul": {"address": "a:1"}, "template": [{"source": "s", "destination": "d", "perms": "0644"}, {"contents": "x", "destination": "e"}]}`
	c, err = Parse("c.json", []byte(js))
	if err != nil {
		t.Fatal(err)
	}
	if *c.Consul.Address != "a:1" || len(c.Templates) != 2 || *c.Templates[0].Perms != 0o644 {
		t.Errorf("json: %+v %+v", c.Consul, c.Templates)
	}
}

func TestParseHCLErrors(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"malformed", "template {\n  source = \n}\n", "x.hcl:4:1: object expected closing RBRACE"},
		{"unclosed block", "consul {\n  address = \"a\"\n", "x.hcl:3:2: object expected closing RBRACE"},
		{"unknown block", "\n\ntempalte {\n}\n", "x.hcl:3:1: tempalte: unknown option (want one of consul, template"},
		{"unknown key", "template {\n  source = \"a\"\n  destinaton = \"b\"\n}\n", "x.hcl:3:3: template.destinaton: unknown option"},
		{"vault", "vault {\n  address = \"v\"\n}\n", "x.hcl:1:1: vault: Vault is not supported by autopilot"},
		{"nomad", "nomad {}\n", "nomad: Nomad is not supported"},
		{"dedup", "deduplicate { enabled = true }\n", "deduplicate: dedup mode is not supported"},
		{"syslog", "syslog { enabled = true }\n", "syslog: syslog is not supported"},
		{"template exec not a block", "template {\n  exec = \"x\"\n}\n", "x.hcl:2:10: template.exec: want a block"},
		{"template exec env custom", "template {\n  exec {\n    env { custom = [\"X\"] }\n  }\n}\n", `x.hcl:3:20: template.exec.env.custom: "X": want NAME=VALUE`},
		{"exec env not a block", "exec {\n  env = \"x\"\n}\n", "x.hcl:2:9: exec.env: want a block"},
		{"exec env list", "exec {\n  env { allowlist = 3 }\n}\n", "x.hcl:2:21: exec.env.allowlist: want a list of strings"},
		{"exec env list item", "exec {\n  env { denylist = [\"A\", 3] }\n}\n", "x.hcl:2:26: exec.env.denylist: want a string"},
		{"exec env pristine", "exec {\n  env { pristine = \"maybe\" }\n}\n", "exec.env.pristine: want true or false"},
		{"exec env unknown", "exec {\n  env { allow = [] }\n}\n", "x.hcl:2:9: exec.env.allow: unknown option (want one of pristine, custom, allowlist, denylist"},
		{"exec timeout", "exec {\n  timeout = 5\n}\n", "exec.timeout: want a duration string"},
		{"consul namespace", "consul {\n  namespace = \"ns\"\n}\n", "consul.namespace: Consul Enterprise namespaces"},
		{"consul auth string", "consul {\n  auth = \"u:p\"\n}\n", "x.hcl:2:10: consul.auth: want a block { enabled, username, password }"},
		{"consul auth unknown key", "consul {\n  auth {\n    user = \"u\"\n  }\n}\n", "x.hcl:3:5: consul.auth.user: unknown option (want one of enabled, username, password)"},
		{"consul auth number", "consul {\n  auth { username = 5 }\n}\n", "x.hcl:2:21: consul.auth.username: want a string"},
		{"consul auth bad enabled", "consul {\n  auth { enabled = 1 }\n}\n", "x.hcl:2:20: consul.auth.enabled: want true or false"},
		{"transport string", "consul {\n  transport = \"x\"\n}\n", "x.hcl:2:15: consul.transport: want a block"},
		{"transport unknown key", "consul {\n  transport {\n    max_conns = 1\n  }\n}\n", "x.hcl:3:5: consul.transport.max_conns: unknown option (want one of dial_keep_alive"},
		{"transport quoted count", "consul {\n  transport { max_idle_conns = \"3\" }\n}\n", "x.hcl:2:32: consul.transport.max_idle_conns: want a whole number"},
		{"transport bad duration", "consul {\n  transport { dial_timeout = \"soon\" }\n}\n", "x.hcl:2:30: consul.transport.dial_timeout: \"soon\" is not a duration"},
		{"transport number duration", "consul {\n  transport { idle_conn_timeout = 5 }\n}\n", "consul.transport.idle_conn_timeout: want a duration string"},
		{"transport bad bool", "consul {\n  transport { disable_keep_alives = \"maybe\" }\n}\n", "consul.transport.disable_keep_alives: want true or false"},
		{"block_query_wait negative", "block_query_wait = \"-1s\"\n", "x.hcl:1:20: block_query_wait: \"-1s\": a duration must not be negative"},
		{"block_query_wait number", "block_query_wait = 60\n", "x.hcl:1:20: block_query_wait: want a duration string"},
		{"label", "template \"x\" {\n}\n", "x.hcl:1:10: template: unexpected label"},
		{"bad perms", "template {\n  perms = \"rw-\"\n}\n", "x.hcl:2:11: template.perms: \"rw-\" is not an octal mode"},
		{"bad duration", "max_stale = \"soon\"\n", "x.hcl:1:13: max_stale: \"soon\" is not a duration"},
		{"number duration", "max_stale = 5\n", "max_stale: want a duration string"},
		{"bad signal", "kill_signal = \"SIGFOO\"\n", "kill_signal: invalid signal \"SIGFOO\""},
		{"bad wait", "wait {\n  min = \"10s\"\n  max = \"1s\"\n}\n", "wait: max 1s is less than min 10s"},
		{"wait unknown key", "wait {\n  mni = \"1s\"\n}\n", "x.hcl:2:3: wait.mni: unknown option"},
		{"bad bool", "template {\n  backup = \"maybe\"\n}\n", "template.backup: want true or false"},
		{"string wanted", "log_level = 3\n", "log_level: want a string"},
		{"bad log level", "log_level = \"loud\"\n", "invalid log level"},
		{"block wanted", "consul = [1]\n", "consul: want a block"},
		{"empty command", "template {\n  command = \"\"\n}\n", "template.command: empty command"},
		{"command list of numbers", "template {\n  command = [1]\n}\n", "template.command: want a string"},
		{"quoted bool", "template {\n  backup = \"true\"\n}\n", `x.hcl:2:12: template.backup: want true or false, unquoted (not "true")`},
		{"error_fatal not a bool", "template {\n  error_fatal = 1\n}\n", "x.hcl:2:17: template.error_fatal: want true or false"},
		{"bad json", "{\"consul\": [", "x.hcl:"},
		{"quoted retry attempts", "consul {\n  retry {\n    attempts = \"2\"\n  }\n}\n", "x.hcl:3:16: consul.retry.attempts: want a whole number"},
		{"retry unknown key", "consul {\n  retry { bogus = 1 }\n}\n", "x.hcl:2:11: consul.retry.bogus: unknown option"},
		{"retry bad backoff", "consul {\n  retry { backoff = \"soon\" }\n}\n", "consul.retry.backoff: \"soon\" is not a duration"},
		{"retry bad enabled", "consul {\n  retry { enabled = \"no\" }\n}\n", "consul.retry.enabled: want true or false"},
		{"denylist of numbers", "template {\n  function_denylist = [\"env\", 1]\n}\n", "x.hcl:2:31: template.function_denylist: want a string"},
		{"denylist a bool", "template {\n  function_denylist = true\n}\n", "x.hcl:2:23: template.function_denylist: want a list of strings"},
		{"blacklist a block", "template {\n  function_blacklist { x = 1 }\n}\n", "x.hcl:2:22: template.function_blacklist: want a list of strings"},
		{"sandbox_path a number", "template {\n  sandbox_path = 1\n}\n", "x.hcl:2:18: template.sandbox_path: want a string"},
		{"sandbox_path a list", "template {\n  sandbox_path = [\"/s\"]\n}\n", "x.hcl:2:18: template.sandbox_path: want a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("x.hcl", []byte(tt.text))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestParseHCLDenylistAndSandbox: function_denylist takes a list or, as
// consul-template's decoder allows, a comma-separated string; the old name
// function_blacklist and a key given twice add to it.
func TestParseHCLDenylistAndSandbox(t *testing.T) {
	tests := []struct {
		name, text  string
		wantDeny    []string
		wantSandbox string
	}{
		{"list", `function_denylist = ["env", "sprig_*"]`, []string{"env", "sprig_*"}, ""},
		{"comma string", `function_denylist = "env,file"`, []string{"env", "file"}, ""},
		{"items not trimmed", `function_denylist = "env, file"`, []string{"env", " file"}, ""},
		{"empty string", `function_denylist = ""`, nil, ""},
		{"empty list", `function_denylist = []`, nil, ""},
		{"old name", `function_blacklist = ["plugin"]`, []string{"plugin"}, ""},
		{"both names", "function_denylist = [\"env\"]\nfunction_blacklist = [\"file\"]", []string{"env", "file"}, ""},
		{"given twice", "function_denylist = [\"env\"]\nfunction_denylist = [\"file\"]", []string{"env", "file"}, ""},
		{"sandbox", `sandbox_path = "/srv/data"`, nil, "/srv/data"},
		{"heredoc sandbox", "sandbox_path = <<EOF\n/srv\nEOF", nil, "/srv\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := "template {\n  contents = \"x\"\n  " + tt.text + "\n}\n"
			c, err := Parse("x.hcl", []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			got := c.Templates[0]
			if strings.Join(got.FunctionDenylist, "|") != strings.Join(tt.wantDeny, "|") || len(got.FunctionDenylist) != len(tt.wantDeny) {
				t.Errorf("denylist %q, want %q", got.FunctionDenylist, tt.wantDeny)
			}
			if got.SandboxPath != tt.wantSandbox {
				t.Errorf("sandbox %q, want %q", got.SandboxPath, tt.wantSandbox)
			}
		})
	}
	js := `{"template": [{"contents": "x", "function_blacklist": ["env"], "sandbox_path": "/s"}]}`
	c, err := Parse("c.json", []byte(js))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Templates[0]; strings.Join(got.FunctionDenylist, ",") != "env" || got.SandboxPath != "/s" {
		t.Errorf("json: denylist %q sandbox %q", got.FunctionDenylist, got.SandboxPath)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		text, want string
	}{
		{"template {\n  destination = \"d\"\n}\n", "x.hcl:1:1: template: one of source or contents is required"},
		{"template {\n  source = \"s\"\n  contents = \"c\"\n  destination = \"d\"\n}\n", "source and contents exclude each other"},
		{"template {\n  source = \"s\"\n}\n", "destination is required"},
	}
	for _, tt := range tests {
		c, err := Parse("x.hcl", []byte(tt.text))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: Validate = %v, want %q", tt.text, err, tt.want)
		}
	}
	// Exec settings without a command: no child, as consul-template, and a warning.
	c, err := Parse("x.hcl", []byte("exec {\n  kill_signal = \"SIGTERM\"\n}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil || c.ExecEnabled() || len(c.Warnings) != 1 {
		t.Errorf("exec without a command: Validate = %v, ExecEnabled = %v, warnings %q; want nil, false, one", err, c.ExecEnabled(), c.Warnings)
	}
}

func TestFromPathMergesInOrder(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("b.hcl", "log_level = \"warn\"\ntemplate {\n  source = \"2\"\n  destination = \"2\"\n}\n")
	write("a.hcl", "log_level = \"debug\"\nconsul { address = \"x:1\" }\ntemplate {\n  source = \"1\"\n  destination = \"1\"\n}\n")
	c, err := FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	if *c.LogLevel != "warn" || *c.Consul.Address != "x:1" || len(c.Templates) != 2 || c.Templates[0].Source != "1" {
		t.Fatalf("merged %+v templates %+v", c, c.Templates)
	}
	write("c.hcl", "bogus = 1\n")
	if _, err := FromPath(dir); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "c.hcl")+":1:1: bogus") {
		t.Fatalf("error = %v, want it to name c.hcl:1:1", err)
	}
}

// TestRetryPolicy follows consul-template's RetryFunc: attempts counts the
// retries after the first failure, 0 or less is no limit, enabled = false
// gives up at the first failure.
func TestRetryPolicy(t *testing.T) {
	i := func(n int) *int { return &n }
	b := func(v bool) *bool { return &v }
	d := func(v time.Duration) *time.Duration { return &v }
	tests := []struct {
		name             string
		r                Retry
		failures         int
		backoff, maxBack time.Duration
	}{
		{"defaults", Retry{}, 13, 250 * time.Millisecond, time.Minute},
		{"attempts", Retry{Attempts: i(2)}, 3, 250 * time.Millisecond, time.Minute},
		{"no limit", Retry{Attempts: i(0)}, 0, 250 * time.Millisecond, time.Minute},
		{"negative is no limit", Retry{Attempts: i(-1)}, 0, 250 * time.Millisecond, time.Minute},
		{"disabled", Retry{Enabled: b(false), Attempts: i(5)}, 1, 250 * time.Millisecond, time.Minute},
		{"enabled", Retry{Enabled: b(true)}, 13, 250 * time.Millisecond, time.Minute},
		{"backoffs", Retry{Backoff: d(time.Second), MaxBackoff: d(0)}, 13, time.Second, math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, bo, mb := tt.r.Policy()
			if f != tt.failures || bo != tt.backoff || mb != tt.maxBack {
				t.Errorf("Policy() = %d, %v, %v; want %d, %v, %v", f, bo, mb, tt.failures, tt.backoff, tt.maxBack)
			}
		})
	}
	// Flags over a file: the later layer wins field by field.
	c := &Config{Consul: Consul{Retry: Retry{Attempts: i(4), Backoff: d(time.Second)}}}
	c.Merge(&Config{Consul: Consul{Retry: Retry{Attempts: i(1)}}})
	if f, bo, _ := c.Consul.Retry.Policy(); f != 2 || bo != time.Second {
		t.Errorf("merged: %d failures, backoff %v", f, bo)
	}
}

func TestParseExecEnv(t *testing.T) {
	c, err := Parse("x.hcl", []byte(`
template {
  source          = "a"
  destination     = "b"
  command         = "loses to exec.command"
  command_timeout = "9s"
  exec {
    command = ["cmd", "arg"]
    timeout = "2s"
    env {
      pristine  = true
      custom    = ["A=1", "B=x=y"]
      allowlist = "P*,R"
      whitelist = ["Q"]
      denylist  = ["D"]
      blacklist = "E"
    }
  }
}
template {
  source          = "c"
  destination     = "d"
  command         = "kept"
  command_timeout = "9s"
  exec { env { denylist = ["X"] } }
}
exec {
  command = "child"
  timeout = "1s"
  env { custom = ["C=3"] }
}
`))
	if err != nil {
		t.Fatal(err)
	}
	t1, t2 := c.Templates[0], c.Templates[1]
	if got := strings.Join(t1.Command, " "); got != "cmd arg" || *t1.CommandTimeout != 2*time.Second {
		t.Errorf("template 1: command %q timeout %v; want exec's, cmd arg and 2s", got, *t1.CommandTimeout)
	}
	e := t1.CommandEnv
	if !*e.Pristine || strings.Join(e.Custom, ",") != "A=1,B=x=y" || strings.Join(e.Allowlist, "|") != "P*|R|Q" || strings.Join(e.Denylist, ",") != "D,E" {
		t.Errorf("template 1 env = %+v", e)
	}
	if got := strings.Join(t2.Command, " "); got != "kept" || *t2.CommandTimeout != 9*time.Second || strings.Join(t2.CommandEnv.Denylist, ",") != "X" {
		t.Errorf("template 2: command %q timeout %v env %+v", got, *t2.CommandTimeout, t2.CommandEnv)
	}
	if strings.Join(c.Exec.Env.Custom, ",") != "C=3" {
		t.Errorf("exec env = %+v", c.Exec.Env)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "x.hcl:27:1: exec.timeout has no effect") {
		t.Errorf("warnings = %q; want one for exec.timeout", c.Warnings)
	}

	// The flags add to the file's lists and win on pristine, as in consul-template.
	fl, err := ParseFlags([]string{"-exec-env-pristine=false", "-exec-env-custom", "F=1", "-exec-env-allowlist", "G*",
		"-exec-env-denylist", "H", "-exec-env-denylist", "I"})
	if err != nil {
		t.Fatal(err)
	}
	c.Merge(fl.Config)
	if e := c.Exec.Env; *e.Pristine || strings.Join(e.Custom, ",") != "C=3,F=1" || strings.Join(e.Allowlist, ",") != "G*" || strings.Join(e.Denylist, ",") != "H,I" {
		t.Errorf("merged exec env = %+v", e)
	}
	if strings.Join(c.Exec.Command, " ") != "child" {
		t.Errorf("exec command = %q; the env flags must not replace it", c.Exec.Command)
	}
}

func TestEnvEnviron(t *testing.T) {
	yes := true
	base := []string{"HOME=/root", "PATH=/bin", "FOO=1", "FOO2=2", "BAR=3"}
	extra := []string{"CONSUL_HTTP_ADDR=c:8500"}
	tests := []struct {
		name string
		env  Env
		want string
	}{
		{"nothing set: all of ours, then extra", Env{}, "HOME=/root PATH=/bin FOO=1 FOO2=2 BAR=3 CONSUL_HTTP_ADDR=c:8500"},
		{"pristine: extra and custom only", Env{Pristine: &yes, Custom: []string{"A=b"}}, "CONSUL_HTTP_ADDR=c:8500 A=b"},
		{"allowlist globs", Env{Allowlist: []string{"FO*", "PATH"}}, "PATH=/bin FOO=1 FOO2=2 CONSUL_HTTP_ADDR=c:8500"},
		{"denylist wins over allowlist", Env{Allowlist: []string{"FO*"}, Denylist: []string{"*2"}}, "FOO=1 CONSUL_HTTP_ADDR=c:8500"},
		{"extra and custom escape the lists", Env{Denylist: []string{"*"}, Custom: []string{"FOO=9"}}, "CONSUL_HTTP_ADDR=c:8500 FOO=9"},
		{"a malformed pattern matches nothing", Env{Denylist: []string{"["}}, "HOME=/root PATH=/bin FOO=1 FOO2=2 BAR=3 CONSUL_HTTP_ADDR=c:8500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(tt.env.Environ(base, extra), " "); got != tt.want {
				t.Errorf("Environ = %q\nwant      %q", got, tt.want)
			}
		})
	}
}

func TestChildEnv(t *testing.T) {
	str := func(s string) *string { return &s }
	no := false
	tests := []struct {
		name string
		cfg  Config
		env  map[string]string
		want string
	}{
		{"defaults", Config{}, nil, "CONSUL_HTTP_SSL=false CONSUL_HTTP_SSL_VERIFY=true"},
		{"from the config", Config{Consul: Consul{Address: str("c:8500"), Token: str("t"), TokenFile: str("/f"),
			SSL: SSL{CACert: str("/ca"), Verify: &no}, Auth: Auth{Username: str("u")}}}, map[string]string{"CONSUL_HTTP_ADDR": "ignored"},
			"CONSUL_HTTP_ADDR=c:8500 CONSUL_HTTP_AUTH=u: CONSUL_HTTP_TOKEN=t CONSUL_HTTP_TOKEN_FILE=/f CONSUL_HTTP_SSL=true CONSUL_HTTP_SSL_VERIFY=false"},
		{"from the environment, trimmed", Config{}, map[string]string{"CONSUL_HTTP_ADDR": " e:8500 ", "CONSUL_TOKEN": "first",
			"CONSUL_HTTP_TOKEN": "second", "CONSUL_HTTP_TOKEN_FILE": "/tf", "CONSUL_HTTP_SSL": "true"},
			"CONSUL_HTTP_ADDR=e:8500 CONSUL_HTTP_TOKEN=first CONSUL_HTTP_TOKEN_FILE=/tf CONSUL_HTTP_SSL=false CONSUL_HTTP_SSL_VERIFY=true"},
		{"an empty address is not passed on", Config{Consul: Consul{Address: str("")}}, map[string]string{"CONSUL_HTTP_ADDR": "e:8500"},
			"CONSUL_HTTP_SSL=false CONSUL_HTTP_SSL_VERIFY=true"},
		{"vault settings from the environment", Config{}, map[string]string{"VAULT_ADDR": "https://v", "VAULT_SKIP_VERIFY": "1",
			"VAULT_CACERT": "/v.pem", "VAULT_TOKEN": "not passed"},
			"CONSUL_HTTP_SSL=false CONSUL_HTTP_SSL_VERIFY=true VAULT_ADDR=https://v VAULT_SKIP_VERIFY=true VAULT_CACERT=/v.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := strings.Join(tt.cfg.ChildEnv(func(k string) string { return tt.env[k] }), " ")
			if got != tt.want {
				t.Errorf("ChildEnv = %q\nwant        %q", got, tt.want)
			}
		})
	}
}

// TestParseFlagsOldRetry: -retry is consul-template's old -consul-retry-backoff.
func TestParseFlagsOldRetry(t *testing.T) {
	fl, err := ParseFlags([]string{"-retry", "3s"})
	if err != nil {
		t.Fatal(err)
	}
	if b := fl.Config.Consul.Retry.Backoff; b == nil || *b != 3*time.Second {
		t.Fatalf("backoff = %v; want 3s", b)
	}
}

func TestErrorFatal(t *testing.T) {
	c, err := Parse("x.hcl", []byte(`
template_error_fatal = false
template {
  source      = "a"
  destination = "b"
}
template {
  source      = "c"
  destination = "d"
  error_fatal = true
}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.ErrorFatal(c.Templates[0]) || !c.ErrorFatal(c.Templates[1]) {
		t.Errorf("ErrorFatal = %v, %v; want false (template_error_fatal), true (error_fatal)", c.ErrorFatal(c.Templates[0]), c.ErrorFatal(c.Templates[1]))
	}
	fl, err := ParseFlags([]string{"-template-error-fatal=true", "-template", "e:f"})
	if err != nil {
		t.Fatal(err)
	}
	c.Merge(fl.Config)
	if !c.ErrorFatal(c.Templates[0]) || !c.ErrorFatal(c.Templates[2]) {
		t.Error("the flag did not win over template_error_fatal")
	}
	if !(&Config{}).ErrorFatal(&Template{}) {
		t.Error("the default is not fatal, as consul-template's is")
	}
}
