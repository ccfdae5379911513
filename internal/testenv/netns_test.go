package testenv

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestContainerNamespaces: a container's command is PID 1 with its own
// /proc, hostname and eth0 on the test subnet; Partition blackholes the
// route both ways and Heal restores it; cleanup leaves nothing named with
// the prefix behind.
func TestContainerNamespaces(t *testing.T) {
	t.Run("run", func(t *testing.T) {
		b := NewBridge(t)
		a, c := b.AddContainer("one"), b.AddContainer("two")
		a.Start(t, os.Environ(), "sh", "-c", `echo "pid=$$ host=$(hostname) procs=$(ls /proc | grep -c '^[0-9]')"; ip -o -4 addr show eth0`)
		select {
		case <-a.Done():
		case <-time.After(30 * time.Second):
			t.Fatal("container did not exit")
		}
		out := a.Log()
		if a.Code() != 0 || !strings.Contains(out, "pid=1 host=one ") || !strings.Contains(out, "inet "+a.IP+"/24") {
			t.Fatalf("exit %d, output:\n%s", a.Code(), out)
		}
		if h, _ := os.Hostname(); h == "one" {
			t.Fatal("the container's hostname leaked to the host")
		}
		route := func(from, to *Container) string {
			out, err := ipCmd("-n", from.NS, "route", "get", to.IP)
			if err != nil {
				return "error: " + out
			}
			return out
		}
		if r := route(a, c); !strings.Contains(r, "dev eth0") {
			t.Fatalf("route one->two: %s", r)
		}
		a.Partition(t, c)
		if r1, r2 := route(a, c), route(c, a); !strings.HasPrefix(r1, "error") || !strings.HasPrefix(r2, "error") {
			t.Fatalf("partitioned, yet routes: %q %q", r1, r2)
		}
		a.Heal(t, c)
		if r := route(c, a); !strings.Contains(r, "dev eth0") {
			t.Fatalf("healed, yet route two->one: %s", r)
		}
		// PID 1 gets only the signals it handles, as in a container: the
		// cleanup's SIGTERM must come after the trap is set.
		c.Start(t, os.Environ(), "sh", "-c", `trap "exit 0" TERM; echo ready; sleep 1000 & wait`)
		Eventually(t, 10*time.Second, func() (bool, string) {
			return c.PID1() != 0 && strings.Contains(c.Log(), "ready"), "not ready: " + c.Log()
		})
	})
	// Under the lock: a Bridge of another test binary may exist now.
	lock := lockNetns(t)
	out, _ := ipCmd("-o", "link", "show")
	ns, _ := ipCmd("netns", "list")
	unlockNetns(lock)
	if strings.Contains(out, netnsPrefix) || strings.Contains(ns, netnsPrefix) {
		t.Fatalf("left behind:\n%s\n%s", out, ns)
	}
}
