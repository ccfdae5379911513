package proc

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestSignalGroupRefusesDangerousPids(t *testing.T) {
	for _, pid := range []int{-5, 0, 1} {
		if err := SignalGroup(pid, syscall.Signal(0)); err == nil {
			t.Errorf("SignalGroup(%d) = nil; want an error", pid)
		}
	}
}

func TestSignalGroup(t *testing.T) {
	cmd := helperCmd("sleep", "1h")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := SignalGroup(cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("Wait = %v; want death by SIGTERM", err)
	}
	if err := SignalGroup(cmd.Process.Pid, syscall.SIGTERM); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("SignalGroup on an empty group = %v; want ESRCH", err)
	}
}

func TestSignalLists(t *testing.T) {
	never := map[os.Signal]string{
		syscall.SIGCHLD: "belongs to the reaper",
		syscall.SIGKILL: "cannot be caught",
		syscall.SIGSTOP: "cannot be caught",
		syscall.SIGURG:  "used by the Go runtime",
		syscall.SIGPROF: "used by the Go runtime",
		syscall.SIGPIPE: "raised by our own writes",
		syscall.SIGSEGV: "synchronous fault",
	}
	handled := map[os.Signal]bool{}
	for _, s := range HandledSignals() {
		handled[s] = true
		if why, bad := never[s]; bad {
			t.Errorf("HandledSignals has %v, which %s", s, why)
		}
	}
	for _, want := range []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1} {
		if !handled[want] {
			t.Errorf("HandledSignals lacks %v", want)
		}
	}
	seen := map[os.Signal]bool{}
	for _, s := range ForwardableSignals() {
		switch {
		case seen[s]:
			t.Errorf("ForwardableSignals lists %v twice", s)
		case handled[s]:
			t.Errorf("ForwardableSignals has %v, which the supervisor handles", s)
		case never[s] != "":
			t.Errorf("ForwardableSignals has %v, which %s", s, never[s])
		}
		seen[s] = true
	}
	for _, want := range []os.Signal{syscall.SIGUSR2, syscall.SIGQUIT, syscall.SIGWINCH, syscall.SIGTTIN, syscall.SIGTTOU} {
		if !seen[want] {
			t.Errorf("ForwardableSignals lacks %v", want)
		}
	}
	// Fresh slices: a caller's edit must not leak into the next call.
	ForwardableSignals()[0] = syscall.SIGKILL
	if ForwardableSignals()[0] == syscall.SIGKILL {
		t.Error("ForwardableSignals returns a shared slice")
	}
}

// TestCatchRelaysRealSignals: once C returns, a signal sent to the process
// arrives on the channel instead of getting Go's default handling, Add
// catches more on the same channel, and after Stop nothing is relayed.
func TestCatchRelaysRealSignals(t *testing.T) {
	c := Catch(syscall.SIGUSR2)
	ch := c.C()
	c.Add(syscall.SIGWINCH)
	for _, sig := range []syscall.Signal{syscall.SIGUSR2, syscall.SIGWINCH} {
		if err := syscall.Kill(os.Getpid(), sig); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-ch:
			if got != sig {
				t.Fatalf("got %v, want %v", got, sig)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%v did not arrive", sig)
		}
	}
	c.Stop()
	// Another catcher sees a later SIGWINCH (Go ignores it by default); the
	// stopped one must not.
	other := Catch(syscall.SIGWINCH)
	defer other.Stop()
	otherCh := other.C()
	if err := syscall.Kill(os.Getpid(), syscall.SIGWINCH); err != nil {
		t.Fatal(err)
	}
	select {
	case <-otherCh:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGWINCH did not reach the second catcher")
	}
	select {
	case got := <-ch:
		t.Fatalf("%v relayed after Stop", got)
	default:
	}
}
