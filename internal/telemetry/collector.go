package telemetry

import (
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Namespace prefixes every metric autopilot itself exports.
const Namespace = "autopilot"

// metric is one autopilot_* metric: its descriptor and how a snapshot gives
// its samples. Keeping the list in one table keeps Describe, Collect and the
// README's metrics table (TestMetricsDocumented) in step.
type metric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType // ignored when summary is set
	name  string
	help  string
	label []string
	// samples emits the metric's values for one snapshot.
	samples func(s *Snapshot, emit func(v float64, labels ...string))
	// summary, when set, emits a count/sum summary instead.
	summary func(s *Snapshot, emit func(d Durations, labels ...string))
	// histogram, when set, emits a histogram instead.
	histogram func(s *Snapshot, emit func(h Histogram, labels ...string))
}

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// healthStates are the values of a check's status label, one series each.
var healthStates = []string{"passing", "warning", "critical", "unknown"}

// metrics is the table of every autopilot_* metric.
func metrics(now func() time.Time) []*metric {
	counter, gauge := prometheus.CounterValue, prometheus.GaugeValue
	tmpl := func(name, help string, v func(t *TemplateStatus) float64, kind prometheus.ValueType) *metric {
		return &metric{name: "template_" + name, help: help, kind: kind, label: []string{"destination"},
			samples: func(s *Snapshot, emit func(float64, ...string)) {
				for i := range s.Templates {
					emit(v(&s.Templates[i]), s.Templates[i].Destination)
				}
			}}
	}
	watch := func(name, help string, v func(w *WatchStatus) float64, kind prometheus.ValueType) *metric {
		return &metric{name: "watch_" + name, help: help, kind: kind, label: []string{"query"},
			samples: func(s *Snapshot, emit func(float64, ...string)) {
				for i := range s.Watches {
					emit(v(&s.Watches[i]), s.Watches[i].Query)
				}
			}}
	}
	job := func(name, help string, v func(j *JobStatus) float64, kind prometheus.ValueType) *metric {
		return &metric{name: "job_" + name, help: help, kind: kind, label: []string{"job"},
			samples: func(s *Snapshot, emit func(float64, ...string)) {
				for i := range s.Jobs {
					emit(v(&s.Jobs[i]), s.Jobs[i].Name)
				}
			}}
	}
	check := func(name, help string, v func(h *HealthStatus) float64, kind prometheus.ValueType) *metric {
		return &metric{name: "health_check_" + name, help: help, kind: kind, label: []string{"job"},
			samples: func(s *Snapshot, emit func(float64, ...string)) {
				for i := range s.Jobs {
					if h := s.Jobs[i].Health; h != nil {
						emit(v(h), s.Jobs[i].Name)
					}
				}
			}}
	}
	return []*metric{
		{name: "build_info", help: "Always 1; the version label is autopilot's version.", kind: gauge, label: []string{"version"},
			samples: func(s *Snapshot, emit func(float64, ...string)) { emit(1, s.Version) }},
		{name: "config_generation", help: "Configurations applied: 1 at start, +1 per accepted reload.", kind: gauge,
			samples: func(s *Snapshot, emit func(float64, ...string)) { emit(float64(s.Config.Generation)) }},
		{name: "config_last_reload_failed", help: "1 when the most recent reload was refused (bad config), else 0.", kind: gauge,
			samples: func(s *Snapshot, emit func(float64, ...string)) { emit(b2f(s.Config.LastReloadError != "")) }},
		{name: "consul_up", help: "1 while the last Consul request succeeded, 0 after a failure until the next success.", kind: gauge,
			samples: func(s *Snapshot, emit func(float64, ...string)) { emit(b2f(s.Consul.Reachable)) }},
		{name: "consul_requests_total", help: "HTTP requests of the Consul client by endpoint (health.service, agent.ttl…) and outcome (ok, error, timeout, canceled).", kind: counter, label: []string{"endpoint", "outcome"},
			samples: func(s *Snapshot, emit func(float64, ...string)) {
				for _, r := range s.Consul.Requests {
					emit(float64(r.Count), r.Endpoint, r.Outcome)
				}
			}},

		{name: "control_requests_total", help: "Requests to the control socket by endpoint path (or other) and HTTP status code.", kind: counter, label: []string{"path", "code"},
			samples: func(s *Snapshot, emit func(float64, ...string)) {
				for _, r := range s.Control.Requests {
					emit(float64(r.Count), r.Path, strconv.Itoa(r.Code))
				}
			}},
		{name: "consul_index_resets_total", help: "Blocking queries whose index went backwards (agent restart, snapshot restore) and started over.", kind: counter,
			samples: func(s *Snapshot, emit func(float64, ...string)) { emit(float64(s.Consul.IndexResets)) }},
		{name: "consul_empty_held_total", help: "Empty answers held back during the recovery grace after an error or index reset.", kind: counter,
			samples: func(s *Snapshot, emit func(float64, ...string)) { emit(float64(s.Consul.EmptyHeld)) }},
		{name: "consul_blocking_query_duration_seconds", help: "Time blocking queries took to answer (includes the time Consul held them).",
			histogram: func(s *Snapshot, emit func(Histogram, ...string)) { emit(s.Consul.BlockingLatency) }},

		tmpl("renders_total", "Template executions with complete data.", func(t *TemplateStatus) float64 { return float64(t.Renders) }, counter),
		tmpl("writes_total", "Rendered files swapped in at the destination.", func(t *TemplateStatus) float64 { return float64(t.Writes) }, counter),
		tmpl("unchanged_renders_total", "Complete renders whose output equalled the destination: no write, no reload.", func(t *TemplateStatus) float64 { return float64(t.Unchanged) }, counter),
		tmpl("check_failures_total", "Candidates refused by the check command; the destination was left alone.", func(t *TemplateStatus) float64 { return float64(t.CheckFailures) }, counter),
		tmpl("reloads_total", "Reload commands and signals run after a write.", func(t *TemplateStatus) float64 { return float64(t.Reloads) }, counter),
		tmpl("reload_failures_total", "Reload commands or signals that failed.", func(t *TemplateStatus) float64 { return float64(t.ReloadFailures) }, counter),
		tmpl("rollbacks_total", "Previous files put back after a failed reload.", func(t *TemplateStatus) float64 { return float64(t.Rollbacks) }, counter),
		tmpl("write_errors_total", "Renders that could not be written (disk full, permission denied, read-only filesystem); each is retried with backoff.", func(t *TemplateStatus) float64 { return float64(t.WriteErrors) }, counter),
		tmpl("runtime_applied_total", "Writes made live through HAProxy's runtime API, without a reload.", func(t *TemplateStatus) float64 { return float64(t.RuntimeApplied) }, counter),
		tmpl("runtime_fallbacks_total", "Runtime API failures that fell back to a reload.", func(t *TemplateStatus) float64 { return float64(t.RuntimeFallbacks) }, counter),
		tmpl("last_write_timestamp_seconds", "Unix time of the last successful write (0: never).", func(t *TemplateStatus) float64 { return unix(t.LastWrite) }, gauge),
		tmpl("missing_data_seconds", "Seconds since the template's data went incomplete (0 while complete).", func(t *TemplateStatus) float64 {
			if t.MissingSince.IsZero() {
				return 0
			}
			return now().Sub(t.MissingSince).Seconds()
		}, gauge),
		{name: "template_render_duration_seconds", help: "Time spent executing complete renders.", label: []string{"destination"},
			summary: func(s *Snapshot, emit func(Durations, ...string)) {
				for i := range s.Templates {
					emit(s.Templates[i].RenderTime, s.Templates[i].Destination)
				}
			}},

		watch("requests_total", "Blocking-query requests sent for the query.", func(w *WatchStatus) float64 { return float64(w.Requests) }, counter),
		watch("errors_total", "Failed requests for the query.", func(w *WatchStatus) float64 { return float64(w.Errors) }, counter),
		watch("index_resets_total", "Times Consul's index went backwards and the watch started over.", func(w *WatchStatus) float64 { return float64(w.IndexResets) }, counter),
		watch("empty_held_total", "Empty answers held back during the recovery grace after an error or index reset.", func(w *WatchStatus) float64 { return float64(w.EmptyHeld) }, counter),
		watch("last_change_timestamp_seconds", "Unix time the query's value last changed (0: never).", func(w *WatchStatus) float64 { return unix(w.LastChange) }, gauge),
		watch("instances", "Instances (or entries) in the query's latest value.", func(w *WatchStatus) float64 { return float64(w.Instances) }, gauge),
		{name: "watch_request_duration_seconds", help: "Time from sending a blocking query to its answer (includes Consul's wait).", label: []string{"query"},
			summary: func(s *Snapshot, emit func(Durations, ...string)) {
				for i := range s.Watches {
					emit(s.Watches[i].Latency, s.Watches[i].Query)
				}
			}},

		job("starts_total", "Times the job's process was started.", func(j *JobStatus) float64 { return float64(j.Starts) }, counter),
		job("restarts_total", "Times the job was started again by its restart policy.", func(j *JobStatus) float64 { return float64(j.Restarts) }, counter),
		job("running", "1 while the job's process runs.", func(j *JobStatus) float64 { return b2f(j.Running) }, gauge),
		{name: "job_exits_total", help: "Process exits by class: success (code 0), failure (non-zero code), signal.", kind: counter, label: []string{"job", "class"},
			samples: func(s *Snapshot, emit func(float64, ...string)) {
				for _, j := range s.Jobs {
					emit(float64(j.Exits.Success), j.Name, "success")
					emit(float64(j.Exits.Failure), j.Name, "failure")
					emit(float64(j.Exits.Signal), j.Name, "signal")
				}
			}},

		{name: "health_check_status", help: "1 for the check's current status, 0 for the others.", kind: gauge, label: []string{"job", "status"},
			samples: func(s *Snapshot, emit func(float64, ...string)) {
				for _, j := range s.Jobs {
					if j.Health == nil {
						continue
					}
					st := j.Health.Status
					if st == "" {
						st = "unknown"
					}
					for _, h := range healthStates {
						emit(b2f(st == h), j.Name, h)
					}
				}
			}},
		check("runs_total", "Health check command runs.", func(h *HealthStatus) float64 { return float64(h.Runs) }, counter),
		check("failures_total", "Health check runs that failed or timed out.", func(h *HealthStatus) float64 { return float64(h.Failures) }, counter),
		check("ttl_updates_total", "TTL heartbeats sent to Consul.", func(h *HealthStatus) float64 { return float64(h.TTLUpdates) }, counter),
		check("reregistrations_total", "Registrations repeated because the agent had lost the service.", func(h *HealthStatus) float64 { return float64(h.Reregistrations) }, counter),

		{name: "service_maintenance", help: "1 while the service is in Consul maintenance mode.", kind: gauge, label: []string{"service", "id"},
			samples: func(s *Snapshot, emit func(float64, ...string)) {
				for _, v := range s.Services {
					emit(b2f(v.Maintenance), v.Name, v.ID)
				}
			}},
		{name: "service_registered", help: "1 while the agent holds the service's registration.", kind: gauge, label: []string{"service", "id"},
			samples: func(s *Snapshot, emit func(float64, ...string)) {
				for _, v := range s.Services {
					emit(b2f(v.Registered), v.Name, v.ID)
				}
			}},
	}
}

// Collector exports a Source's snapshots as the autopilot_* metrics. It
// takes one snapshot per scrape.
type Collector struct {
	src     Source
	metrics []*metric
}

// NewCollector returns a Collector reading src.
func NewCollector(src Source) *Collector {
	return newCollector(src, time.Now)
}

func newCollector(src Source, now func() time.Time) *Collector {
	c := &Collector{src: src, metrics: metrics(now)}
	for _, m := range c.metrics {
		m.desc = prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", m.name), m.help, m.label, nil)
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.desc
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Snapshot()
	seen := map[string]bool{}
	// first reports whether labels are new for the metric: two series with
	// the same labels would fail the whole scrape, so a duplicate (a source
	// bug) loses only itself.
	first := func(labels []string) bool {
		k := strings.Join(labels, "\xff")
		if seen[k] {
			return false
		}
		seen[k] = true
		return true
	}
	for _, m := range c.metrics {
		clear(seen)
		if m.histogram != nil {
			m.histogram(&s, func(h Histogram, labels ...string) {
				if first(labels) {
					b := make(map[float64]uint64, len(h.Buckets))
					for _, x := range h.Buckets {
						b[x.UpperBound] = x.Count
					}
					ch <- prometheus.MustNewConstHistogram(m.desc, h.Count, h.Seconds, b, labels...)
				}
			})
			continue
		}
		if m.summary != nil {
			m.summary(&s, func(d Durations, labels ...string) {
				if first(labels) {
					ch <- prometheus.MustNewConstSummary(m.desc, d.Count, d.Seconds, nil, labels...)
				}
			})
			continue
		}
		m.samples(&s, func(v float64, labels ...string) {
			if first(labels) {
				ch <- prometheus.MustNewConstMetric(m.desc, m.kind, v, labels...)
			}
		})
	}
}

// MetricNames lists the full name of every autopilot_* metric, for docs and
// tests.
func MetricNames() []string {
	var out []string
	for _, m := range metrics(time.Now) {
		out = append(out, prometheus.BuildFQName(Namespace, "", m.name))
	}
	return out
}
