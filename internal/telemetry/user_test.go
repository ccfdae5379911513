package telemetry

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/autopilot/autopilot/supervisor/config"
)

func userDefs() []config.Metric {
	return []config.Metric{
		{Namespace: "app", Name: "hits", Help: "hits seen", Type: config.Counter},
		{Namespace: "app", Subsystem: "db", Name: "conns", Help: "open connections", Type: config.Gauge},
		{Name: "latency_seconds", Help: "latency", Type: config.Histogram},
		{Name: "size_bytes", Type: config.Summary},
	}
}

func TestUserMetricsPut(t *testing.T) {
	for _, tc := range []struct {
		name  string
		value float64
		err   string // substring; "" = ok
	}{
		{"app_hits", 2, ""},
		{"app_hits", 0, ""},
		{"app_hits", -1, "a counter only goes up"},
		{"app_db_conns", -3, ""},
		{"latency_seconds", 0.25, ""},
		{"size_bytes", 1024, ""},
		{"app_db_conns", math.NaN(), "want a finite number"},
		{"app_db_conns", math.Inf(1), "want a finite number"},
		{"nope", 1, `unknown metric "nope" (declared: app_db_conns, app_hits, latency_seconds, size_bytes)`},
		{"hits", 1, "unknown metric"}, // the full name is required, as in ContainerPilot
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := NewUserMetrics(userDefs())
			if err != nil {
				t.Fatal(err)
			}
			err = u.Put(tc.name, tc.value)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("Put: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("Put: error %v, want it to contain %q", err, tc.err)
			}
		})
	}
	u, _ := NewUserMetrics(nil)
	if err := u.Put("x", 1); !errors.Is(err, ErrUnknownMetric) || !strings.Contains(err.Error(), "none") {
		t.Errorf("Put with nothing declared: %v", err)
	}
}

func TestUserMetricsDeclarationErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		defs []config.Metric
		err  string
	}{
		{"bad name", []config.Metric{{Name: "1abc", Type: config.Gauge}}, `telemetry.metrics[0]: name "1abc"`},
		{"dash", []config.Metric{{Namespace: "my-app", Name: "x", Type: config.Gauge}}, `name "my-app_x"`},
		{"reserved", []config.Metric{{Namespace: "autopilot", Name: "x", Type: config.Gauge}}, "reserved"},
		{"twice", []config.Metric{{Name: "x", Type: config.Gauge}, {Name: "x", Type: config.Counter}}, `telemetry.metrics[1]: metric "x" declared twice`},
		{"type", []config.Metric{{Name: "x", Type: "meter"}}, `type "meter"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewUserMetrics(tc.defs)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want it to contain %q", err, tc.err)
			}
		})
	}
}

func TestUserMetricsScrapedAndKeptAcrossReload(t *testing.T) {
	u, err := NewUserMetrics(userDefs())
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, SourceFunc(func() Snapshot { return Snapshot{} }), u)
	for _, p := range []struct {
		n string
		v float64
	}{{"app_hits", 2}, {"app_hits", 3}, {"app_db_conns", 7}, {"latency_seconds", 0.1}, {"latency_seconds", 0.2}, {"size_bytes", 10}} {
		if err := u.Put(p.n, p.v); err != nil {
			t.Fatal(err)
		}
	}
	f := scrape(t, url+"/metrics")
	for name, want := range map[string]float64{"app_hits": 5, "app_db_conns": 7, "latency_seconds": 2, "size_bytes": 1} {
		if got, ok := f.Value(name); !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if h := f["app_hits"].GetHelp(); h != "hits seen" {
		t.Errorf("help %q", h)
	}
	// Reload: app_hits unchanged keeps its value; app_db_conns changes type
	// and starts over; latency_seconds is gone.
	defs := []config.Metric{userDefs()[0], {Namespace: "app", Subsystem: "db", Name: "conns", Help: "open connections", Type: config.Counter}}
	if err := u.Update(defs); err != nil {
		t.Fatal(err)
	}
	f = scrape(t, url+"/metrics")
	if got, _ := f.Value("app_hits"); got != 5 {
		t.Errorf("app_hits after reload = %v, want 5", got)
	}
	if got, _ := f.Value("app_db_conns"); got != 0 {
		t.Errorf("app_db_conns after reload = %v, want 0", got)
	}
	if _, ok := f["latency_seconds"]; ok {
		t.Error("latency_seconds still exported after reload removed it")
	}
	// A bad reload changes nothing.
	if err := u.Update([]config.Metric{{Name: "1bad", Type: config.Gauge}}); err == nil {
		t.Fatal("bad update accepted")
	}
	if err := u.Put("app_hits", 1); err != nil {
		t.Errorf("after refused update: %v", err)
	}
}
