package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one server process started by this package. It runs in its own process group so that
// stopping it also stops the workers it forked (nginx workers outlive a killed master), and it
// gets SIGKILL if the test binary dies, so a panicking or timed-out test leaves no agent behind.
type proc struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd.Wait has returned
	waitErr error         // cmd.Wait's result, valid once done is closed
}

// startProc starts argv with stdout and stderr appended to logPath. The log file is handed to
// the child as is (no pipe), so workers that inherit it never hold up Wait.
//
// With pidNamespace (used for nginx) the process becomes init of a new PID namespace when the
// kernel allows it (root): if it dies for any reason the kernel kills everything it forked. This
// matters because nginx workers keep serving after their master is SIGKILLed.
func startProc(logPath string, pidNamespace bool, argv ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	start := func(cloneflags uintptr) (*exec.Cmd, error) {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = f, f
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Setpgid:    true,
			Pdeathsig:  syscall.SIGKILL,
			Cloneflags: cloneflags,
		}
		return cmd, cmd.Start()
	}
	var cmd *exec.Cmd
	if pidNamespace && os.Geteuid() == 0 {
		cmd, err = start(syscall.CLONE_NEWPID)
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOSYS) {
			cmd, err = start(0) // a container without CAP_SYS_ADMIN: plain process group only
		}
	} else {
		cmd, err = start(0)
	}
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended, and how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		if p.waitErr == nil {
			return true, errors.New("exited with status 0")
		}
		return true, p.waitErr
	default:
		return false, nil
	}
}

// stop sends sig, gives the process grace to exit, then SIGKILLs its whole process group, and
// always waits: when stop returns the process and its workers are gone. Safe to call again.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(sig)
		t := time.NewTimer(grace)
		select {
		case <-p.done:
		case <-t.C:
		}
		t.Stop()
	}
	p.kill()
}

// kill SIGKILLs the process group (leader and any workers left) and waits for the leader.
func (p *proc) kill() {
	// The group id is the leader's pid; the kernel does not reuse it while any member is alive,
	// and ESRCH just means nothing was left.
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.done
}

// signal sends sig to the process (not its group: nginx and HAProxy masters pass reloads on).
func (p *proc) signal(sig syscall.Signal) error {
	if done, err := p.exited(); done {
		return fmt.Errorf("process %d already ended: %v", p.pid(), err)
	}
	return p.cmd.Process.Signal(sig)
}

// children returns the pids of ppid's live children (zombies excluded: an exited worker the
// master has not reaped yet serves nothing), read from /proc, sorted.
func children(ppid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.ppid != ppid || st.state == "Z" || st.state == "X" {
			continue
		}
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	return pids
}

// ExitCode is a waited-for command's shell-style status: its exit code, or
// 128+N when signal N killed it; -1 when it has not been waited for.
func ExitCode(cmd *exec.Cmd) int {
	if cmd.ProcessState == nil {
		return -1
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return cmd.ProcessState.ExitCode()
}

type procStat struct {
	state string
	ppid  int
}

// readStat parses /proc/PID/stat: "pid (comm) state ppid ...". comm may hold spaces and
// parentheses, so the fields are counted from the last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no comm", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: ppid: %w", pid, err)
	}
	return procStat{state: f[0], ppid: ppid}, nil
}

// cmdline is the process's current title (nginx rewrites it, e.g. "worker process is shutting
// down"), or "" if it is gone.
func cmdline(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return ""
	}
	return strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " ")
}

func alive(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.state != "Z" && st.state != "X"
}

// findBin looks a server binary up on PATH, then in the directories Debian installs it to, which
// are not on a non-root user's PATH.
func findBin(name string, dirs ...string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, d := range dirs {
		p := d + "/" + name
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}
