package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/control"
	"github.com/autopilot/autopilot/internal/telemetry"
	"github.com/autopilot/autopilot/supervisor/config"
)

// recorder is a control.Controller that remembers what it was told; its
// metrics are real telemetry.UserMetrics.
type recorder struct {
	metrics *telemetry.UserMetrics
	mu      sync.Mutex
	calls   []string
	env     map[string]string
}

func (r *recorder) note(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
}
func (r *recorder) Reload(context.Context) error { r.note("reload"); return nil }
func (r *recorder) SetMaintenance(_ context.Context, on bool) error {
	if on {
		r.note("maintenance on")
	} else {
		r.note("maintenance off")
	}
	return nil
}
func (r *recorder) PutEnv(k, v string)                  { r.note("env " + k + "=" + v) }
func (r *recorder) PutMetric(n string, v float64) error { return r.metrics.Put(n, v) }
func (r *recorder) Status() telemetry.Snapshot {
	return telemetry.Snapshot{Version: "9.9", Config: telemetry.ConfigStatus{File: "app.json5", Generation: 2},
		Jobs:      []telemetry.JobStatus{{Name: "app", State: "running", Running: true, PID: 77, Starts: 1, Health: &telemetry.HealthStatus{Status: "passing", Runs: 3}}},
		Services:  []telemetry.ServiceStatus{{ID: "app-1", Name: "app", Address: "10.0.0.9", Port: 80, Health: "passing", Registered: true}},
		Watches:   []telemetry.WatchStatus{{Query: `service "db|passing"`, Instances: 2}},
		Templates: []telemetry.TemplateStatus{{Destination: "/etc/nginx/nginx.conf", Writes: 4, LastCheck: &telemetry.Outcome{OK: false, Output: "nginx: [emerg] unexpected \"}\""}}},
	}
}
func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func serveRecorder(t *testing.T) (*recorder, string) {
	t.Helper()
	um, err := telemetry.NewUserMetrics([]config.Metric{{Namespace: "app", Name: "hits", Type: config.Counter}})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("/tmp", "cli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "cp.socket")
	s, err := control.Listen(path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{metrics: um}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx, r); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r, path
}

func TestControlFlags(t *testing.T) {
	r, sock := serveRecorder(t)
	tests := []struct {
		name     string
		args     []string
		code     int
		out, err string
	}{
		{"ping", []string{"-ping"}, exitOK, "ok\n", ""},
		{"reload", []string{"-reload"}, exitOK, "", ""},
		{"maintenance on", []string{"-maintenance", "enable"}, exitOK, "", ""},
		{"maintenance off", []string{"-maintenance", "disable"}, exitOK, "", ""},
		{"maintenance bad", []string{"-maintenance", "maybe"}, exitUsage, "", `-maintenance "maybe": want enable or disable`},
		{"putenv", []string{"-putenv", "A=1", "-putenv", "B=x=y"}, exitOK, "", ""},
		{"putenv bad", []string{"-putenv", "A"}, exitUsage, "", `"A": want KEY=VALUE`},
		{"putmetric", []string{"-putmetric", "app_hits=2"}, exitOK, "", ""},
		{"putmetric unknown", []string{"-putmetric", "app_misses=2"}, exitError, "", `-putmetric: metric: unknown metric "app_misses" (declared: app_hits)`},
		{"putmetric not a number", []string{"-putmetric", "app_hits=lots"}, exitUsage, "", `-putmetric app_hits: value "lots" is not a number`},
		{"extra args", []string{"-reload", "app"}, exitUsage, "", "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Run(context.Background(), append([]string{"-socket", sock}, tt.args...), &out, &errb)
			if code != tt.code || out.String() != tt.out || !strings.Contains(errb.String(), tt.err) {
				t.Errorf("code %d, stdout %q, stderr %q; want %d, %q, %q", code, out.String(), errb.String(), tt.code, tt.out, tt.err)
			}
		})
	}
	want := []string{"reload", "maintenance on", "maintenance off", "env A=1", "env B=x=y"}
	if got := r.seen(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("calls %q, want %q", got, want)
	}
}

// TestSocketFromConfig: without -socket, the config's control.socket names
// the socket, as ContainerPilot's client reads it.
func TestSocketFromConfig(t *testing.T) {
	r, sock := serveRecorder(t)
	cfg := filepath.Join(t.TempDir(), "cp.json5")
	if err := os.WriteFile(cfg, []byte(`{ control: { socket: "`+sock+`" }, jobs: [ { name: "app", exec: "true" } ] }`), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	t.Setenv("CONTAINERPILOT", cfg)
	if code := RunAs(context.Background(), "/usr/local/bin/containerpilot", []string{"-reload"}, &out, &errb); code != exitOK {
		t.Fatalf("containerpilot -reload: %d %s", code, errb.String())
	}
	if got := r.seen(); len(got) != 1 || got[0] != "reload" {
		t.Errorf("calls %q", got)
	}
	// A config that does not load is an error, not a guess.
	errb.Reset()
	if code := Run(context.Background(), []string{"-config", `{ "bogus": 1 }`, "-ping"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "bogus") {
		t.Errorf("bad config: %d %q", code, errb.String())
	}
}

func TestContainerPilotVersionAndTemplate(t *testing.T) {
	var out, errb bytes.Buffer
	if code := RunAs(context.Background(), "containerpilot", []string{"-version"}, &out, &errb); code != exitOK || !strings.HasPrefix(out.String(), "Version: "+Version+"\nGitHash: ") {
		t.Errorf("containerpilot -version: %d %q", code, out.String())
	}
	out.Reset()
	if code := RunAs(context.Background(), "autopilot", []string{"-version"}, &out, &errb); code != exitOK || out.String() != "autopilot "+Version+"\n" {
		t.Errorf("autopilot -version: %d %q", code, out.String())
	}

	dir := t.TempDir()
	cfg := filepath.Join(dir, "cp.json5")
	text := `{ consul: "{{ .CONSUL | default "localhost" }}:8500", jobs: [ { name: "app", exec: "true" } ] }`
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONSUL", "consul.svc")
	out.Reset()
	if code := RunAs(context.Background(), "containerpilot", []string{"-config", cfg, "-template"}, &out, &errb); code != exitOK ||
		!strings.Contains(out.String(), `consul: "consul.svc:8500"`) {
		t.Errorf("-template: %d %q %q", code, out.String(), errb.String())
	}
	dest := filepath.Join(dir, "rendered.json5")
	if code := RunAs(context.Background(), "containerpilot", []string{"-config", cfg, "-template", "-out", dest}, &out, &errb); code != exitOK {
		t.Fatalf("-template -out: %d %s", code, errb.String())
	}
	if b, _ := os.ReadFile(dest); !strings.Contains(string(b), "consul.svc:8500") {
		t.Errorf("-out file: %q", b)
	}
}

func TestStatusCommand(t *testing.T) {
	_, sock := serveRecorder(t)
	var out, errb bytes.Buffer
	if code := Run(context.Background(), []string{"status", "-socket", sock}, &out, &errb); code != exitOK {
		t.Fatalf("status: %d %s", code, errb.String())
	}
	for _, want := range []string{"autopilot 9.9  config app.json5 (generation 2)", "JOBS", "app   running  77", "passing (0/3 failed)",
		"10.0.0.9:80", `service "db|passing"`, "/etc/nginx/nginx.conf", `FAILED: nginx: [emerg] unexpected "}"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := Run(context.Background(), []string{"status", "-socket", sock, "-json"}, &out, &errb); code != exitOK || !strings.Contains(out.String(), `"schema": 1`) {
		t.Errorf("status -json: %d %s", code, out.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errb.Reset()
	if code := Run(ctx, []string{"status", "-socket", filepath.Join(t.TempDir(), "none")}, &out, &errb); code != exitError || !strings.Contains(errb.String(), "does not exist") {
		t.Errorf("status without autopilot: %d %q", code, errb.String())
	}
}
