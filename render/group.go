package render

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/autopilot/autopilot/internal/dep"
)

// group is templates that share a command (the same command string, as
// consul-template compares them) and render together, as consul-template
// renders all its templates in one pass and then runs each distinct
// command once: two templates reloading one nginx reload it once per
// change, not twice. One goroutine serves the group; every change to any
// member's data runs a pass over all of them. Templates whose command no
// other shares, or that have an Apply hook or an unnamed Reload hook, run on
// their own.
type group struct {
	units []*unit
	// wake is every member's notify channel: a change to data that several
	// members use wakes the group once (a source signals a channel once).
	wake chan struct{}
}

// uses reports whether a member other than except used q in its last pass,
// so that except, dropping q, must not unsubscribe the shared channel.
func (g *group) uses(q dep.Query, except *unit) bool {
	if g == nil {
		return false
	}
	for _, m := range g.units {
		if _, ok := m.used[q]; ok && m != except {
			return true
		}
	}
	return false
}

// groupKey is what members of one group have in common: the command and
// everything that decides when and how long it runs.
type groupKey struct {
	command, reload string
	wait            Wait
	splay, limit    time.Duration
}

// groupUnits splits units into those that run alone and groups of two or
// more that share a command. Groups form only in ModeWrite (the other
// modes run no commands).
func groupUnits(units []*unit, mode Mode) (alone []*unit, groups []*group) {
	if mode != ModeWrite {
		return units, nil
	}
	byKey := map[groupKey]*group{}
	var order []groupKey
	for _, u := range units {
		c := u.cfg
		named := (c.Command != nil || c.Reload != nil) && (c.Command == nil || c.CommandName != "") && (c.Reload == nil || c.ReloadName != "")
		if !named || c.Apply != nil {
			alone = append(alone, u)
			continue
		}
		k := groupKey{command: c.CommandName, reload: c.ReloadName, wait: c.Wait, splay: c.Splay, limit: c.CommandTimeout}
		if byKey[k] == nil {
			byKey[k] = &group{wake: make(chan struct{}, 1)}
			order = append(order, k)
		}
		byKey[k].units = append(byKey[k].units, u)
	}
	for _, k := range order {
		g := byKey[k]
		if len(g.units) == 1 {
			alone = append(alone, g.units[0])
			continue
		}
		for _, u := range g.units {
			u.group, u.notify = g, g.wake
		}
		groups = append(groups, g)
	}
	return alone, groups
}

// forward re-parses a member's edited template (-watch-templates) and
// wakes the group, until ctx ends.
func (r *Runner) forward(ctx context.Context, g *group) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, u := range g.units {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-u.reload:
					r.reparse(u)
					signal(g.wake)
				}
			}
		}()
	}
	return func() { cancel(); wg.Wait() }
}

// memberResult is what one pass did with one member.
type memberResult struct {
	res       *Result // the execution's result (nil: it failed early)
	err       error   // execution, check, write or reload error
	executing bool    // err came from executing the template
	writeErr  bool    // err is a WriteError: retry
	applied   bool    // complete, and in place (written or unchanged)
}

// pass executes each of units, swaps in every complete render that
// changed, then, if any file changed, runs the group's command once; if it
// fails, every file it ran for goes back to its previous content and the
// command runs once more.
func (r *Runner) pass(ctx context.Context, units []*unit) []memberResult {
	out := make([]memberResult, len(units))
	type swapped struct {
		u        *unit
		i        int
		prev     []byte
		hadPrev  bool
		restored bool
	}
	var changed []*swapped
	for i, u := range units {
		res, err := r.execute(ctx, u)
		out[i].res = res
		switch {
		case err != nil:
			out[i].err, out[i].executing = err, true
			continue
		case !res.Complete():
			continue
		}
		prev, hadPrev, wrote, err := r.commit(ctx, u, res.Output)
		var we *WriteError
		out[i].err, out[i].writeErr, out[i].applied = err, errors.As(err, &we), err == nil
		if wrote {
			u.log.Info().Int("bytes", len(res.Output)).Strs("changed", u.changed).Msg("file updated")
			changed = append(changed, &swapped{u: u, i: i, prev: prev, hadPrev: hadPrev})
		}
	}
	if len(changed) == 0 {
		return out
	}
	lead := changed[0].u
	if !r.splay(ctx, lead) {
		for _, c := range changed {
			out[c.i].err, out[c.i].applied = ctx.Err(), false
		}
		return out
	}
	units, dests := make([]*unit, len(changed)), make([]string, len(changed))
	for i, c := range changed {
		units[i], dests[i] = c.u, c.u.cfg.Destination
	}
	run := func() error { return runReload(ctx, lead.cfg, strings.Join(dests, ", "), units) }
	err := run()
	for _, c := range changed {
		c.u.countReload(err)
	}
	if err == nil {
		return out
	}
	restored := false
	for _, c := range changed {
		out[c.i].applied = false
		out[c.i].err = err
		if !c.hadPrev {
			continue
		}
		c.u.log.Error().Err(out[c.i].err).Msg("reload failed; restoring the previous file")
		if werr := r.restore(c.u, c.prev); werr != nil {
			out[c.i].err = fmt.Errorf("%w; restoring previous file: %v", out[c.i].err, werr)
			continue
		}
		c.restored, restored = true, true
	}
	if !restored {
		return out
	}
	rerr := run()
	for _, c := range changed {
		switch {
		case !c.restored:
		case rerr != nil:
			out[c.i].err = fmt.Errorf("%w; reload after restoring previous file: %v", out[c.i].err, rerr)
		default:
			out[c.i].err = fmt.Errorf("%w (previous file restored and reloaded)", out[c.i].err)
		}
	}
	return out
}

// onceGroup is once for a group: passes over the members not yet in place
// until all are, or one fails for good.
func (r *Runner) onceGroup(ctx context.Context, g *group) error {
	stop := r.forward(ctx, g)
	defer stop()
	pending := append([]*unit(nil), g.units...)
	last := map[*unit]memberResult{}
	var errs []error
	var backoff writeBackoff
	retry := time.NewTimer(0)
	retry.Stop()
	defer retry.Stop()
	for {
		results := r.pass(ctx, pending)
		var next []*unit
		retryWrite := false
		for i, u := range pending {
			res := results[i]
			last[u] = res
			switch {
			case res.writeErr:
				retryWrite = true
				u.log.Warn().Err(res.err).Msg("write failed; the previous file stays, retrying")
				next = append(next, u)
			case res.err != nil:
				errs = append(errs, res.err)
			case !res.applied:
				next = append(next, u) // data incomplete
			}
		}
		pending = next
		if len(pending) == 0 {
			return errors.Join(errs...)
		}
		if retryWrite {
			retry.Reset(backoff.next())
		}
		select {
		case <-ctx.Done():
			for _, u := range pending {
				switch res := last[u]; {
				case res.writeErr:
					errs = append(errs, fmt.Errorf("%w (still failing when stopped: %w)", res.err, context.Cause(ctx)))
				case res.res != nil:
					errs = append(errs, r.missingError(u, res.res))
				default:
					errs = append(errs, context.Cause(ctx))
				}
			}
			return errors.Join(errs...)
		case <-g.wake:
		case <-retry.C:
		}
		retry.Stop()
	}
}

// runGroup is run for a group: a pass over every member on each change,
// errors logged, the last good files kept.
func (r *Runner) runGroup(ctx context.Context, g *group) {
	stop := r.forward(ctx, g)
	defer stop()
	defer func() {
		for _, u := range g.units {
			r.unsubscribeAll(u)
		}
	}()
	var backoff writeBackoff
	for {
		retry := time.Duration(0)
		results := r.pass(ctx, g.units)
		if ctx.Err() != nil {
			return
		}
		for i, u := range g.units {
			res := results[i]
			switch {
			case res.writeErr:
				if retry == 0 {
					retry = backoff.next()
				}
				u.log.Warn().Err(res.err).Dur("retry_in", retry).Msg("write failed; the previous file stays, retrying")
			case res.executing:
				u.log.Error().Err(res.err).Msg("template failed to execute; keeping the last good file")
			case res.err != nil:
				u.log.Error().Err(res.err).Msg("render not applied")
			case res.res != nil && !res.res.Complete():
				u.log.Info().Strs("waiting_for", missingStrings(res.res.Missing)).Msg("not rendering: data incomplete; keeping the last good file")
			}
		}
		if retry == 0 {
			backoff.reset()
		}
		if !waitFor(ctx, g.wake, nil, nil, g.units[0].cfg.Wait, retry) {
			return
		}
	}
}
