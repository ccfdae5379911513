package supervisor

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/supervisor/config"
)

// TestJobTimeoutDefaults: a job without its own timeout gets the default
// the README's "Timeouts and their defaults" table states for its kind:
// preStop and postStop 10s, onChange 60s, preStart 5 min, a task its
// frequency, and no bound for the app and restarting co-processes.
func TestJobTimeoutDefaults(t *testing.T) {
	src := `{"consul": "127.0.0.1:1", "preStart": "true", "preStop": "true", "postStop": "true",
		"backends": [{"name": "db", "poll": 3, "onChange": "true"}],
		"tasks": [{"name": "tick", "command": "true", "frequency": "7s"}],
		"coprocesses": [{"name": "co", "command": "true", "restarts": "unlimited"}]}`
	cfg, err := config.Parse([]byte(src), "t.json", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err = cfg.WithApp([]string{"true"}); err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{Consul: noConsul, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.stopW()
	want := map[string]time.Duration{
		"preStart":    5 * time.Minute,
		"preStop":     10 * time.Second,
		"postStop":    10 * time.Second,
		"onChange.db": 60 * time.Second,
		"tick":        7 * time.Second,
		"co":          0,
		"main":        0,
	}
	g := s.current()
	for name, d := range want {
		j := g.byName[name]
		if j == nil {
			t.Errorf("no job %q (jobs: %v)", name, jobNames(g))
			continue
		}
		if j.timeout != d {
			t.Errorf("job %s: timeout %v, want %v", name, j.timeout, d)
		}
	}
}

func jobNames(g *generation) []string {
	var out []string
	for _, j := range g.jobs {
		out = append(out, j.cfg.Name)
	}
	return out
}
