package proc

import (
	"errors"
	"os"
	"syscall"
	"testing"
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
