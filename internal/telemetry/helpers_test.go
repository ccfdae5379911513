package telemetry

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/testenv"
)

// families is one parsed scrape.
type families = testenv.Metrics

// scrape GETs url and parses it with Prometheus' own text parser, so a
// malformed exposition fails the test.
func scrape(t testing.TB, url string) families {
	t.Helper()
	f, err := testenv.ScrapeMetrics(url)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// serve starts a telemetry server on a free loopback port until the test ends
// and returns its base URL.
func serve(t *testing.T, src Source, user *UserMetrics) string {
	t.Helper()
	s, err := Listen(Options{Addr: "127.0.0.1:0", Source: src, Metrics: user, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("telemetry server did not stop")
		}
	})
	return "http://" + s.Addr().String()
}

// serveCollector serves a fixed snapshot.
func serveCollector(t *testing.T, snap Snapshot) string {
	t.Helper()
	return serve(t, SourceFunc(func() Snapshot { return snap }), nil)
}
