// Package telemetry is autopilot's window for operators: the Prometheus
// endpoint (/metrics), the status document (/status) and a quiet health
// endpoint (/health), served on the telemetry block's port, plus the user's
// own metrics that putmetric and sensor jobs feed.
//
// The components own their counters (the supervisor its jobs and checks,
// render its templates, the Consul client its requests) and know nothing of
// Prometheus. At scrape time the collectors here take one point-in-time
// Snapshot from a Source and turn it into constant metrics, so a scrape
// never holds a component's lock while it writes to the network, and no
// counter exists twice.
package telemetry

import (
	"time"
)

// SchemaVersion is the version of the /status document. It changes only when
// a field is removed or changes meaning; new fields may appear in any version.
const SchemaVersion = 1

// Source gives the telemetry server a point-in-time copy of what the
// supervisor and its components are doing. Snapshot must be cheap and safe
// for concurrent use: it runs on every scrape and every /status request.
type Source interface {
	Snapshot() Snapshot
}

// SourceFunc adapts a function to Source.
type SourceFunc func() Snapshot

// Snapshot implements Source.
func (f SourceFunc) Snapshot() Snapshot { return f() }

// Snapshot is the /status document (schema version SchemaVersion) and
// everything the autopilot_* metrics are computed from. Times are RFC 3339
// in JSON and left out when zero (never happened).
type Snapshot struct {
	Schema    int              `json:"schema"`
	Version   string           `json:"version"`
	Time      time.Time        `json:"time"`
	Config    ConfigStatus     `json:"config"`
	Consul    ConsulStatus     `json:"consul"`
	Jobs      []JobStatus      `json:"jobs"`
	Services  []ServiceStatus  `json:"services"`
	Watches   []WatchStatus    `json:"watches"`
	Templates []TemplateStatus `json:"templates"`
	Control   ControlStatus    `json:"control"`
}

// ControlStatus is the control socket ("" when there is none) and its
// requests by endpoint path and status code.
type ControlStatus struct {
	Socket   string                `json:"socket"`
	Requests []ControlRequestCount `json:"requests"`
}

// ControlRequestCount is one (path, code) counter of the control socket.
type ControlRequestCount struct {
	Path  string `json:"path"`
	Code  int    `json:"code"`
	Count uint64 `json:"count"`
}

// ConfigStatus says which configuration runs.
type ConfigStatus struct {
	File string `json:"file"`
	// Generation counts configurations applied: 1 at start, +1 per reload
	// that was accepted.
	Generation int `json:"generation"`
	// LastReloadError is why the most recent reload was refused ("" when it
	// was accepted or none was tried).
	LastReloadError string `json:"last_reload_error,omitempty"`
}

// ConsulStatus is the Consul client's view of the agent.
type ConsulStatus struct {
	Address string `json:"address"`
	// Reachable is false after a request failed and until one succeeds.
	Reachable bool   `json:"reachable"`
	LastError string `json:"last_error,omitempty"`
	// Requests counts the client's HTTP requests by endpoint and outcome.
	Requests []RequestCount `json:"requests"`
	// IndexResets and EmptyHeld are the totals over every watch.
	IndexResets uint64 `json:"index_resets"`
	EmptyHeld   uint64 `json:"empty_held"`
	// BlockingLatency is the time blocking queries took to answer.
	BlockingLatency Histogram `json:"blocking_latency"`
}

// Histogram is a cumulative histogram of durations in seconds.
type Histogram struct {
	Count   uint64   `json:"count"`
	Seconds float64  `json:"seconds"`
	Buckets []Bucket `json:"buckets,omitempty"`
}

// Bucket counts the observations of at most UpperBound seconds.
type Bucket struct {
	UpperBound float64 `json:"le"`
	Count      uint64  `json:"count"`
}

// RequestCount is one (endpoint, outcome) counter of the Consul client.
// Endpoint names an API route ("health.service", "agent.ttl"), never a URL
// with data in it, so the label stays bounded.
type RequestCount struct {
	Endpoint string `json:"endpoint"`
	Outcome  string `json:"outcome"` // ok, error, timeout, canceled…
	Count    uint64 `json:"count"`
}

// JobStatus is one supervised job.
type JobStatus struct {
	Name string `json:"name"`
	// State is the job's lifecycle state as the supervisor names it
	// (waiting, running, exited, stopping, stopped…).
	State    string      `json:"state"`
	Running  bool        `json:"running"`
	PID      int         `json:"pid,omitempty"`
	Starts   uint64      `json:"starts"`
	Restarts uint64      `json:"restarts"`
	Exits    ExitCounts  `json:"exits"`
	LastExit *ExitStatus `json:"last_exit,omitempty"`
	// Health is nil when the job has no health check.
	Health *HealthStatus `json:"health,omitempty"`
}

// ExitCounts counts a job's exits by class, which keeps the metric's labels
// bounded whatever codes an app uses.
type ExitCounts struct {
	Success uint64 `json:"success"` // exit code 0
	Failure uint64 `json:"failure"` // a non-zero exit code
	Signal  uint64 `json:"signal"`  // killed by a signal
}

// ExitStatus is how a job's process last ended.
type ExitStatus struct {
	// Code is the exit code autopilot would pass on (128+N for signal N).
	Code int `json:"code"`
}

// HealthStatus is a job's health check.
type HealthStatus struct {
	Status   string `json:"status"` // passing, warning, critical, unknown (not run yet)
	Runs     uint64 `json:"runs"`
	Failures uint64 `json:"failures"`
	// TTLUpdates counts heartbeats sent to Consul (registered jobs only).
	TTLUpdates uint64 `json:"ttl_updates"`
	// Reregistrations counts registrations repeated because the agent had
	// lost the service (an agent restart).
	Reregistrations uint64 `json:"reregistrations"`
}

// ServiceStatus is one service registration in Consul.
type ServiceStatus struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Address string `json:"address"`
	Port    int    `json:"port"`
	// Health is what autopilot last reported to Consul for the TTL check.
	Health      string `json:"health"`
	Maintenance bool   `json:"maintenance"`
	// Registered is false until the agent accepted the registration (or
	// after it lost it, until the next registration).
	Registered bool `json:"registered"`
}

// WatchStatus is one unique Consul query and its blocking-query loop,
// shared by every job watch, backend and template that uses it.
type WatchStatus struct {
	Query       string    `json:"query"`
	Instances   int       `json:"instances"`
	LastChange  time.Time `json:"last_change,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Requests    uint64    `json:"requests"`
	Errors      uint64    `json:"errors"`
	IndexResets uint64    `json:"index_resets"`
	// EmptyHeld counts empty answers held back during the recovery grace.
	EmptyHeld uint64 `json:"empty_held"`
	// Latency is the time from sending a request to its answer.
	Latency Durations `json:"latency"`
}

// TemplateStatus is one template kept rendered.
type TemplateStatus struct {
	Source         string `json:"source"`
	Destination    string `json:"destination"`
	Renders        uint64 `json:"renders"`
	Writes         uint64 `json:"writes"`
	Unchanged      uint64 `json:"unchanged"`
	CheckFailures  uint64 `json:"check_failures"`
	Reloads        uint64 `json:"reloads"`
	ReloadFailures uint64 `json:"reload_failures"`
	Rollbacks      uint64 `json:"rollbacks"`
	// WriteErrors are renders that could not be written (disk full,
	// permission denied, read-only filesystem); each is retried.
	WriteErrors uint64 `json:"write_errors"`
	// RuntimeApplied are writes made live without a reload (HAProxy's
	// runtime API); RuntimeFallbacks are runtime API failures that fell
	// back to a reload.
	RuntimeApplied   uint64    `json:"runtime_applied"`
	RuntimeFallbacks uint64    `json:"runtime_fallbacks"`
	RenderTime       Durations `json:"render_time"`
	LastWrite        time.Time `json:"last_write,omitzero"`
	// MissingSince is when the data went incomplete; Missing names what is
	// still missing. Both are empty while the data is complete.
	MissingSince time.Time `json:"missing_since,omitzero"`
	Missing      []string  `json:"missing,omitempty"`
	LastCheck    *Outcome  `json:"last_check,omitempty"`
	LastReload   *Outcome  `json:"last_reload,omitempty"`
}

// Outcome is the result of one check or reload command.
type Outcome struct {
	At     time.Time `json:"at,omitzero"`
	OK     bool      `json:"ok"`
	Output string    `json:"output,omitempty"` // the tail of its output, or the error
}

// Durations is a count and a sum of durations: a Prometheus summary without
// quantiles, enough for rates and averages at no cost to the component.
type Durations struct {
	Count   uint64  `json:"count"`
	Seconds float64 `json:"seconds"`
}
