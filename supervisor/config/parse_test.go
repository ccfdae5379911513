package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/autopilot/autopilot/internal/jsonpos"
)

// envOf is an environment lookup over a fixed map.
func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestSeedConfigsParse(t *testing.T) {
	files, _ := filepath.Glob("testdata/seed/*.json")
	if len(files) == 0 {
		t.Fatal("no seed configs")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Load(f, envOf(nil))
			if err != nil {
				t.Fatal(err)
			}
			if c.Dialect != ContainerPilot2 {
				t.Errorf("dialect %s, want ContainerPilot 2", c.Dialect)
			}
			if m := c.Job(MainJob); m == nil || !m.Main {
				t.Fatalf("no main job in %+v", c.Jobs)
			}
			app, err := c.WithApp([]string{"node", "index.js"})
			if err != nil {
				t.Fatal(err)
			}
			if got := app.Job(MainJob).Exec.String(); got != "node index.js" {
				t.Errorf("main exec %q", got)
			}
			if !c.Job(MainJob).Exec.IsZero() {
				t.Error("WithApp changed the original config")
			}
		})
	}
}

// TestParseErrors: bad input is refused with ErrConfig, the place in the
// text the user wrote (file:line:col) and the field path.
func TestParseErrors(t *testing.T) {
	env := envOf(map[string]string{"PORT": "abc", "SET": "1"})
	for _, tc := range []struct {
		name, in, want string
	}{
		{"json5 missing bracket", "{\n  jobs: [ {name: 'a', exec: 'x' ]\n}", `t:2:33: JSON5 syntax: unexpected ']', want ',' or '}'`},
		{"json5 unclosed comment", "{\n  /* jobs\n}", `t:2:3: JSON5 syntax: comment not closed`},
		{"json5 infinity", "{ jobs: [], stopTimeout: Infinity }", `t:1:26: JSON5 syntax: Infinity is not a finite number`},
		{"template syntax", "{\n  \"consul\": \"x\", {{ if .X }\n}", `t:2: template: unexpected "}" in operand`},
		{"template unclosed if", "{\n  {{ if .X }}\n}", `t:3: template: unexpected EOF`},
		{"bare value rendered bad", "{\n  jobs: [ {name: 'a', exec: 'x', port: {{ .PORT }}} ]\n}", `t:2:40: JSON5 syntax: unquoted text "abc" is not a value (quote strings) (in text a template action rendered, at the action)`},
		{"unknown trigger", "{\n  jobs: [ {name: 'a', exec: 'x', when: {source: 'b', once: 'exitsuccess'}}, {name:'b', exec:'y'} ]\n}", `t:2:60: jobs[0].when.once: unknown event "exitsuccess"; did you mean "exitSuccess"?`},
		{"unknown trigger name", "{ jobs: [ {name: 'a', exec: 'x', when: {each: 'started'}} ] }", `jobs[0].when.each: unknown event "started" (want one of startup,`},
		{"self cycle", "{\n  jobs: [ {name: 'a', exec: 'x', when: {source: 'a', once: 'exitSuccess'}} ]\n}", `t:2:49: jobs[0].when.source: job "a" waits for its own exitSuccess: it would never start`},
		{"two-job cycle", "{\n  jobs: [ {name: 'a', exec: 'x', when: {source: 'b', once: 'exitSuccess'}}, {name:'b', exec:'y', when: {source: 'a', once: 'exitFailed'}} ]\n}", `t:2:40: jobs[0].when: jobs wait on each other in a cycle and would never start: a waits for b waits for a`},
		{"three-job cycle", "{ jobs: [ {name: 'a', exec: 'x', when: {source: 'c', once: 'exitSuccess'}}, {name:'b', exec:'y', when: {source: 'a', once: 'exitSuccess'}}, {name:'c', exec:'y', when: {source: 'b', once: 'exitSuccess'}} ] }", `a waits for c waits for b waits for a`},
		{"negative restarts", "{\n  jobs: [ {name: 'a', exec: 'x', restarts: -1} ]\n}", `t:2:44: jobs[0].restarts: want "never", "unlimited" or a whole number from 0, got -1`},
		{"fractional restarts", "{ jobs: [ {name: 'a', exec: 'x', restarts: 1.5} ] }", `got 1.5`},
		{"unlimited with each", "{ jobs: [ {name: 'a', exec: 'x', restarts: 'unlimited', when: {each: 'startup'}} ], }", `jobs[0].restarts: "unlimited" with when.each`},
		{"etcd", "{\n  \"etcd\": {\"endpoints\": [\"http://etcd:4001\"]}\n}", `t:2:11: etcd: etcd is not supported`},
		{"mixed dialects", "{\n  jobs: [],\n  services: []\n}", `t:3:13: services: a ContainerPilot 2 field in a ContainerPilot 3 config (it has jobs)`},
		{"mixed dialects with a repeated key", "{\n  jobs: [],\n  services: [],\n  jobs: []\n}", `t:4:3: jobs: duplicate key`},
		{"unknown source", "{ jobs: [ {name: 'a', exec: 'x', when: {source: 'nope', once: 'exitSuccess'}} ] }", `jobs[0].when.source: no job is named "nope"`},
		{"unknown watch", "{ jobs: [ {name: 'a', exec: 'x', when: {source: 'watch.nope', each: 'changed'}} ] }", `jobs[0].when.source: no watch is named "nope"`},
		{"healthy without health", "{ jobs: [ {name: 'a', exec: 'x', when: {source: 'b', once: 'healthy'}}, {name: 'b', exec: 'y'} ] }", `job "b" has no health check, so it never emits healthy`},
		{"job event without source", "{ jobs: [ {name: 'a', exec: 'x', when: {once: 'exitSuccess'}} ] }", `jobs[0].when: event "exitSuccess" needs a source`},
		{"interval and once", "{ jobs: [ {name: 'a', exec: 'x', when: {interval: '1s', once: 'startup'}} ] }", `jobs[0].when: interval is exclusive`},
		{"duration overflow", `{"services": [{"name": "a", "port": 1, "health": "x", "poll": 1e10, "ttl": 3}]}`, `t:1:63: services[0].poll: 1e10 seconds is longer than the maximum`},
		{"duration NaN", `{"stopTimeout": "NaN"}`, `stopTimeout: NaN is not a finite number of seconds`},
		{"duration Inf", `{"stopTimeout": "Inf"}`, `stopTimeout: Inf is not a finite number of seconds`},
		{"negative health timeout", `{"services": [{"name": "a", "port": 1, "health": "x", "poll": 1, "ttl": 3, "timeout": -1}]}`, `services[0].timeout: negative duration -1`},
		{"negative watch interval", `{jobs: [], watches: [{name: 'w', interval: -1}]}`, `watches[0].interval: negative duration -1`},
		{"v3 stopTimeout -1", `{jobs: [], stopTimeout: -1}`, `stopTimeout: negative duration -1`},
		{"duration negative", `{"renderTimeout": "-3s", "templates": []}`, `renderTimeout: negative duration -3s`},
		{"poll too short", `{"services": [{"name": "a", "port": 1, "health": "x", "poll": "1ns", "ttl": 3}]}`, `services[0].poll: 1ns is shorter than the minimum 100ms`},
		{"ttl not longer than poll", `{"services": [{"name": "a", "port": 1, "health": "x", "poll": 5, "ttl": 5}]}`, `services[0].ttl: 5s must be longer than the check interval 5s`},
		{"signal by number", `{"templates": [{"source": "a", "destination": "b", "reloadSignal": "9"}]}`, `templates[0].reloadSignal: signal 9: name the signal`},
		{"uncatchable signal", `{"templates": [{"source": "a", "destination": "b", "reloadSignal": "SIGKILL"}]}`, `SIGKILL cannot be caught`},
		{"check placeholder unset", `{"templates": [{"source": "a", "destination": "b", "check": "nginx -t -c {{.Nope}}"}]}`, `templates[0].check: {{.Nope}}: the environment variable Nope is not set`},
		{"check placeholder literal", `{"templates": [{"source": "a", "destination": "b", "check": "nginx -t -c {{"{{.Nope}}"}}"}]}`, `templates[0].check: expand`},
		{"reloadConfirm value", `{"templates": [{"source": "a", "destination": "b", "reloadSignal": "SIGHUP", "reloadConfirm": "yes"}]}`, `templates[0].reloadConfirm: want "workers", got "yes"`},
		{"reloadConfirm alone", `{"templates": [{"source": "a", "destination": "b", "reloadConfirm": "workers"}]}`, `templates[0].reloadConfirm: needs reload or reloadSignal`},
		{"reloadConfirm and master", `{"templates": [{"source": "a", "destination": "b", "reloadSignal": "SIGUSR2", "reloadConfirm": "workers", "haproxy": {"master": "/m"}}]}`, `haproxy.master already confirms reloads`},
		{"haproxy without sockets", `{"templates": [{"source": "a", "destination": "b", "haproxy": {}}]}`, `templates[0].haproxy: want runtime (the stats socket), master (the master CLI socket) or both`},
		{"haproxy drain", `{"templates": [{"source": "a", "destination": "b", "haproxy": {"runtime": "/s", "drain": "1ns"}}]}`, `templates[0].haproxy.drain: must be at least 1ms`},
		{"haproxy unknown field", `{"templates": [{"source": "a", "destination": "b", "haproxy": {"socket": "/s"}}]}`, `templates[0].haproxy.socket: unknown field`},
		{"two templates one destination", `{"templates": [{"source": "a", "destination": "/x/b"}, {"source": "c", "destination": "/x/./b"}]}`, `templates[1].destination: "/x/./b" is already the destination`},
		{"duplicate implicit ID", `{"templates": [], "services": [{"name": "a", "port": 1, "health": "x", "poll": 1, "ttl": 3}, {"name": "a", "port": 1, "health": "x", "poll": 1, "ttl": 3}]}`, `services[1].name: job name "a" is already used by services[0]`},
		{"same name v2 coprocess", `{"services": [{"name": "a", "port": 1, "health": "x", "poll": 1, "ttl": 3}], "coprocesses": [{"command": "a"}]}`, `job name "a" is already used`},
		{"invalid UTF-8 name", "{\"services\": [{\"name\": \"a\xffb\", \"port\": 1, \"health\": \"x\", \"poll\": 1, \"ttl\": 3}]}", `t:1:26: invalid UTF-8 in the config`},
		{"escaped bad surrogate name", `{"jobs": [{"name": "a\ud800", "exec": "x", "port": 1, "health": {"exec": "x", "interval": 1, "ttl": 3}}]}`, `jobs[0].name: job name: "a\ufffd" is not valid UTF-8`},
		{"illegal service name", `{"jobs": [{"name": "My_App", "exec": "x", "port": 1, "health": {"exec": "x", "interval": 1, "ttl": 3}}]}`, `jobs[0].name: "My_App" is not a valid service name`},
		{"port without health", `{"jobs": [{"name": "app", "exec": "x", "port": 80}]}`, `jobs[0].health: required when port is set`},
		{"unknown field", "{\n  jobs: [{name: 'a', exec: 'x', helth: {}}]\n}", `t:2:33: jobs[0].helth: unknown field`},
		{"bad interface", `{"jobs": [{"name": "app", "exec": "x", "port": 80, "interfaces": ["eth0", "eth0:inet5"], "health": {"exec": "x", "interval": 1, "ttl": 3}}]}`, `jobs[0].interfaces: [1]: "eth0:inet5": want an interface name`},
		{"bad level", `{"logging": {"level": "loud"}}`, `logging.level: want debug, info, warn or error (any case), got "loud"`},
		{"bad output", `{"logging": {"output": "file"}}`, `logging.output: want stdout or stderr, got "file"`},
		{"onStart and preStart", `{"preStart": "a", "onStart": "b"}`, `onStart: onStart is ContainerPilot 1's name for preStart`},
		{"sensor type", `{"telemetry": {"sensors": [{"name": "x", "type": "meter", "poll": 5, "check": "c"}]}}`, `telemetry.sensors[0].type: want counter, gauge, histogram or summary, got "meter"`},
		{"loop bomb", `{{range loop 100000}}{{range loop 100000}}{{end}}{{end}}{}`, `loop: more than 100000 iterations`},
		{"range over a huge number", `{{range 1000000000}}{{end}}{}`, `t: template: more than 100000 range iterations`},
		{"template recursion", `{{define "a"}}{{range loop 2}}{{template "a"}}{{end}}{{end}}{{template "a"}}{}`, `template "a" calls itself`},
		{"render too large", `{{range loop 100000}}{{"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"}}{{end}}{}`, `the config renders to more than`},
		{"consul host unset", "{\n  \"consul\": \"{{ .NOPE }}:8500\"\n}", `t:2:13: consul: ":8500" has no host (is a variable in it unset?)`},
		{"consul bad scheme", `{"consul": "ftp://c:1"}`, `consul: "ftp://c:1": want http:// or https://`},
		{"NUL", "{\x00}", `t:1:2: NUL byte in the config`},
		{"expansion renders bad", "{\n  \"stopTimeout\": ${SET}x\n}", `t:2:18: JSON5 syntax: "1x" is not a number`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.in), "t", env)
			if err == nil {
				t.Fatalf("accepted: %+v", c)
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error %v does not wrap ErrConfig", err)
			}
			var pe *jsonpos.Error
			if !errors.As(err, &pe) {
				t.Errorf("error %v is not a *jsonpos.Error", err)
			}
			if got := strings.TrimPrefix(err.Error(), "config: "); !strings.Contains(got, tc.want) {
				t.Errorf("error\n  %s\nwant it to contain\n  %s", got, tc.want)
			}
		})
	}
}

func TestInterpolation(t *testing.T) {
	env := envOf(map[string]string{"CONSUL": "consul.svc", "PORT": "8080", "PARTS": "a:b:c", "NAME": "Template", "N": "3", "EMPTY": ""})
	for _, tc := range []struct{ in, want string }{
		{`{{ .CONSUL | default "consul" }}:8500`, "consul.svc:8500"},
		{`{{ .NOPE | default "consul" }}:8500`, "consul:8500"},
		{`{{ .EMPTY | default 10 }}`, "10"},
		{`{{ .NOPE }}|`, "|"},
		{`{{ env "PORT" }}`, "8080"},
		{`{{ .PARTS | split ":" | join "." }}`, "a.b.c"},
		{`{{ .NAME | replaceAll "e" "_" }}`, "T_mplat_"},
		{`{{ .NAME | regexReplaceAll "[epa]+" "_" }}`, "T_m_l_t_"},
		{`{{ range $i := loop 5 }}{{ $i }},{{end}}`, "0,1,2,3,4,"},
		{`{{ range $i := loop 5 8 }}{{ $i }},{{end}}`, "5,6,7,"},
		{`{{ range $i := loop 5 1 }}{{ $i }},{{end}}`, "5,4,3,2,"},
		{`{{ range $i := loop 0 .N }}{{ $i }}{{end}}`, "012"},
		{`nginx -t -c {{.Path}} {{ .Path }} {{.Path }}`, "nginx -t -c {{.Path}} {{.Path}} {{.Path}}"},
		{`${PORT} ${NOPE:-d} ${EMPTY:-e} ${NOPE} $PORT`, "8080 d e ${NOPE} $PORT"},
		{`{{ if .NOPE }}x{{ else }}y{{ end }}`, "y"},
		{`{{ index . "PORT" }}`, "8080"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Render([]byte(tc.in), "t", env)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestValues(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"5", 5 * time.Second, false}, {"1.5", 1500 * time.Millisecond, false}, {"1500ms", 1500 * time.Millisecond, false},
		{"1m", time.Minute, false}, {"0", 0, false}, {"-1", 0, true}, {"-1s", 0, true}, {"1e10", 0, true},
		{"Inf", 0, true}, {"NaN", 0, true}, {"+Inf", 0, true}, {"9000h", 0, true}, {"8760h", MaxDuration, false}, {"soon", 0, true}, {"1e400", 0, true},
	} {
		got, err := ParseDuration(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{"never", "never", false}, {"unlimited", "unlimited", false}, {"0", "never", false}, {"3", "3", false},
		{"-1", "", true}, {"1.5", "", true}, {"always", "", true},
	} {
		got, err := ParseRestarts(tc.in)
		if (err != nil) != tc.err || err == nil && got.String() != tc.want {
			t.Errorf("ParseRestarts(%q) = %v, %v", tc.in, got, err)
		}
	}
	for _, tc := range []struct {
		in  string
		err bool
	}{{"SIGHUP", false}, {"hup", false}, {"USR2", false}, {"SIGKILL", true}, {"STOP", true}, {"9", true}, {"SIGFOO", true}} {
		if _, err := ParseSignal(tc.in); (err != nil) != tc.err {
			t.Errorf("ParseSignal(%q): %v", tc.in, err)
		}
	}
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{"eth0", "eth0", false}, {"eth0:inet", "eth0", false}, {"eth0:inet6", "eth0:inet6", false}, {"eth1[1]", "eth1[1]", false},
		{"lo0", "lo0", false}, {"inet", "inet", false}, {"inet6", "inet6", false}, {"10.0.0.1/16", "10.0.0.0/16", false},
		{"2001:db8::/64", "2001:db8::/64", false}, {"static:192.168.1.100", "static:192.168.1.100", false},
		{"static:nope", "", true}, {"eth0:inet5", "", true}, {"10.0.0.0/33", "", true}, {"", "", true}, {"eth 0", "", true},
	} {
		got, err := ParseInterface(tc.in)
		if (err != nil) != tc.err || err == nil && got.String() != tc.want {
			t.Errorf("ParseInterface(%q) = %v, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestLoadInlineAndFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.json")
	if err := os.WriteFile(path, []byte(`{"templates": [{"source": "nginx.tmpl", "destination": "/etc/nginx/nginx.conf"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{path, "file://" + path} {
		c, err := Load(spec, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.Dialect != Autopilot || c.Templates[0].Source != filepath.Join(dir, "nginx.tmpl") {
			t.Errorf("%s: dialect %s, source %s", spec, c.Dialect, c.Templates[0].Source)
		}
	}
	c, err := Load(` {"jobs": [{"name": "a", "exec": "true"}]}`, nil)
	if err != nil || c.Name != "inline config" || c.Dialect != ContainerPilot3 {
		t.Errorf("inline: %v, %+v", err, c)
	}
	if _, err := Load(filepath.Join(dir, "missing.json"), nil); !errors.Is(err, ErrConfig) {
		t.Errorf("missing file: %v", err)
	}
}

func TestServiceIDsAndEnvNames(t *testing.T) {
	j := &Job{Name: "my-svc", Port: 80}
	for _, tc := range []struct {
		d           Dialect
		id, env, pe string
	}{
		{Autopilot, "my-svc-host-80", "AUTOPILOT_MY_SVC_IP", "AUTOPILOT_APP_PID"},
		{ContainerPilot2, "my-svc-host", "CONTAINERPILOT_MY_SVC_IP", "CONTAINERPILOT_PID"},
		{ContainerPilot3, "my-svc-host", "CONTAINERPILOT_MY_SVC_IP", "CONTAINERPILOT_PID"},
	} {
		c := &Config{Dialect: tc.d}
		if got := c.ServiceID(j, "host"); got != tc.id {
			t.Errorf("%s: ID %q, want %q", tc.d, got, tc.id)
		}
		if got := c.IPEnvVar(j.Name); got != tc.env {
			t.Errorf("%s: env %q, want %q", tc.d, got, tc.env)
		}
		if got := c.PIDEnvVar(); got != tc.pe {
			t.Errorf("%s: pid env %q, want %q", tc.d, got, tc.pe)
		}
	}
	if got := (&Config{}).ServiceID(&Job{Name: "a", ID: "explicit"}, "h"); got != "explicit" {
		t.Errorf("explicit ID: %q", got)
	}
}

func TestWithAppV3(t *testing.T) {
	c, err := Parse([]byte(`{jobs: [{name: "agent", exec: "consul agent", restarts: "unlimited"}]}`), "t", nil)
	if err != nil {
		t.Fatal(err)
	}
	same, err := c.WithApp(nil)
	if err != nil || len(same.Jobs) != 1 {
		t.Fatalf("no argv: %v, %+v", err, same)
	}
	app, err := c.WithApp([]string{"/bin/app", "-x"})
	if err != nil {
		t.Fatal(err)
	}
	m := app.Job(MainJob)
	if m == nil || !m.Main || m.Exec.String() != "/bin/app -x" || m.When.Event != Startup || len(c.Jobs) != 1 {
		t.Errorf("main job %+v", m)
	}
	clash, _ := Parse([]byte(`{jobs: [{name: "main", exec: "x"}]}`), "t", nil)
	if _, err := clash.WithApp([]string{"y"}); !errors.Is(err, ErrConfig) {
		t.Errorf("clash: %v", err)
	}
	v2, _ := Parse([]byte(`{}`), "t", nil)
	if _, err := v2.WithApp(nil); !errors.Is(err, ErrConfig) {
		t.Errorf("v2 without argv: %v", err)
	}
}

// TestTemplateHAProxy: the haproxy field reaches the model, in the
// ContainerPilot 2 style and in JSON5 with jobs.
func TestTemplateHAProxy(t *testing.T) {
	for _, in := range []string{
		`{"templates": [{"source": "/a", "destination": "/b", "reloadSignal": "SIGUSR2", "haproxy": {"runtime": "/run/haproxy/admin.sock", "master": "/run/haproxy/master.sock", "drain": "1m"}}]}`,
		"{ jobs: [{name: 'haproxy', exec: 'haproxy'}], templates: [{source: '/a', destination: '/b', reloadSignal: 'SIGUSR2', haproxy: {runtime: '/run/haproxy/admin.sock', master: '/run/haproxy/master.sock', drain: 60}}] }",
	} {
		c, err := Parse([]byte(in), "t", nil)
		if err != nil {
			t.Fatal(err)
		}
		want := HAProxy{Runtime: "/run/haproxy/admin.sock", Master: "/run/haproxy/master.sock", Drain: time.Minute}
		if h := c.Templates[0].HAProxy; h == nil || *h != want {
			t.Fatalf("%s: haproxy %+v, want %+v", in, h, want)
		}
	}
	c, err := Parse([]byte(`{"templates": [{"source": "/a", "destination": "/b"}]}`), "t", nil)
	if err != nil || c.Templates[0].HAProxy != nil {
		t.Fatalf("without the field: %+v, %v", c, err)
	}
}

// TestPositionsInRawText: errors after text that interpolation removed,
// added or repeated are placed in the file as written.
func TestPositionsInRawText(t *testing.T) {
	env := envOf(map[string]string{"LONG": strings.Repeat("x", 50), "TWO": "2"})
	for _, tc := range []struct{ name, in, want string }{
		{"after a removed block", "{\n{{ if .NOPE }}\n  \"a\": 1,\n  \"b\": 2,\n{{ end }}\n  \"helth\": 1\n}", "t:6:3: helth: unknown field"},
		{"after trim markers", "{\n  {{- if .NOPE -}} \"a\": 1, {{- end }}\n  \"helth\": 1\n}", "t:3:3: helth: unknown field"},
		{"after a long expansion", "{\"consul\": \"${LONG}:1\", \"x\": 1}", "t:1:25: x: unknown field"},
		{"after a long action", "{\"consul\": \"{{ .LONG }}:1\", \"x\": 1}", "t:1:29: x: unknown field"},
		{"inside a loop body", "{\"jobs\": [{{ range $i := loop 0 2 }}{{ if $i }},{{ end }}\n  {\"name\": \"j{{ $i }}\", \"exec\": \"x\", \"bad\": 1}{{ end }}]}", "t:2:38: jobs[0].bad: unknown field"},
		{"in an action's output", "{\"stopTimeout\": \"{{ .LONG }}\"}", "t:1:17: stopTimeout: want seconds or a duration"},
		{"after an empty action", "{\n  jobs: [{name: 'a', exec: 'x', port: {{ .NOPE }}, }]\n}", "t:2:50: JSON5 syntax: unexpected ',', want a value (just after a template action or ${VAR} that rendered nothing: is a variable not set?)"},
		{"json5 after comments", "// one\n/* two\nthree */ {\n  jobs: [{name: 'a', exec: 'x', when: {once: 'nope'}}]}", "t:4:46: jobs[0].when.once: unknown event \"nope\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in), "t", env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
