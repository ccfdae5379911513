package testenv

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// haproxyBin finds haproxy, which Debian installs in /usr/sbin (off a non-root user's PATH).
func haproxyBin(t testing.TB) string {
	t.Helper()
	p, ok := findBin("haproxy", "/usr/sbin", "/usr/local/sbin")
	if !ok {
		skipOrFail(t, "haproxy not found: apt-get install -y haproxy")
	}
	return p
}

// HAProxyCheck runs `haproxy -c -f cfg` and returns HAProxy's output in the error if the
// config is rejected. cfg may be a file or a directory, as for StartHAProxy.
func HAProxyCheck(t testing.TB, cfg string) error {
	t.Helper()
	out, err := exec.Command(haproxyBin(t), "-c", "-q", "-f", cfg).CombinedOutput()
	if err != nil {
		return fmt.Errorf("haproxy -c -f %s: %w\n%s", cfg, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// HAProxyMainConf makes a config directory for StartHAProxy and returns it. It holds
// 00-main.cfg: a global section (with hard-stop-after, so a reload never waits long on old
// workers), HTTP defaults with timeouts, and a frontend on 127.0.0.1:port answering
// /health with 200 "ok". HAProxy loads every *.cfg file of a directory in name order, so a test
// writes its rendered frontends and backends to another file in it (e.g. "haproxy.cfg"), where
// they inherit the defaults.
//
// No `user`/`group`: HAProxy then keeps the test's user, root or not, and needs nothing else.
func HAProxyMainConf(t testing.TB, port int) string {
	t.Helper()
	dir := t.TempDir()
	conf := fmt.Sprintf(`# Written by testenv.HAProxyMainConf.
global
    maxconn 256
    hard-stop-after 5s

defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s

frontend health
    bind 127.0.0.1:%d
    http-request return status 200 content-type text/plain string ok if { path /health }
`, port)
	if err := os.WriteFile(filepath.Join(dir, "00-main.cfg"), []byte(conf), 0o644); err != nil {
		t.Fatalf("haproxy conf: %v", err)
	}
	return dir
}

// HAProxy is an HAProxy master process run by a test, stopped at cleanup.
type HAProxy struct {
	// LogPath collects HAProxy's stderr: the master's notices and alerts, the workers' warnings.
	LogPath string
	// MasterSocket is the master CLI's unix socket (`haproxy -S`), e.g. for `show proc`.
	MasterSocket string

	cfg string
	mu  sync.Mutex
	p   *proc
}

// haproxyLoaded and haproxyFailed are what the HAProxy 2.6 master logs once a (re)load has
// produced a ready worker, or has been given up with the old workers left serving.
const (
	haproxyLoaded = "Loading success."
	haproxyFailed = "Loading failure!"
)

// StartHAProxy runs `haproxy -W -db -S <sock> -f cfg` (master-worker, in the foreground,
// logging to stderr, with a master CLI) and returns once the master runs its event loop with a
// loaded worker. cfg is a file or a directory of *.cfg files (HAProxyMainConf makes one). The
// config must not set `quiet` (the readiness check reads HAProxy's notices) and should leave out
// `daemon`, `user`, `group` and `chroot`. t.Cleanup stops it.
func StartHAProxy(t testing.TB, cfg string) *HAProxy {
	t.Helper()
	bin := haproxyBin(t)
	// A unix socket path must fit in 108 bytes, which t.TempDir under a long test name may not.
	sockDir, err := os.MkdirTemp("", "testenv-haproxy-")
	if err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	h := &HAProxy{
		LogPath:      filepath.Join(t.TempDir(), "haproxy.log"),
		MasterSocket: filepath.Join(sockDir, "master.sock"),
		cfg:          cfg,
	}
	dumpLogOnFailure(t, "haproxy", h.LogPath)
	// Workers end by themselves when the master dies, so no PID namespace is needed.
	p, err := startProc(h.LogPath, false, bin, "-W", "-db", "-S", h.MasterSocket, "-f", cfg)
	if err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	h.p = p
	t.Cleanup(h.Stop)
	if err := h.waitLoaded(0, nil); err != nil {
		t.Fatalf("start haproxy -f %s: %v", cfg, err)
	}
	return h
}

// PID is the master process's pid, the one to signal. It survives reloads (the master re-execs
// itself in place).
func (h *HAProxy) PID() int { return h.p.pid() }

// Reload sends SIGUSR2 to the master, which re-reads the config and forks a new worker, and
// waits until the reload took effect: the master logged success, a new worker runs and the old
// workers have exited (they finish their connections first, at most hard-stop-after). A config
// HAProxy rejects leaves the old worker serving; Reload then returns HAProxy's alerts.
func (h *HAProxy) Reload() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := children(h.p.pid())
	offset := logSize(h.LogPath)
	if err := h.p.signal(syscall.SIGUSR2); err != nil {
		return fmt.Errorf("reload haproxy: %w", err)
	}
	if err := h.waitLoaded(offset, old); err != nil {
		return fmt.Errorf("reload haproxy -f %s: %w", h.cfg, err)
	}
	return nil
}

// waitLoaded waits for the master to log the outcome of the load that started at log offset and
// to be back in its event loop; after a successful load, also for a worker not in old to run and
// for every worker in old to be gone.
//
// Waiting for the event loop matters: HAProxy 2.6 logs the outcome before its (re-executed)
// master enters the loop, and a SIGUSR2 that arrives in between sits unhandled until something
// else wakes the master. An answer on the master CLI proves the loop runs, so that the next
// reload signal, ours or the program's under test, is acted on.
func (h *HAProxy) waitLoaded(offset int64, old []int) error {
	var failed string
	seen, err := waitFor(serverReadyTimeout, pollInterval, func() (bool, string, error) {
		if done, err := h.p.exited(); done {
			return false, "", fmt.Errorf("haproxy exited: %v\n%s", err, logTail(h.LogPath, 20))
		}
		log := logSince(h.LogPath, offset)
		switch {
		case strings.Contains(log, haproxyFailed):
			failed = alertLines(log)
		case !strings.Contains(log, haproxyLoaded):
			return false, "master has not reported the load yet", nil
		}
		if out, err := h.MasterCLI("show proc"); err != nil || !strings.Contains(out, "master") {
			return false, fmt.Sprintf("master CLI not answering yet: %v %q", err, out), nil
		}
		if failed != "" {
			return true, "", nil
		}
		var fresh, lingering []int
		for _, pid := range children(h.p.pid()) {
			if slices.Contains(old, pid) {
				lingering = append(lingering, pid)
			} else {
				fresh = append(fresh, pid)
			}
		}
		return len(fresh) > 0 && len(lingering) == 0,
			fmt.Sprintf("loaded; old workers %v, new %v, old still running %v", old, fresh, lingering), nil
	})
	if err == errTimeout {
		return fmt.Errorf("not done after %v: %s", serverReadyTimeout, seen)
	}
	if err == nil && failed != "" {
		return fmt.Errorf("haproxy rejected the config, the old one goes on serving:\n%s", failed)
	}
	return err
}

// Stop shuts HAProxy down (SIGTERM to the master, which stops its workers; SIGKILL for the
// process group after 5 s) and waits.
func (h *HAProxy) Stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.p.stop(syscall.SIGTERM, 5*time.Second)
}

// MasterCLI runs one command on the master CLI (e.g. "show proc") and returns its answer.
func (h *HAProxy) MasterCLI(cmd string) (string, error) {
	c, err := net.DialTimeout("unix", h.MasterSocket, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", err
	}
	// Closing our side ends the session: the master answers, then closes.
	if err := c.(*net.UnixConn).CloseWrite(); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// Log returns what HAProxy has logged so far.
func (h *HAProxy) Log() string { return logSince(h.LogPath, 0) }

func alertLines(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "[ALERT]") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
