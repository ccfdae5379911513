package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/autopilot/autopilot/internal/testenv"
)

// pid1 runs autopilot as PID 1 of a new PID namespace (unshare, as a
// container runtime would), with no config: a plain init.
func pid1(t *testing.T, app ...string) (*exec.Cmd, *testenv.Buffer) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a PID namespace needs root")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare (util-linux)")
	}
	args := append([]string{"--pid", "--fork", "--mount-proc", "--kill-child", autopilotBin, "--"}, app...)
	cmd := exec.Command(unshare, args...)
	var out testenv.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, &out
}

// TestPID1ReapsOrphansAndPassesExitCode: as PID 1, autopilot reaps every
// orphan (100 of them) and exits with the app's code.
func TestPID1ReapsOrphansAndPassesExitCode(t *testing.T) {
	script := `for i in $(seq 100); do (sleep 0.1 &); done
while [ "$(ps -eo stat=,comm= | grep -v '^Z' | grep -c ' sleep$')" != 0 ]; do sleep 0.05; done
for i in $(seq 200); do z=$(ps -eo stat= | grep -c '^Z'); [ "$z" = 0 ] && break; sleep 0.05; done
echo "pid1=$(ps -o comm= -p 1) zombies=$z"
exit 7`
	cmd, out := pid1(t, "sh", "-c", script)
	cmd.Wait()
	if code := testenv.ExitCode(cmd); code != 7 {
		t.Fatalf("exit code %d, want the app's 7\n%s", code, out)
	}
	if !strings.Contains(out.String(), "pid1=autopilot zombies=0") {
		t.Fatalf("want autopilot as PID 1 and no zombies left:\n%s", out)
	}
}

// TestPID1SIGTERM: a SIGTERM from outside the namespace (what `docker
// stop` sends) reaches PID 1, which stops the app and exits 128+15.
func TestPID1SIGTERM(t *testing.T) {
	cmd, out := pid1(t, "sleep", "100")
	// autopilot is unshare's child; the app is autopilot's child.
	var sup int
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		sup = childOf(cmd.Process.Pid, "autopilot")
		return sup != 0 && childOf(sup, "sleep") != 0, "autopilot and its app not started yet\n" + out.String()
	})
	if err := syscall.Kill(sup, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		if code := testenv.ExitCode(cmd); code != 143 {
			t.Fatalf("exit code %d, want 143 (the app killed by SIGTERM)\n%s", code, out)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("autopilot as PID 1 did not stop on SIGTERM\n%s", out)
	}
}

// childOf returns the pid of parent's child whose command is comm, or 0.
func childOf(parent int, comm string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(stat)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		fields := strings.Fields(s[close+1:])
		if len(fields) < 2 || s[open+1:close] != comm {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == parent {
			return pid
		}
	}
	return 0
}
