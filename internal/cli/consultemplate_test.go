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

// Under the consul-template name, refusals and usage errors exit with
// consul-template's codes and say why; nothing is written.
func TestConsulTemplateNameOffline(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("vault.ctmpl", "{{ with secret \"secret/x\" }}{{ .Data.password }}{{ end }}\n")
	write("ok.ctmpl", "{{ key \"k\" }}\n")
	write("bad.hcl", "template {\n  source = \"ok.ctmpl\"\n  destination = \"out\"\n  sandbox_path = \"/x\"\n}\n")
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
		{"refused option in a config", []string{"-once", "-config", "bad.hcl"}, ctExitConfigError, "", "bad.hcl:4:3: template.sandbox_path: sandbox_path is not supported"},
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

// -exec: the child starts after the first render, gets -exec-reload-signal
// when the file changes, and the kill signal (here: ctx ends) stops it.
func TestConsulTemplateExecReloadSignal(t *testing.T) {
	agent := testenv.StartConsul(t)
	kv := agent.Client(t).KV()
	if _, err := kv.Put(&api.KVPair{Key: "k", Value: []byte("one")}, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k.ctmpl"), []byte("{{ key \"k\" }}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	child := `trap 'cat out.txt >> hups' HUP; echo started >> starts; while :; do sleep 0.05; done`
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	t.Chdir(dir)
	go func() {
		code, _, _ := runCT(t, ctx, "", "-consul-addr", agent.HTTPAddr, "-template", "k.ctmpl:out.txt",
			"-exec", "sh -c \""+child+"\"", "-exec-reload-signal", "SIGHUP", "-exec-kill-timeout", "2s")
		done <- code
	}()
	read := func(name string) string { b, _ := os.ReadFile(filepath.Join(dir, name)); return string(b) }
	testenv.Eventually(t, 15*time.Second, func() (bool, string) { return read("starts") == "started\n", "starts: " + read("starts") })
	if _, err := kv.Put(&api.KVPair{Key: "k", Value: []byte("two")}, nil); err != nil {
		t.Fatal(err)
	}
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
