package telemetry

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/consul"
	"github.com/autopilot/autopilot/internal/proc"
	"github.com/autopilot/autopilot/internal/testenv"
	"github.com/autopilot/autopilot/render"
)

// TestTemplateMetricsFollowConsul renders from a real agent and scrapes a
// real telemetry server while instances come and go: the template counters
// move as files are written, refused by the check, left unchanged, and as
// data goes missing and comes back.
func TestTemplateMetricsFollowConsul(t *testing.T) {
	agent := testenv.StartConsul(t)
	c := agent.Client(t)
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	upstreams := filepath.Join(dir, "upstreams.conf")
	keyed := filepath.Join(dir, "keyed.conf")
	// The check refuses any file that names 10.9.9.9: a "bad" instance.
	check := proc.Command{Argv: []string{"sh", "-c", "! grep -q 10.9.9.9 {{.Path}}"}}
	cfgs := []render.Config{
		{Source: write("up.ctmpl", "{{ range service \"web\" }}{{ .Address }}:{{ .Port }}\n{{ end }}"), Destination: upstreams, Check: (&proc.Runner{}).CheckFunc(check), CheckName: check.String()},
		{Source: write("keyed.ctmpl", `mode={{ key "app/mode" }}`), Destination: keyed},
	}
	register := func(id, addr string, port int) {
		t.Helper()
		if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: id, Name: "web", Address: addr, Port: port}); err != nil {
			t.Fatal(err)
		}
	}
	// Registered before the runner starts, so the first write has it.
	register("web-1", "127.0.0.1", 8001)
	client, err := consul.NewClient(agent.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := consul.NewWatcher(ctx, client, consul.WatchOptions{}, zerolog.Nop())
	r, err := render.NewRunner(w, cfgs, render.RunnerOptions{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; w.Close() })

	url := serve(t, SourceFunc(func() Snapshot {
		return Snapshot{Version: "test", Templates: Templates(r.Stats()), Consul: Consul(client.Stats()), Watches: Watches(w.Watches())}
	}), nil) + "/metrics"
	metric := func(name, dest string) float64 {
		v, _ := scrape(t, url).Value(name, "destination="+dest)
		return v
	}
	await := func(what, name, dest string, ok func(float64) bool) {
		t.Helper()
		testenv.Eventually(t, 15*time.Second, func() (bool, string) {
			v := metric(name, dest)
			return ok(v), what + ": " + name + " = " + ftoa(v)
		})
	}
	eq := func(n float64) func(float64) bool { return func(v float64) bool { return v == n } }

	await("first write", "autopilot_template_writes_total", upstreams, eq(1))
	if v := metric("autopilot_template_last_write_timestamp_seconds", upstreams); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last write timestamp %v", v)
	}

	// The keyed template waits for app/mode: its data is missing.
	await("key missing", "autopilot_template_missing_data_seconds", keyed, func(v float64) bool { return v > 0 })
	if _, err := c.KV().Put(&api.KVPair{Key: "app/mode", Value: []byte("fast")}, nil); err != nil {
		t.Fatal(err)
	}
	await("key present", "autopilot_template_writes_total", keyed, eq(1))
	if v := metric("autopilot_template_missing_data_seconds", keyed); v != 0 {
		t.Errorf("missing_data_seconds after the key arrived = %v", v)
	}

	register("web-bad", "10.9.9.9", 8002)
	await("check refuses", "autopilot_template_check_failures_total", upstreams, eq(1))
	if v := metric("autopilot_template_writes_total", upstreams); v != 1 {
		t.Errorf("writes after a refused check = %v, want 1", v)
	}
	if got := readFile(t, upstreams); got != "127.0.0.1:8001\n" {
		t.Errorf("destination changed after a refused check: %q", got)
	}

	// Back to the written set: the render equals the file, nothing written.
	if err := c.Agent().ServiceDeregister("web-bad"); err != nil {
		t.Fatal(err)
	}
	await("unchanged render", "autopilot_template_unchanged_renders_total", upstreams, func(v float64) bool { return v >= 1 })

	register("web-2", "127.0.0.2", 8003)
	await("second write", "autopilot_template_writes_total", upstreams, eq(2))
	f := scrape(t, url)
	// The watch behind the template: its instances and requests, and the
	// client's requests by endpoint.
	q := `query=service "web|passing"`
	if v, ok := f.Value("autopilot_watch_instances", q); !ok || v != 2 {
		t.Errorf("watch instances = %v (present %v), want 2; scrape: %v", v, ok, f["autopilot_watch_instances"])
	}
	if v, _ := f.Value("autopilot_watch_requests_total", q); v < 4 {
		t.Errorf("watch requests = %v, want >= 4 (one per change)", v)
	}
	if v, _ := f.Value("autopilot_watch_last_change_timestamp_seconds", q); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("watch last change = %v", v)
	}
	if v, _ := f.Value("autopilot_consul_requests_total", "endpoint=health.service", "outcome=ok"); v < 4 {
		t.Errorf("consul requests health.service ok = %v", v)
	}
	if v, _ := f.Value("autopilot_consul_blocking_query_duration_seconds"); v < 4 {
		t.Errorf("blocking query latency samples = %v", v)
	}
	// Consul goes away: the watch counts its errors, the scrape and the
	// status keep answering at once, the file stays.
	agent.Stop()
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		v, _ := scrape(t, url).Value("autopilot_watch_errors_total", q)
		return v > 0, "watch errors " + ftoa(v)
	})
	start := time.Now()
	if _, body := getBody(t, strings.TrimSuffix(url, "/metrics")+"/status"); !strings.Contains(body, `"last_error"`) {
		t.Errorf("/status during the outage lacks the watch's last error:\n%s", body)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("/status took %v while Consul was down", took)
	}
	if got := readFile(t, upstreams); got != "127.0.0.1:8001\n127.0.0.2:8003\n" {
		t.Errorf("destination during the outage: %q", got)
	}
	renders, _ := f.Value("autopilot_template_renders_total", "destination="+upstreams)
	timed, _ := f.Value("autopilot_template_render_duration_seconds", "destination="+upstreams)
	if renders < 4 || timed != renders {
		t.Errorf("renders %v, render duration samples %v: want >= 4 and equal", renders, timed)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func ftoa(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
