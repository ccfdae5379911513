package cli

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var updateCheck = flag.Bool("update", false, "rewrite the golden files in testdata/check")

func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ok.ctmpl"), []byte(`{{ key "a" }}`), 0o644)
	os.WriteFile(filepath.Join(dir, "bad.ctmpl"), []byte(`{{ key "a" `), 0o644)
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(text), 0o644)
		return p
	}
	if err := os.Symlink("out", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
		code int
	}{
		{"ok", []string{"-config", write("ok.json", `{"templates":[{"source":"ok.ctmpl","destination":"/tmp/x"}]}`)}, "OK", exitOK},
		{"seed", []string{"-config", "../../supervisor/config/testdata/seed/nginx.containerpilot.json"}, "ContainerPilot 2 config, 5 jobs, 2 watches", exitOK},
		{"v3", []string{"-config", "../../supervisor/config/testdata/corpus/v3/service-reg-only.json5"}, "ContainerPilot 3 config, 1 jobs", exitOK},
		{"inline json5", []string{"-config", `{jobs: [{name: 'a', exec: 'true'},]}`}, "OK inline config", exitOK},
		{"unknown field", []string{"-config", write("uf.json", `{"services":[{"helth":1}]}`)}, "uf.json:1:15: services[0].helth: unknown field", exitUsage},
		{"bad template", []string{"-config", write("bt.json", `{"templates":[{"source":"bad.ctmpl","destination":"/tmp/x"}]}`)}, "bad.ctmpl", exitUsage},
		// Through a symlink: accepted before, and the two templates
		// overwrote each other on every change.
		{"one destination through a symlink", []string{"-config", write("dd.json", `{"templates":[{"source":"ok.ctmpl","destination":"`+dir+`/out"},{"source":"ok.ctmpl","destination":"`+dir+`/link"}]}`)},
			"have one destination", exitUsage},
		{"cycle", []string{"-config", write("cy.json5", "{jobs: [\n {name: 'a', exec: 'x', when: {source: 'a', once: 'exitSuccess'}}]}")}, "cy.json5:2:40: jobs[0].when.source: job \"a\" waits for its own exitSuccess", exitUsage},
		{"bad config template", []string{"-config", write("bct.json", "{\n\"consul\": \"{{ .X \"\n}")}, "bct.json:2: template:", exitUsage},
		{"v3 command clash", []string{"-config", write("clash.json5", `{jobs: [{name: 'main', exec: 'x'}]}`), "--", "app"}, `config has a job of that name`, exitUsage},
		{"reserved metric name", []string{"-config", write("rm.json5", `{telemetry: {port: 9090, metrics: [{name: 'autopilot_x', type: 'counter'}]}, jobs: [{name: 'a', exec: 'true'}]}`)},
			`telemetry.metrics[0]: name "autopilot_x": the autopilot_ prefix is reserved`, exitUsage},
		{"no config", []string{}, "-config FILE is required", exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("AUTOPILOT", "")
			t.Setenv("CONTAINERPILOT", "")
			var out, errb bytes.Buffer
			code := Run(context.Background(), append([]string{"check"}, tt.args...), &out, &errb)
			if code != tt.code || !strings.Contains(out.String()+errb.String(), tt.want) {
				t.Errorf("code %d, output %q %q; want %d and %q", code, out.String(), errb.String(), tt.code, tt.want)
			}
		})
	}
}

// TestCheckExplain: -explain prints what a config became; golden files.
func TestCheckExplain(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"seed-nginx", []string{"-config", "../../supervisor/config/testdata/seed/nginx.containerpilot.json"}, nil},
		{"v2-nginx", []string{"-config", "file://../../supervisor/config/testdata/corpus/v2/nginx.json"}, map[string]string{"CONSUL": "consul.svc", "BACKEND": "app"}},
		{"v3-consul-agent-with-command", []string{"-config", "../../supervisor/config/testdata/corpus/v3/consul-agent.json5", "--", "/bin/app", "-v"}, map[string]string{"CONSUL": "consul.svc", "PORT": "3000"}},
		{"v3-from-env-var", nil, map[string]string{"CONTAINERPILOT": "../../supervisor/config/testdata/corpus/v3/full-schema.json5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("AUTOPILOT", "")
			t.Setenv("CONTAINERPILOT", "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errb bytes.Buffer
			if code := Run(context.Background(), append([]string{"check", "-explain"}, tc.args...), &out, &errb); code != exitOK {
				t.Fatalf("code %d: %s", code, errb.String())
			}
			golden := filepath.Join("testdata/check", tc.name+".txt")
			if *updateCheck {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if !bytes.Equal(want, out.Bytes()) {
				t.Errorf("differs from %s:\n%s", golden, out.String())
			}
		})
	}
}
