package testenv

import (
	"errors"
	"fmt"
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

// serverReadyTimeout bounds nginx and HAProxy starts and reloads. They take milliseconds, but a
// loaded CI machine and an nginx retrying a busy port (5 × 500 ms) need more.
const serverReadyTimeout = 15 * time.Second

// nginxBin finds nginx, which Debian installs in /usr/sbin (off a non-root user's PATH).
func nginxBin(t testing.TB) string {
	t.Helper()
	p, ok := findBin("nginx", "/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin")
	if !ok {
		skipOrFail(t, "nginx not found: apt-get install -y nginx")
	}
	return p
}

// nginxArgs is the command line shared by StartNginx and NginxTest. The -g directives keep
// nginx in the foreground under our control, put its pid file in prefix instead of /run, and
// send its log to stderr (our log file); -e does the same for messages from before the config is
// read. A config that itself sets `daemon` or `pid` is therefore rejected as a duplicate;
// `error_log` may appear again (nginx allows several).
func nginxArgs(bin, prefix, confPath string) []string {
	global := fmt.Sprintf("daemon off; pid %s; error_log stderr notice;", filepath.Join(prefix, "nginx.pid"))
	return []string{bin, "-p", prefix + "/", "-e", "stderr", "-c", confPath, "-g", global}
}

// nginxPrefix makes a prefix dir for one nginx. Relative paths in the config (temp paths, logs)
// resolve under it. When nginx runs as root its workers run as another user (`user` directive,
// default nobody), which must be able to reach the temp dirs nginx creates here, so the dir and
// its parent (t.TempDir makes them 0700) are opened up.
func nginxPrefix(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatalf("nginx prefix: %v", err)
		}
	}
	return dir
}

// NginxTest runs `nginx -t` on confPath with the same prefix and -g handling as StartNginx, and
// returns nginx's output in the error if the config is rejected.
func NginxTest(t testing.TB, confPath string) error {
	t.Helper()
	argv := nginxArgs(nginxBin(t), nginxPrefix(t), confPath)
	argv = append(argv[:1], append([]string{"-t", "-q"}, argv[1:]...)...)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nginx -t -c %s: %w\n%s", confPath, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// NginxMainConf writes a minimal nginx.conf for tests and returns its path: one worker, no
// access log, temp paths under the prefix StartNginx makes, `include httpInclude;` at http
// level, and a server on 127.0.0.1:port whose `location = /health` returns 200 "ok". The include
// file is created empty if it does not exist, so a test can start nginx first and render
// upstream and server blocks into it later (it is at http level: location blocks go inside a
// server block of their own). httpInclude may be "" for none.
//
// As root, workers run as root too (`user root;`): they then read whatever the test wrote, as the
// test itself can; otherwise nginx would drop them to nobody.
func NginxMainConf(t testing.TB, httpInclude string, port int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# Written by testenv.NginxMainConf. StartNginx adds daemon, pid and error_log with -g.\n")
	b.WriteString("worker_processes 1;\n")
	if os.Geteuid() == 0 {
		b.WriteString("user root root;\n")
	}
	b.WriteString("events { worker_connections 256; }\n")
	b.WriteString("http {\n")
	b.WriteString("    access_log off;\n")
	for _, tp := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&b, "    %s_temp_path %s_temp;\n", tp, tp)
	}
	if httpInclude != "" {
		if _, err := os.Stat(httpInclude); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(httpInclude, nil, 0o644); err != nil {
				t.Fatalf("nginx include: %v", err)
			}
		}
		fmt.Fprintf(&b, "    include %s;\n", httpInclude)
	}
	fmt.Fprintf(&b, "    server {\n        listen 127.0.0.1:%d;\n", port)
	b.WriteString("        location = /health { return 200 \"ok\"; }\n    }\n}\n")
	path := filepath.Join(t.TempDir(), "nginx.conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatalf("nginx conf: %v", err)
	}
	return path
}

// Nginx is an nginx master process run by a test, stopped at cleanup. The config it is given
// must not set `daemon` or `pid` (see StartNginx).
//
// As root, nginx runs as init of its own PID namespace (so its workers die with it even if the
// test binary crashes): the pids in its log ("1#1: ...", "worker process 3 exited") are that
// namespace's, while PID returns the master's pid as the test sees it.
type Nginx struct {
	// LogPath collects nginx's error log (level notice and up) and its startup output.
	LogPath string

	confPath string
	mu       sync.Mutex
	p        *proc
}

// StartNginx runs `nginx -c confPath` in the foreground with a fresh prefix dir (relative paths in
// the config resolve under it) and returns once its workers are up: the listening sockets are
// bound before workers are forked, so from then on connections are accepted. confPath must not
// set `daemon` or `pid`; NginxMainConf writes a suitable one. t.Cleanup stops it.
func StartNginx(t testing.TB, confPath string) *Nginx {
	t.Helper()
	bin := nginxBin(t)
	prefix := nginxPrefix(t)
	n := &Nginx{LogPath: filepath.Join(prefix, "nginx.log"), confPath: confPath}
	dumpLogOnFailure(t, "nginx", n.LogPath)
	p, err := startProc(n.LogPath, true, nginxArgs(bin, prefix, confPath)...)
	if err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	n.p = p
	t.Cleanup(n.Stop)
	seen, err := waitFor(serverReadyTimeout, pollInterval, func() (bool, string, error) {
		if done, err := p.exited(); done {
			return false, "", fmt.Errorf("nginx exited: %v\n%s", err, logTail(n.LogPath, 20))
		}
		w := children(p.pid())
		return len(w) > 0, fmt.Sprintf("workers %v", w), nil
	})
	if err != nil {
		t.Fatalf("start nginx -c %s: %v (%s)", confPath, err, seen)
	}
	return n
}

// PID is the master process's pid (as seen by the test), the one to signal.
func (n *Nginx) PID() int { return n.p.pid() }

// Reload sends SIGHUP and waits until the new config is live: nginx has started new workers and
// every old worker has exited or begun its graceful shutdown (it no longer accepts). A config
// nginx rejects leaves the old one serving; Reload then returns nginx's [emerg] message.
func (n *Nginx) Reload() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	old := children(n.p.pid())
	offset := logSize(n.LogPath)
	if err := n.p.signal(syscall.SIGHUP); err != nil {
		return fmt.Errorf("reload nginx: %w", err)
	}
	seen, err := waitFor(serverReadyTimeout, pollInterval, func() (bool, string, error) {
		if done, err := n.p.exited(); done {
			return false, "", fmt.Errorf("nginx exited: %v", err)
		}
		if log := logSince(n.LogPath, offset); strings.Contains(log, "[emerg]") {
			return false, "", fmt.Errorf("nginx rejected %s:\n%s", n.confPath, emergLines(log))
		}
		cur := children(n.p.pid())
		var fresh, lingering []int
		for _, pid := range cur {
			if slices.Contains(old, pid) {
				if !strings.Contains(cmdline(pid), "shutting down") {
					lingering = append(lingering, pid)
				}
			} else {
				fresh = append(fresh, pid)
			}
		}
		return len(fresh) > 0 && len(lingering) == 0,
			fmt.Sprintf("old workers %v, new %v, old still accepting %v", old, fresh, lingering), nil
	})
	if err != nil {
		return fmt.Errorf("reload nginx: %w (%s)", err, seen)
	}
	return nil
}

// Stop shuts nginx down (SIGTERM, then SIGKILL for the whole process group after 5 s) and waits.
func (n *Nginx) Stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.p.stop(syscall.SIGTERM, 5*time.Second)
}

// Log returns what nginx has logged so far.
func (n *Nginx) Log() string { return logSince(n.LogPath, 0) }

func emergLines(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "[emerg]") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
