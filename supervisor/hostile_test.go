package supervisor

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autopilot/autopilot/internal/testenv"
)

// pidsGone waits until none of the pids listed in file runs any more.
func pidsGone(t *testing.T, file string, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, func() (bool, string) {
		data, _ := os.ReadFile(file)
		pids := strings.Fields(string(data))
		if len(pids) == 0 {
			return false, "no pids recorded yet"
		}
		for _, pid := range pids {
			stat, err := os.ReadFile("/proc/" + pid + "/stat")
			if err == nil && !strings.Contains(string(stat), ") Z ") {
				return false, "pid " + pid + " still runs: " + string(stat)
			}
		}
		return true, ""
	})
}

// hangScript forks a background sleep and becomes a sleep itself, writing
// both pids to file: a hook that hangs, with a child.
func hangScript(file string) string {
	b, _ := json.Marshal([]string{"sh", "-c", fmt.Sprintf(`sleep 71 & echo $! >> %[1]s; echo $$ >> %[1]s; exec sleep 72`, file)})
	return string(b)
}

// Issue 9: SIGTERM while preStart hangs stops preStart's whole process
// group within its stopTimeout, never starts the app, and exits 143.
// (Before: the signal waited for preStart to end.)
func TestSIGTERMDuringHangingPreStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rec, pids := filepath.Join(dir, "rec"), filepath.Join(dir, "pids")
	cfg := writeConfig(t, dir, fmt.Sprintf(`{"stopTimeout": 1, "preStart": %s}`, hangScript(pids)))
	s := startSup(t, cfg, noConsul, nil, helper("app", rec)...)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		data, _ := os.ReadFile(pids)
		return len(strings.Fields(string(data))) == 2, "preStart not running yet"
	})
	start := time.Now()
	s.signal(syscall.SIGTERM)
	if code := s.wait(20 * time.Second); code != 143 {
		t.Errorf("exit code %d, want 143", code)
	}
	if took := time.Since(start); took > 1*time.Second+3*time.Second {
		t.Errorf("took %s to exit, want stopTimeout 1s + 3s at most", took)
	}
	pidsGone(t, pids, 5*time.Second)
	if _, err := os.Stat(rec); err == nil {
		t.Error("the app ran")
	}
}

// Issue 9: SIGTERM while the first render waits for data exits 143 at
// once, not after renderTimeout with 1.
func TestSIGTERMDuringFirstRender(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	dir := t.TempDir()
	dest, rec := filepath.Join(dir, "app.conf"), filepath.Join(dir, "rec")
	cfg := templateConfig(t, dir, dest, "")
	data, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(data), `"1s"`, `"60s"`, 1)), 0o644)
	s := startSup(t, cfg, c.HTTPAddr, nil, helper("app", rec)...)
	s.logHas("rendering templates", 20*time.Second)
	start := time.Now()
	s.signal(syscall.SIGTERM)
	if code := s.wait(20 * time.Second); code != 143 {
		t.Errorf("exit code %d, want 143", code)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %s to exit", took)
	}
	if _, err := os.Stat(rec); err == nil {
		t.Error("the app ran")
	}
}

// Issue 9: with the Consul agent frozen (SIGSTOP), SIGTERM still stops the
// app and exits within stopTimeout plus the deregistration bound (5 s),
// with the app's code; preStop and postStop still run.
func TestSIGTERMWhileAgentHangs(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	client := c.Client(t)
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	cfg := writeConfig(t, dir, fmt.Sprintf(`{"stopTimeout": 1, "preStop": %q, "postStop": %q,
		"services":[{"name":"frozen","id":"frozen-1","port":1,"health":"true","poll":0.2,"ttl":5,"interfaces":["static:127.0.0.1"]}]}`,
		strings.Join(helper("hook", rec, "preStop"), " "), strings.Join(helper("hook", rec, "postStop"), " ")))
	s := startSup(t, cfg, c.HTTPAddr, nil, helper("sleep")...)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		st := checkStatus(client, "frozen-1")
		return st == "passing", "status " + st
	})
	c.Signal(syscall.SIGSTOP)
	t.Cleanup(func() { c.Signal(syscall.SIGCONT) })
	time.Sleep(300 * time.Millisecond) // let a heartbeat hang on the frozen agent
	start := time.Now()
	s.signal(syscall.SIGTERM)
	if code := s.wait(30 * time.Second); code != 143 {
		t.Errorf("exit code %d, want the app's 143", code)
	}
	took := time.Since(start)
	t.Logf("exited %s after SIGTERM with the agent stopped", took)
	if bound := 1*time.Second + 5*time.Second + 3*time.Second; took > bound {
		t.Errorf("took %s, want at most %s", took, bound)
	}
	evs := events(rec)
	if _, ok := find(evs, "preStop pid"); !ok {
		t.Errorf("no preStop: %v", evs)
	}
	if _, ok := find(evs, "postStop pid"); !ok {
		t.Errorf("no postStop: %v", evs)
	}
}

func inMaintenance(t *testing.T, c *testenv.Consul, id string) bool {
	checks, err := c.Client(t).Agent().Checks()
	if err != nil {
		return false
	}
	_, ok := checks["_service_maintenance:"+id]
	return ok
}

// Issue 9: maintenance is desired state. SIGUSR1 (on), then SIGHUP and
// SIGUSR1 back to back leave it off; maintenance set or cleared behind
// autopilot's back, or lost with an agent restart, is repaired and logged.
func TestMaintenanceConverges(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	client := c.Client(t)
	dir := t.TempDir()
	cfg := writeConfig(t, dir, svcConfig("drift", `"true"`, ""))
	s := startSup(t, cfg, c.HTTPAddr, []string{"AUTOPILOT_TEST_VERIFY=300ms"}, helper("sleep")...)
	want := func(on bool) {
		t.Helper()
		testenv.Eventually(t, 10*time.Second, func() (bool, string) {
			return inMaintenance(t, c, "drift-1") == on && checkStatus(client, "drift-1") != "", fmt.Sprintf("maintenance != %v", on)
		})
	}
	want(false)
	s.signal(syscall.SIGUSR1)
	want(true)
	s.signal(syscall.SIGHUP)
	s.signal(syscall.SIGUSR1)
	s.logHas("config reloaded", 10*time.Second)
	want(false)
	// Stays off: past several verifications.
	n := strings.Count(s.log.String(), "health check passed")
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		return strings.Count(s.log.String(), "health check passed") > n+10, "no new checks"
	})
	if inMaintenance(t, c, "drift-1") {
		t.Fatal("back in maintenance after SIGUSR1, SIGHUP, SIGUSR1")
	}
	// Behind our back: repaired.
	if err := client.Agent().EnableServiceMaintenance("drift-1", "someone else"); err != nil {
		t.Fatal(err)
	}
	s.logHas("drift repaired: maintenance", 10*time.Second)
	want(false)
	// Wanted on, lost with the agent's state: repaired once it is back.
	s.signal(syscall.SIGUSR1)
	want(true)
	c.Restart()
	client = c.Client(t)
	want(true)
}

// Issue 9: when the reader of autopilot's stderr goes away, its next log
// lines fail with EPIPE and are dropped; SIGPIPE does not kill it, the app
// keeps running, and a later SIGTERM still stops it with the app's code.
func TestBrokenStderrPipe(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	cfg := writeConfig(t, dir, `{"stopTimeout": 5}`)
	a := helper(append([]string{"supervise", cfg, noConsul, "--"}, helper("app", rec)...)...)
	cmd := exec.Command(a[0], a[1:]...)
	cmd.Env = append(os.Environ(), helperEnv...)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	done := make(chan int, 1)
	go func() {
		cmd.Wait()
		done <- testenv.ExitCode(cmd)
	}()
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "app started") {
			break
		}
	}
	r.Close() // the log's reader goes away
	waitEvent(t, rec, "start", 20*time.Second)
	// Make it log: forwarded signals are logged at debug level.
	for range 20 {
		cmd.Process.Signal(syscall.SIGUSR2)
		waitEvent(t, rec, "user defined signal 2", 10*time.Second)
	}
	select {
	case code := <-done:
		t.Fatalf("the supervisor died (code %d) once its stderr broke", code)
	default:
	}
	data, _ := os.ReadFile(rec + ".pid")
	app, _ := strconv.Atoi(string(data))
	if err := syscall.Kill(app, 0); err != nil {
		t.Fatalf("the app is gone: %v", err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d, want the app's 0", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}

// Issue 9: a job's timeout kills its whole process group: the hook and
// what it forked.
func TestHookTimeoutKillsGroup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pids, rec := filepath.Join(dir, "pids"), filepath.Join(dir, "rec")
	path := filepath.Join(dir, "c.json5")
	os.WriteFile(path, []byte(fmt.Sprintf(`{consul: '%s', jobs: [{name: 'hook', exec: %s, timeout: '500ms'}]}`,
		noConsul, hangScript(pids))), 0o644)
	s := startSup(t, path, noConsul, nil, helper("app", rec)...)
	waitEvent(t, rec, "start", 20*time.Second)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		data, _ := os.ReadFile(pids)
		return len(strings.Fields(string(data))) == 2, "hook not running yet"
	})
	s.logHas("job timed out: killing its process group", 10*time.Second)
	pidsGone(t, pids, 5*time.Second)
	s.signal(syscall.SIGTERM)
	if code := s.wait(20 * time.Second); code != 0 {
		t.Errorf("exit code %d, want the app's 0", code)
	}
}

// Issue 13: a job that has never been healthy is checked again soon after
// a failure, so it passes in Consul shortly after its app starts answering,
// not a whole interval later.
func TestFirstHealthyFast(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	client := c.Client(t)
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	port := testenv.FreePort(t)
	path := filepath.Join(dir, "c.json5")
	os.WriteFile(path, []byte(fmt.Sprintf(`{consul: '%s', jobs: [{name: 'late', exec: %s, port: %d,
		interfaces: ['static:127.0.0.1'], health: {exec: %s, interval: 5, ttl: 10}}]}`, c.HTTPAddr,
		jsonArgv(helper("lateapp", rec, strconv.Itoa(port), "1500ms")...), port,
		jsonArgv(helper("get", fmt.Sprintf("http://127.0.0.1:%d/", port))...))), 0o644)
	startSup(t, path, c.HTTPAddr, nil)
	var passing time.Time
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		st := checkStatus(client, "late-"+hostname(t))
		passing = time.Now()
		return st == "passing", "status " + st
	})
	listening := waitEvent(t, rec, "listening", time.Second)
	took := passing.Sub(time.Unix(0, listening.at))
	t.Logf("passing in Consul %s after the app listened (interval 5s)", took)
	if took > 2*time.Second {
		t.Errorf("passing %s after the app listened: the failed first check waited a whole interval", took)
	}
}

// Issue 9: SIGTERM during a reload (one that waits for a changed job's
// stopTimeout) is acted on once the reload is done: the run still shuts
// down within the reload's bound plus the shutdown's, with the app's code.
func TestSIGTERMDuringReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rec, stubborn := filepath.Join(dir, "rec"), filepath.Join(dir, "stubborn")
	path := filepath.Join(dir, "c.json5")
	write := func(tag string) {
		// The stubborn job ignores SIGTERM: replacing it takes its stopTimeout.
		os.WriteFile(path, []byte(fmt.Sprintf(`{consul: '%s', jobs: [
  {name: 'stubborn', exec: ['sh', '-c', 'trap "" TERM; echo %s 0 >> %s; while :; do sleep 0.1; done'], stopTimeout: '2s'},
]}`, noConsul, tag, stubborn)), 0o644)
	}
	write("v1")
	s := startSup(t, path, noConsul, nil, helper("app", rec)...)
	waitEvent(t, rec, "start", 20*time.Second)
	waitEvent(t, stubborn, "v1", 20*time.Second)
	write("v2")
	s.signal(syscall.SIGHUP)
	s.logHas("reload: the job changed or is gone", 10*time.Second)
	start := time.Now()
	s.signal(syscall.SIGTERM)
	if code := s.wait(30 * time.Second); code != 0 {
		t.Errorf("exit code %d, want the app's 0", code)
	}
	took := time.Since(start)
	t.Logf("exited %s after a SIGTERM sent during a reload", took)
	// Reload: 2s (stubborn's stopTimeout); shutdown: the new stubborn's 2s.
	if bound := 2*time.Second + 2*time.Second + 3*time.Second; took > bound {
		t.Errorf("took %s, want at most %s", took, bound)
	}
}
