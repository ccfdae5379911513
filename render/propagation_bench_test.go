package render

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/consul"
	"github.com/autopilot/autopilot/internal/testenv"
)

// BenchmarkPropagationToFile is issue 2's end-to-end figure: from a catalog
// change returning on a real agent to the destination file having been
// renamed into place with the change, over 200 changes (no wait window).
// Reported as p50-ms, p99-ms and max-ms.
func BenchmarkPropagationToFile(b *testing.B) {
	agent := testenv.StartConsul(b)
	c := agent.Client(b)
	client, err := consul.NewClient(agent.HTTPAddr)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := consul.NewWatcher(ctx, client, consul.WatchOptions{}, zerolog.Nop())
	defer w.Close()
	dir := b.TempDir()
	src := filepath.Join(dir, "prop.ctmpl")
	if err := os.WriteFile(src, []byte(`n={{ len (service "prop") }}{{ range service "prop" }} {{ .Address }}:{{ .Port }}{{ end }}`+"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	dest := filepath.Join(dir, "prop.out")
	r, err := NewRunner(w, []Config{{Source: src, Destination: dest}}, RunnerOptions{Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	reg := &api.CatalogRegistration{Node: "prop-node", Address: "127.0.0.2",
		Service: &api.AgentService{ID: "prop-1", Service: "prop", Port: 9000},
		Check:   &api.AgentCheck{Node: "prop-node", CheckID: "service:prop-1", Name: "prop", Status: api.HealthPassing, ServiceID: "prop-1"}}
	dereg := &api.CatalogDeregistration{Node: "prop-node"}
	// waitFile polls the destination until it starts with prefix.
	waitFile := func(prefix string) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			if got, _ := os.ReadFile(dest); strings.HasPrefix(string(got), prefix) {
				return
			}
			if time.Now().After(deadline) {
				got, _ := os.ReadFile(dest)
				b.Fatalf("file %q never started with %q", got, prefix)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	waitFile("n=0")
	const changes = 200
	var lat []time.Duration
	for b.Loop() {
		lat = lat[:0]
		for i := range changes {
			want := "n=1"
			if i%2 == 0 {
				_, err = c.Catalog().Register(reg, nil)
			} else {
				_, err = c.Catalog().Deregister(dereg, nil)
				want = "n=0"
			}
			if err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			waitFile(want)
			lat = append(lat, time.Since(t0))
			time.Sleep(30 * time.Millisecond) // pace the changes, as a real catalog would
		}
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / 1e6 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1])/1e6, "max-ms")
}
