package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/autopilot/autopilot/internal/telemetry"
	"github.com/autopilot/autopilot/internal/testenv"
)

// observeConfig is a ContainerPilot 3 config with telemetry, a control
// socket, a health-checked service, a job that calls -putmetric once the
// service is healthy, a job that fails and restarts, a periodic job that
// prints an environment variable, a watch and a template.
const observeConfig = `{
  consul: "{{ .CONSUL_ADDR }}",
  logging: { level: "info", format: "json" },
  control: { socket: "{{ .DIR }}/cp.socket" },
  telemetry: {
    port: {{ .TELEMETRY_PORT }},
    interfaces: ["static:127.0.0.1"],
    tags: ["e2e"],
    metrics: [
      { namespace: "app", name: "hits", help: "hits counted by the app", type: "counter" },
      { namespace: "app", subsystem: "db", name: "conns", help: "open connections", type: "gauge" },
    ],
  },
  jobs: [
    {
      name: "web",
      exec: ["sleep", "3600"],
      port: {{ .WEB_PORT }},
      interfaces: ["static:127.0.0.1"],
      health: { exec: ["test", "-e", "{{ .DIR }}/healthy"], interval: "300ms", ttl: "5s" },
    },
    {
      name: "putter",
      exec: ["{{ .AUTOPILOT }}", "-putmetric", "app_hits=3", "-putmetric", "app_db_conns=7"],
      when: { source: "web", once: "healthy" },
    },
    { name: "flaky", exec: ["sh", "-c", "exit 3"], restarts: 2 },
    {
      name: "greeter",
      exec: ["sh", "-c", "echo \"$GREETING\" > {{ .DIR }}/greeting"],
      when: { interval: "300ms" },
    },
    {{ .EXTRA_JOB }}
  ],
  watches: [ { name: "db", interval: "100ms" } ],
  templates: [
    { source: "{{ .DIR }}/db.ctmpl", destination: "{{ .DIR }}/db.conf" },
  ],
}
`

// observed is one autopilot run by TestObserveAndSteer.
type observed struct {
	t       *testing.T
	dir     string
	cfgPath string
	metrics string // base URL of the telemetry server
	env     []string
	consul  *api.Client
	vars    map[string]string
}

func (o *observed) writeConfig(extraJob string) {
	o.t.Helper()
	text := observeConfig
	vars := map[string]string{"EXTRA_JOB": extraJob}
	for k, v := range o.vars {
		vars[k] = v
	}
	for k, v := range vars {
		text = strings.ReplaceAll(text, "{{ ."+k+" }}", v)
	}
	if err := os.WriteFile(o.cfgPath, []byte(text), 0o644); err != nil {
		o.t.Fatal(err)
	}
}

// run runs a one-shot autopilot command (name is argv[0]: autopilotBin or
// a containerpilot symlink) with the test's environment.
func (o *observed) run(bin string, args ...string) (int, string) {
	o.t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = o.env
	out, _ := cmd.CombinedOutput()
	return testenv.ExitCode(cmd), string(out)
}

type scraped struct{ testenv.Metrics }

func (o *observed) scrape() scraped {
	o.t.Helper()
	f, err := o.tryScrape()
	if err != nil {
		o.t.Fatal(err)
	}
	return f
}

// tryScrape scrapes /metrics and parses it with Prometheus' parser.
func (o *observed) tryScrape() (scraped, error) {
	m, err := testenv.ScrapeMetrics(o.metrics + "/metrics")
	return scraped{m}, err
}

// value is the sample of name whose labels match want ("k=v"; a value
// ending in * matches a prefix); -1 when there is none.
func (f scraped) value(name string, want ...string) float64 {
	if v, ok := f.Value(name, want...); ok {
		return v
	}
	return -1
}

// await polls the scrape until cond holds for metric name{labels}.
func (o *observed) await(what, name string, cond func(float64) bool, labels ...string) {
	o.t.Helper()
	testenv.Eventually(o.t, 30*time.Second, func() (bool, string) {
		f, err := o.tryScrape()
		if err != nil {
			return false, err.Error()
		}
		v := f.value(name, labels...)
		return cond(v), fmt.Sprintf("%s: %s%v = %v", what, name, labels, v)
	})
}

func atLeast(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }
func equal(n float64) func(float64) bool   { return func(v float64) bool { return v == n } }

func (o *observed) status() telemetry.Snapshot {
	o.t.Helper()
	resp, err := http.Get(o.metrics + "/status")
	if err != nil {
		o.t.Fatal(err)
	}
	defer resp.Body.Close()
	var s telemetry.Snapshot
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &s); err != nil {
		o.t.Fatalf("/status: %v\n%s", err, b)
	}
	return s
}

// TestObserveAndSteer runs a ContainerPilot 3 config under the real binary
// against a real agent and checks every promise of the metrics, status and
// control issue from the outside: scrapes parsed with Prometheus' parser,
// Consul's own view, and the ContainerPilot command flags run as separate
// processes (one of them by a job, one through a containerpilot symlink).
func TestObserveAndSteer(t *testing.T) {
	agent := testenv.StartConsul(t)
	dir, err := os.MkdirTemp("/tmp", "obs") // short: Unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	o := &observed{t: t, dir: dir, cfgPath: filepath.Join(dir, "app.json5"), consul: agent.Client(t)}
	tport, wport := testenv.FreePort(t), testenv.FreePort(t)
	o.metrics = "http://127.0.0.1:" + strconv.Itoa(tport)
	o.vars = map[string]string{"CONSUL_ADDR": agent.HTTPAddr, "DIR": dir, "TELEMETRY_PORT": strconv.Itoa(tport),
		"WEB_PORT": strconv.Itoa(wport), "AUTOPILOT": autopilotBin}
	if err := os.WriteFile(filepath.Join(dir, "db.ctmpl"), []byte(`{{ range service "db" }}{{ .Address }}:{{ .Port }}
{{ end }}`), 0o644); err != nil {
		t.Fatal(err)
	}
	o.writeConfig("")
	// Jobs inherit CONTAINERPILOT, as in ContainerPilot images: the
	// putter job's `autopilot -putmetric` finds the socket through it.
	o.env = append(baseEnv(), "CONTAINERPILOT="+o.cfgPath)
	s := newStack(t)
	ap := s.start("observed", o.cfgPath, []string{"CONTAINERPILOT=" + o.cfgPath})

	// The service is not healthy yet: its check fails, Consul has it critical.
	o.await("health failing", "autopilot_health_check_failures_total", atLeast(1), "job=web")
	o.await("status critical", "autopilot_health_check_status", equal(1), "job=web", "status=critical")
	if v := o.scrape().value("app_hits"); v != 0 {
		t.Errorf("app_hits before the putter ran = %v", v)
	}

	// Healthy: passing in the scrape and in Consul, and the putter job
	// (once: healthy) feeds the user's metrics from a child process.
	if err := os.WriteFile(filepath.Join(dir, "healthy"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	o.await("status passing", "autopilot_health_check_status", equal(1), "job=web", "status=passing")
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		got, err := passing(o.consul, "web")
		return err == nil && len(got) == 1, fmt.Sprint("web passing in Consul: ", got, err)
	})
	o.await("putmetric from a job", "app_hits", equal(3))
	o.await("putmetric from a job", "app_db_conns", equal(7))
	o.await("ttl heartbeats", "autopilot_health_check_ttl_updates_total", atLeast(1), "job=web")

	// The flaky job: started 3 times, restarted twice, 3 failed exits.
	o.await("restarts", "autopilot_job_restarts_total", equal(2), "job=flaky")
	f := o.scrape()
	if v := f.value("autopilot_job_exits_total", "job=flaky", "class=failure"); v != 3 {
		t.Errorf("flaky failure exits = %v, want 3", v)
	}
	if v := f.value("autopilot_job_starts_total", "job=flaky"); v != 3 {
		t.Errorf("flaky starts = %v, want 3", v)
	}
	if v := f.value("autopilot_job_running", "job=web"); v != 1 {
		t.Errorf("web running = %v", v)
	}

	// A watch change: db appears; the watch and the template follow.
	if err := o.consul.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "db-1", Name: "db", Address: "127.0.0.9", Port: 5432}); err != nil {
		t.Fatal(err)
	}
	o.await("watch instances", "autopilot_watch_instances", equal(1), `query=service "db*`)
	o.await("template written", "autopilot_template_writes_total", atLeast(1), "destination="+filepath.Join(dir, "db.conf"))
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		b, _ := os.ReadFile(filepath.Join(dir, "db.conf"))
		return string(b) == "127.0.0.9:5432\n", string(b)
	})
	if v := o.scrape().value("autopilot_template_last_write_timestamp_seconds", "destination="+filepath.Join(dir, "db.conf")); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last write timestamp %v", v)
	}

	// /status matches what Consul shows.
	st := o.status()
	svcs, err := o.consul.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	var web *telemetry.ServiceStatus
	for i := range st.Services {
		if st.Services[i].Name == "web" {
			web = &st.Services[i]
		}
	}
	if web == nil {
		t.Fatalf("/status has no web service: %+v", st.Services)
	}
	if reg, ok := svcs[web.ID]; !ok || reg.Port != wport || reg.Address != web.Address || !web.Registered || web.Health != "passing" {
		t.Errorf("/status web %+v; Consul has %+v", web, reg)
	}
	if st.Schema != 1 || st.Config.Generation != 1 || !st.Consul.Reachable {
		t.Errorf("/status: schema %d generation %d reachable %v", st.Schema, st.Config.Generation, st.Consul.Reachable)
	}

	// The telemetry endpoint is registered as ContainerPilot's was.
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		entries, _, err := o.consul.Health().Service("containerpilot", "e2e", true, nil)
		if err != nil || len(entries) != 1 {
			return false, fmt.Sprint("containerpilot service: ", len(entries), err)
		}
		return entries[0].Service.Port == tport, fmt.Sprint("port ", entries[0].Service.Port)
	})

	// -maintenance enable takes web out of the passing set; disable puts it back.
	if code, out := o.run(autopilotBin, "-maintenance", "enable"); code != 0 {
		t.Fatalf("-maintenance enable: %d %s", code, out)
	}
	if got, _ := passing(o.consul, "web"); len(got) != 0 {
		t.Errorf("web still passing after -maintenance enable returned: %v", got)
	}
	o.await("maintenance gauge", "autopilot_service_maintenance", equal(1), "service=web")
	if code, out := o.run(autopilotBin, "-maintenance", "disable"); code != 0 {
		t.Fatalf("-maintenance disable: %d %s", code, out)
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		got, err := passing(o.consul, "web")
		return err == nil && len(got) == 1, fmt.Sprint("web passing: ", got, err)
	})

	// -putenv: the next run of the periodic job sees the variable.
	if code, out := o.run(autopilotBin, "-putenv", "GREETING=hello"); code != 0 {
		t.Fatalf("-putenv: %d %s", code, out)
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		b, _ := os.ReadFile(filepath.Join(dir, "greeting"))
		return string(b) == "hello\n", fmt.Sprintf("greeting %q", b)
	})

	// Bad input: clear errors, the running autopilot unaffected.
	if code, out := o.run(autopilotBin, "-putmetric", "app_misses=1"); code != 1 || !strings.Contains(out, `unknown metric "app_misses" (declared: app_db_conns, app_hits)`) {
		t.Errorf("unknown metric: %d %q", code, out)
	}
	if code, out := o.run(autopilotBin, "-putmetric", "app_hits=many"); code != 2 || !strings.Contains(out, `value "many" is not a number`) {
		t.Errorf("non-numeric: %d %q", code, out)
	}
	second := s.start("second", o.cfgPath, nil)
	if code := second.wait(t, 30*time.Second); code != 2 || !strings.Contains(second.Log(), "another autopilot is serving this control socket") {
		t.Errorf("second autopilot on the same socket: exit %d\n%s", code, tail(second.Log(), 10))
	}
	missing := filepath.Join(dir, "missing.json5")
	if err := os.WriteFile(missing, []byte(`{ control: { socket: "`+dir+`/nodir/cp.socket" }, jobs: [ { name: "a", exec: "true" } ] }`), 0o644); err != nil {
		t.Fatal(err)
	}
	third := s.start("missing-dir", missing, nil)
	if code := third.wait(t, 30*time.Second); code != 2 || !strings.Contains(third.Log(), "nodir does not exist") {
		t.Errorf("socket in a missing directory: exit %d\n%s", code, tail(third.Log(), 10))
	}
	if v := o.scrape().value("app_hits"); v != 3 {
		t.Errorf("app_hits after refused commands = %v, want 3", v)
	}

	if v := o.scrape().value("autopilot_control_requests_total", "path=/v3/metric", "code=422"); v != 1 {
		t.Errorf("control requests /v3/metric 422 = %v, want 1 (the unknown metric)", v)
	}

	// Under the name containerpilot, the same binary is ContainerPilot.
	cp := filepath.Join(dir, "containerpilot")
	if err := os.Symlink(autopilotBin, cp); err != nil {
		t.Fatal(err)
	}
	if code, out := o.run(cp, "-ping"); code != 0 || out != "ok\n" {
		t.Errorf("containerpilot -ping: %d %q", code, out)
	}
	if code, out := o.run(cp, "-putmetric", "app_hits=2"); code != 0 {
		t.Errorf("containerpilot -putmetric: %d %q", code, out)
	}
	o.await("containerpilot -putmetric", "app_hits", equal(5))

	// -reload applies a new config: a new job runs, the generation moves.
	o.writeConfig(`{ name: "added", exec: ["touch", "` + dir + `/added"] },`)
	if code, out := o.run(autopilotBin, "-reload"); code != 0 {
		t.Fatalf("-reload: %d %s", code, out)
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		_, err := os.Stat(filepath.Join(dir, "added"))
		return err == nil, fmt.Sprint("added job's file: ", err)
	})
	o.await("generation", "autopilot_config_generation", equal(2))
	if v := o.scrape().value("app_hits"); v != 5 {
		t.Errorf("app_hits after reload = %v, want 5 (kept)", v)
	}
	// A bad config is refused with its error; the old one keeps running.
	if err := os.WriteFile(o.cfgPath, []byte(`{ jobs: [ { name: "x", exec: "true", when: { once: "sometime" } } ] }`), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := o.run(autopilotBin, "-config", o.cfgPath, "-socket", dir+"/cp.socket", "-reload"); code != 1 || !strings.Contains(out, "sometime") {
		t.Errorf("-reload of a bad config: %d %q", code, out)
	}
	o.await("reload refused", "autopilot_config_last_reload_failed", equal(1))
	if st := o.status(); !strings.Contains(st.Config.LastReloadError, "sometime") || st.Config.Generation != 2 {
		t.Errorf("/status after a refused reload: %+v", st.Config)
	}
	// SIGHUP with the good config again: accepted, generation 3.
	o.writeConfig(`{ name: "added", exec: ["touch", "` + dir + `/added"] },`)
	ap.signal(t, syscall.SIGHUP)
	o.await("SIGHUP reload", "autopilot_config_generation", equal(3))
	o.await("reload accepted", "autopilot_config_last_reload_failed", equal(0))

	// autopilot status reads the same document through the socket.
	if code, out := o.run(autopilotBin, "status"); code != 0 || !strings.Contains(out, "web") || !strings.Contains(out, "TEMPLATES") {
		t.Errorf("autopilot status: %d\n%s", code, out)
	}

	// Every metric the example dashboard uses exists in this real scrape.
	have := o.scrape().Series()
	b, err := os.ReadFile(filepath.Join(repoRoot, "examples/grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range regexp.MustCompile(`\b(?:autopilot|process|go)_[a-z_]+`).FindAllString(string(b), -1) {
		if !have[n] {
			t.Errorf("the dashboard uses %s, which the scrape of a running autopilot lacks", n)
		}
	}

	ap.stop(30 * time.Second)
	if _, err := os.Lstat(filepath.Join(dir, "cp.socket")); !os.IsNotExist(err) {
		t.Errorf("control socket left after exit: %v", err)
	}
	if entries, _, _ := o.consul.Health().Service("containerpilot", "", false, nil); len(entries) != 0 {
		t.Errorf("telemetry service still registered after exit")
	}
}

// TestSensorFeedsMetric: a ContainerPilot 2 config's telemetry sensors run
// as periodic jobs whose output is the metric's value, and the telemetry
// endpoint serves it; `autopilot status -url` reads the same instance.
func TestSensorFeedsMetric(t *testing.T) {
	agent := testenv.StartConsul(t)
	dir := t.TempDir()
	tport := testenv.FreePort(t)
	cfg := filepath.Join(dir, "containerpilot.json")
	text := fmt.Sprintf(`{
  "consul": "%s",
  "telemetry": {
    "port": %d,
    "interfaces": ["static:127.0.0.1"],
    "sensors": [
      {"namespace": "app", "name": "queue_depth", "help": "jobs waiting", "type": "gauge", "poll": 1, "check": ["sh", "-c", "echo starting; echo 42.5"]},
      {"namespace": "app", "name": "ticks_total", "help": "ticks", "type": "counter", "poll": 1, "check": ["echo", "1"]}
    ]
  }
}`, agent.HTTPAddr, tport)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newStack(t)
	s.start("sensors", cfg, nil, "sleep", "3600")
	o := &observed{t: t, metrics: "http://127.0.0.1:" + strconv.Itoa(tport)}
	o.await("sensor gauge", "app_queue_depth", equal(42.5))
	o.await("sensor counter", "app_ticks_total", atLeast(2))
	if h := o.scrape().Metrics["app_queue_depth"].GetHelp(); h != "jobs waiting" {
		t.Errorf("help %q", h)
	}
	cmd := exec.Command(autopilotBin, "status", "-url", o.metrics)
	cmd.Env = baseEnv()
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "JOBS") || !strings.Contains(string(out), "running") {
		t.Errorf("autopilot status -url: %v\n%s", err, out)
	}
	t.Logf("autopilot status -url:\n%s", out)
}

// TestObserveWithoutConsul: with no agent at the configured address the
// endpoint, the status and the control socket answer at once and say that
// Consul is unreachable; maintenance is refused within its bound.
func TestObserveWithoutConsul(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "obs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	tport, dead := testenv.FreePort(t), testenv.FreePort(t)
	cfg := filepath.Join(dir, "app.json5")
	text := fmt.Sprintf(`{
  consul: "127.0.0.1:%d",
  control: { socket: "%s/cp.socket" },
  telemetry: { port: %d, interfaces: ["static:127.0.0.1"], metrics: [ { namespace: "app", name: "up", type: "gauge" } ] },
  jobs: [ { name: "web", exec: ["sleep", "3600"], port: 8080, interfaces: ["static:127.0.0.1"], health: { exec: "true", interval: "500ms", ttl: "5s" } } ],
}`, dead, dir, tport)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newStack(t)
	s.start("no-consul", cfg, nil)
	o := &observed{t: t, metrics: "http://127.0.0.1:" + strconv.Itoa(tport), env: append(baseEnv(), "CONTAINERPILOT="+cfg)}
	o.await("consul down", "autopilot_consul_up", equal(0))
	// The job starts without Consul; the metric can be first.
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		st := o.status()
		return len(st.Jobs) == 1 && st.Jobs[0].Running, fmt.Sprintf("/status jobs: %+v", st.Jobs)
	})
	start := time.Now()
	if st := o.status(); st.Consul.Reachable || st.Consul.LastError == "" {
		t.Errorf("/status consul: %+v", st.Consul)
	}
	if code, out := o.run(autopilotBin, "-putmetric", "app_up=1"); code != 0 {
		t.Errorf("-putmetric without Consul: %d %s", code, out)
	}
	if code, out := o.run(autopilotBin, "-ping"); code != 0 {
		t.Errorf("-ping without Consul: %d %s", code, out)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("status, putmetric and ping took %v without Consul", d)
	}
	o.await("putmetric", "app_up", equal(1))
	// Maintenance is desired state: accepted at once, applied by the
	// supervisor when the agent is back (nothing is registered now).
	start = time.Now()
	if code, out := o.run(autopilotBin, "-maintenance", "enable"); code != 0 {
		t.Errorf("-maintenance enable without Consul: %d %q", code, out)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("-maintenance took %v without Consul", d)
	}
	if st := o.status(); len(st.Services) != 1 || st.Services[0].Registered {
		t.Errorf("/status services without Consul: %+v", st.Services)
	}
}

// TestContainerPilotNameRunsSupervisor: through a symlink named
// containerpilot the binary runs a config as ContainerPilot would: a v3
// config's jobs with no command, a v2 config's app from the command line.
func TestContainerPilotNameRunsSupervisor(t *testing.T) {
	dir := t.TempDir()
	cp := filepath.Join(dir, "containerpilot")
	if err := os.Symlink(autopilotBin, cp); err != nil {
		t.Fatal(err)
	}
	v3 := filepath.Join(dir, "v3.json5")
	if err := os.WriteFile(v3, []byte(`{ consul: "127.0.0.1:1", control: { socket: "`+dir+`/cp.sock" },
  jobs: [ { name: "task", exec: ["sh", "-c", "echo ran > `+dir+`/ran; exit 7"] } ] }`), 0o644); err != nil {
		t.Fatal(err)
	}
	v2 := filepath.Join(dir, "v2.json")
	if err := os.WriteFile(v2, []byte(`{ "consul": "127.0.0.1:1" }`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"v3 jobs", []string{"-config", v3}, 7},
		{"v2 app", []string{"-config", v2, "sh", "-c", "exit 5"}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(cp, tc.args...)
			cmd.Env = baseEnv()
			done := make(chan error, 1)
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
				if code := testenv.ExitCode(cmd); code != tc.code {
					t.Errorf("containerpilot %v: exit %d, want %d\n%s", tc.args, code, tc.code, out.String())
				}
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("containerpilot %v did not exit\n%s", tc.args, out.String())
			}
		})
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "ran")); string(b) != "ran\n" {
		t.Errorf("the v3 job did not run: %q", b)
	}
}
