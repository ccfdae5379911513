package proc_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/proc"
	"github.com/autopilot/autopilot/internal/testenv"
)

// TestConfirmNewChildNginx: a real nginx's SIGHUP starts a new worker,
// which confirms the reload; a lost first signal is triggered again; a
// reload that never happens is an error after the attempts.
func TestConfirmNewChildNginx(t *testing.T) {
	conf := testenv.NginxMainConf(t, filepath.Join(t.TempDir(), "include.conf"), testenv.FreePort(t))
	n := testenv.StartNginx(t, conf)
	var calls atomic.Int64
	log := &testenv.Buffer{}
	reload := proc.ConfirmNewChild(proc.ConfirmOptions{
		PID:  n.PID,
		Wait: time.Second,
		Trigger: func(context.Context) error {
			if calls.Add(1) == 1 {
				return nil // lost
			}
			return syscall.Kill(n.PID(), syscall.SIGHUP)
		},
		Log: zerolog.New(log),
	})
	before := proc.Children(n.PID())
	if len(before) == 0 {
		t.Fatal("nginx has no workers")
	}
	if err := reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 || !strings.Contains(log.String(), "triggering again") {
		t.Fatalf("%d triggers, log:\n%s", calls.Load(), log)
	}
	never := proc.ConfirmNewChild(proc.ConfirmOptions{PID: n.PID, Wait: 200 * time.Millisecond, Attempts: 2,
		Trigger: func(context.Context) error { return nil }})
	if err := never(context.Background()); err == nil || !strings.Contains(err.Error(), "in 2 attempts") {
		t.Fatalf("err = %v, want not confirmed after 2 attempts", err)
	}
	// Not running: the trigger alone decides.
	idle := proc.ConfirmNewChild(proc.ConfirmOptions{PID: func() int { return 0 }, Trigger: func(context.Context) error { return nil }})
	if err := idle(context.Background()); err != nil {
		t.Fatal(err)
	}
}
