package config

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
)

func sysSignal(s signal) syscall.Signal { return syscall.Signal(s) }

// jobEvents are the events a job publishes; watchEvents a watch's;
// globalEvents the supervisor's own (no source).
var (
	jobEvents    = []Event{ExitSuccess, ExitFailed, Healthy, Unhealthy, Stopping, Stopped}
	watchEvents  = []Event{Changed, Healthy, Unhealthy}
	globalEvents = []Event{Startup, Shutdown, EnterMaintenance, ExitMaintenance}
)

// validate checks what spans several jobs and watches: names, sources,
// cycles, registrations.
func (t *translator) validate() error {
	c := t.c
	watches := map[string]int{}
	for i, w := range c.Watches {
		p := t.worigin[i]
		if err := checkServiceName(c.Dialect, w.Name); err != nil {
			return t.errAt(p+".name", "%v", err)
		}
		if _, dup := watches[w.Name]; dup {
			return t.errAt(p+".name", "service %q is already watched by %s; one watch per service", w.Name, t.worigin[watches[w.Name]])
		}
		watches[w.Name] = i
		if w.Tag != "" {
			if err := checkText(w.Tag); err != nil {
				return t.errAt(p+".tag", "%v", err)
			}
		}
		if w.DC != "" {
			if err := checkText(w.DC); err != nil {
				return t.errAt(p+".dc", "%v", err)
			}
		}
	}
	jobs := map[string]int{}
	ids := map[string]int{}
	for i := range c.Jobs {
		j := &c.Jobs[i]
		p := t.origin[i]
		namePath := p + ".name"
		if p == "" || !strings.Contains(p, "[") {
			namePath = p
		}
		if err := checkText(j.Name); err != nil {
			return t.errAt(namePath, "job name: %v", err)
		}
		if strings.HasPrefix(j.Name, "watch.") {
			return t.errAt(namePath, "job name %q: names starting with \"watch.\" are the sources of watches", j.Name)
		}
		if k, dup := jobs[j.Name]; dup {
			return t.errAt(namePath, "job name %q is already used by %s; names must be unique", j.Name, t.describe(k))
		}
		jobs[j.Name] = i
		if j.StopTimeout == 0 {
			j.StopTimeout = c.StopTimeout
		}
		if j.Port < 0 || j.Port > 65535 {
			return t.errAt(p+".port", "%d out of range", j.Port)
		}
		if j.Health != nil && j.Port > 0 && j.Health.TTL <= j.Health.Interval {
			// A TTL not longer than the interval expires between two
			// passing checks: the service would flap by construction.
			ttl := p + ".health.ttl"
			if c.Dialect != ContainerPilot3 {
				ttl = p + ".ttl"
			}
			return t.errAt(ttl, "%s must be longer than the check interval %s", j.Health.TTL, j.Health.Interval)
		}
		if j.Port > 0 {
			if err := checkServiceName(c.Dialect, j.Name); err != nil {
				return t.errAt(namePath, "%v", err)
			}
			for k, tag := range j.Tags {
				if err := checkText(tag); err != nil {
					return t.errAt(fmt.Sprintf("%s.tags[%d]", p, k), "%v", err)
				}
			}
			id := c.ServiceID(j, "HOSTNAME")
			if j.ID != "" {
				if err := checkText(j.ID); err != nil {
					return t.errAt(p+".id", "%v", err)
				}
			}
			if k, dup := ids[id]; dup {
				return t.errAt(p, "registers service ID %q, as %s does: the two registrations would overwrite each other (give them different names or ids)", id, t.describe(k))
			}
			ids[id] = i
		}
	}
	for i := range c.Jobs {
		if err := t.checkWhen(i, jobs, watches); err != nil {
			return err
		}
	}
	if err := t.checkCycles(jobs); err != nil {
		return err
	}
	if c.Telemetry != nil {
		for k, tag := range c.Telemetry.Tags {
			if err := checkText(tag); err != nil {
				return t.errAt(fmt.Sprintf("telemetry.tags[%d]", k), "%v", err)
			}
		}
	}
	return nil
}

// describe names the config field a job came from, for errors.
func (t *translator) describe(i int) string {
	if t.origin[i] == "" {
		return "the app's job " + MainJob
	}
	return t.origin[i]
}

func (t *translator) whenPath(i int) string {
	if t.c.Dialect == ContainerPilot3 {
		return t.origin[i] + ".when"
	}
	return t.origin[i]
}

func (t *translator) checkWhen(i int, jobs, watches map[string]int) error {
	c := t.c
	j := &c.Jobs[i]
	w := j.When
	if w.Interval > 0 {
		return nil
	}
	p := t.whenPath(i)
	switch {
	case w.Source == "":
		if !slices.Contains(globalEvents, w.Event) {
			return t.errAt(p, "event %q needs a source: the job or watch.NAME that emits it", w.Event)
		}
	case strings.HasPrefix(w.Source, "watch."):
		name := strings.TrimPrefix(w.Source, "watch.")
		if _, ok := watches[name]; !ok {
			return t.errAt(p+".source", "no watch is named %q", name)
		}
		if !slices.Contains(watchEvents, w.Event) {
			return t.errAt(p, "a watch emits changed, healthy or unhealthy, never %q", w.Event)
		}
	default:
		k, ok := jobs[w.Source]
		if !ok {
			return t.errAt(p+".source", "no job is named %q (a watch is \"watch.NAME\")", w.Source)
		}
		if k == i {
			return t.errAt(p+".source", "job %q waits for its own %s: it would never start", j.Name, w.Event)
		}
		if !slices.Contains(jobEvents, w.Event) {
			return t.errAt(p, "a job emits %s, never %q", joinEvents(jobEvents), w.Event)
		}
		if (w.Event == Healthy || w.Event == Unhealthy) && c.Jobs[k].Health == nil {
			return t.errAt(p, "job %q has no health check, so it never emits %s", w.Source, w.Event)
		}
	}
	return nil
}

func joinEvents(es []Event) string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = string(e)
	}
	return strings.Join(s, ", ")
}

// checkCycles refuses jobs that wait on each other: a job starts only after
// its source published an event, and a job publishes the events it waits
// for only once it has run, so a cycle never starts. stopping and stopped
// are left out: every job publishes them at shutdown, run or not.
func (t *translator) checkCycles(jobs map[string]int) error {
	c := t.c
	next := func(i int) int {
		w := c.Jobs[i].When
		if w.Interval > 0 || w.Source == "" || strings.HasPrefix(w.Source, "watch.") || w.Event == Stopping || w.Event == Stopped {
			return -1
		}
		return jobs[w.Source]
	}
	state := make([]int, len(c.Jobs)) // 0 new, 1 on the path, 2 done
	for s := range c.Jobs {
		var path []int
		for i := s; i >= 0 && state[i] != 2; i = next(i) {
			if state[i] == 1 {
				k := slices.Index(path, i)
				names := make([]string, 0, len(path)-k+1)
				for _, n := range path[k:] {
					names = append(names, c.Jobs[n].Name)
				}
				names = append(names, c.Jobs[i].Name)
				return t.errAt(t.whenPath(i), "jobs wait on each other in a cycle and would never start: %s", strings.Join(names, " waits for "))
			}
			state[i] = 1
			path = append(path, i)
		}
		for _, i := range path {
			state[i] = 2
		}
	}
	return nil
}
