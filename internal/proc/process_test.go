package proc

import (
	"bytes"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// Start maps every outcome to the shell's status, in one place with Run.
func TestStartExitCodes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := &Runner{Reaper: NewReaper(zerolog.Nop()), Env: helperEnv}
	tests := []struct {
		name string
		c    Command
		want int
		sig  syscall.Signal
	}{
		{"exit 0", helper("exit", "0"), 0, 0},
		{"exit 7", helper("exit", "7"), 7, 0},
		{"SIGKILL", helper("signal", "9"), 137, syscall.SIGKILL},
		{"not found", Command{Argv: []string{filepath.Join(dir, "nope")}}, 127, 0},
		{"not executable", Command{Argv: []string{dir}}, 126, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			p, err := r.Start(tt.c, StartOptions{Stdout: &out})
			if err != nil {
				if code := ExitCode(err); code != tt.want {
					t.Errorf("start error %v: code %d, want %d", err, code, tt.want)
				}
				return
			}
			select {
			case <-p.Done():
			case <-time.After(20 * time.Second):
				t.Fatal("no exit")
			}
			if p.ExitCode() != tt.want || p.Signaled() != tt.sig {
				t.Errorf("code %d signal %v, want %d %v", p.ExitCode(), p.Signaled(), tt.want, tt.sig)
			}
		})
	}
}

// A started process leads its own group: SignalGroup reaches it.
func TestStartOwnGroup(t *testing.T) {
	t.Parallel()
	r := &Runner{Env: helperEnv}
	p, err := r.Start(helper("sleep", "1m"), StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pgid, _ := syscall.Getpgid(p.Pid); pgid != p.Pid {
		t.Errorf("pgid %d, want its own %d", pgid, p.Pid)
	}
	p.SignalGroup(syscall.SIGTERM)
	if code := p.ExitCode(); code != 143 {
		t.Errorf("code %d, want 143", code)
	}
}
