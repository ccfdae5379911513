package supervisor

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/supervisor/config"
)

// TestAppForkedBeforeConsulTraffic: the processes the startup event starts
// (the command line's app, or a ContainerPilot 3 job) are started before
// the supervisor's first request to the agent, although a registration and
// a watch want the agent at once (issue 13: nothing that talks to Consul
// may delay the app's start).
func TestAppForkedBeforeConsulTraffic(t *testing.T) {
	const registration = `{name: "web", port: 8080, interfaces: ["static:127.0.0.1"], health: {exec: "true", interval: 1, ttl: 10}}`
	for _, c := range []struct {
		name, jobs, app string
		argv            []string
	}{
		{name: "command line", jobs: registration, app: "main", argv: helper("sleep")},
		{name: "v3 job", jobs: `{name: "app", exec: ["` + strings.Join(helper("sleep"), `", "`) + `"]}, ` + registration, app: "app"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var sp atomic.Pointer[Supervisor]
			var first atomic.Int32 // 0: no request yet; 1: the app had started; 2: it had not
			agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				state := int32(2)
				if s := sp.Load(); s != nil {
					if r, _ := s.current().byName[c.app].snapshot(); r.starts > 0 {
						state = 1
					}
				}
				first.CompareAndSwap(0, state)
				http.Error(w, "test agent", http.StatusServiceUnavailable)
			}))
			defer agent.Close()
			path := writeConfig(t, t.TempDir(), `{consul: "localhost:8500", jobs: [`+c.jobs+`], watches: [{name: "backend", interval: 1}]}`)
			cfg, err := config.Load(path, os.LookupEnv)
			if err == nil && c.argv != nil {
				cfg, err = cfg.WithApp(c.argv)
			}
			if err != nil {
				t.Fatal(err)
			}
			sigs := make(chan os.Signal, 1)
			s, err := New(cfg, Options{
				Consul: strings.TrimPrefix(agent.URL, "http://"), Signals: sigs,
				Log: zerolog.Nop(), Stdout: io.Discard, Stderr: io.Discard,
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, kv := range helperEnv {
				k, v, _ := strings.Cut(kv, "=")
				s.PutEnv(k, v)
			}
			sp.Store(s)
			done := make(chan int, 1)
			go func() { done <- s.Run(context.Background()) }()
			deadline := time.Now().Add(20 * time.Second)
			for first.Load() == 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			sigs <- syscall.SIGTERM
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("supervisor did not stop")
			}
			switch first.Load() {
			case 0:
				t.Fatal("no request reached the agent within 20s")
			case 2:
				t.Fatalf("the first request reached the agent before job %s was started", c.app)
			}
		})
	}
}

// TestShutdownCaughtBeforeJobsStart: a SIGTERM that arrives before Run
// starts the jobs ends the run with 143, and no job is started; a SIGUSR1
// before it is handled (maintenance) and does not end the run.
func TestShutdownCaughtBeforeJobsStart(t *testing.T) {
	dir := t.TempDir()
	marker := dir + "/started"
	path := writeConfig(t, dir, `{consul: "127.0.0.1:1", jobs: [{name: "app", exec: ["touch", "`+marker+`"]}]}`)
	cfg, err := config.Load(path, os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	sigs := make(chan os.Signal, 2)
	sigs <- syscall.SIGUSR1
	sigs <- syscall.SIGTERM
	s, err := New(cfg, Options{Signals: sigs, Log: zerolog.Nop(), Stdout: io.Discard, Stderr: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if code := s.Run(context.Background()); code != 143 {
		t.Errorf("exit code %d, want 143", code)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("the job ran (stat %s: %v)", marker, err)
	}
	if !s.maint.Load() {
		t.Error("the SIGUSR1 caught before the jobs started was not handled")
	}
}
