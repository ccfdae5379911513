package supervisor

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/autopilot/autopilot/internal/testenv"
)

func svcConfig(name, health string, extra string) string {
	return fmt.Sprintf(`{"services":[{"name":%q,"id":"%s-1","port":1,"health":%s,"poll":0.2,"ttl":1.5,"interfaces":["static:127.0.0.1"]%s}]}`,
		name, name, health, extra)
}

// Step 4: health flapping shows up in Consul within one poll; a hanging
// health check lets the TTL expire.
func TestHealthFlapping(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	client := c.Client(t)
	dir := t.TempDir()
	sick := filepath.Join(dir, "sick")
	cfg := writeConfig(t, dir, svcConfig("flap", fmt.Sprintf(`"test ! -e %s"`, sick), ""))
	s := startSup(t, cfg, c.HTTPAddr, nil, helper("sleep")...)
	want := func(status string) {
		t.Helper()
		testenv.Eventually(t, 5*time.Second, func() (bool, string) {
			st := checkStatus(client, "flap-1")
			return st == status, "status " + st
		})
	}
	want("passing")
	for range 2 {
		os.WriteFile(sick, nil, 0o644)
		want("critical")
		os.Remove(sick)
		want("passing")
	}
	s.signal(syscall.SIGTERM)
	s.wait(20 * time.Second)
	if st := checkStatus(client, "flap-1"); st != "" {
		t.Errorf("still registered after shutdown: %s", st)
	}
}

func TestTTLExpiresWhenHealthHangs(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	client := c.Client(t)
	dir := t.TempDir()
	hang := filepath.Join(dir, "hang")
	cfg := writeConfig(t, dir, svcConfig("hang",
		fmt.Sprintf(`["sh","-c","if [ -e %s ]; then exec sleep 60; fi"]`, hang), `,"timeout":"60s"`))
	startSup(t, cfg, c.HTTPAddr, nil, helper("sleep")...)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		st := checkStatus(client, "hang-1")
		return st == "passing", "status " + st
	})
	os.WriteFile(hang, nil, 0o644)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		checks, _ := client.Agent().Checks()
		ch := checks["service:hang-1"]
		if ch == nil {
			return false, "no check"
		}
		return ch.Status == "critical" && strings.Contains(ch.Output, "TTL expired"), ch.Status + " " + ch.Output
	})
}

// Step 4: a health check that times out marks the check critical at once
// (about one poll plus the timeout), long before the TTL would expire, and
// the timed-out check's process group (the check and what it forked) is
// killed.
func TestHealthTimeoutCriticalAtOnce(t *testing.T) {
	t.Parallel()
	const ttl = 20 * time.Second
	c := testenv.StartConsul(t)
	client := c.Client(t)
	dir := t.TempDir()
	hang := filepath.Join(dir, "hang")
	pids := filepath.Join(dir, "pids")
	// Hanging, the check forks a background sleep and becomes a sleep
	// itself, both recorded in pids; the odd durations tell them apart.
	script := fmt.Sprintf(`if [ -e %[1]s ]; then sleep 61.5 & echo $! >> %[2]s; echo $$ >> %[2]s; exec sleep 62.5; fi`, hang, pids)
	health, _ := json.Marshal([]string{"sh", "-c", script})
	cfg := writeConfig(t, dir, fmt.Sprintf(`{"services":[{"name":"slow","id":"slow-1","port":1,"health":%s,
		"poll":0.2,"timeout":0.3,"ttl":%d,"interfaces":["static:127.0.0.1"]}]}`, health, int(ttl.Seconds())))
	s := startSup(t, cfg, c.HTTPAddr, nil, helper("sleep")...)
	status := func() (st, output string) {
		checks, err := client.Agent().Checks()
		if err != nil {
			return "error", err.Error()
		}
		if ch := checks["service:slow-1"]; ch != nil {
			return ch.Status, ch.Output
		}
		return "", ""
	}
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		st, out := status()
		return st == "passing", st + " " + out
	})

	os.WriteFile(hang, nil, 0o644)
	start := time.Now()
	testenv.Eventually(t, ttl/2, func() (bool, string) {
		st, out := status()
		return st == "critical", st + " " + out
	})
	took := time.Since(start)
	t.Logf("critical %s after the health check began to hang (poll 200ms, timeout 300ms, ttl %s)", took, ttl)
	if _, out := status(); !strings.Contains(out, "timed out after 300ms") || strings.Contains(out, "TTL expired") {
		t.Errorf("check output %q: want the health check's timeout, not an expired TTL", out)
	}

	// Once a check passes again, every hanging one has ended.
	os.Remove(hang)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		st, out := status()
		return st == "passing", st + " " + out
	})
	data, _ := os.ReadFile(pids)
	hung := strings.Fields(string(data))
	if len(hung) < 2 {
		t.Fatalf("pids %q: the hanging check did not run", data)
	}
	sup := strconv.Itoa(s.cmd.Process.Pid)
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		for _, pid := range hung {
			if left := leftover(pid, sup); left != "" {
				return false, "left over: " + left
			}
		}
		return true, ""
	})
	if log := s.log.String(); strings.Contains(log, "no child processes") {
		t.Errorf("a health check lost its exit status:\n%s", log)
	}
}

// leftover describes process pid if it is still one of the test's sleeps
// or a child (zombie or not) of the supervisor sup, and is "" if it is gone
// (or the pid now belongs to an unrelated process).
func leftover(pid, sup string) string {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return ""
	}
	cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
	cmd := strings.ReplaceAll(string(cmdline), "\x00", " ")
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if strings.Contains(cmd, "sleep 61.5") || strings.Contains(cmd, "sleep 62.5") || len(f) > 1 && f[1] == sup {
		return fmt.Sprintf("pid %s state %s ppid %s %q", pid, f[0], f[1], cmd)
	}
	return ""
}

// Step 3: hooks and onChange handlers get AUTOPILOT_APP_PID (the app's
// real pid; preStart runs before the app, so without it) and
// AUTOPILOT_<SERVICE>_IP.
func TestHookEnvironment(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	appRec := filepath.Join(dir, "app")
	hook := func(name string) string {
		return strings.Join(helper("env", rec, name, "AUTOPILOT_APP_PID", "AUTOPILOT_MY_SVC_IP"), " ")
	}
	// The backend is the service itself: onChange runs once it registers.
	cfg := writeConfig(t, dir, fmt.Sprintf(`{"preStart":%q,"preStop":%q,"postStop":%q,
		"services":[{"name":"my-svc","id":"my-svc-1","port":1,"health":"true","poll":0.2,"ttl":5,"interfaces":["static:127.0.0.1"]}],
		"backends":[{"name":"my-svc","poll":0.1,"onChange":%q}]}`,
		hook("preStart"), hook("preStop"), hook("postStop"), hook("onChange")))
	s := startSup(t, cfg, c.HTTPAddr, nil, helper("app", appRec)...)
	waitEvent(t, appRec, "start", 20*time.Second)
	pid, err := os.ReadFile(appRec + ".pid")
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		evs := events(rec)
		for _, e := range evs {
			if strings.HasPrefix(e.what, "onChange ") {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no onChange run: %v", evs)
	})
	s.signal(syscall.SIGTERM)
	if got := s.wait(30 * time.Second); got != 0 {
		t.Errorf("exit code %d", got)
	}
	evs := events(rec)
	for _, want := range []string{
		"preStart AUTOPILOT_APP_PID= AUTOPILOT_MY_SVC_IP=127.0.0.1",
		"onChange AUTOPILOT_APP_PID=" + string(pid) + " AUTOPILOT_MY_SVC_IP=127.0.0.1",
		"preStop AUTOPILOT_APP_PID=" + string(pid) + " AUTOPILOT_MY_SVC_IP=127.0.0.1",
		"postStop AUTOPILOT_APP_PID=" + string(pid) + " AUTOPILOT_MY_SVC_IP=127.0.0.1",
	} {
		if _, ok := find(evs, want); !ok {
			t.Errorf("no %q in %v", want, evs)
		}
	}
}

// Step 6: SIGUSR1 toggles maintenance.
func TestMaintenanceToggle(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	client := c.Client(t)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, svcConfig("maint", `"true"`, ""))
	s := startSup(t, cfg, c.HTTPAddr, nil, helper("sleep")...)
	inMaint := func(want bool) {
		t.Helper()
		testenv.Eventually(t, 10*time.Second, func() (bool, string) {
			checks, _ := client.Agent().Checks()
			_, ok := checks["_service_maintenance:maint-1"]
			return ok == want && checks["service:maint-1"] != nil, fmt.Sprintf("maintenance %v", ok)
		})
	}
	inMaint(false)
	s.signal(syscall.SIGUSR1)
	inMaint(true)
	s.signal(syscall.SIGUSR1)
	inMaint(false)
}

// Step 6: SIGHUP with a bad file keeps the old config; a good one applies
// without restarting the app.
func TestReloadConfig(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	client := c.Client(t)
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	cfg := writeConfig(t, dir, svcConfig("reload", `"true"`, ""))
	s := startSup(t, cfg, c.HTTPAddr, nil, helper("app", rec)...)
	waitEvent(t, rec, "start", 20*time.Second)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		st := checkStatus(client, "reload-1")
		return st == "passing", "status " + st
	})
	writeConfig(t, dir, `{"services":[{"name":"reload","helth":"true"}]}`)
	s.signal(syscall.SIGHUP)
	s.logHas("config reload rejected", 10*time.Second)
	if !strings.Contains(s.log.String(), "helth: unknown field") {
		t.Errorf("rejection does not say why:\n%s", s.log)
	}
	// Still heartbeating past the TTL with the old config.
	n := strings.Count(s.log.String(), "health check passed")
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		return strings.Count(s.log.String(), "health check passed") > n+10, "no new health checks"
	})
	if st := checkStatus(client, "reload-1"); st != "passing" {
		t.Errorf("status %s after a rejected reload", st)
	}
	writeConfig(t, dir, svcConfig("reload", `"true"`, `,"tags":["v2"]`))
	s.signal(syscall.SIGHUP)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		svcs, _ := client.Agent().Services()
		r := svcs["reload-1"]
		return r != nil && len(r.Tags) == 1 && r.Tags[0] == "v2", fmt.Sprintf("%+v", r)
	})
	if evs := events(rec); count(evs, "start") != 1 || len(evs) != 1 {
		t.Errorf("the app was signalled or restarted: %v", evs)
	}
}

// Step 6: SIGHUP applies a changed logging.level to every part of the
// supervisor, without restarting the app.
func TestReloadLogLevel(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	sick := filepath.Join(dir, "sick")
	withLevel := func(level string) string {
		cfg := svcConfig("loglevel", fmt.Sprintf(`"test ! -e %s"`, sick), "")
		return strings.TrimSuffix(cfg, "}") + fmt.Sprintf(`,"logging":{"level":%q}}`, level)
	}
	cfg := writeConfig(t, dir, withLevel("debug"))
	s := startSup(t, cfg, c.HTTPAddr, nil, helper("app", rec)...)
	s.logHas("health check passed", 20*time.Second) // debug

	// To warn: the failing health check's warning shows, debug and info don't.
	writeConfig(t, dir, withLevel("warn"))
	s.signal(syscall.SIGHUP)
	s.logHas(`"from":"debug","to":"warn"`, 10*time.Second)
	os.WriteFile(sick, nil, 0o644)
	since := func(marker string) string {
		log := s.log.String()
		return log[strings.LastIndex(log, marker):]
	}
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		return strings.Count(since(`"to":"warn"`), "health check failed") >= 3, "no health check warnings"
	})
	after := since(`"to":"warn"`)
	for _, l := range strings.Split(after, "\n")[1:] {
		// The reaper's goroutine may log a child's exit just as the
		// level changes: not a sign of the level being ignored.
		if strings.Contains(l, "reaper:") {
			continue
		}
		if strings.Contains(l, `"level":"debug"`) || strings.Contains(l, `"level":"info"`) {
			t.Errorf("logged at level warn: %s", l)
		}
	}

	// Back to debug: the passing checks show again.
	os.Remove(sick)
	writeConfig(t, dir, withLevel("debug"))
	s.signal(syscall.SIGHUP)
	s.logHas(`"from":"warn","to":"debug"`, 10*time.Second)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		return strings.Contains(since(`"to":"debug"`), "health check passed"), "no debug lines"
	})
	if evs := events(rec); len(evs) != 1 {
		t.Errorf("the app was restarted or signalled: %v", evs)
	}
}

func register(t *testing.T, client *api.Client, id string, port int, tags ...string) {
	t.Helper()
	if err := client.Agent().ServiceRegister(&api.AgentServiceRegistration{
		ID: id, Name: "sales", Address: "127.0.0.1", Port: port, Tags: tags}); err != nil {
		t.Fatal(err)
	}
}

// Step 5: onChange fires once per membership change (first appearance
// included), not on index-only changes, and merges a burst during a slow run.
func TestBackendOnChange(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	client := c.Client(t)
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	cfg := writeConfig(t, dir, fmt.Sprintf(`{"backends":[{"name":"sales","poll":0.1,"onChange":%q}]}`,
		strings.Join(helper("onchange", rec, "1500ms"), " ")))
	s := startSup(t, cfg, c.HTTPAddr, nil, helper("sleep")...)
	ends := func(n int) {
		t.Helper()
		testenv.Eventually(t, 20*time.Second, func() (bool, string) {
			evs := events(rec)
			return count(evs, "end") == n, fmt.Sprintf("events %v", evs)
		})
	}
	register(t, client, "sales-1", 5001)
	ends(1)
	// Index-only change: same (ID, address, port), new tag.
	n := strings.Count(s.log.String(), "backend answer without membership change")
	register(t, client, "sales-1", 5001, "retagged")
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		return strings.Count(s.log.String(), "backend answer without membership change") > n, "index change not seen"
	})
	// A burst during a slow run: one follow-up run.
	register(t, client, "sales-2", 5002)
	waitEvent(t, rec, "start", time.Second)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		evs := events(rec)
		return count(evs, "start") == 2, fmt.Sprintf("events %v", evs)
	})
	register(t, client, "sales-3", 5003)
	register(t, client, "sales-4", 5004)
	client.Agent().ServiceDeregister("sales-1")
	s.logHas("sales-2|127.0.0.1|5002,sales-3|127.0.0.1|5003,sales-4|127.0.0.1|5004", 10*time.Second)
	ends(3)
	evs := events(rec)
	if count(evs, "start") != 3 {
		t.Errorf("want 3 runs (first, change, merged burst), got %v", evs)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].what == evs[i-1].what {
			t.Errorf("runs overlap: %v", evs)
		}
	}
}

// Step 9: a fresh Consul agent on the same address: the service is
// registered again and backends recover, without restarting the app.
// Consul down at start: the app starts anyway.
func TestConsulRestart(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	c.Stop()
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	onchange := filepath.Join(dir, "onchange")
	cfg := writeConfig(t, dir, fmt.Sprintf(`{"services":[{"name":"phoenix","id":"phoenix-1","port":1,"health":"true","poll":0.2,"ttl":2,"interfaces":["static:127.0.0.1"]}],
		"backends":[{"name":"sales","poll":0.1,"onChange":%q}]}`, strings.Join(helper("hook", onchange, "changed"), " ")))
	startSup(t, cfg, c.HTTPAddr, nil, helper("app", rec)...)
	waitEvent(t, rec, "start", 20*time.Second) // Consul is down, the app runs
	c.Restart()
	client := c.Client(t)
	registered := func() {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, func() (bool, string) {
			st := checkStatus(client, "phoenix-1")
			return st == "passing", "status " + st
		})
	}
	registered()
	register(t, client, "sales-1", 6001)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		n := count(events(onchange), "changed pid")
		return n == 1, fmt.Sprintf("%d onChange runs", n)
	})
	c.Kill()
	c.Restart()
	client = c.Client(t)
	registered()
	register(t, client, "sales-1", 6002)
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		n := count(events(onchange), "changed pid")
		return n == 2, fmt.Sprintf("%d onChange runs", n)
	})
	if evs := events(rec); len(evs) != 1 {
		t.Errorf("the app was restarted or signalled: %v", evs)
	}
}
