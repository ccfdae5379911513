// Package proc starts, waits for and reaps the supervisor's child processes.
//
// Everything autopilot runs — the app, health checks, hooks, onChange
// handlers, template check and reload commands — is started here, so that one
// place decides who waits for which process. That matters because autopilot
// runs as PID 1: orphaned grandchildren are re-parented to it and must be
// reaped, yet a reaper that calls wait4(-1) next to os/exec steals the exit
// status of commands that os/exec is about to wait for ("wait: no child
// processes"). [Reaper] solves this by only peeking at exited children and
// reaping just the ones nobody else owns; [Runner] runs short commands through
// it.
//
// The package is Linux-only (waitid, prctl, process groups as used here).
package proc
