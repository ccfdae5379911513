package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/autopilot/autopilot/internal/testenv"
)

// stack is what one test runs: its autopilot processes, stopped together
// (in parallel, each gracefully, then whatever is left of its session
// killed) when the test ends.
type stack struct {
	t   *testing.T
	mu  sync.Mutex
	all []*autopilot
}

func newStack(t *testing.T) *stack {
	s := &stack{t: t}
	t.Cleanup(s.stopAll)
	return s
}

func (s *stack) stopAll() {
	s.mu.Lock()
	all := s.all
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, a := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.stop(20 * time.Second)
		}()
	}
	wg.Wait()
	if s.t.Failed() {
		for _, a := range all {
			s.t.Logf("--- log of %s (%s):\n%s", a.name, a.logPath, tail(a.Log(), 60))
		}
	}
}

// autopilot is one `autopilot -config FILE -- COMMAND` process. It runs in a
// session of its own, so that everything it starts (the app has a process
// group of its own, in the same session) can be found and killed.
type autopilot struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has been waited for
	code    int           // exit code, valid once done is closed
}

// baseEnv is the test's environment without anything that would point a
// child at another Consul, plus /usr/sbin (nginx, haproxy) on PATH.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "CONSUL_HTTP_") || strings.HasPrefix(kv, "AUTOPILOT") || strings.HasPrefix(kv, "CONTAINERPILOT") {
			continue
		}
		if strings.HasPrefix(kv, "PATH=") {
			kv += ":/usr/local/sbin:/usr/sbin:/sbin"
		}
		env = append(env, kv)
	}
	return env
}

// start runs autopilot with config, env (KEY=VALUE, added to baseEnv) and
// the app argv.
func (s *stack) start(name, config string, env []string, argv ...string) *autopilot {
	t := s.t
	t.Helper()
	a := &autopilot{name: name, logPath: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	f, err := os.Create(a.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a.cmd = exec.Command(autopilotBin, append([]string{"-config", config, "--"}, argv...)...)
	a.cmd.Env = append(baseEnv(), env...)
	a.cmd.Stdout, a.cmd.Stderr = f, f
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		a.cmd.Wait()
		a.code = testenv.ExitCode(a.cmd)
		close(a.done)
	}()
	s.mu.Lock()
	s.all = append(s.all, a)
	s.mu.Unlock()
	return a
}

// Log is everything the process and its app wrote so far.
func (a *autopilot) Log() string {
	b, _ := os.ReadFile(a.logPath)
	return string(b)
}

// logEntry is one line of autopilot's JSON log (the app's own lines, not
// JSON, are skipped).
type logEntry map[string]any

func (e logEntry) msg() string { s, _ := e["message"].(string); return s }

// entries parses autopilot's JSON log lines.
func (a *autopilot) entries() []logEntry {
	var out []logEntry
	sc := bufio.NewScanner(bytes.NewReader([]byte(a.Log())))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var e logEntry
		if json.Unmarshal(line, &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

// count is the number of log entries with message msg.
func (a *autopilot) count(msg string) int {
	n := 0
	for _, e := range a.entries() {
		if e.msg() == msg {
			n++
		}
	}
	return n
}

// find returns the first log entry with message msg.
func (a *autopilot) find(msg string) (logEntry, bool) {
	for _, e := range a.entries() {
		if e.msg() == msg {
			return e, true
		}
	}
	return nil, false
}

// appPID waits for the app to start and returns its pid.
func (a *autopilot) appPID(t *testing.T) int {
	t.Helper()
	var pid int
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		if a.exited() {
			return false, fmt.Sprintf("%s exited with %d:\n%s", a.name, a.code, tail(a.Log(), 20))
		}
		e, ok := a.find("app started")
		if !ok {
			return false, a.name + ": no \"app started\" in its log yet"
		}
		n, _ := e["pid"].(float64)
		pid = int(n)
		return pid > 0, fmt.Sprintf("app started without a pid: %v", e)
	})
	return pid
}

func (a *autopilot) exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

func (a *autopilot) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := a.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: %v: %v", a.name, sig, err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (a *autopilot) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-a.done:
		return a.code
	case <-time.After(timeout):
		t.Fatalf("%s still running %s after it was asked to stop:\n%s", a.name, timeout, tail(a.Log(), 20))
		return 0
	}
}

// stop asks autopilot to shut down (SIGTERM) and waits up to timeout, then
// kills every process left in its session, the app included.
func (a *autopilot) stop(timeout time.Duration) {
	if !a.exited() {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(timeout):
			_ = a.cmd.Process.Kill()
			<-a.done
		}
	}
	for _, pid := range sessionPIDs(a.cmd.Process.Pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// sessionPIDs lists the live processes of session sid.
func sessionPIDs(sid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp session ...; comm may hold spaces.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 3 && f[0] != "Z" && f[3] == strconv.Itoa(sid) {
			out = append(out, pid)
		}
	}
	return out
}

// alive reports whether pid runs (exists and is not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && !strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}
