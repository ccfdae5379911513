package proc

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// ConfirmOptions configure ConfirmNewChild.
type ConfirmOptions struct {
	// PID is the process that reloads, read at each reload; 0 means it is
	// not running, and there is nothing to reload or confirm.
	PID func() int
	// Trigger asks it to reload, e.g. a signal.
	Trigger func(ctx context.Context) error
	// Wait is how long one attempt waits for a new child; 0 means 5s.
	Wait time.Duration
	// Attempts is how many times the reload is triggered before giving
	// up; 0 means 3.
	Attempts int
	Log      zerolog.Logger
}

// ConfirmNewChild returns a reload hook that triggers a reload and returns
// once the process has a child it did not have before, triggering again
// when none appears within Wait. It suits servers whose master starts new
// workers on every successful reload (nginx on SIGHUP, HAProxy -W on
// SIGUSR2), where a signal can otherwise be lost or ignored unnoticed.
// It returns an error when no attempt was confirmed: for nginx that is
// also what a config it refused looks like, as it then keeps its workers.
func ConfirmNewChild(o ConfirmOptions) func(ctx context.Context) error {
	if o.Wait <= 0 {
		o.Wait = 5 * time.Second
	}
	if o.Attempts <= 0 {
		o.Attempts = 3
	}
	return func(ctx context.Context) error {
		pid := o.PID()
		if pid == 0 {
			return o.Trigger(ctx)
		}
		before := Children(pid)
		for attempt := 1; ; attempt++ {
			if err := o.Trigger(ctx); err != nil {
				return err
			}
			fresh, err := awaitNewChild(ctx, pid, before, o.Wait)
			if err != nil {
				return err
			}
			if fresh != 0 {
				o.Log.Info().Int("pid", pid).Int("new_child", fresh).Int("attempt", attempt).Msg("reload confirmed: a new worker runs")
				return nil
			}
			if attempt >= o.Attempts {
				return fmt.Errorf("reload not confirmed: process %d started no new child in %d attempts %v apart (children %v)", pid, attempt, o.Wait, Children(pid))
			}
			o.Log.Warn().Int("pid", pid).Dur("waited", o.Wait).Int("attempt", attempt).Msg("no new worker after the reload signal (missed?); triggering again")
		}
	}
}

// awaitNewChild polls pid's children until one not in before appears (its
// pid), until wait has passed (0) or ctx ends (error).
func awaitNewChild(ctx context.Context, pid int, before []int, wait time.Duration) (int, error) {
	deadline := time.Now().Add(wait)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, c := range Children(pid) {
			if !slices.Contains(before, c) {
				return c, nil
			}
		}
		if time.Now().After(deadline) {
			return 0, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("reload confirmation: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// Children lists the live (not zombie) processes whose parent is ppid,
// from /proc; nil where /proc is not available.
func Children(ppid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := strconv.Itoa(ppid)
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may hold spaces and parens.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == want && f[0] != "Z" && f[0] != "X" {
			out = append(out, pid)
		}
	}
	return out
}
