package proc

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes a re-executed test binary act as TestHelperProcess. The
// GORACE setting stops a -race binary from sleeping a second at a clean exit
// (the race runtime's atexit_sleep_ms), which would slow every helper.
var helperEnv = []string{
	"GO_WANT_HELPER_PROCESS=1",
	"GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"),
}

// helper is a command that re-runs this test binary as TestHelperProcess in
// the given mode. Run it with helperEnv in the environment.
func helper(mode ...string) Command {
	return Command{Argv: append([]string{os.Args[0], "-test.run=^TestHelperProcess$", "--"}, mode...)}
}

// helperCmd is helper as an *exec.Cmd, for tests that bypass Runner.
func helperCmd(mode ...string) *exec.Cmd {
	c := helper(mode...)
	cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
	cmd.Env = append(os.Environ(), helperEnv...)
	return cmd
}

// TestHelperProcess is not a test: it is the fake command the other tests
// run, selected by GO_WANT_HELPER_PROCESS=1 and the arguments after "--".
func TestHelperProcess(t *testing.T) {
	if os.Getenv("GO_WANT_HELPER_PROCESS") != "1" {
		return
	}
	args := os.Args
	for len(args) > 0 && args[0] != "--" {
		args = args[1:]
	}
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "helper: no mode")
		os.Exit(2)
	}
	mode, args := args[1], args[2:]
	switch mode {
	case "exit": // exit CODE
		os.Exit(atoi(args[0]))
	case "signal": // signal NUM: die of signal NUM
		syscall.Kill(os.Getpid(), syscall.Signal(atoi(args[0])))
		time.Sleep(time.Minute)
	case "sleep": // sleep DURATION, then exit 0
		d, _ := time.ParseDuration(args[0])
		time.Sleep(d)
	case "print": // print OUT ERR: OUT to stdout, then ERR to stderr
		fmt.Fprint(os.Stdout, args[0])
		fmt.Fprint(os.Stderr, args[1])
	case "spew": // spew N: N bytes of a counting pattern to stdout
		n := atoi(args[0])
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + i%26)
		}
		os.Stdout.Write(b)
	case "getenv": // getenv KEY
		fmt.Print(os.Getenv(args[0]))
	case "pwd":
		wd, _ := os.Getwd()
		fmt.Print(wd)
	case "grandchild": // grandchild PIDFILE then|exit: fork a sleeper sharing our stdout
		cmd := helperCmd("sleep", "1h")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(2)
		}
		writePid(args[0], cmd.Process.Pid)
		if args[1] == "exit" {
			os.Exit(0)
		}
		time.Sleep(time.Hour)
	case "orphans": // orphans N DURATION: fork N sleepers and exit without waiting
		n := atoi(args[0])
		for i := 0; i < n; i++ {
			cmd := helperCmd("sleep", args[1])
			if err := cmd.Start(); err != nil {
				fmt.Fprintln(os.Stderr, "helper:", err)
				os.Exit(2)
			}
		}
	default:
		fmt.Fprintf(os.Stderr, "helper: unknown mode %q\n", mode)
		os.Exit(2)
	}
	os.Exit(0)
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	return n
}

// writePid writes pid to path atomically, so a poller never reads half of it.
func writePid(path string, pid int) {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		panic(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		panic(err)
	}
}

// readPid polls for the pid file a helper writes.
func readPid(t *testing.T, path string) int {
	t.Helper()
	var pid int
	waitFor(t, 20*time.Second, "pid file "+path, func() (bool, string) {
		b, err := os.ReadFile(path)
		if err != nil {
			return false, err.Error()
		}
		pid, err = strconv.Atoi(string(b))
		return err == nil, fmt.Sprint(err)
	})
	return pid
}

// waitFor polls cond every few milliseconds until it holds, failing the test
// with what it saw last if it does not within d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (ok bool, saw string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last saw: %s", d, what, saw)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// procStat is the part of /proc/PID/stat the tests look at.
type procStat struct {
	pid, ppid int
	state     byte
}

// parseStat parses /proc/PID/stat. The command name is in parentheses and
// may itself contain spaces and parentheses, so fields are found after the
// last ')'.
func parseStat(s string) (procStat, error) {
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("parse stat %q: no (comm)", s)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(s[:open]))
	if err != nil {
		return procStat{}, fmt.Errorf("parse stat %q: pid: %w", s, err)
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 2 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("parse stat %q: want state and ppid after comm", s)
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("parse stat %q: ppid: %w", s, err)
	}
	return procStat{pid: pid, ppid: ppid, state: f[0][0]}, nil
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name, in string
		want     procStat
		wantErr  bool
	}{
		{"plain", "42 (sleep) S 7 42 42 0 -1", procStat{42, 7, 'S'}, false},
		{"zombie", "43 (proc.test) Z 1 43 43 0 -1\n", procStat{43, 1, 'Z'}, false},
		{"comm with spaces and parens", "44 (a (b) c) R 9 1 1", procStat{44, 9, 'R'}, false},
		{"truncated", "45 (x) S", procStat{}, true},
		{"no comm", "46 x S 1", procStat{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStat(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// statOf reads /proc/PID/stat; ok is false if the process is gone.
func statOf(pid int) (st procStat, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	st, err = parseStat(string(b))
	return st, err == nil
}

// dead reports whether pid has exited: gone, or a zombie.
func dead(pid int) bool {
	st, ok := statOf(pid)
	return !ok || st.state == 'Z'
}

// zombieChildren lists this process's children that have exited but are not
// reaped.
func zombieChildren(t *testing.T) []int {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var zombies []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if st, ok := statOf(pid); ok && st.state == 'Z' && st.ppid == os.Getpid() {
			zombies = append(zombies, pid)
		}
	}
	return zombies
}

// isolatedEnv names the test a re-executed test binary runs in isolation.
const isolatedEnv = "AUTOPILOT_PROC_ISOLATED"

// isolated runs the calling test in a fresh copy of the test binary and
// reports whether the caller is that copy. Tests that become a subreaper or
// run a Reaper use it: both affect the whole process, and a Reaper would reap
// children that other tests start without it.
//
//	if !isolated(t) { return }
func isolated(t *testing.T) bool {
	t.Helper()
	if os.Getenv(isolatedEnv) == t.Name() {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), isolatedEnv+"="+t.Name(), helperEnv[1])
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil || !strings.Contains(out.String(), "--- PASS: "+t.Name()) {
		t.Fatalf("isolated %s: %v\n%s", t.Name(), err, out.Bytes())
	}
	t.Logf("isolated run:\n%s", out.Bytes())
	return false
}

// nonExecutable returns the path of a file that exists but may not be run.
func nonExecutable(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "not-executable")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// badInterpreter returns a script whose #! interpreter does not exist.
func badInterpreter(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bad-interpreter")
	if err := os.WriteFile(p, []byte("#!/nonexistent/interpreter\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
