// Package testenv starts the real dependencies that autopilot's integration tests run against: a
// Consul agent (or a small Consul cluster), nginx and HAProxy, all on 127.0.0.1 with free ports,
// each stopped and waited for in t.Cleanup so no test leaks a process or a port.
//
// Tests wait for conditions with Eventually (poll with a deadline), never with time.Sleep: the
// same suite must pass on a loaded 2-core CI machine and on a fast laptop.
//
// Missing binaries fail the test with a hint (`make consul`, `apt-get install nginx haproxy`)
// rather than skipping it, so a CI machine without them cannot go green by running nothing. Set
// AUTOPILOT_SKIP_INTEGRATION=1 to skip every test that needs one of them instead.
//
// Helpers that take a testing.TB call t.Fatal on failure, so, like t.Fatal itself, they must be
// called from the test's own goroutine.
package testenv

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// SkipEnv is the environment variable that turns "binary missing" failures into skips, for
// machines that only run unit tests.
const SkipEnv = "AUTOPILOT_SKIP_INTEGRATION"

// skipOrFail stops the test because a dependency is missing: a failure with the fix in the
// message, or a skip when the user asked for unit tests only.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(SkipEnv) == "1" {
		t.Skipf("%s (%s=1)", msg, SkipEnv)
	}
	t.Fatalf("%s (or set %s=1 to skip integration tests)", msg, SkipEnv)
}

// pollInterval is how often Eventually re-checks its condition: short enough that tests don't
// idle, long enough not to starve the processes under test on 2 cores.
const pollInterval = 5 * time.Millisecond

// Eventually polls cond every few milliseconds until it reports ok, and fails the test if that
// does not happen within timeout. cond returns what it saw so that the failure says why, e.g.
// `return body == "v2", "body " + body`. It must be called from the test goroutine.
func Eventually(t testing.TB, timeout time.Duration, cond func() (ok bool, seen string)) {
	t.Helper()
	seen, err := waitFor(timeout, pollInterval, func() (bool, string, error) {
		ok, seen := cond()
		return ok, seen, nil
	})
	if err != nil {
		t.Fatalf("condition not met within %v; last seen: %s", timeout, seen)
	}
}

// errTimeout is returned by waitFor when the deadline passed.
var errTimeout = errors.New("timed out")

// waitFor is Eventually for helpers that report errors instead of failing the test: it polls
// cond until ok, until cond returns an error (a condition that can no longer become true, such
// as the process having exited) or until timeout, and returns the last seen description.
func waitFor(timeout, interval time.Duration, cond func() (ok bool, seen string, err error)) (string, error) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		ok, seen, err := cond()
		if err != nil {
			return seen, err
		}
		if ok {
			return seen, nil
		}
		if time.Now().After(deadline) {
			return seen, errTimeout
		}
		<-tick.C
	}
}

// HTTPGet fetches url with a short timeout and a fresh connection, so a server that was just
// reloaded or restarted is asked afresh instead of over a kept-alive connection to its old
// process. Only loopback hosts and the test bridge's NetnsSubnet are allowed: tests never reach
// off the machine.
func HTTPGet(t testing.TB, rawURL string) (status int, body string, err error) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0, "", fmt.Errorf("get %s: %w", rawURL, err)
	}
	if !isLoopback(u.Hostname()) && !InNetnsSubnet(u.Hostname()) {
		return 0, "", fmt.Errorf("get %s: host %q is neither a loopback address nor on the test bridge", rawURL, u.Hostname())
	}
	client := &http.Client{
		Timeout:   3 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		// A redirect is a result the test wants to see, not follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	resp, err := client.Get(rawURL)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, string(b), fmt.Errorf("get %s: read body: %w", rawURL, err)
	}
	return resp.StatusCode, string(b), nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// InNetnsSubnet reports whether host is an address of the test bridge's subnet.
func InNetnsSubnet(host string) bool {
	_, subnet, _ := net.ParseCIDR(NetnsSubnet)
	ip := net.ParseIP(host)
	return ip != nil && subnet.Contains(ip)
}

// logTail returns the last lines of a log file, for failure messages.
func logTail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	s := strings.TrimRight(string(b), "\n")
	all := strings.Split(s, "\n")
	if len(all) > lines {
		all = append([]string{fmt.Sprintf("... (%d earlier lines)", len(all)-lines)}, all[len(all)-lines:]...)
	}
	return strings.Join(all, "\n")
}

// logSince returns what was appended to a log file after offset.
func logSince(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// logSize is the offset to pass to logSince to see only what comes next.
func logSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// dumpLogOnFailure prints the tail of a process's log when the test fails, which is usually the
// only place that says why an agent or proxy misbehaved.
func dumpLogOnFailure(t testing.TB, name, path string) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log %s:\n%s", name, path, logTail(path, 60))
		}
	})
}
