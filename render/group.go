package render

import (
	"time"

	"github.com/autopilot/autopilot/internal/dep"
)

// group is the templates that render together, with one goroutine: a
// change to any member's data runs a pass over all of them (Runner.pass).
// Templates that share a command (the same command string, as
// consul-template compares them) form one group, as consul-template renders
// all its templates in one pass and then runs each distinct command once:
// two templates reloading one nginx reload it once per change, not twice.
// Every other template is a group of one.
type group struct {
	units []*unit
	// wake is every member's notify channel: a change to data that several
	// members use wakes the group once (a source signals a channel once).
	wake chan struct{}
}

// uses reports whether a member other than except used q in its last pass,
// so that except, dropping q, must not unsubscribe the shared channel.
func (g *group) uses(q dep.Query, except *unit) bool {
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

// groupUnits puts every unit in a group: those with the same command,
// reload hook and reload timing (and no Apply hook) together, in ModeWrite
// only (the other modes run no commands); each other one alone, keeping its
// own notify channel. Groups come in configuration order.
func groupUnits(units []*unit, mode Mode) []*group {
	var groups []*group
	byKey := map[groupKey]*group{}
	for _, u := range units {
		c := u.cfg
		named := (c.Command != nil || c.Reload != nil) && (c.Command == nil || c.CommandName != "") && (c.Reload == nil || c.ReloadName != "")
		if mode != ModeWrite || !named || c.Apply != nil {
			u.group = &group{units: []*unit{u}, wake: u.notify}
			groups = append(groups, u.group)
			continue
		}
		k := groupKey{command: c.CommandName, reload: c.ReloadName, wait: c.Wait, splay: c.Splay, limit: c.CommandTimeout}
		g := byKey[k]
		if g == nil {
			g = &group{wake: u.notify} // the first member's channel serves all
			byKey[k] = g
			groups = append(groups, g)
		}
		g.units = append(g.units, u)
		u.group, u.notify = g, g.wake
	}
	return groups
}
