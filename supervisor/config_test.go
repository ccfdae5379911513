package supervisor

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParse(t *testing.T) {
	env := envMap(map[string]string{"PORT": "4100", "NAME": "web", "LONG": "consul.service.consul:8500"})
	tests := []struct {
		name    string
		in      string
		wantErr string // substring; "" = must parse
		check   func(t *testing.T, c *Config)
	}{
		{name: "empty", in: `{}`, check: func(t *testing.T, c *Config) {
			if c.StopTimeout.D() != DefaultStopTimeout || c.Logging.Format != "json" || c.Logging.Level != "info" {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{name: "env with default", in: `{"services":[{"name":"${NAME}","port":${PORT:-4000},"health":"true","poll":1,"ttl":3}]}`,
			check: func(t *testing.T, c *Config) {
				if s := c.Services[0]; s.Name != "web" || s.Port != 4100 || s.Timeout.D() != time.Second {
					t.Errorf("service %+v", s)
				}
			}},
		{name: "env default used", in: `{"stopTimeout": ${NOPE:-7}}`, check: func(t *testing.T, c *Config) {
			if c.StopTimeout.D() != 7*time.Second {
				t.Errorf("stopTimeout %v", c.StopTimeout.D())
			}
		}},
		{name: "duration string", in: `{"stopTimeout":"1500ms","renderTimeout":"2"}`, check: func(t *testing.T, c *Config) {
			if c.StopTimeout.D() != 1500*time.Millisecond || c.RenderTimeout.D() != 2*time.Second {
				t.Errorf("%v %v", c.StopTimeout.D(), c.RenderTimeout.D())
			}
		}},
		{name: "command array", in: `{"preStart":["a","b c"]}`, check: func(t *testing.T, c *Config) {
			if got := c.PreStart.Argv; len(got) != 2 || got[1] != "b c" {
				t.Errorf("argv %q", got)
			}
		}},
		{name: "template", in: `{"templates":[{"source":"a.ctmpl","destination":"/x","perms":"0600","reloadSignal":"SIGHUP","wait":"200ms:1s","minInstances":1}]}`,
			check: func(t *testing.T, c *Config) {
				tp := c.Templates[0]
				if tp.Perms != 0o600 || tp.ReloadSignal != Signal(1) || tp.MinInstances != 1 {
					t.Errorf("template %+v", tp)
				}
			}},
		{name: "perms number", in: `{"templates":[{"source":"a","destination":"b","perms":644}]}`, check: func(t *testing.T, c *Config) {
			if c.Templates[0].Perms != 0o644 {
				t.Errorf("perms %o", c.Templates[0].Perms)
			}
		}},
		{name: "unknown top", in: `{"consull":"x"}`, wantErr: "test.json:1:2: consull: unknown field (want one of consul, logging,"},
		{name: "unknown nested", in: `{"services":[{"name":"a","helth":"x"}]}`, wantErr: "test.json:1:26: services[0].helth: unknown field"},
		{name: "unknown logging", in: `{"logging":{"lvl":"x"}}`, wantErr: "test.json:1:13: logging.lvl: unknown field (want one of level, format)"},
		{name: "field names are case-sensitive", in: `{"Consul":"x"}`, wantErr: "test.json:1:2: Consul: unknown field"},
		{name: "json:\"-\" fields are not config", in: `{"Name":"x"}`, wantErr: "test.json:1:2: Name: unknown field"},
		{name: "type error", in: "{\n  \"services\": [{\"name\": \"a\", \"port\": \"80\"}]}",
			wantErr: "test.json:2:38: services[0].port: want a number, got a string"},
		{name: "type error names field", in: `{"stopTimeout": 5, "services": [{"name": 3}]}`,
			wantErr: "test.json:1:42: services[0].name: want a string, got the number 3"},
		{name: "syntax", in: "{\n\"consul\": }", wantErr: "test.json:2:11: JSON syntax: invalid character '}'"},
		{name: "trailing data", in: `{} {}`, wantErr: "test.json:1:4: unexpected data after the JSON value"},
		{name: "bad duration placed", in: "{\"services\": [\n  {\"name\": \"a\",\n   \"poll\": \"soon\"}]}",
			wantErr: `test.json:3:12: services[0].poll: want seconds or a duration like "1.5s", got "soon"`},
		{name: "bad perms placed", in: `{"templates":[{"source":"a","destination":"b","perms":"0999"}]}`,
			wantErr: `test.json:1:55: templates[0].perms: want an octal file mode like "0644", got "0999"`},
		{name: "signal not a string", in: `{"templates":[{"source":"a","destination":"b","reloadSignal":5}]}`,
			wantErr: `test.json:1:62: templates[0].reloadSignal: want a string, got the number 5`},
		{name: "position after env expansion", in: `{"consul": "${LONG}", "stopTimeout": "x"}`,
			wantErr: `test.json:1:57: stopTimeout: want seconds`},
		{name: "no name", in: `{"services":[{"port":1,"health":"true","poll":1,"ttl":2}]}`, wantErr: "test.json:1:14: services[0].name: required"},
		{name: "no health", in: `{"services":[{"name":"a","poll":1,"ttl":2}]}`, wantErr: "services[0].health: required"},
		{name: "ttl not above poll", in: `{"services":[{"name":"a","health":"true","poll":5,"ttl":5}]}`, wantErr: "test.json:1:57: services[0].ttl: 5s must be longer than poll 5s"},
		{name: "bad interface", in: `{"services":[{"name":"a","health":"true","poll":1,"ttl":2,"interfaces":["static:nope"]}]}`, wantErr: "interfaces[0]"},
		{name: "backend no onChange", in: `{"backends":[{"name":"b","poll":1}]}`, wantErr: "backends[0].onChange: required"},
		{name: "reload exclusive", in: `{"templates":[{"source":"a","destination":"b","reload":"x","reloadSignal":"HUP"}]}`, wantErr: "exclusive"},
		{name: "bad signal", in: `{"templates":[{"source":"a","destination":"b","reloadSignal":"SIGNOPE"}]}`,
			wantErr: `test.json:1:62: templates[0].reloadSignal: unknown signal "SIGNOPE"`},
		{name: "bad wait", in: `{"templates":[{"source":"a","destination":"b","wait":"soon"}]}`, wantErr: "test.json:1:54: templates[0].wait"},
		{name: "bad level", in: `{"logging":{"level":"loud"}}`, wantErr: "logging.level"},
		{name: "bad format", in: `{"logging":{"format":"xml"}}`, wantErr: "logging.format"},
		{name: "quote in command", in: `{"preStart":"sh -c 'a b'"}`, wantErr: `config: test.json:1:13: preStart: invalid command "sh -c 'a b'": quote at offset 6`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.in), "test.json", env)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("no error, want %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrConfig) {
					t.Fatalf("error %q, want it to contain %q and wrap ErrConfig", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestSeedConfigsParse(t *testing.T) {
	for _, name := range []string{"customers.containerpilot.json", "nginx.containerpilot.json"} {
		t.Run(name, func(t *testing.T) {
			c, err := Load("testdata/"+name, os.LookupEnv)
			if err != nil {
				t.Fatal(err)
			}
			if c.Consul != "consul:8500" || len(c.Services) != 1 || len(c.Backends) == 0 {
				t.Errorf("config %+v", c)
			}
		})
	}
	data, _ := os.ReadFile("testdata/customers.containerpilot.json")
	if _, err := Load("file://testdata/customers.containerpilot.json", nil); err != nil {
		t.Error(err)
	}
	if _, err := Load(string(data), nil); err != nil {
		t.Errorf("inline: %v", err)
	}
}

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{"customers": "AUTOPILOT_CUSTOMERS_IP", "my-svc.v2": "AUTOPILOT_MY_SVC_V2_IP"} {
		if got := EnvName(in); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestResolveAddress(t *testing.T) {
	for _, tt := range []struct {
		specs []string
		want  string
	}{
		{[]string{"static:10.1.2.3"}, "10.1.2.3"},
		{[]string{"127.0.0.0/8"}, "127.0.0.1"},
		{[]string{"nosuchif0", "lo"}, "127.0.0.1"},
	} {
		got, err := ResolveAddress(tt.specs)
		if err != nil || got != tt.want {
			t.Errorf("ResolveAddress(%q) = %q, %v; want %q", tt.specs, got, err, tt.want)
		}
	}
	if _, err := ResolveAddress([]string{"nosuchif0"}); err == nil {
		t.Error("no error for an interface that does not exist")
	}
}
