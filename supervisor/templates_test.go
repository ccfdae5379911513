package supervisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/autopilot/autopilot/internal/haproxy"
	"github.com/autopilot/autopilot/internal/testenv"
)

func templateConfig(t *testing.T, dir, dest, extra string) string {
	os.WriteFile(filepath.Join(dir, "app.ctmpl"), []byte(`conf={{ key "app/conf" }}`), 0o644)
	return writeConfig(t, dir, fmt.Sprintf(`{"renderTimeout":"1s","templates":[{"source":"app.ctmpl","destination":%q%s}]%s}`,
		dest, `,"reloadSignal":"SIGHUP"`, extra))
}

// Issue 4: templates render before preStart, which runs before the app;
// reloadSignal reaches the app after a change.
func TestTemplatePreStartWaitsAndReloadSignal(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	client := c.Client(t)
	dir := t.TempDir()
	dest, rec := filepath.Join(dir, "app.conf"), filepath.Join(dir, "rec")
	cfg := templateConfig(t, dir, dest, fmt.Sprintf(`,"preStart":["sh","-c","cp %s %s.seen"]`, dest, dest))
	data, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(data), `"1s"`, `"60s"`, 1)), 0o644)
	s := startSup(t, cfg, c.HTTPAddr, nil, helper("app", rec)...)
	s.logHas("rendering templates", 20*time.Second)
	if _, err := client.KV().Put(&api.KVPair{Key: "app/conf", Value: []byte("v1")}, nil); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, rec, "start", 20*time.Second)
	if seen, _ := os.ReadFile(dest + ".seen"); string(seen) != "conf=v1" {
		t.Errorf("preStart saw %q", seen)
	}
	client.KV().Put(&api.KVPair{Key: "app/conf", Value: []byte("v2")}, nil)
	waitEvent(t, rec, syscall.SIGHUP.String(), 20*time.Second)
	if got, _ := os.ReadFile(dest); string(got) != "conf=v2" {
		t.Errorf("file %q", got)
	}
}

func TestTemplateRenderTimeout(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	t.Run("existing file", func(t *testing.T) {
		dir := t.TempDir()
		dest, rec := filepath.Join(dir, "app.conf"), filepath.Join(dir, "rec")
		os.WriteFile(dest, []byte("old"), 0o644)
		cfg := templateConfig(t, dir, dest, "")
		s := startSup(t, cfg, c.HTTPAddr, nil, helper("app", rec)...)
		waitEvent(t, rec, "start", 20*time.Second)
		s.logHas("starting with the existing files", time.Second)
		if got, _ := os.ReadFile(dest); string(got) != "old" {
			t.Errorf("file %q", got)
		}
	})
	t.Run("no file", func(t *testing.T) {
		dir := t.TempDir()
		dest, rec := filepath.Join(dir, "app.conf"), filepath.Join(dir, "rec")
		cfg := templateConfig(t, dir, dest, "")
		s := startSup(t, cfg, c.HTTPAddr, nil, helper("app", rec)...)
		if code := s.wait(20 * time.Second); code == 0 {
			t.Errorf("exit code 0")
		}
		if !strings.Contains(s.log.String(), "app/conf") {
			t.Errorf("error does not name the missing key:\n%s", s.log)
		}
		if _, err := os.Stat(rec); err == nil {
			t.Error("the app ran")
		}
	})
}

// The customers seed config, unchanged, runs a fake app end to end: the
// app serves its health endpoint on 4000, is registered, and a change of
// the sales backend sends it SIGHUP through (a fake) pkill.
func TestSeedCustomersEndToEnd(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	client := c.Client(t)
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "pkill"), []byte("#!/bin/sh\nexec kill -HUP \"$AUTOPILOT_APP_PID\"\n"), 0o755)
	path := "PATH=" + bin + ":" + os.Getenv("PATH")
	s := startSup(t, "testdata/customers.containerpilot.json", c.HTTPAddr, []string{path}, helper("app", rec, "4000")...)
	waitEvent(t, rec, "start", 20*time.Second)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		entries, _, err := client.Health().Service("customers", "", true, nil)
		return err == nil && len(entries) == 1 && entries[0].Service.Port == 4000, fmt.Sprintf("%d entries, %v", len(entries), err)
	})
	register(t, client, "sales-1", 7001)
	waitEvent(t, rec, syscall.SIGHUP.String(), 20*time.Second)
	s.signal(syscall.SIGTERM)
	if code := s.wait(20 * time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// TestTemplateHAProxy: a template with "haproxy" sockets, HAProxy as the
// app: a new backend server goes live through the runtime API with no
// reload; a frontend change reloads, confirmed on the master CLI.
func TestTemplateHAProxy(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	client := c.Client(t)
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "sup-hx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	admin, master := filepath.Join(sockDir, "admin.sock"), filepath.Join(sockDir, "master.sock")
	dest := filepath.Join(dir, "haproxy.cfg")
	os.WriteFile(filepath.Join(dir, "hx.ctmpl"), []byte(fmt.Sprintf(`global
    stats socket %s mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend http
    bind 127.0.0.1:%d
    http-request set-header X-Mode {{ keyOrDefault "lb/mode" "a" }}
    default_backend web
backend web
{{- range service "web" }}
    server {{ .ID }} {{ .Address }}:{{ .Port }}
{{- end }}
`, admin, testenv.FreePort(t))), 0o644)
	cfg := writeConfig(t, dir, fmt.Sprintf(`{"renderTimeout": "20s", "templates": [{"source": "hx.ctmpl", "destination": %q,
		"check": "/usr/sbin/haproxy -c -q -f {{.Path}}", "reloadSignal": "SIGUSR2", "haproxy": {"runtime": %q, "master": %q}}]}`, dest, admin, master))
	s := startSup(t, cfg, c.HTTPAddr, nil, "/usr/sbin/haproxy", "-W", "-db", "-S", master, "-f", dest)
	procs := func() haproxy.Procs {
		var p haproxy.Procs
		testenv.Eventually(t, 20*time.Second, func() (bool, string) {
			out, err := haproxy.Client{Addr: master}.Exec(context.Background(), "show proc")
			if err == nil {
				p, err = haproxy.ParseProcs(out)
			}
			return err == nil && len(p.Workers) == 1 && len(p.Old) == 0, fmt.Sprint(out, err)
		})
		return p
	}
	before := procs()
	if err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-1", Name: "web", Address: "127.0.0.1", Port: 9,
		Check: &api.AgentServiceCheck{TTL: "10m", Status: api.HealthPassing}}); err != nil {
		t.Fatal(err)
	}
	s.logHas("change applied without a reload", 20*time.Second)
	out, err := haproxy.Client{Addr: admin}.Exec(context.Background(), "show servers state web")
	if err != nil || !strings.Contains(out, " web-1 127.0.0.1 ") {
		t.Fatalf("web-1 not running: %v\n%s", err, out)
	}
	if p := procs(); p.Reloads != before.Reloads {
		t.Fatalf("reloaded for a new server: %+v -> %+v", before, p)
	}
	if _, err := client.KV().Put(&api.KVPair{Key: "lb/mode", Value: []byte("b")}, nil); err != nil {
		t.Fatal(err)
	}
	s.logHas("haproxy reload confirmed", 20*time.Second)
	if p := procs(); p.Reloads != before.Reloads+1 {
		t.Fatalf("want one reload for a frontend change: %+v -> %+v", before, p)
	}
}

// TestTemplateReloadConfirmWorkers: with "reloadConfirm": "workers", a
// reloadSignal to nginx (the app) is confirmed by its new worker process.
func TestTemplateReloadConfirmWorkers(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	client := c.Client(t)
	dir := t.TempDir()
	prefix := t.TempDir()
	for _, d := range []string{filepath.Dir(prefix), prefix} {
		os.Chmod(d, 0o755) // nginx workers may run as another user
	}
	include := filepath.Join(prefix, "include.conf")
	conf := testenv.NginxMainConf(t, include, testenv.FreePort(t))
	os.WriteFile(filepath.Join(dir, "inc.ctmpl"), []byte(`# mode {{ key "app/mode" }}`+"\n"), 0o644)
	cfg := writeConfig(t, dir, fmt.Sprintf(`{"renderTimeout": "20s", "templates": [{"source": "inc.ctmpl", "destination": %q,
		"reloadSignal": "SIGHUP", "reloadConfirm": "workers"}]}`, include))
	if _, err := client.KV().Put(&api.KVPair{Key: "app/mode", Value: []byte("a")}, nil); err != nil {
		t.Fatal(err)
	}
	nginx := "/usr/sbin/nginx"
	if _, err := os.Stat(nginx); err != nil {
		nginx = "nginx"
	}
	s := startSup(t, cfg, c.HTTPAddr, nil, nginx, "-p", prefix+"/", "-e", "stderr", "-c", conf,
		"-g", fmt.Sprintf("daemon off; pid %s; error_log stderr notice;", filepath.Join(prefix, "nginx.pid")))
	s.logHas("app started", 20*time.Second)
	if _, err := client.KV().Put(&api.KVPair{Key: "app/mode", Value: []byte("b")}, nil); err != nil {
		t.Fatal(err)
	}
	s.logHas("reload confirmed: a new worker runs", 20*time.Second)
}
