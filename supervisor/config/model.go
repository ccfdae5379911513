// Package config turns a supervisor config, in any of the dialects autopilot
// reads, into one model: jobs, watches, templates, telemetry and the control
// socket. The dialects are ContainerPilot 2 JSON (services, backends,
// preStart, coprocesses, tasks, telemetry.sensors…), ContainerPilot 3 JSON5
// (jobs, watches, telemetry.metrics, control) and autopilot's own format
// (ContainerPilot 2 plus templates). All three are Go-template interpolated
// over the raw text first, as ContainerPilot does, and then translated into
// the same Config; the supervisor runs only the model and never looks at a
// dialect.
//
// Every value with a grammar (durations, intervals, wait, interfaces,
// signals, restart policies) is parsed once here into a typed value and
// validated for range; nothing downstream re-parses a string.
package config

import (
	"io/fs"
	"net/netip"
	"syscall"
	"time"

	"github.com/autopilot/autopilot/internal/proc"
	"github.com/autopilot/autopilot/render"
)

// Dialect says which config language a file was written in. It decides
// defaults that must match the original tool (service IDs, environment
// variable names), never what the supervisor does.
type Dialect int

const (
	// Autopilot is autopilot's own JSON: ContainerPilot 2 fields plus templates.
	Autopilot Dialect = iota
	// ContainerPilot2 is a ContainerPilot 2.x JSON config.
	ContainerPilot2
	// ContainerPilot3 is a ContainerPilot 3.x JSON5 config (jobs and watches).
	ContainerPilot3
)

// Config is one complete, validated generation of configuration. It is
// immutable once returned by Parse or Load: a reload parses a new Config and
// the supervisor builds a new generation from it.
type Config struct {
	// Name is where the config came from (a file path, or "inline config").
	Name string
	// Dir is the directory relative template sources resolve against.
	Dir string
	// Dialect is the language the config was written in.
	Dialect Dialect

	// Consul is the agent address ("host:port" or a URL); empty means
	// consul/api's default and the CONSUL_HTTP_* variables.
	Consul string
	// ConsulClient holds the client options of ContainerPilot 3's object
	// form of consul (token, TLS); zero means consul/api's defaults and
	// the CONSUL_HTTP_* variables. (Added by the config front-end.)
	ConsulClient ConsulClient
	Logging      Logging
	// StopTimeout is the default time between SIGTERM and SIGKILL for jobs
	// that do not set their own.
	StopTimeout time.Duration
	// RenderTimeout bounds how long startup waits for the first complete
	// render of every template.
	RenderTimeout time.Duration

	Jobs      []Job
	Watches   []Watch
	Templates []Template
	// Telemetry is nil when the config has no telemetry block.
	Telemetry *Telemetry
	Control   Control
}

// ConsulClient is the Consul client configuration beyond the address.
// Empty fields leave consul/api's defaults (and its environment variables).
type ConsulClient struct {
	Token string
	TLS   ConsulTLS
}

// ConsulTLS is ContainerPilot 3's consul.tls block.
type ConsulTLS struct {
	CAFile, CAPath, ClientCert, ClientKey, ServerName string
	Verify                                            *bool // nil: default
}

// Logging configures the supervisor's own log.
type Logging struct {
	Level  string // debug|info|warn|error, lower-cased at parse time
	Format string // json|text ("default" in ContainerPilot means text)
	Output string // stdout|stderr
}

// Job is a process (or a registration for a process another job runs)
// managed by the supervisor: when it starts, whether it restarts, whether and
// how it is registered in Consul, and how its health is checked.
type Job struct {
	// Name is unique in the config; for a job with a Port it is also the
	// Consul service name.
	Name string
	// Exec is the command; zero means no process (a registration for a
	// process run by another job, or a pure health-reporting job).
	Exec proc.Command
	// Main marks the job whose exit ends the run and gives autopilot's exit
	// code: the command-line app of a ContainerPilot 2 / autopilot config, or
	// the command given on the command line with a v3 config.
	Main bool

	// Registration. A job with Port > 0 is registered in Consul.
	ID            string // service ID; derived per dialect when not set
	Port          int
	Interfaces    []Interface
	Tags          []string
	InitialStatus string // "", passing, warning, critical
	Consul        JobConsul

	// Health is nil when the job has no health check.
	Health *Health

	Restarts    Restarts
	StopTimeout time.Duration // SIGTERM to SIGKILL; default Config.StopTimeout
	Timeout     time.Duration // kill the job after this long (0: no limit)
	When        When

	// Sensor, when set, is the fully qualified name of a Telemetry metric
	// that this job's standard output feeds (ContainerPilot 2 sensors).
	Sensor string

	// RawOutput is ContainerPilot 3's logging.raw: the process's stdout and
	// stderr go to autopilot's own unchanged instead of line by line into
	// the log. (Added by the config front-end.)
	RawOutput bool
}

// JobConsul holds the Consul registration options of a job.
type JobConsul struct {
	EnableTagOverride              bool
	DeregisterCriticalServiceAfter time.Duration
}

// Health is how a job's health is checked: Exec is run every Interval with
// Timeout; its result feeds a Consul TTL check of TTL when the job is
// registered, and the job's healthy/unhealthy events in every case.
type Health struct {
	Exec     proc.Command
	Interval time.Duration
	TTL      time.Duration
	Timeout  time.Duration
	// RawOutput is ContainerPilot 3's health.logging.raw (see
	// Job.RawOutput). (Added by the config front-end.)
	RawOutput bool
}

// Restarts is a job's restart policy: how many times it is started again
// after it exits.
type Restarts struct {
	Unlimited bool
	// Max is the number of restarts when !Unlimited; 0 means never.
	Max int
}

// Event names what happened to a job or watch, for When triggers.
type Event string

// The events of ContainerPilot 3, plus the supervisor's own.
const (
	Startup     Event = "startup"
	ExitSuccess Event = "exitSuccess"
	ExitFailed  Event = "exitFailed"
	Healthy     Event = "healthy"
	Unhealthy   Event = "unhealthy"
	Changed     Event = "changed"
	Stopping    Event = "stopping"
	Stopped     Event = "stopped"
	// Global events (no source) of ContainerPilot 3, added by the config
	// front-end: shutdown begins, the control plane enters or leaves
	// maintenance.
	Shutdown         Event = "shutdown"
	EnterMaintenance Event = "enterMaintenance"
	ExitMaintenance  Event = "exitMaintenance"
)

// When is what starts a job. With Interval > 0 the job runs periodically;
// otherwise it starts on Event from Source ("" is the supervisor itself, a
// job name, or "watch.NAME"), once or on each occurrence.
type When struct {
	Source   string
	Event    Event // Startup when the config says nothing
	Each     bool  // each: every occurrence; once: the first only
	Interval time.Duration
	// Timeout is ContainerPilot 3's when.timeout: how long to wait for the
	// event before giving up on the job (0: forever). (Added by the config
	// front-end.)
	Timeout time.Duration
}

// Watch follows the healthy instances of a Consul service and publishes
// Changed (from source "watch.NAME") when the set changes. It rides the
// shared blocking-query watcher: Interval is the least time between two
// events, not a polling period.
type Watch struct {
	Name     string // the Consul service name
	Interval time.Duration
	Tag      string
	DC       string
}

// Template is a file rendered from Consul data and kept up to date.
type Template struct {
	Source       string // resolved against Config.Dir at parse time
	Destination  string
	Perms        fs.FileMode // 0: the existing file's mode, else 0644
	Check        proc.Command
	CheckTimeout time.Duration
	Reload       proc.Command
	ReloadSignal syscall.Signal // 0: none; sent to the Main job's process group
	Wait         render.Wait
	MinInstances int
	// HAProxy opts the template into hitless HAProxy updates (nil: off).
	HAProxy *HAProxy
	// ConfirmWorkers (`"reloadConfirm": "workers"`) waits, after each
	// reload or reloadSignal, for the app to start a new child process (a
	// worker, as nginx and HAProxy -W do on reload) and triggers the reload
	// again when none appears.
	ConfirmWorkers bool
}

// HAProxy is a template's `haproxy` field: the sockets through which
// autopilot changes backend servers without a reload, and confirms the
// reloads it still makes (internal/haproxy).
type HAProxy struct {
	Runtime string        // stats socket at level admin ("": reload for every change)
	Master  string        // master CLI socket ("": reloads are not confirmed)
	Drain   time.Duration // bound on a removed server's sessions (0: the default, 30s)
}

// Telemetry is the metrics endpoint and the user's metrics.
type Telemetry struct {
	Port       int
	Interfaces []Interface
	Tags       []string
	Metrics    []Metric
}

// MetricType is a Prometheus metric kind.
type MetricType string

// The metric kinds ContainerPilot accepts.
const (
	Counter   MetricType = "counter"
	Gauge     MetricType = "gauge"
	Histogram MetricType = "histogram"
	Summary   MetricType = "summary"
)

// Metric is a user-declared metric, fed by putmetric or by a sensor job.
type Metric struct {
	Namespace, Subsystem, Name, Help string
	Type                             MetricType
}

// FullName is the metric's Prometheus name: namespace_subsystem_name.
func (m Metric) FullName() string {
	s := m.Name
	if m.Subsystem != "" {
		s = m.Subsystem + "_" + s
	}
	if m.Namespace != "" {
		s = m.Namespace + "_" + s
	}
	return s
}

// Control is the control socket (ContainerPilot 3's HTTP over a Unix socket).
type Control struct {
	Socket string // default DefaultControlSocket
}

// DefaultControlSocket is ContainerPilot 3's default control socket path.
const DefaultControlSocket = "/var/run/containerpilot.socket"

// Interface is one parsed address spec of interfaces: the first spec that
// matches an address of the host gives the advertised address.
type Interface struct {
	Kind InterfaceKind
	// Name is the interface name (KindName), Index the address index on it
	// for ContainerPilot's "eth0[1]" (-1: any), Family 4 or 6 (0: IPv4, as
	// ContainerPilot defaults), Prefix the CIDR (KindCIDR), Addr the address
	// (KindStatic).
	Name   string
	Index  int
	Family int
	Prefix netip.Prefix
	Addr   netip.Addr
}

// InterfaceKind is what an Interface spec matches on.
type InterfaceKind int

// The interface spec forms: "eth0", "eth0[1]", "eth0:inet6", "inet", "inet6",
// a CIDR, "static:IP".
const (
	KindName InterfaceKind = iota
	KindFamily
	KindCIDR
	KindStatic
)
