package main

import (
	"bytes"
	"context"
	"fmt"
	"golang.org/x/sys/unix"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procs is every process the harness started; stopAll kills their process
// groups, so nothing outlives the harness (Ctrl-C and panics included).
var procs = &procSet{}

type procSet struct {
	mu   sync.Mutex
	live map[int]*proc
}

// proc is one child started in its own process group.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *bytes.Buffer // stderr+stdout tail for error messages
	done chan struct{}
	err  error
}

// lockedBuffer keeps the last bytes a child wrote.
type lockedBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	if l.b.Len() > 64<<10 {
		tail := append([]byte(nil), l.b.Bytes()[l.b.Len()-32<<10:]...)
		l.b.Reset()
		l.b.Write(tail)
	}
	return len(p), nil
}

// start runs name with args in a new process group. logTo, if set, also
// receives its output.
func start(name string, env []string, logTo io.Writer, path string, args ...string) (*proc, error) {
	cmd := exec.Command(path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Env = append(os.Environ(), env...)
	p := &proc{name: name, cmd: cmd, log: &bytes.Buffer{}, done: make(chan struct{})}
	var w io.Writer = &lockedBuffer{b: p.log}
	if logTo != nil {
		w = io.MultiWriter(w, logTo)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	procs.mu.Lock()
	if procs.live == nil {
		procs.live = map[int]*proc{}
	}
	procs.live[cmd.Process.Pid] = p
	procs.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process ended, and how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the group, then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	pid := p.pid()
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.done
	}
	// Children that left the group's leader behind.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	procs.mu.Lock()
	delete(procs.live, pid)
	procs.mu.Unlock()
}

// tail returns the last lines the process printed.
func (p *proc) tail() string {
	s := p.log.String()
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return s
}

// stopAll kills every group still running; safe to call more than once.
func (s *procSet) stopAll() {
	s.mu.Lock()
	live := make([]*proc, 0, len(s.live))
	for _, p := range s.live {
		live = append(live, p)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range live {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(2 * time.Second) }()
	}
	wg.Wait()
}

// memory is a process's resident memory from /proc/PID/status, in bytes.
type memory struct{ RSS, HWM int64 }

func readMemory(pid int) (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	var m memory
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.RSS = kb << 10
		case "VmHWM:":
			m.HWM = kb << 10
		}
	}
	return m, nil
}

// clockTicks is USER_HZ, 100 on every Linux the harness runs on.
const clockTicks = 100

// cpuTime is utime+stime of pid from /proc/PID/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields start after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// waitUntil polls cond every few ms until it holds or ctx/timeout ends.
func waitUntil(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not true after %s", what, timeout)
		case <-t.C:
		}
	}
}

// dropPageCache evicts the files' pages from the page cache, so that the
// binaries a start-up scenario compares are all read back the way a
// container's first exec reads its image: how a binary's pages came into
// the cache (written by the linker, or read ahead) moves its start by up to
// 1 ms here, more than the differences measured.
func dropPageCache(paths ...string) error {
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		err = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		f.Close()
		if err != nil {
			return fmt.Errorf("evict %s from the page cache: %w", p, err)
		}
	}
	return nil
}
