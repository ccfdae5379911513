package config

import "encoding/json"

// The dialects as written: what jsonpos decodes a rendered config into,
// field for field, before translation into the model. JSON names are
// matched case-sensitively; a field not listed here is an error naming it.

type rawLogging struct {
	Level  string `json:"level"`
	Format string `json:"format"`
	Output string `json:"output"`
}

type rawConsulExtras struct {
	EnableTagOverride              bool     `json:"enableTagOverride"`
	DeregisterCriticalServiceAfter duration `json:"deregisterCriticalServiceAfter"`
}

type rawTemplate struct {
	Source        string      `json:"source"`
	Destination   string      `json:"destination"`
	Perms         perms       `json:"perms"`
	Check         command     `json:"check"`
	CheckTimeout  duration    `json:"checkTimeout"`
	Reload        command     `json:"reload"`
	ReloadSignal  signal      `json:"reloadSignal"`
	Wait          string      `json:"wait"`
	MinInstances  int         `json:"minInstances"`
	HAProxy       *rawHAProxy `json:"haproxy"`
	ReloadConfirm string      `json:"reloadConfirm"`
}

type rawHAProxy struct {
	Runtime string   `json:"runtime"`
	Master  string   `json:"master"`
	Drain   duration `json:"drain"`
}

// rawV2 is ContainerPilot 2 and autopilot's own format (v2 plus templates
// and renderTimeout).
type rawV2 struct {
	Consul        consulField     `json:"consul"`
	Etcd          json.RawMessage `json:"etcd"`
	Logging       rawLogging      `json:"logging"`
	PreStart      command         `json:"preStart"`
	OnStart       command         `json:"onStart"`
	PreStop       command         `json:"preStop"`
	PostStop      command         `json:"postStop"`
	StopTimeout   stopDuration    `json:"stopTimeout"`
	RenderTimeout duration        `json:"renderTimeout"`
	Services      []rawService    `json:"services"`
	Backends      []rawBackend    `json:"backends"`
	Coprocesses   []rawCoprocess  `json:"coprocesses"`
	Tasks         []rawTask       `json:"tasks"`
	Telemetry     *rawTelemetryV2 `json:"telemetry"`
	Templates     []rawTemplate   `json:"templates"`
}

type rawService struct {
	Name       string           `json:"name"`
	ID         string           `json:"id"`
	Port       int              `json:"port"`
	Health     command          `json:"health"`
	Poll       duration         `json:"poll"`
	TTL        duration         `json:"ttl"`
	Timeout    duration         `json:"timeout"`
	Interfaces ifaces           `json:"interfaces"`
	Tags       []string         `json:"tags"`
	Consul     *rawConsulExtras `json:"consul"`
	// autopilot's own spelling, beside ContainerPilot's consul block.
	DeregisterCriticalServiceAfter duration `json:"deregisterCriticalServiceAfter"`
}

type rawBackend struct {
	Name     string   `json:"name"`
	Poll     duration `json:"poll"`
	OnChange command  `json:"onChange"`
	Tag      string   `json:"tag"`
	DC       string   `json:"dc"`
	Timeout  duration `json:"timeout"`
}

type rawCoprocess struct {
	Name     string    `json:"name"`
	Command  command   `json:"command"`
	Restarts *Restarts `json:"restarts"`
}

type rawTask struct {
	Name      string   `json:"name"`
	Command   command  `json:"command"`
	Frequency duration `json:"frequency"`
	Timeout   duration `json:"timeout"`
}

type rawTelemetryV2 struct {
	Port       int         `json:"port"`
	Interfaces ifaces      `json:"interfaces"`
	Tags       []string    `json:"tags"`
	Sensors    []rawSensor `json:"sensors"`
}

type rawSensor struct {
	Namespace string   `json:"namespace"`
	Subsystem string   `json:"subsystem"`
	Name      string   `json:"name"`
	Help      string   `json:"help"`
	Type      string   `json:"type"`
	Poll      duration `json:"poll"`
	Check     command  `json:"check"`
	Timeout   duration `json:"timeout"`
}

// rawV3 is ContainerPilot 3, plus autopilot's templates and renderTimeout.
type rawV3 struct {
	Consul        consulField     `json:"consul"`
	Logging       rawLogging      `json:"logging"`
	StopTimeout   duration        `json:"stopTimeout"`
	RenderTimeout duration        `json:"renderTimeout"`
	Jobs          []rawJob        `json:"jobs"`
	Watches       []rawWatch      `json:"watches"`
	Telemetry     *rawTelemetryV3 `json:"telemetry"`
	Control       *rawControl     `json:"control"`
	Templates     []rawTemplate   `json:"templates"`
}

type rawJobLogging struct {
	Raw bool `json:"raw"`
}

type rawJob struct {
	Name          string           `json:"name"`
	Exec          command          `json:"exec"`
	Logging       *rawJobLogging   `json:"logging"`
	When          *rawWhen         `json:"when"`
	Timeout       duration         `json:"timeout"`
	StopTimeout   duration         `json:"stopTimeout"`
	Restarts      *Restarts        `json:"restarts"`
	Health        *rawHealth       `json:"health"`
	Port          int              `json:"port"`
	Tags          []string         `json:"tags"`
	Interfaces    ifaces           `json:"interfaces"`
	Consul        *rawConsulExtras `json:"consul"`
	InitialStatus string           `json:"initial_status"`
}

type rawWhen struct {
	Source   string   `json:"source"`
	Once     string   `json:"once"`
	Each     string   `json:"each"`
	Interval duration `json:"interval"`
	Timeout  duration `json:"timeout"`
}

type rawHealth struct {
	Exec     command        `json:"exec"`
	Interval duration       `json:"interval"`
	TTL      duration       `json:"ttl"`
	Timeout  duration       `json:"timeout"`
	Logging  *rawJobLogging `json:"logging"`
}

type rawWatch struct {
	Name     string   `json:"name"`
	Interval duration `json:"interval"`
	Tag      string   `json:"tag"`
	DC       string   `json:"dc"`
}

type rawTelemetryV3 struct {
	Port       int         `json:"port"`
	Interfaces ifaces      `json:"interfaces"`
	Tags       []string    `json:"tags"`
	Metrics    []rawMetric `json:"metrics"`
}

type rawMetric struct {
	Namespace string `json:"namespace"`
	Subsystem string `json:"subsystem"`
	Name      string `json:"name"`
	Help      string `json:"help"`
	Type      string `json:"type"`
}

type rawControl struct {
	Socket string `json:"socket"`
}
