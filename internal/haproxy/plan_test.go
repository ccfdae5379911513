package haproxy

import (
	"errors"
	"strings"
	"testing"
)

const base = `# rendered
global
    stats socket /run/haproxy/admin.sock level admin

defaults
    mode http
    default-server inter 2s

frontend http
    bind *:80
    use_backend web if { path_beg /web }

backend web
    balance roundrobin
    server web-1 10.0.0.1:80 check
    server web-2 10.0.0.2:80 check
`

func TestPlan(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(string) string
		want   []string // commands of the plan, in order
		reload string   // substring of the ErrNeedsReload error
	}{
		{name: "same", edit: func(s string) string { return s }},
		{name: "comment and blank lines only", edit: func(s string) string { return "# new comment\n\n" + s }},
		{name: "indentation only", edit: func(s string) string { return strings.ReplaceAll(s, "    bind", "\tbind") }},
		{name: "add", edit: func(s string) string { return s + "    server web-3 10.0.0.3:8080 check weight 5\n" },
			want: []string{"add server web/web-3 10.0.0.3:8080 inter 2s check weight 5", "enable health web/web-3", "set server web/web-3 state ready"}},
		{name: "add disabled without check", edit: func(s string) string { return s + "    server web-3 10.0.0.3:8080 disabled\n" },
			want: []string{"add server web/web-3 10.0.0.3:8080 inter 2s"}},
		{name: "add ipv6", edit: func(s string) string { return s + "    server web-3 ipv6@fd00::3:80\n" },
			want: []string{"add server web/web-3 ipv6@fd00::3:80 inter 2s", "set server web/web-3 state ready"}},
		{name: "remove", edit: func(s string) string { return strings.Replace(s, "    server web-1 10.0.0.1:80 check\n", "", 1) },
			want: []string{"set server web/web-1 state maint"}},
		{name: "move", edit: func(s string) string { return strings.Replace(s, "10.0.0.2:80", "10.0.0.9:81", 1) },
			want: []string{"set server web/web-2 addr 10.0.0.9 port 81"}},
		{name: "weight and disable", edit: func(s string) string {
			return strings.Replace(s, "web-2 10.0.0.2:80 check", "web-2 10.0.0.2:80 check weight 3 disabled", 1)
		}, want: []string{"set server web/web-2 weight 3", "set server web/web-2 state maint"}},
		{name: "adds before removals", edit: func(s string) string {
			return strings.Replace(s, "    server web-1 10.0.0.1:80 check\n", "", 1) + "    server web-0 10.0.0.10:80\n"
		}, want: []string{"add server web/web-0 10.0.0.10:80 inter 2s", "set server web/web-0 state ready", "set server web/web-1 state maint"}},
		{name: "frontend acl", edit: func(s string) string { return strings.Replace(s, "path_beg /web", "path_beg /w", 1) },
			reload: "outside backend servers"},
		{name: "new backend", edit: func(s string) string { return s + "\nbackend api\n    server api-1 10.0.0.5:80\n" },
			reload: "outside backend servers"},
		{name: "default-server changed", edit: func(s string) string { return strings.Replace(s, "inter 2s", "inter 3s", 1) },
			reload: "outside backend servers"},
		{name: "options changed", edit: func(s string) string { return strings.Replace(s, "web-2 10.0.0.2:80 check", "web-2 10.0.0.2:80", 1) },
			reload: `changes options "inter 2s check" to "inter 2s"`},
		{name: "host name", edit: func(s string) string { return s + "    server web-3 web3.example:80\n" },
			reload: "literal IP"},
		{name: "unknown keyword", edit: func(s string) string { return s + "    server web-3 10.0.0.3:80 ssl verify none\n" },
			reload: `keyword "ssl"`},
		{name: "missing value", edit: func(s string) string { return s + "    server web-3 10.0.0.3:80 weight\n" },
			reload: "weight needs a value"},
		{name: "bad weight", edit: func(s string) string { return s + "    server web-3 10.0.0.3:80 weight 300\n" },
			reload: "want 0 to 256"},
		{name: "comment on the line", edit: func(s string) string { return s + "    server web-3 10.0.0.3:80 # new\n" },
			reload: "comments"},
		{name: "server-template", edit: func(s string) string { return s + "    server-template w 3 10.0.0.3:80\n" },
			reload: "outside backend servers"},
		{name: "named defaults", edit: func(s string) string {
			return strings.Replace(s, "backend web", "backend web from defs", 1) + "    server web-3 10.0.0.3:80\n"
		}, reload: "outside backend servers"},
	}
	old, err := ParseConfig([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := ParseConfig([]byte(tt.edit(base)))
			if err != nil {
				t.Fatal(err)
			}
			ops, err := Plan(old, nc)
			if tt.reload != "" {
				if !errors.Is(err, ErrNeedsReload) || !strings.Contains(err.Error(), tt.reload) {
					t.Fatalf("err = %v, want ErrNeedsReload with %q", err, tt.reload)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, op := range ops {
				got = append(got, op.Commands()...)
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"backend without name", "backend\n", "line 1: backend without a name"},
		{"backend twice", "backend a\nbackend a\n", `line 2: backend "a" defined twice`},
		{"server twice", "backend a\n server s 1.2.3.4:1\n server s 1.2.3.4:2\n", "line 3: server a/s defined twice (first on line 2)"},
		{"server short", "backend a\n server s\n", "line 2: server line without a name and an address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.in))
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// Defaults come from the last defaults section before the backend, then
// the backend's own default-server lines, in that order.
func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(`defaults
  default-server inter 1s
defaults
  default-server fall 2
backend a
  default-server weight 4
  server s 10.0.0.1:80 weight 5
`))
	if err != nil {
		t.Fatal(err)
	}
	b := c.Backend("a")
	if got := strings.Join(b.Defaults, " "); got != "fall 2 weight 4" || !b.DefaultsKnown {
		t.Fatalf("defaults %q known=%v", got, b.DefaultsKnown)
	}
	s, err := ParseServer(b.Defaults, b.Servers[0].Text)
	if err != nil {
		t.Fatal(err)
	}
	if s.Weight != 5 || s.Options != "fall 2" {
		t.Fatalf("server %+v", s)
	}
}

func TestParseServersState(t *testing.T) {
	in := "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n" +
		"3 web 1 a 127.0.0.1 2 0 7 7 5 8 2 0 6 0 0 0 - 8001 - 0 0 - - 0\n" +
		"3 web 2 b 127.0.0.1 0 5 1 1 5 1 0 0 8 0 0 0 - 8002 - 0 0 - - 0\n\n"
	got, err := ParseServersState(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "a" || got[0].Port != 8001 || got[0].Weight != 7 || got[0].Maint() || !got[1].Maint() {
		t.Fatalf("%+v", got)
	}
	for _, bad := range []string{"", "2\n# x\n", "1\n# be_name srv_name\n", "1\n# be_name srv_name srv_addr srv_port srv_uweight srv_admin_state srv_op_state\nw a 1.2.3.4 x 1 0 2\n"} {
		if _, err := ParseServersState(bad); err == nil {
			t.Errorf("ParseServersState(%q): no error", bad)
		}
	}
}

func TestParseProcs(t *testing.T) {
	in := "#<PID>          <type>          <reloads>       <uptime>        <version>      \n" +
		"10021           master          3 [failed: 1]   0d00h00m18s     2.6.12-1+deb12u4\n" +
		"# workers\n13108           worker          1               0d00h00m03s     2.6.12-1+deb12u4\n" +
		"# old workers\n12000           worker          2               0d00h00m03s     2.6.12-1+deb12u4\n" +
		"# programs\n\n"
	p, err := ParseProcs(in)
	if err != nil {
		t.Fatal(err)
	}
	if p.MasterPID != 10021 || p.Reloads != 3 || p.Failed != 1 || len(p.Workers) != 1 || p.Workers[0] != 13108 || len(p.Old) != 1 || p.Old[0] != 12000 {
		t.Fatalf("%+v", p)
	}
	if _, err := ParseProcs("Unknown command\n"); err == nil {
		t.Fatal("no error without a master line")
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(base), []byte(base+"    server web-3 10.0.0.3:80 check\n"))
	f.Add([]byte("backend a\n server s ipv6@::1:80 weight 3\n"), []byte("backend a\n server s [::1]:81 disabled\n"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		ca, err := ParseConfig(a)
		if err != nil {
			return
		}
		cb, err := ParseConfig(b)
		if err != nil {
			return
		}
		ops, err := Plan(ca, cb)
		if err != nil {
			if !errors.Is(err, ErrNeedsReload) {
				t.Fatalf("Plan error without ErrNeedsReload: %v", err)
			}
			return
		}
		for _, op := range ops {
			for _, c := range op.Commands() {
				if strings.ContainsAny(c, "\n;") {
					t.Fatalf("command %q would run several commands", c)
				}
			}
		}
		if self, err := Plan(ca, ca); err != nil || len(self) != 0 {
			t.Fatalf("Plan(a, a) = %v, %v; want nothing to do", self, err)
		}
	})
}

func FuzzParseState(f *testing.F) {
	f.Add("1\n# be_name srv_name srv_addr srv_port srv_uweight srv_admin_state srv_op_state\nw a 1.2.3.4 80 1 0 2\n")
	f.Add("#<PID> <type>\n1 master 0 [failed: 0] 0d 2.6\n# workers\n2 worker 0 0d 2.6\n")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParseServersState(s)
		_, _ = ParseProcs(s)
	})
}

// A server line of a peers section that follows a backend belongs to the
// peers section: changing it reloads.
func TestPlanPeersServerReloads(t *testing.T) {
	old, err := ParseConfig([]byte(base + "\npeers mesh\n    server lb-2 10.0.0.9:1024\n"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := ParseConfig([]byte(base + "\npeers mesh\n    server lb-2 10.0.0.8:1024\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ops, err := Plan(old, nc); !errors.Is(err, ErrNeedsReload) {
		t.Fatalf("Plan = %v, %v; want ErrNeedsReload", ops, err)
	}
}
