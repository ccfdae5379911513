package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/testenv"
	"github.com/autopilot/autopilot/supervisor/config"
)

// recorder keeps every event the supervisor publishes, with its time.
type recorder struct {
	mu  sync.Mutex
	evs []event
}

func (r *recorder) on(source string, ev config.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	what := string(ev)
	if source != "" {
		what = source + "." + what
	}
	r.evs = append(r.evs, event{what, time.Now().UnixNano()})
}

func (r *recorder) events() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.evs...)
}

// inProcess runs a supervisor for cfg in this process, driven by the
// returned signal channel. It is for tests that read Status and the
// published events; they must not run in parallel with tests that start
// children outside the supervisor's Reaper.
type inProcess struct {
	t    *testing.T
	s    *Supervisor
	sigs chan os.Signal
	rec  *recorder
	log  *testenv.Buffer
	done chan int
}

func runInProcess(t *testing.T, configPath, consulAddr string, argv ...string) *inProcess {
	t.Helper()
	load := func() (*config.Config, error) {
		c, err := config.Load(configPath, os.LookupEnv)
		if err != nil {
			return nil, err
		}
		return c.WithApp(argv)
	}
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	p := &inProcess{t: t, sigs: make(chan os.Signal, 8), rec: &recorder{}, log: &testenv.Buffer{}, done: make(chan int, 1)}
	p.s, err = New(cfg, Options{
		Consul: consulAddr, Load: load, Signals: p.sigs, WatchOptions: watchOpts,
		Log:     zerolog.New(p.log).Level(zerolog.DebugLevel).With().Timestamp().Logger(),
		OnEvent: p.rec.on, Stdout: p.log, Stderr: p.log,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range helperEnv {
		k, v, _ := strings.Cut(kv, "=")
		p.s.PutEnv(k, v)
	}
	go func() { p.done <- p.s.Run(context.Background()) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.sigs <- syscall.SIGTERM
			select {
			case <-p.done:
			case <-time.After(30 * time.Second):
				t.Error("supervisor did not stop")
			}
		}
		if t.Failed() {
			t.Logf("supervisor log:\n%s", p.log.String())
		}
	})
	return p
}

func (p *inProcess) job(name string) JobStatus {
	for _, j := range p.s.Status().Jobs {
		if j.Name == name {
			return j
		}
	}
	p.t.Fatalf("no job %q in %+v", name, p.s.Status().Jobs)
	return JobStatus{}
}

func (p *inProcess) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case code := <-p.done:
		p.done <- code
		return code
	case <-time.After(timeout):
		p.t.Fatalf("supervisor still running after %s", timeout)
		return -1
	}
}

func jsonArgv(argv ...string) string {
	b, _ := json.Marshal(argv)
	return string(b)
}

// consulAgentArgv is a real `consul agent` (client mode) joining the test
// server c, for a co-process job.
func consulAgentArgv(t *testing.T, c *testenv.Consul) []string {
	t.Helper()
	self, err := c.Client(t).Agent().Self()
	if err != nil {
		t.Fatal(err)
	}
	serf := int(self["Member"]["Port"].(float64))
	ports := fmt.Sprintf("ports { http = %d serf_lan = %d serf_wan = -1 server = %d dns = -1 grpc = -1 grpc_tls = -1 https = -1 }",
		testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t))
	return []string{testenv.ConsulBin(t), "agent", "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-node", fmt.Sprintf("coproc-%d", os.Getpid()), "-data-dir", t.TempDir(),
		"-retry-join", "127.0.0.1:" + strconv.Itoa(serf), "-retry-interval", "200ms",
		"-hcl", ports, "-hcl", "disable_update_check = true"}
}

// A ContainerPilot 3 config (JSON5) with the job kinds people use: an app
// registered with a health check, a real `consul agent` co-process
// restarted when it dies, a job started once the app is healthy, a periodic
// job, a job run on each change of a watch, and a job run when the app is
// stopping. Without a command on the command line the jobs are the run.
func TestV3Jobs(t *testing.T) {
	c := testenv.StartConsul(t)
	client := c.Client(t)
	dir := t.TempDir()
	rec, ticks := filepath.Join(dir, "rec"), filepath.Join(dir, "ticks")
	port := testenv.FreePort(t)
	agentArgv := consulAgentArgv(t, c)
	cfgPath := filepath.Join(dir, "containerpilot.json5")
	text := fmt.Sprintf(`{
  // a v3 config: comments, unquoted keys, trailing commas
  consul: '%s',
  logging: {level: 'DEBUG'},
  stopTimeout: '5s',
  jobs: [
    {name: 'consul-agent', exec: %s, restarts: 'unlimited'},
    {
      name: 'app', exec: %s, port: %d, interfaces: ['static:127.0.0.1'],
      health: {exec: %s, interval: 1, ttl: 10, timeout: '2s'},
    },
    {name: 'after-healthy', exec: %s, when: {source: 'app', once: 'healthy'}},
    // health without a port: not registered, still healthy/unhealthy
    {name: 'worker', exec: %s, health: {exec: 'true', interval: 1, ttl: 3}},
    {name: 'after-worker', exec: %s, when: {source: 'worker', once: 'healthy'}},
    {name: 'tick', exec: %s, when: {interval: '700ms'}},
    {name: 'on-change', exec: %s, when: {source: 'watch.sales', each: 'changed'}},
    {name: 'on-stopping', exec: %s, when: {source: 'app', once: 'stopping'}},
  ],
  watches: [{name: 'sales', interval: 0.1},],
}`, c.HTTPAddr, jsonArgv(agentArgv...), jsonArgv(helper("app", rec, strconv.Itoa(port))...), port,
		jsonArgv(helper("get", fmt.Sprintf("http://127.0.0.1:%d/", port))...),
		jsonArgv(helper("hook", rec, "after-healthy")...), jsonArgv(helper("sleep")...), jsonArgv(helper("hook", rec, "after-worker")...),
		jsonArgv(helper("hook", ticks, "tick")...),
		jsonArgv(helper("hook", rec, "changed")...), jsonArgv(helper("hook", rec, "stopping")...))
	if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	p := runInProcess(t, cfgPath, "")

	// Registered, then after-healthy ran.
	id := "app-" + hostname(t)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		st := checkStatus(client, id)
		return st == "passing", "status " + st
	})
	waitEvent(t, rec, "after-healthy", 10*time.Second)
	waitEvent(t, rec, "after-worker", 10*time.Second)
	if svcs, _ := client.Agent().Services(); len(svcs) != 1 {
		t.Errorf("want only the app registered, got %v", svcs)
	}
	// The co-process agent joined.
	members := func() int {
		ms, _ := client.Agent().Members(false)
		n := 0
		for _, m := range ms {
			if strings.HasPrefix(m.Name, "coproc-") && m.Status == 1 {
				n++
			}
		}
		return n
	}
	testenv.Eventually(t, 30*time.Second, func() (bool, string) { return members() == 1, "co-process agent not alive" })
	// Killed, it is restarted and joins again.
	pid := p.job("consul-agent").Pid
	if pid == 0 {
		t.Fatal("consul-agent has no pid")
	}
	syscall.Kill(pid, syscall.SIGKILL)
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		j := p.job("consul-agent")
		return j.Restarts >= 1 && j.Pid != 0 && j.Pid != pid, fmt.Sprintf("%+v", j)
	})
	testenv.Eventually(t, 30*time.Second, func() (bool, string) { return members() == 1, "restarted agent not alive" })
	if j := p.job("consul-agent"); j.ExitsSignal < 1 || j.LastExit != 137 {
		t.Errorf("consul-agent exits not counted: %+v", j)
	}
	// A watched service appears: on-change runs.
	register(t, client, "sales-1", 7001)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		evs := events(rec)
		return hasPrefix(evs, "changed"), fmt.Sprintf("%v", evs)
	})
	// Periodic runs are counted.
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		j := p.job("tick")
		return j.Starts >= 4 && count(events(ticks), "tick") >= 4, fmt.Sprintf("%+v", j)
	})

	p.sigs <- syscall.SIGTERM
	code := p.wait(60 * time.Second)
	// No Main job: a SIGTERM ends the run with 128+15.
	if code != 143 {
		t.Errorf("exit code %d, want 143", code)
	}
	evs := events(rec)
	start, ok1 := find(evs, "start")
	healthy, ok2 := find(evs, "after-healthy")
	stopping, ok3 := find(evs, "stopping")
	exit, ok4 := find(evs, "exit")
	if !ok1 || !ok2 || !ok3 || !ok4 {
		t.Fatalf("events %v", evs)
	}
	if !(start.at < healthy.at && healthy.at < stopping.at && stopping.at < exit.at) {
		t.Errorf("order wrong (app start < after-healthy < on-stopping < app exit): %v", evs)
	}
	// The supervisor's own events, in order.
	var order []string
	for _, e := range p.rec.events() {
		switch e.what {
		case "startup", "app.healthy", "watch.sales.changed", "app.stopping", "app.exitSuccess", "app.stopped", "stopped":
			if len(order) == 0 || order[len(order)-1] != e.what {
				order = append(order, e.what)
			}
		}
	}
	if got := strings.Join(order, " "); !strings.HasPrefix(got, "startup app.healthy") ||
		!strings.HasSuffix(got, "app.stopping app.exitSuccess app.stopped stopped") ||
		!strings.Contains(got, "watch.sales.changed") {
		t.Errorf("events in order: %s", got)
	}
	if st := checkStatus(client, id); st != "" {
		t.Errorf("still registered after shutdown: %s", st)
	}
	st := p.s.Status()
	if st.Generation != 1 || len(st.Services) != 1 || st.Services[0].ID != id || st.Services[0].Registrations < 1 ||
		st.Services[0].TTLUpdates < 1 || st.Services[0].HealthRuns < 1 || st.Services[0].Registered {
		t.Errorf("status %+v", st)
	}
}

func hasPrefix(evs []event, what string) bool {
	for _, e := range evs {
		if strings.HasPrefix(e.what, what) {
			return true
		}
	}
	return false
}

func hostname(t *testing.T) string {
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// Without a Main job the run ends when no job runs or can run again, with
// the first failing exit code (ContainerPilot 3 exits 0 there: its issue
// 526), and jobs waiting on a job that is done never start.
func TestRunEndsWithoutMain(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	for _, tt := range []struct {
		name, jobs string
		want       int
	}{
		{"one job exits 3", fmt.Sprintf(`{name: 'a', exec: %s}`, jsonArgv(helper("exit", "3")...)), 3},
		{"chain of successes", fmt.Sprintf(`{name: 'a', exec: %s}, {name: 'b', exec: %s, when: {source: 'a', once: 'exitSuccess'}}`,
			jsonArgv(helper("exit", "0")...), jsonArgv(helper("hook", rec, "b")...)), 0},
		{"waiter on a failure never runs", fmt.Sprintf(`{name: 'a', exec: %s}, {name: 'b', exec: %s, when: {source: 'a', once: 'exitSuccess'}}`,
			jsonArgv(helper("exit", "4")...), jsonArgv(helper("hook", rec, "never")...)), 4},
		{"restarts then fails", fmt.Sprintf(`{name: 'a', exec: %s, restarts: 2}`, jsonArgv(helper("exit", "5")...)), 5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.json5")
			os.WriteFile(path, []byte(fmt.Sprintf(`{consul: '%s', jobs: [%s]}`, noConsul, tt.jobs)), 0o644)
			p := runInProcess(t, path, "")
			if code := p.wait(30 * time.Second); code != tt.want {
				t.Errorf("exit code %d, want %d", code, tt.want)
			}
			if tt.name == "restarts then fails" {
				if j := p.job("a"); j.Starts != 3 || j.Restarts != 2 || j.ExitsFailure != 3 {
					t.Errorf("job %+v, want 3 starts, 2 restarts, 3 failures", j)
				}
			}
		})
	}
	if evs := events(rec); count(evs, "b") != 1 || count(evs, "never") != 0 {
		t.Errorf("events %v", evs)
	}
}

// A ContainerPilot 2 config with Go-template interpolation, coprocesses
// and tasks: the coprocess restarts by its policy, the task runs
// periodically, the coprocess after preStart, and the app's exit ends the run with
// its code.
func TestV2CoprocessesAndTasks(t *testing.T) {
	dir := t.TempDir()
	rec, ticks := filepath.Join(dir, "rec"), filepath.Join(dir, "ticks")
	path := filepath.Join(dir, "containerpilot.json")
	t.Setenv("AP_TEST_RESTARTS", "2")
	// preStart records its start, takes a while, and records its end: what
	// waits for it must start after the end.
	slowPreStart := []string{"sh", "-c", `"$@" preStart && sleep 0.3 && "$@" preStart-done`, "sh"}
	slowPreStart = append(slowPreStart, helper("hook", rec)...)
	text := fmt.Sprintf(`{
  "consul": "{{ .AP_TEST_CONSUL | default "%s" }}",
  "preStart": %s,
  "coprocesses": [{"name": "co", "command": %s, "restarts": {{ .AP_TEST_RESTARTS }}}],
  "tasks": [{"name": "task", "command": %s, "frequency": "500ms", "timeout": "5s"}]
}`, noConsul, jsonArgv(slowPreStart...), jsonArgv(helper("hook", rec, "co")...),
		jsonArgv(helper("hook", ticks, "task")...))
	os.WriteFile(path, []byte(text), 0o644)
	// The app exits 9 once the coprocess has run three times (1 + 2
	// restarts) and the task twice.
	app := []string{"sh", "-c", fmt.Sprintf(`while [ "$(grep -c '^co' %s 2>/dev/null)" -lt 3 ] || [ "$(grep -c '^task' %s 2>/dev/null)" -lt 2 ]; do sleep 0.05; done; exit 9`, rec, ticks)}
	p := runInProcess(t, path, "", app...)
	if code := p.wait(60 * time.Second); code != 9 {
		t.Errorf("exit code %d, want the app's 9", code)
	}
	if j := p.job("co"); j.Starts != 3 || j.Restarts != 2 {
		t.Errorf("coprocess %+v: want 3 starts, 2 restarts", j)
	}
	// A run started as the app exits may be stopped before it records.
	if j, n := p.job("task"), len(events(ticks)); n < 2 || j.Starts != n && j.Starts != n+1 {
		t.Errorf("task %+v, %d runs recorded", j, n)
	}
	evs := events(rec)
	done, _ := find(evs, "preStart-done")
	// "co" or "co pid": whether the app's pid was set first is a race.
	var co event
	for _, e := range evs {
		if e.what == "co" || e.what == "co pid" {
			co = e
			break
		}
	}
	if done.at == 0 || co.at == 0 || co.at < done.at {
		t.Errorf("the coprocess did not wait for preStart: %v", evs)
	}
	for _, e := range events(ticks) {
		if e.at < done.at {
			t.Errorf("the task ran before preStart ended at %d: %v", done.at, e)
		}
	}
}

// A reload builds a new generation: a job whose process definition is
// unchanged keeps its process and counters, a changed job is stopped and
// started again, a removed job is stopped, an added one starts, and a
// setup job that already ran does not run again.
func TestV3ReloadGenerations(t *testing.T) {
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	path := filepath.Join(dir, "c.json5")
	write := func(changedTag, extra string) {
		os.WriteFile(path, []byte(fmt.Sprintf(`{consul: '%s', stopTimeout: '2s', jobs: [
  {name: 'setup', exec: %s},
  {name: 'keep', exec: %s, when: {source: 'setup', once: 'exitSuccess'}},
  {name: 'change', exec: %s, when: {source: 'setup', once: 'exitSuccess'}},
  %s
]}`, noConsul, jsonArgv(helper("hook", rec, "setup")...), jsonArgv(helper("app", filepath.Join(dir, "keep"))...),
			jsonArgv(helper("app", filepath.Join(dir, "change-"+changedTag))...), extra)), 0o644)
	}
	write("v1", fmt.Sprintf(`{name: 'gone', exec: %s}`, jsonArgv(helper("app", filepath.Join(dir, "gone"))...)))
	p := runInProcess(t, path, "")
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		return p.job("keep").Pid != 0 && p.job("change").Pid != 0 && p.job("gone").Pid != 0, fmt.Sprintf("%+v", p.s.Status().Jobs)
	})
	keep, change, gone := p.job("keep").Pid, p.job("change").Pid, p.job("gone").Pid
	// A pid is known at the fork; the app records its start later, and the
	// last assertion counts that record.
	waitEvent(t, filepath.Join(dir, "keep"), "start", 20*time.Second)

	// A config that does not parse changes nothing.
	os.WriteFile(path, []byte(`{jobs: [{name: 'x', exec: 'true', restarts: -1}]}`), 0o644)
	if err := p.s.Reload(context.Background()); err == nil {
		t.Fatal("a bad config was accepted")
	}
	if st := p.s.Status(); st.Generation != 1 || p.job("keep").Pid != keep || p.job("gone").Pid != gone {
		t.Fatalf("a rejected reload changed the run: %+v", st)
	}

	write("v2", fmt.Sprintf(`{name: 'added', exec: %s}`, jsonArgv(helper("hook", rec, "added")...)))
	if err := p.s.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, rec, "added", 20*time.Second)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		j := p.job("change")
		return j.Pid != 0 && j.Pid != change, fmt.Sprintf("%+v", j)
	})
	st := p.s.Status()
	if st.Generation != 2 {
		t.Errorf("generation %d, want 2", st.Generation)
	}
	if j := p.job("keep"); j.Pid != keep || j.Starts != 1 {
		t.Errorf("unchanged job %+v: want pid %d kept, 1 start", j, keep)
	}
	for _, j := range st.Jobs {
		if j.Name == "gone" {
			t.Errorf("removed job still listed: %+v", j)
		}
	}
	if syscall.Kill(gone, 0) == nil {
		t.Errorf("the removed job's process %d still runs", gone)
	}
	if evs := events(rec); count(evs, "setup") != 1 {
		t.Errorf("setup ran again: %v", evs)
	}
	if evs := events(filepath.Join(dir, "keep")); count(evs, "start") != 1 || len(evs) != 1 {
		t.Errorf("the unchanged job was signalled or restarted: %v", evs)
	}
}
