package telemetry

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/autopilot/autopilot/supervisor/config"
)

// TestMetricsDocumented: the README's metrics table lists exactly the
// metrics a scrape has, with their type and labels.
func TestMetricsDocumented(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if m := regexp.MustCompile("^\\| `(autopilot_[a-z_]+)` \\| ([a-z]+) \\| ([^|]*) \\|").FindStringSubmatch(line); m != nil {
			rows[m[1]] = m[2] + " " + strings.TrimSpace(m[3])
		}
	}
	f := scrape(t, serveCollector(t, fullSnapshot(time.Now()))+"/metrics")
	for _, n := range MetricNames() {
		row, ok := rows[n]
		if !ok {
			t.Errorf("%s is not in the README's metrics table", n)
			continue
		}
		mf := f[n]
		kind := strings.ToLower(mf.GetType().String())
		labels := map[string]bool{}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				labels["`"+l.GetName()+"`"] = true
			}
		}
		want := kind + " -"
		if len(labels) > 0 {
			var ls []string
			for _, l := range strings.Split(strings.SplitN(row, " ", 2)[1], ", ") {
				if !labels[l] {
					t.Errorf("%s: README label %s not in the scrape", n, l)
				}
				ls = append(ls, l)
			}
			if len(ls) != len(labels) {
				t.Errorf("%s: README labels %v, scrape %v", n, ls, labels)
			}
			want = kind + " " + strings.Join(ls, ", ")
		}
		if row != want {
			t.Errorf("%s: README says %q, the scrape has %q", n, row, want)
		}
		delete(rows, n)
	}
	for n := range rows {
		t.Errorf("README documents %s, which does not exist", n)
	}
}

// dashboardMetrics returns every metric name the example dashboard's
// panels query.
func dashboardMetrics(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../../examples/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	names := map[string]bool{}
	re := regexp.MustCompile(`\b(?:autopilot|process|go)_[a-z_]+`)
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, n := range re.FindAllString(tg.Expr, -1) {
				names[n] = true
			}
		}
	}
	if len(names) < 10 {
		t.Fatalf("only %d metric names found in the dashboard", len(names))
	}
	return names
}

// TestDashboardMetricsExist: every metric in the example Grafana dashboard
// is in a real scrape of the telemetry server.
func TestDashboardMetricsExist(t *testing.T) {
	have := scrape(t, serveCollector(t, fullSnapshot(time.Now()))+"/metrics").Series()
	for n := range dashboardMetrics(t) {
		if !have[n] {
			t.Errorf("the dashboard queries %s, which no scrape has", n)
		}
	}
}

// TestPromtoolLint runs Prometheus' own linter (`promtool check metrics`,
// from Debian's prometheus package) on a scrape that has every metric,
// user metrics included. It is skipped where promtool is not installed:
// the text parser tests above do not depend on it.
func TestPromtoolLint(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	u, err := NewUserMetrics([]config.Metric{
		{Namespace: "app", Name: "hits_total", Help: "hits", Type: config.Counter},
		{Namespace: "app", Name: "conns", Help: "connections", Type: config.Gauge},
		{Namespace: "app", Name: "latency_seconds", Help: "latency", Type: config.Histogram},
		{Namespace: "app", Name: "size_bytes", Help: "sizes", Type: config.Summary},
	})
	if err != nil {
		t.Fatal(err)
	}
	u.Put("app_latency_seconds", 0.2)
	snap := fullSnapshot(time.Now())
	url := serve(t, SourceFunc(func() Snapshot { return snap }), u)
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = resp.Body
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
