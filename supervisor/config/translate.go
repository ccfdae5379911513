package config

import (
	"fmt"
	"io/fs"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/autopilot/autopilot/internal/jsonpos"
	"github.com/autopilot/autopilot/internal/lazyre"
	"github.com/autopilot/autopilot/internal/proc"
	"github.com/autopilot/autopilot/render"
)

// translator turns a decoded dialect into the model, placing every error
// at the field it is about.
type translator struct {
	c   *Config
	pos *jsonpos.Positions
	// origin[i] is the field path Jobs[i] came from; worigin for Watches.
	origin, worigin []string
	// intervalErr is the first interval below MinInterval.
	intervalErr error
	// src is the raw text; unset the bare {{.VAR}} of unset variables in it.
	src   []byte
	unset []unsetRef
}

func (t *translator) errAt(path, format string, a ...any) error {
	return t.pos.ErrorAt(path, fmt.Sprintf(format, a...))
}

func (t *translator) addJob(path string, j Job) {
	t.c.Jobs = append(t.c.Jobs, j)
	t.origin = append(t.origin, path)
}

func commandOf(argv []string) proc.Command { return proc.Command{Argv: slices.Clone(argv)} }

// common translates the fields every dialect has.
func (t *translator) common(consul consulField, l rawLogging, stop stopDuration, renderTO duration, tmpls []rawTemplate) error {
	c := t.c
	c.Consul = consul.Address
	c.ConsulClient = consul.Client
	if err := checkConsulAddr(c.Consul); err != nil {
		return t.errAt("consul", "%v", err)
	}
	if err := t.logging(l); err != nil {
		return err
	}
	c.StopTimeout = DefaultStopTimeout
	switch {
	case stop.neg:
		// ContainerPilot 2's -1 kills the app at once; the model has no
		// zero (it means the default), so the least time stands for it.
		c.StopTimeout = time.Millisecond
	case stop.set && stop.d > 0:
		c.StopTimeout = stop.d
	}
	c.RenderTimeout = DefaultRenderTimeout
	if renderTO.set && renderTO.d > 0 {
		c.RenderTimeout = renderTO.d
	}
	for i, r := range tmpls {
		if err := t.template(fmt.Sprintf("templates[%d]", i), r); err != nil {
			return err
		}
	}
	return nil
}

// checkConsulAddr refuses an address without a host or port, which is
// what a template variable that is not set leaves ("{{ .CONSUL }}:8500"
// becomes ":8500"): dialing it would quietly reach localhost instead.
func checkConsulAddr(addr string) error {
	if addr == "" {
		return nil
	}
	hostport := addr
	if scheme, rest, ok := strings.Cut(addr, "://"); ok {
		if scheme != "http" && scheme != "https" && scheme != "unix" {
			return fmt.Errorf("%q: want http:// or https://", addr)
		}
		if scheme == "unix" {
			return nil
		}
		hostport = strings.TrimSuffix(rest, "/")
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		if !strings.Contains(hostport, ":") && hostport != "" && !strings.ContainsAny(hostport, "/ ") {
			return nil // a host alone: consul/api adds no port, the agent's default applies
		}
		return fmt.Errorf("%q: want host:port (%v)", addr, err)
	}
	switch {
	case host == "":
		return fmt.Errorf("%q has no host (is a variable in it unset?)", addr)
	case port == "":
		return fmt.Errorf("%q has no port", addr)
	}
	return nil
}

// logging accepts every dialect's spelling: levels in any case (DEBUG as
// ContainerPilot writes them; fatal and panic, which autopilot never logs
// at, mean error; warning means warn), format default|text|json ("default"
// is text), output stdout|stderr.
func (t *translator) logging(l rawLogging) error {
	lg := &t.c.Logging
	switch lv := strings.ToLower(l.Level); lv {
	case "":
		lg.Level = "info"
	case "debug", "info", "warn", "error":
		lg.Level = lv
	case "warning":
		lg.Level = "warn"
	case "fatal", "panic":
		lg.Level = "error"
	default:
		return t.errAt("logging.level", "want debug, info, warn or error (any case), got %q", l.Level)
	}
	switch f := strings.ToLower(l.Format); f {
	case "":
		lg.Format = "json"
	case "json", "text":
		lg.Format = f
	case "default":
		lg.Format = "text"
	default:
		return t.errAt("logging.format", "want json, text or default, got %q", l.Format)
	}
	switch o := strings.ToLower(l.Output); o {
	case "":
		lg.Output = "stderr"
	case "stdout", "stderr":
		lg.Output = o
	default:
		return t.errAt("logging.output", "want stdout or stderr, got %q", l.Output)
	}
	return nil
}

func (t *translator) template(p string, r rawTemplate) error {
	switch {
	case r.Source == "":
		return t.errAt(p+".source", "required")
	case r.Destination == "":
		return t.errAt(p+".destination", "required")
	case !r.Reload.IsZero() && r.ReloadSignal != 0:
		return t.errAt(p, "reload and reloadSignal are exclusive")
	case r.MinInstances < 0:
		return t.errAt(p+".minInstances", "must not be negative")
	}
	tm := Template{
		Source: r.Source, Destination: r.Destination, Perms: fs.FileMode(r.Perms),
		Check: r.Check, Reload: r.Reload, ReloadSignal: 0, MinInstances: r.MinInstances,
		CheckTimeout: DefaultCheckTimeout,
	}
	tm.ReloadSignal = sysSignal(r.ReloadSignal)
	if r.CheckTimeout.set {
		if r.CheckTimeout.d < time.Millisecond {
			return t.errAt(p+".checkTimeout", "must be at least 1ms")
		}
		tm.CheckTimeout = r.CheckTimeout.d
	}
	if t.c.Dir != "" && !filepath.IsAbs(tm.Source) {
		tm.Source = filepath.Join(t.c.Dir, tm.Source)
	}
	if r.Wait != "" {
		w, err := render.ParseWait(r.Wait)
		if err != nil {
			return t.errAt(p+".wait", "%v", err)
		}
		if w.Max > MaxDuration {
			return t.errAt(p+".wait", "longer than the maximum %s", MaxDuration)
		}
		tm.Wait = w
	}
	if err := checkPlaceholders(r.Check); err != nil {
		return t.errAt(p+".check", "%v", err)
	}
	if !r.Check.IsZero() {
		// Interpolation made any other {{.X}} an environment variable. One
		// that is not set, on the check's line, is most likely a placeholder
		// meant for the check: refuse it rather than run a check without it.
		line := t.pos.ErrorAt(p+".check", "").Line
		for _, u := range t.unset {
			if l, _ := lineColAt(t.src, u.off); l == line {
				return t.errAt(p+".check", "{{.%s}}: the environment variable %s is not set (in a check the only placeholder is {{.Path}}, the candidate file; any other {{.X}} is the environment variable X)", u.name, u.name)
			}
		}
	}
	switch r.ReloadConfirm {
	case "":
	case "workers":
		switch {
		case r.Reload.IsZero() && r.ReloadSignal == 0:
			return t.errAt(p+".reloadConfirm", "needs reload or reloadSignal")
		case r.HAProxy != nil && r.HAProxy.Master != "":
			return t.errAt(p+".reloadConfirm", "haproxy.master already confirms reloads; use one of them")
		}
		tm.ConfirmWorkers = true
	default:
		return t.errAt(p+".reloadConfirm", `want "workers", got %q`, r.ReloadConfirm)
	}
	if h := r.HAProxy; h != nil {
		switch {
		case h.Runtime == "" && h.Master == "":
			return t.errAt(p+".haproxy", "want runtime (the stats socket), master (the master CLI socket) or both")
		case h.Drain.set && h.Drain.d < time.Millisecond:
			return t.errAt(p+".haproxy.drain", "must be at least 1ms")
		}
		tm.HAProxy = &HAProxy{Runtime: h.Runtime, Master: h.Master, Drain: h.Drain.d}
	}
	for _, o := range t.c.Templates {
		if filepath.Clean(o.Destination) == filepath.Clean(tm.Destination) {
			return t.errAt(p+".destination", "%q is already the destination of another template; two templates would overwrite each other", tm.Destination)
		}
	}
	t.c.Templates = append(t.c.Templates, tm)
	return nil
}

// checkPlaceholders refuses a check command with a placeholder other than
// {{.Path}}: it would never expand, and the check would fail on every
// render. (Interpolation rendered every {{.Path}} as exactly that.)
func checkPlaceholders(cmd proc.Command) error {
	if cmd.IsZero() {
		return nil
	}
	_, err := cmd.Expand(map[string]string{"Path": "/candidate"})
	if err != nil {
		return fmt.Errorf("%v (the only placeholder is {{.Path}}, the candidate file)", err)
	}
	return nil
}

// v2 translates ContainerPilot 2 (and autopilot's format) into jobs; the
// mapping is the README's table.
func (t *translator) v2(r *rawV2) error {
	if r.Etcd != nil {
		return t.errAt("etcd", "etcd is not supported: autopilot discovers and registers services only in Consul (use consul)")
	}
	if err := t.common(r.Consul, r.Logging, r.StopTimeout, r.RenderTimeout, r.Templates); err != nil {
		return err
	}
	c := t.c
	preStart, preStartPath := r.PreStart, "preStart"
	if !r.OnStart.IsZero() {
		if !r.PreStart.IsZero() {
			return t.errAt("onStart", "onStart is ContainerPilot 1's name for preStart; give only one of them")
		}
		preStart, preStartPath = r.OnStart, "onStart"
	}
	// Everything that ContainerPilot 2 starts with the app waits for
	// preStart's success, as the app does.
	start := When{Event: Startup}
	if !preStart.IsZero() {
		t.addJob(preStartPath, Job{Name: "preStart", Exec: preStart, When: When{Event: Startup}})
		start = When{Source: "preStart", Event: ExitSuccess}
	}
	for i, cp := range r.Coprocesses {
		p := fmt.Sprintf("coprocesses[%d]", i)
		if cp.Command.IsZero() {
			return t.errAt(p+".command", "required")
		}
		j := Job{Name: cp.Name, Exec: cp.Command, When: start}
		if j.Name == "" {
			j.Name = cp.Command.Argv[0]
		}
		if cp.Restarts != nil {
			j.Restarts = *cp.Restarts
		}
		t.addJob(p, j)
	}
	t.addJob("", Job{Name: MainJob, Main: true, When: start, StopTimeout: c.StopTimeout})
	for i, s := range r.Services {
		p := fmt.Sprintf("services[%d]", i)
		if err := t.v2Service(p, s, start); err != nil {
			return err
		}
	}
	for i, b := range r.Backends {
		p := fmt.Sprintf("backends[%d]", i)
		if b.Name == "" {
			return t.errAt(p+".name", "required")
		}
		if b.OnChange.IsZero() {
			return t.errAt(p+".onChange", "required")
		}
		c.Watches = append(c.Watches, Watch{Name: b.Name, Interval: b.Poll.d, Tag: b.Tag, DC: b.DC})
		t.worigin = append(t.worigin, p)
		j := Job{Name: "onChange." + b.Name, Exec: b.OnChange, When: When{Source: "watch." + b.Name, Event: Changed, Each: true}}
		if b.Timeout.set {
			j.Timeout = b.Timeout.d
		}
		t.addJob(p+".onChange", j)
	}
	for i, tk := range r.Tasks {
		p := fmt.Sprintf("tasks[%d]", i)
		if tk.Command.IsZero() {
			return t.errAt(p+".command", "required")
		}
		if !tk.Frequency.set {
			return t.errAt(p+".frequency", "required, the time between two runs")
		}
		// Gated like the app: the first run waits for preStart's success.
		j := Job{Name: tk.Name, Exec: tk.Command, When: When{Source: start.Source, Event: start.Event, Interval: tk.Frequency.d}, Timeout: tk.Frequency.d}
		if j.Name == "" {
			j.Name = tk.Command.Argv[0]
		}
		if tk.Timeout.set {
			j.Timeout = tk.Timeout.d
		}
		t.addJob(p, j)
		t.interval(p+".frequency", tk.Frequency.d)
	}
	if r.Telemetry != nil {
		if err := t.v2Telemetry(r.Telemetry); err != nil {
			return err
		}
	}
	if !r.PreStop.IsZero() {
		t.addJob("preStop", Job{Name: "preStop", Exec: r.PreStop, When: When{Source: MainJob, Event: Stopping}})
	}
	if !r.PostStop.IsZero() {
		t.addJob("postStop", Job{Name: "postStop", Exec: r.PostStop, When: When{Source: MainJob, Event: Stopped}})
	}
	return t.intervalErr
}

func (t *translator) v2Service(p string, s rawService, start When) error {
	switch {
	case s.Name == "":
		return t.errAt(p+".name", "required")
	case s.Health.IsZero():
		return t.errAt(p+".health", "required")
	case !s.Poll.set || s.Poll.d == 0:
		return t.errAt(p+".poll", "required, the time between health checks")
	case !s.TTL.set || s.TTL.d == 0:
		return t.errAt(p+".ttl", "required, how long a passing check stays passing")
	}
	j := Job{
		Name: s.Name, ID: s.ID, Port: s.Port, Interfaces: s.Interfaces, Tags: s.Tags, When: start,
		Health: &Health{Exec: s.Health, Interval: s.Poll.d, TTL: s.TTL.d, Timeout: s.Poll.d},
	}
	if s.Timeout.set {
		j.Health.Timeout = s.Timeout.d
	}
	if s.Consul != nil {
		if s.DeregisterCriticalServiceAfter.set {
			return t.errAt(p+".deregisterCriticalServiceAfter", "also set in consul.deregisterCriticalServiceAfter; give one")
		}
		j.Consul = JobConsul{EnableTagOverride: s.Consul.EnableTagOverride, DeregisterCriticalServiceAfter: s.Consul.DeregisterCriticalServiceAfter.d}
	} else {
		j.Consul.DeregisterCriticalServiceAfter = s.DeregisterCriticalServiceAfter.d
	}
	t.addJob(p, j)
	t.interval(p+".poll", s.Poll.d)
	return nil
}

var metricName = lazyre.New(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

func (t *translator) metric(p, namespace, subsystem, name, help, typ string) (Metric, error) {
	m := Metric{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help, Type: MetricType(typ)}
	if name == "" {
		return m, t.errAt(p+".name", "required")
	}
	if !metricName().MatchString(m.FullName()) {
		return m, t.errAt(p+".name", "%q is not a valid Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)", m.FullName())
	}
	switch m.Type {
	case Counter, Gauge, Histogram, Summary:
	default:
		return m, t.errAt(p+".type", "want counter, gauge, histogram or summary, got %q", typ)
	}
	for _, o := range t.c.Telemetry.Metrics {
		if o.FullName() == m.FullName() {
			return m, t.errAt(p+".name", "metric %q is declared twice", m.FullName())
		}
	}
	return m, nil
}

func (t *translator) telemetry(port int, ifs ifaces, tags []string) {
	if port == 0 {
		port = DefaultTelemetryPort
	}
	t.c.Telemetry = &Telemetry{Port: port, Interfaces: ifs, Tags: tags}
}

func (t *translator) v2Telemetry(r *rawTelemetryV2) error {
	if r.Port < 0 || r.Port > 65535 {
		return t.errAt("telemetry.port", "%d out of range", r.Port)
	}
	t.telemetry(r.Port, r.Interfaces, r.Tags)
	for i, s := range r.Sensors {
		p := fmt.Sprintf("telemetry.sensors[%d]", i)
		m, err := t.metric(p, s.Namespace, s.Subsystem, s.Name, s.Help, s.Type)
		if err != nil {
			return err
		}
		if s.Check.IsZero() {
			return t.errAt(p+".check", "required, the command whose output is the metric's value")
		}
		if !s.Poll.set {
			return t.errAt(p+".poll", "required, the time between two runs of check")
		}
		t.c.Telemetry.Metrics = append(t.c.Telemetry.Metrics, m)
		j := Job{Name: "sensor." + m.FullName(), Exec: s.Check, When: When{Interval: s.Poll.d}, Timeout: s.Poll.d, Sensor: m.FullName()}
		if s.Timeout.set {
			j.Timeout = s.Timeout.d
		}
		t.addJob(p, j)
		t.interval(p+".poll", s.Poll.d)
	}
	return nil
}

// interval records the first interval below MinInterval; translation goes
// on so that errors keep the config's order.
func (t *translator) interval(path string, d time.Duration) {
	if d < MinInterval && t.intervalErr == nil {
		t.intervalErr = t.errAt(path, "%s is shorter than the minimum %s", d, MinInterval)
	}
}

var events = []Event{Startup, ExitSuccess, ExitFailed, Healthy, Unhealthy, Changed, Stopping, Stopped, Shutdown, EnterMaintenance, ExitMaintenance}

func parseEvent(s string) (Event, error) {
	for _, e := range events {
		if string(e) == s {
			return e, nil
		}
	}
	for _, e := range events {
		if strings.EqualFold(string(e), s) {
			return "", fmt.Errorf("unknown event %q; did you mean %q?", s, e)
		}
	}
	names := make([]string, len(events))
	for i, e := range events {
		names[i] = string(e)
	}
	return "", fmt.Errorf("unknown event %q (want one of %s)", s, strings.Join(names, ", "))
}

// v3 translates ContainerPilot 3 one to one.
func (t *translator) v3(r *rawV3) error {
	if err := t.common(r.Consul, r.Logging, stopDuration{duration: r.StopTimeout}, r.RenderTimeout, r.Templates); err != nil {
		return err
	}
	c := t.c
	for i, w := range r.Watches {
		p := fmt.Sprintf("watches[%d]", i)
		if w.Name == "" {
			return t.errAt(p+".name", "required")
		}
		c.Watches = append(c.Watches, Watch{Name: w.Name, Interval: w.Interval.d, Tag: w.Tag, DC: w.DC})
		t.worigin = append(t.worigin, p)
	}
	for i, rj := range r.Jobs {
		if err := t.v3Job(fmt.Sprintf("jobs[%d]", i), rj); err != nil {
			return err
		}
	}
	if r.Telemetry != nil {
		if r.Telemetry.Port < 0 || r.Telemetry.Port > 65535 {
			return t.errAt("telemetry.port", "%d out of range", r.Telemetry.Port)
		}
		t.telemetry(r.Telemetry.Port, r.Telemetry.Interfaces, r.Telemetry.Tags)
		for i, m := range r.Telemetry.Metrics {
			mm, err := t.metric(fmt.Sprintf("telemetry.metrics[%d]", i), m.Namespace, m.Subsystem, m.Name, m.Help, m.Type)
			if err != nil {
				return err
			}
			c.Telemetry.Metrics = append(c.Telemetry.Metrics, mm)
		}
	}
	c.Control.Socket = DefaultControlSocket
	if r.Control != nil && r.Control.Socket != "" {
		c.Control.Socket = r.Control.Socket
	}
	return t.intervalErr
}

func (t *translator) v3Job(p string, r rawJob) error {
	j := Job{Name: r.Name, Exec: r.Exec, Port: r.Port, Tags: r.Tags, Interfaces: r.Interfaces, When: When{Event: Startup}}
	if j.Name == "" {
		if r.Exec.IsZero() {
			return t.errAt(p+".name", "required (or an exec to name the job after)")
		}
		j.Name = r.Exec.Argv[0]
	}
	if r.Exec.IsZero() && r.Port == 0 {
		return t.errAt(p, "job %q has neither exec nor port: it would do nothing", j.Name)
	}
	if r.Logging != nil {
		j.RawOutput = r.Logging.Raw
	}
	if r.When != nil {
		w, err := t.when(p+".when", *r.When)
		if err != nil {
			return err
		}
		j.When = w
	}
	if r.Timeout.set {
		if r.Timeout.d < time.Millisecond {
			return t.errAt(p+".timeout", "must be at least 1ms")
		}
		j.Timeout = r.Timeout.d
	} else if j.When.Interval > 0 {
		j.Timeout = j.When.Interval // ContainerPilot's default for periodic jobs
	}
	j.StopTimeout = r.StopTimeout.d
	if r.Restarts != nil {
		j.Restarts = *r.Restarts
		if j.Restarts.Unlimited && j.When.Each {
			return t.errAt(p+".restarts", `"unlimited" with when.each would start a new restarting process on every event`)
		}
	}
	if r.Health != nil {
		h := r.Health
		hp := p + ".health"
		switch {
		case h.Exec.IsZero():
			return t.errAt(hp+".exec", "required")
		case !h.Interval.set || h.Interval.d == 0:
			return t.errAt(hp+".interval", "required, the time between health checks")
		case !h.TTL.set || h.TTL.d == 0:
			return t.errAt(hp+".ttl", "required, how long a passing check stays passing")
		}
		j.Health = &Health{Exec: h.Exec, Interval: h.Interval.d, TTL: h.TTL.d, Timeout: h.Interval.d}
		if h.Timeout.set {
			if h.Timeout.d < time.Millisecond {
				return t.errAt(hp+".timeout", "must be at least 1ms")
			}
			j.Health.Timeout = h.Timeout.d
		}
		if h.Logging != nil {
			j.Health.RawOutput = h.Logging.Raw
		}
		t.interval(hp+".interval", h.Interval.d)
	}
	if r.Port != 0 && j.Health == nil {
		return t.errAt(p+".health", "required when port is set: the health check feeds the service's TTL check")
	}
	if r.Consul != nil {
		j.Consul = JobConsul{EnableTagOverride: r.Consul.EnableTagOverride, DeregisterCriticalServiceAfter: r.Consul.DeregisterCriticalServiceAfter.d}
	}
	switch r.InitialStatus {
	case "", "passing", "warning", "critical":
		j.InitialStatus = r.InitialStatus
	default:
		return t.errAt(p+".initial_status", "want passing, warning or critical, got %q", r.InitialStatus)
	}
	t.addJob(p, j)
	return nil
}

func (t *translator) when(p string, r rawWhen) (When, error) {
	if r.Interval.set {
		if r.Source != "" || r.Once != "" || r.Each != "" || r.Timeout.set {
			return When{}, t.errAt(p, "interval is exclusive with source, once, each and timeout")
		}
		t.interval(p+".interval", r.Interval.d)
		return When{Interval: r.Interval.d}, nil
	}
	if r.Once != "" && r.Each != "" {
		return When{}, t.errAt(p, "once and each are exclusive")
	}
	w := When{Source: r.Source, Event: Startup, Timeout: r.Timeout.d}
	field, name := "once", r.Once
	if r.Each != "" {
		field, name, w.Each = "each", r.Each, true
	}
	if name == "" {
		if r.Source != "" {
			return When{}, t.errAt(p, "source %q needs once or each: the event that starts the job", r.Source)
		}
		return w, nil
	}
	e, err := parseEvent(name)
	if err != nil {
		return When{}, t.errAt(p+"."+field, "%v", err)
	}
	w.Event = e
	return w, nil
}
