package supervisor

import (
	"time"

	"github.com/autopilot/autopilot/render"
)

// Status is a point-in-time copy of the supervisor's state, for metrics,
// /status and tests. It holds no pointer into the running supervisor: each
// component owns its counters and Status copies them.
type Status struct {
	// Config is the config's name (its file), Generation the number of the
	// generation running (1 at start, +1 per accepted reload).
	Config     string
	Generation int
	// Maintenance is the desired maintenance mode.
	Maintenance bool
	Jobs        []JobStatus
	Services    []ServiceStatus
	Watches     []WatchStatus
	Templates   []TemplateStatus
}

// JobStatus is one job's state and counters.
type JobStatus struct {
	Name     string
	Main     bool
	State    string // StateWaiting, StateRunning, …
	Pid      int    // 0 when no process runs
	Starts   int
	Restarts int
	// LastExit is the last exit code (-1 before the first exit).
	LastExit int
	// Exits by class: 0, non-zero, killed by a signal.
	ExitsSuccess, ExitsFailure, ExitsSignal int
	// Health is the last health check result ("" without a check or before
	// the first), HealthRuns and HealthFailures count the checks.
	Health                     string
	HealthRuns, HealthFailures int
}

// ServiceStatus is one Consul registration.
type ServiceStatus struct {
	ID, Name, Address string
	Port              int
	Tags              []string
	// Registered and Maintenance are what the agent was last confirmed to
	// hold; Health is the status last reported.
	Registered  bool
	Maintenance bool
	Health      string
	// Registrations counts register calls (the first and every
	// re-registration), Reregistrations those after the first (agent
	// restarts, definition changes), TTLUpdates heartbeats, DriftRepairs
	// the times the agent's state differed from autopilot's and was
	// repaired, AgentErrors failed agent calls.
	Registrations, Reregistrations, TTLUpdates, DriftRepairs, AgentErrors int
	// HealthRuns and HealthFailures count the job's health checks.
	HealthRuns, HealthFailures int
}

// WatchStatus is one watch.
type WatchStatus struct {
	Name, Service, Tag, DC string
	Instances              int
	Changes                int // changed events published
	LastChange             time.Time
	LastError              string
}

// TemplateStatus is one template with its render counters.
type TemplateStatus struct {
	Source, Destination string
	render.Stats
}

// Status returns a copy of the supervisor's current state.
func (s *Supervisor) Status() Status {
	g := s.current()
	st := Status{Maintenance: s.maint.Load()}
	if g == nil {
		return st
	}
	st.Config, st.Generation = g.cfg.Name, g.n
	for _, j := range g.jobs {
		r, _ := j.snapshot()
		js := JobStatus{
			Name: j.cfg.Name, Main: j.cfg.Main, State: r.state, Starts: r.starts, Restarts: r.restarts,
			LastExit: -1, ExitsSuccess: r.exitsOK, ExitsFailure: r.exitsFail, ExitsSignal: r.exitsSig,
			Health: r.health,
		}
		if r.exited {
			js.LastExit = r.lastExit
		}
		if r.proc != nil {
			js.Pid = r.proc.Pid
		}
		if j.hc != nil {
			js.HealthRuns, js.HealthFailures = j.hc.counts()
		}
		st.Jobs = append(st.Jobs, js)
		if j.svc != nil {
			ss := j.svc.snapshot()
			ss.HealthRuns, ss.HealthFailures = js.HealthRuns, js.HealthFailures
			ss.Reregistrations = max(0, ss.Registrations-1)
			st.Services = append(st.Services, ss)
		}
	}
	for _, w := range g.watches {
		st.Watches = append(st.Watches, w.status())
	}
	if g.templates != nil {
		stats := g.templates.Stats()
		for i, t := range g.cfg.Templates {
			ts := TemplateStatus{Source: t.Source, Destination: t.Destination}
			if i < len(stats) {
				ts.Stats = stats[i]
			}
			st.Templates = append(st.Templates, ts)
		}
	}
	return st
}
