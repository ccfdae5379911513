package telemetry

import (
	"testing"
	"time"
)

// fullSnapshot has one of everything, so every metric has a sample.
func fullSnapshot(now time.Time) Snapshot {
	return Snapshot{
		Version: "1.2.3",
		Config:  ConfigStatus{File: "/etc/autopilot.json", Generation: 3, LastReloadError: "bad"},
		Consul: ConsulStatus{Address: "127.0.0.1:8500", Reachable: true, Requests: []RequestCount{
			{Endpoint: "/v1/health/service/:service", Outcome: "ok", Count: 7},
			{Endpoint: "/v1/agent/check/update/:check", Outcome: "error", Count: 2},
		}, IndexResets: 2, EmptyHeld: 1, BlockingLatency: Histogram{Count: 5, Seconds: 3,
			Buckets: []Bucket{{UpperBound: 0.1, Count: 2}, {UpperBound: 1, Count: 4}}}},
		Jobs: []JobStatus{
			{Name: "app", State: "running", Running: true, PID: 42, Starts: 3, Restarts: 2,
				Exits:  ExitCounts{Success: 1, Failure: 1, Signal: 0},
				Health: &HealthStatus{Status: "critical", Runs: 10, Failures: 4, TTLUpdates: 9, Reregistrations: 1}},
			{Name: "cron", State: "waiting", Starts: 5, Exits: ExitCounts{Success: 5}},
		},
		Control:  ControlStatus{Socket: "/var/run/containerpilot.socket", Requests: []ControlRequestCount{{Path: "/v3/metric", Code: 200, Count: 4}, {Path: "other", Code: 404, Count: 1}}},
		Services: []ServiceStatus{{ID: "app-h-80", Name: "app", Address: "10.0.0.2", Port: 80, Health: "critical", Maintenance: true, Registered: true}},
		Watches: []WatchStatus{{Query: `service "web|passing"`, Instances: 3, LastChange: now.Add(-time.Minute),
			Requests: 11, Errors: 2, IndexResets: 1, EmptyHeld: 1, Latency: Durations{Count: 11, Seconds: 2.5}}},
		Templates: []TemplateStatus{{Source: "a.ctmpl", Destination: "/etc/nginx/nginx.conf", Renders: 6, Writes: 4,
			Unchanged: 2, CheckFailures: 1, Reloads: 4, ReloadFailures: 1, Rollbacks: 1, WriteErrors: 3, RuntimeApplied: 7, RuntimeFallbacks: 2,
			RenderTime: Durations{Count: 6, Seconds: 0.012}, LastWrite: now.Add(-time.Second),
			MissingSince: now.Add(-90 * time.Second), Missing: []string{`service "db"`}}},
	}
}

func TestCollectorValues(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	snap := fullSnapshot(now)
	url := serveCollector(t, snap)
	f := scrape(t, url+"/metrics")
	dest := "destination=/etc/nginx/nginx.conf"
	query := `query=service "web|passing"`
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"autopilot_build_info", []string{"version=1.2.3"}, 1},
		{"autopilot_config_generation", nil, 3},
		{"autopilot_config_last_reload_failed", nil, 1},
		{"autopilot_consul_up", nil, 1},
		{"autopilot_consul_requests_total", []string{"endpoint=/v1/health/service/:service", "outcome=ok"}, 7},
		{"autopilot_consul_requests_total", []string{"endpoint=/v1/agent/check/update/:check", "outcome=error"}, 2},
		{"autopilot_control_requests_total", []string{"path=/v3/metric", "code=200"}, 4},
		{"autopilot_control_requests_total", []string{"path=other", "code=404"}, 1},
		{"autopilot_consul_index_resets_total", nil, 2},
		{"autopilot_consul_empty_held_total", nil, 1},
		{"autopilot_consul_blocking_query_duration_seconds", nil, 5}, // sample count
		{"autopilot_template_renders_total", []string{dest}, 6},
		{"autopilot_template_writes_total", []string{dest}, 4},
		{"autopilot_template_unchanged_renders_total", []string{dest}, 2},
		{"autopilot_template_check_failures_total", []string{dest}, 1},
		{"autopilot_template_reloads_total", []string{dest}, 4},
		{"autopilot_template_reload_failures_total", []string{dest}, 1},
		{"autopilot_template_rollbacks_total", []string{dest}, 1},
		{"autopilot_template_write_errors_total", []string{dest}, 3},
		{"autopilot_template_runtime_applied_total", []string{dest}, 7},
		{"autopilot_template_runtime_fallbacks_total", []string{dest}, 2},
		{"autopilot_template_last_write_timestamp_seconds", []string{dest}, float64(now.Unix() - 1)},
		{"autopilot_template_render_duration_seconds", []string{dest}, 6}, // sample count
		{"autopilot_watch_requests_total", []string{query}, 11},
		{"autopilot_watch_errors_total", []string{query}, 2},
		{"autopilot_watch_index_resets_total", []string{query}, 1},
		{"autopilot_watch_empty_held_total", []string{query}, 1},
		{"autopilot_watch_last_change_timestamp_seconds", []string{query}, float64(now.Unix() - 60)},
		{"autopilot_watch_instances", []string{query}, 3},
		{"autopilot_watch_request_duration_seconds", []string{query}, 11},
		{"autopilot_job_starts_total", []string{"job=app"}, 3},
		{"autopilot_job_restarts_total", []string{"job=app"}, 2},
		{"autopilot_job_running", []string{"job=app"}, 1},
		{"autopilot_job_running", []string{"job=cron"}, 0},
		{"autopilot_job_exits_total", []string{"job=app", "class=failure"}, 1},
		{"autopilot_job_exits_total", []string{"job=cron", "class=success"}, 5},
		{"autopilot_health_check_status", []string{"job=app", "status=critical"}, 1},
		{"autopilot_health_check_status", []string{"job=app", "status=passing"}, 0},
		{"autopilot_health_check_runs_total", []string{"job=app"}, 10},
		{"autopilot_health_check_failures_total", []string{"job=app"}, 4},
		{"autopilot_health_check_ttl_updates_total", []string{"job=app"}, 9},
		{"autopilot_health_check_reregistrations_total", []string{"job=app"}, 1},
		{"autopilot_service_maintenance", []string{"service=app", "id=app-h-80"}, 1},
		{"autopilot_service_registered", []string{"service=app"}, 1},
	} {
		got, ok := f.Value(tc.name, tc.labels...)
		if !ok {
			t.Errorf("%s%v: no sample (families: %v)", tc.name, tc.labels, f)
			continue
		}
		if got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if got, _ := f.Value("autopilot_template_missing_data_seconds", dest); got < 90 || got > 150 {
		t.Errorf("missing_data_seconds = %v, want about 90", got)
	}
	h := f["autopilot_consul_blocking_query_duration_seconds"].GetMetric()[0].GetHistogram()
	if b := h.GetBucket(); len(b) < 2 || b[0].GetUpperBound() != 0.1 || b[0].GetCumulativeCount() != 2 || b[1].GetCumulativeCount() != 4 || h.GetSampleSum() != 3 {
		t.Errorf("blocking latency histogram: %v", h)
	}
	// A job without a health check has no check series.
	if _, ok := f.Value("autopilot_health_check_runs_total", "job=cron"); ok {
		t.Error("health check series for a job without health check")
	}
	// Every metric of the table shows up for a snapshot that has everything.
	for _, n := range MetricNames() {
		if _, ok := f[n]; !ok {
			t.Errorf("metric %s missing from the scrape", n)
		}
	}
}

func TestCollectorNamesFollowConventions(t *testing.T) {
	f := scrape(t, serveCollector(t, fullSnapshot(time.Now()))+"/metrics")
	for _, n := range MetricNames() {
		mf := f[n]
		if mf == nil {
			t.Fatalf("%s not scraped", n)
		}
		isCounter := mf.GetType().String() == "COUNTER"
		if isCounter != (len(n) > 6 && n[len(n)-6:] == "_total") {
			t.Errorf("%s: type %s; counters and only counters end in _total", n, mf.GetType())
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s: no help", n)
		}
	}
}

func TestCollectorDropsDuplicateSeriesOnly(t *testing.T) {
	snap := fullSnapshot(time.Now())
	snap.Templates = append(snap.Templates, snap.Templates[0]) // a source bug: same destination twice
	f := scrape(t, serveCollector(t, snap)+"/metrics")
	if got, _ := f.Value("autopilot_template_writes_total"); got != 4 {
		t.Errorf("writes = %v, want the first series kept", got)
	}
	if _, ok := f.Value("autopilot_job_starts_total", "job=app"); !ok {
		t.Error("the rest of the scrape was lost")
	}
}

func TestCollectorEmptySnapshot(t *testing.T) {
	f := scrape(t, serveCollector(t, Snapshot{})+"/metrics")
	if _, ok := f.Value("autopilot_build_info"); !ok {
		t.Errorf("build_info missing: %v", f)
	}
	if _, ok := f["go_goroutines"]; !ok {
		t.Error("Go runtime collector missing")
	}
	if _, ok := f["process_resident_memory_bytes"]; !ok {
		t.Error("process collector missing")
	}
}
