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

// TestAppForkedBeforeConsulTraffic: the Main job's process is started
// before the supervisor's first request to the agent, although a
// registration and a watch want the agent at once (issue 13: nothing that
// talks to Consul may delay the app's start).
func TestAppForkedBeforeConsulTraffic(t *testing.T) {
	var sp atomic.Pointer[Supervisor]
	var pidAtFirst atomic.Int64 // -1: no request yet
	pidAtFirst.Store(-1)
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pid := int64(-2)
		if s := sp.Load(); s != nil {
			pid = s.mainPID.Load()
		}
		pidAtFirst.CompareAndSwap(-1, pid)
		http.Error(w, "test agent", http.StatusServiceUnavailable)
	}))
	defer agent.Close()
	path := writeConfig(t, t.TempDir(), `{
  consul: "localhost:8500",
  jobs: [{name: "web", port: 8080, interfaces: ["static:127.0.0.1"], health: {exec: "true", interval: 1, ttl: 10}}],
  watches: [{name: "backend", interval: 1}],
}`)
	cfg, err := config.Load(path, os.LookupEnv)
	if err == nil {
		cfg, err = cfg.WithApp(helper("sleep"))
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
	for pidAtFirst.Load() == -1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	sigs <- syscall.SIGTERM
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("supervisor did not stop")
	}
	switch got := pidAtFirst.Load(); {
	case got == -1:
		t.Fatal("no request reached the agent within 20s")
	case got <= 0:
		t.Fatalf("the first request reached the agent before the app was started (main pid %d)", got)
	}
}
