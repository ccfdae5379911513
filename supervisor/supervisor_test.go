package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autopilot/autopilot/internal/proc"
	"github.com/autopilot/autopilot/internal/testenv"
)

// noConsul is an address where nothing answers: the lifecycle without
// services or backends must not need Consul.
const noConsul = "127.0.0.1:1"

// Step 7: the supervisor exits with the app's code.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notExec := filepath.Join(dir, "notexec")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	noInterp := filepath.Join(dir, "nointerp")
	os.WriteFile(noInterp, []byte("#!"+filepath.Join(dir, "no-such-interpreter")+"\nexit 0\n"), 0o755)
	subdir := filepath.Join(dir, "subdir")
	os.Mkdir(subdir, 0o755)
	cfg := writeConfig(t, dir, `{"stopTimeout": 5}`)
	tests := []struct {
		name string
		argv []string
		term bool // send SIGTERM to the supervisor once the app runs
		want int
	}{
		{"exit 0", helper("exit", "0"), false, 0},
		{"exit 1", helper("exit", "1"), false, 1},
		{"exit 3", helper("exit", "3"), false, 3},
		{"exit 255", helper("exit", "255"), false, 255},
		{"SIGKILL", helper("kill", "9"), false, 137},
		{"untrapped SIGTERM", helper("sleep"), true, 143},
		{"not found", []string{filepath.Join(dir, "nope")}, false, 127},
		{"not found on PATH", []string{"autopilot-no-such-command"}, false, 127},
		{"not executable", []string{notExec}, false, 126},
		{"#! interpreter missing", []string{noInterp}, false, 126},
		{"directory", []string{subdir}, false, 126},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startSup(t, cfg, noConsul, nil, tt.argv...)
			if tt.term {
				s.logHas(`"app started"`, 20*time.Second)
				s.signal(syscall.SIGTERM)
			}
			if got := s.wait(30 * time.Second); got != tt.want {
				t.Errorf("exit code %d, want %d", got, tt.want)
			}
		})
	}
}

// Step 1: a bad config exits 2 before anything runs.
func TestBadConfigExits2(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	cfg := writeConfig(t, dir, `{"services":[{"name":"a","helth":"true"}]}`)
	s := startSup(t, cfg, noConsul, nil, helper("app", rec)...)
	if got := s.wait(20 * time.Second); got != ExitConfig {
		t.Errorf("exit code %d, want %d", got, ExitConfig)
	}
	if !strings.Contains(s.log.String(), "services[0].helth: unknown field") {
		t.Errorf("log does not name the field:\n%s", s.log)
	}
	if _, err := os.Stat(rec); err == nil {
		t.Error("the app ran")
	}
}

// Step 2: a failing preStart exits with its code and the app never starts.
func TestPreStartFailure(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	cfg := writeConfig(t, dir, fmt.Sprintf(`{"preStart": %q}`, strings.Join(helper("exit", "7"), " ")))
	s := startSup(t, cfg, noConsul, nil, helper("app", rec)...)
	if got := s.wait(20 * time.Second); got != 7 {
		t.Errorf("exit code %d, want 7", got)
	}
	if _, err := os.Stat(rec); err == nil {
		t.Error("the app ran")
	}
}

// Step 3 and 6: the app gets every forwarded signal; hooks see
// AUTOPILOT_APP_PID; stdio passes through.
func TestSignalsForwarded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	cfg := writeConfig(t, dir, fmt.Sprintf(`{"postStop": %q}`, strings.Join(helper("hook", rec, "postStop"), " ")))
	s := startSup(t, cfg, noConsul, []string{"AUTOPILOT_TEST_TAG=tagged"}, helper("app", rec)...)
	waitEvent(t, rec, "start tagged", 20*time.Second)
	for _, sig := range proc.ForwardableSignals() {
		sig := sig.(syscall.Signal)
		s.signal(sig)
		waitEvent(t, rec, sig.String(), 10*time.Second)
	}
	s.signal(syscall.SIGTERM)
	if got := s.wait(20 * time.Second); got != 0 {
		t.Errorf("exit code %d, want 0", got)
	}
	waitEvent(t, rec, "postStop pid", time.Second)
	if evs := events(rec); count(evs, "SIGHUP")+count(evs, "SIGUSR1") != 0 {
		t.Errorf("handled signals reached the app: %v", evs)
	}
}

// Step 8: orphans are reaped; health checks that fork background children
// never fail with "no child processes".
func TestZombiesReaped(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	dir := t.TempDir()
	// The timeout is generous: this is about reaping, and with the 100
	// orphans below and -race on 2 cores, a check's background child can hold
	// its output open for more than the 100 ms poll.
	cfg := writeConfig(t, dir, `{"services":[{"name":"reap","id":"reap-1","port":1,
		"health":["sh","-c","(sleep 0.05 &); sleep 0.01 & true"],"poll":0.1,"timeout":5,"ttl":5,"interfaces":["static:127.0.0.1"]}]}`)
	app := []string{"sh", "-c", "for i in $(seq 100); do (sleep 0.3 &); done; echo spawned; exec sleep 1000"}
	s := startSup(t, cfg, c.HTTPAddr, nil, app...)
	s.logHas("spawned", 20*time.Second)
	pid := s.cmd.Process.Pid
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		kids, zombies := children(pid)
		return kids == 1 && zombies == 0, fmt.Sprintf("%d children, %d zombies", kids, zombies)
	})
	// Let health checks run a few times with their background children.
	client := c.Client(t)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		st := checkStatus(client, "reap-1")
		return st == "passing" && strings.Count(s.log.String(), "health check passed") >= 10, "status " + st
	})
	s.signal(syscall.SIGTERM)
	s.wait(20 * time.Second)
	if log := s.log.String(); strings.Contains(log, "no child processes") || strings.Contains(log, "health check failed") {
		t.Errorf("health checks failed:\n%s", log)
	}
}

// children counts the processes whose parent is pid, and the zombies among them.
func children(pid int) (kids, zombies int) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		kids++
		if f[0] == "Z" {
			zombies++
		}
	}
	return kids, zombies
}

// Step 6 and 7: SIGTERM and SIGINT shut down alike: deregistered before
// preStop, preStop before the app's SIGTERM (the app gets SIGTERM, never
// SIGINT), postStop after the app exited, and the supervisor exits with the
// app's code. Order from recorded timestamps.
func TestShutdownOrder(t *testing.T) {
	t.Parallel()
	for name, sig := range map[string]syscall.Signal{"SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := testenv.StartConsul(t)
			dir := t.TempDir()
			rec := filepath.Join(dir, "rec")
			cfg := writeConfig(t, dir, fmt.Sprintf(`{
				"preStop": %q, "postStop": %q,
				"services":[{"name":"order","id":"order-1","port":1,"health":"true","poll":0.2,"ttl":5,"interfaces":["static:127.0.0.1"]}]}`,
				strings.Join(helper("hook", rec, "preStop", c.HTTPAddr, "order-1"), " "),
				strings.Join(helper("hook", rec, "postStop"), " ")))
			// The app exits 5 on SIGTERM: the supervisor must pass that on.
			s := startSup(t, cfg, c.HTTPAddr, []string{"AUTOPILOT_TEST_EXIT=5"}, helper("app", rec)...)
			client := c.Client(t)
			waitEvent(t, rec, "start", 20*time.Second)
			testenv.Eventually(t, 20*time.Second, func() (bool, string) {
				st := checkStatus(client, "order-1")
				return st == "passing", "status " + st
			})
			s.signal(sig)
			if got := s.wait(30 * time.Second); got != 5 {
				t.Errorf("exit code %d, want the app's 5", got)
			}
			evs := events(rec)
			pre, ok1 := find(evs, "preStop pid registered=false err=false")
			term, ok2 := find(evs, syscall.SIGTERM.String())
			exit, ok3 := find(evs, "exit")
			post, ok4 := find(evs, "postStop pid")
			if !ok1 || !ok2 || !ok3 || !ok4 {
				t.Fatalf("events %v", evs)
			}
			if !(pre.at < term.at && term.at <= exit.at && exit.at < post.at) {
				t.Errorf("order wrong: %v", evs)
			}
			if count(evs, syscall.SIGINT.String()) != 0 {
				t.Errorf("the app got SIGINT: %v", evs)
			}
			if st := checkStatus(client, "order-1"); st != "" {
				t.Errorf("still registered after shutdown: %s", st)
			}
		})
	}
}
