package config

import (
	"os"
	"testing"
	"time"
)

// TestV2Mapping reads as the README's ContainerPilot 2 -> jobs table: each
// v2 field becomes the job it says, with that trigger.
func TestV2Mapping(t *testing.T) {
	data, err := os.ReadFile("testdata/corpus/v2/full-schema.json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data, "full-schema.json", envOf(map[string]string{"ENV_VAR_NAME": "v"}))
	if err != nil {
		t.Fatal(err)
	}
	job := func(name string) *Job {
		t.Helper()
		j := c.Job(name)
		if j == nil {
			t.Fatalf("no job %q in %v", name, c.Jobs)
		}
		return j
	}
	afterPreStart := When{Source: "preStart", Event: ExitSuccess}

	if j := job("preStart"); j.When != (When{Event: Startup}) || j.Exec.String() != "/opt/containerpilot/preStart-script.sh v" || j.Restarts != (Restarts{}) {
		t.Errorf("preStart: %+v", j)
	}
	if j := job(MainJob); !j.Main || !j.Exec.IsZero() || j.When != afterPreStart || j.StopTimeout != 5*time.Second {
		t.Errorf("main: %+v", j)
	}
	if j := job("app"); !j.Exec.IsZero() || j.Port != 80 || j.When != afterPreStart || j.Health == nil ||
		j.Health.Interval != 10*time.Second || j.Health.TTL != 30*time.Second || j.Health.Timeout != 10*time.Second ||
		len(j.Interfaces) != 8 || j.Tags[0] != "tag1" || c.ServiceID(j, "h") != "app-h" {
		t.Errorf("service app: %+v", j)
	}
	if j := job("onChange.nginx"); j.When != (When{Source: "watch.nginx", Event: Changed, Each: true}) || j.Exec.String() != "/opt/containerpilot/reload-app.sh" {
		t.Errorf("onChange.nginx: %+v", j)
	}
	if len(c.Watches) != 2 || c.Watches[0] != (Watch{Name: "nginx", Interval: 30 * time.Second}) {
		t.Errorf("watches: %+v", c.Watches)
	}
	if j := job("task"); j.When != (When{Source: "preStart", Event: ExitSuccess, Interval: 1500 * time.Millisecond}) || j.Timeout != 100*time.Millisecond {
		t.Errorf("task: %+v", j)
	}
	if j := job("sensor.metric_id"); j.When != (When{Interval: 5 * time.Second}) || j.Timeout != 5*time.Second || j.Sensor != "metric_id" {
		t.Errorf("sensor: %+v", j)
	}
	if c.Telemetry == nil || c.Telemetry.Port != 9090 || len(c.Telemetry.Metrics) != 1 || c.Telemetry.Metrics[0].Type != Counter {
		t.Errorf("telemetry: %+v", c.Telemetry)
	}
	if j := job("preStop"); j.When != (When{Source: MainJob, Event: Stopping}) {
		t.Errorf("preStop: %+v", j)
	}
	if j := job("postStop"); j.When != (When{Source: MainJob, Event: Stopped}) {
		t.Errorf("postStop: %+v", j)
	}
	if c.Logging != (Logging{Level: "info", Format: "text", Output: "stdout"}) {
		t.Errorf("logging: %+v", c.Logging)
	}

	// Coprocesses: restarting jobs started with the app.
	c, err = Parse([]byte(`{"coprocesses": [{"command": "/bin/agent -x", "restarts": "unlimited"}, {"name": "two", "command": ["b"], "restarts": 2}]}`), "t", nil)
	if err != nil {
		t.Fatal(err)
	}
	if j := job("/bin/agent"); j.Restarts != (Restarts{Unlimited: true}) || j.When != (When{Event: Startup}) {
		t.Errorf("coprocess: %+v", j)
	}
	if j := job("two"); j.Restarts != (Restarts{Max: 2}) {
		t.Errorf("coprocess two: %+v", j)
	}
}
