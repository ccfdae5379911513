package telemetry

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/autopilot/autopilot/supervisor/config"
)

// ErrUnknownMetric is returned by Put for a name the config does not declare.
var ErrUnknownMetric = errors.New("unknown metric")

// UserMetrics are the metrics declared by the config's telemetry.metrics (v3)
// or sensors (v2), fed by putmetric and by sensor jobs. It is a
// prometheus.Collector whose set can be replaced on reload; it is safe for
// concurrent use.
type UserMetrics struct {
	mu     sync.RWMutex
	byName map[string]*userMetric
}

type userMetric struct {
	def config.Metric
	c   prometheus.Collector
}

// NewUserMetrics validates defs and returns their metrics, all zero.
func NewUserMetrics(defs []config.Metric) (*UserMetrics, error) {
	u := &UserMetrics{}
	if err := u.Update(defs); err != nil {
		return nil, err
	}
	return u, nil
}

// reservedPrefixes are the namespaces autopilot's own collectors export.
var reservedPrefixes = []string{Namespace + "_", "go_", "process_", "promhttp_"}

// Update replaces the declared set (a reload). A metric declared again with
// the same name, type and help keeps its value, so a reload does not reset
// counters; others start at zero. On error nothing changes.
func (u *UserMetrics) Update(defs []config.Metric) error {
	next := make(map[string]*userMetric, len(defs))
	u.mu.RLock()
	cur := u.byName
	u.mu.RUnlock()
	for i, d := range defs {
		name := d.FullName()
		if !model.IsValidLegacyMetricName(name) {
			return fmt.Errorf("telemetry.metrics[%d]: name %q: want letters, digits and underscores, not starting with a digit", i, name)
		}
		for _, p := range reservedPrefixes {
			if strings.HasPrefix(name, p) {
				return fmt.Errorf("telemetry.metrics[%d]: name %q: the %s prefix is reserved for autopilot's own metrics", i, name, p)
			}
		}
		if _, dup := next[name]; dup {
			return fmt.Errorf("telemetry.metrics[%d]: metric %q declared twice", i, name)
		}
		if old, ok := cur[name]; ok && old.def == d {
			next[name] = old
			continue
		}
		help := d.Help
		if help == "" {
			help = name + " (from putmetric or a sensor)"
		}
		ns, sub, n, h := d.Namespace, d.Subsystem, d.Name, help
		var c prometheus.Collector
		switch d.Type {
		case config.Counter:
			c = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: n, Help: h})
		case config.Gauge:
			c = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: n, Help: h})
		case config.Histogram:
			c = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: n, Help: h})
		case config.Summary:
			c = prometheus.NewSummary(prometheus.SummaryOpts{Namespace: ns, Subsystem: sub, Name: n, Help: h,
				Objectives: map[float64]float64{0.5: 0.05, 0.9: 0.01, 0.99: 0.001}})
		default:
			return fmt.Errorf("telemetry.metrics[%d]: metric %q: type %q: want counter, gauge, histogram or summary", i, name, d.Type)
		}
		next[name] = &userMetric{def: d, c: c}
	}
	u.mu.Lock()
	u.byName = next
	u.mu.Unlock()
	return nil
}

// Put records value for the metric with full name name: a counter adds it
// (it must not be negative), a gauge is set to it, a histogram or summary
// observes it. Unknown names wrap ErrUnknownMetric and list what is declared.
func (u *UserMetrics) Put(name string, value float64) error {
	if math.IsNaN(value) || math.IsInf(value, 0) {
		return fmt.Errorf("metric %q: value %v: want a finite number", name, value)
	}
	u.mu.RLock()
	m, ok := u.byName[name]
	u.mu.RUnlock()
	if !ok {
		return fmt.Errorf("%w %q (declared: %s)", ErrUnknownMetric, name, u.declared())
	}
	// Switch on the declared type: a prometheus.Gauge also satisfies the
	// Counter interface.
	switch m.def.Type {
	case config.Counter:
		if value < 0 {
			return fmt.Errorf("metric %q is a counter: value %v: a counter only goes up; want a number >= 0", name, value)
		}
		m.c.(prometheus.Counter).Add(value)
	case config.Gauge:
		m.c.(prometheus.Gauge).Set(value)
	default:
		m.c.(prometheus.Observer).Observe(value)
	}
	return nil
}

// declared lists the metric names, for error messages.
func (u *UserMetrics) declared() string {
	u.mu.RLock()
	defer u.mu.RUnlock()
	if len(u.byName) == 0 {
		return "none; add them to telemetry.metrics or sensors"
	}
	names := make([]string, 0, len(u.byName))
	for n := range u.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// Describe implements prometheus.Collector. It describes nothing: the set
// changes on reload, so UserMetrics is an unchecked collector.
func (u *UserMetrics) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (u *UserMetrics) Collect(ch chan<- prometheus.Metric) {
	u.mu.RLock()
	ms := make([]prometheus.Collector, 0, len(u.byName))
	for _, m := range u.byName {
		ms = append(ms, m.c)
	}
	u.mu.RUnlock()
	for _, c := range ms {
		c.Collect(ch)
	}
}
