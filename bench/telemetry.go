package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// telemetryConfig is a ContainerPilot 3 config (JSON is JSON5) of the size
// issue 8's cost goal names: ten jobs (the app, 3 registered services, a
// preStart, a co-process, a periodic task, 3 onChange hooks), 3 watches, 2
// templates, and its own control socket; with tport > 0 it also has a
// telemetry block with two user metrics.
func telemetryConfig(consulAddr, dir, self string, tport, n int) ([]byte, error) {
	jobs := []map[string]any{
		{"name": "setup", "exec": []string{"true"}},
		{"name": "app", "exec": []string{self}, "when": map[string]any{"source": "setup", "once": "exitSuccess"}},
		{"name": "sidecar", "exec": []string{"sleep", "100000"}, "restarts": "unlimited"},
		{"name": "tick", "exec": []string{"true"}, "when": map[string]any{"interval": "10s"}},
	}
	var watches []map[string]any
	for i := range 3 {
		jobs = append(jobs, map[string]any{
			"name": fmt.Sprintf("svc-%d-%d", n, i), "port": 18100 + 10*n + i, "interfaces": []string{"static:127.0.0.1"},
			"health": map[string]any{"exec": []string{"true"}, "interval": 5, "ttl": 15},
		}, map[string]any{
			"name": fmt.Sprintf("on-backend-%d", i), "exec": []string{"true"},
			"when": map[string]any{"source": fmt.Sprintf("watch.backend-%d", i), "each": "changed"},
		})
		watches = append(watches, map[string]any{"name": fmt.Sprintf("backend-%d", i), "interval": 3})
	}
	var templates []map[string]any
	for i := range 2 {
		src := filepath.Join(dir, fmt.Sprintf("upstreams-%d-%d.ctmpl", n, i))
		text := fmt.Sprintf("{{ range service \"backend-%d\" }}server {{ .Address }}:{{ .Port }};\n{{ end }}", i)
		if err := os.WriteFile(src, []byte(text), 0o644); err != nil {
			return nil, err
		}
		templates = append(templates, map[string]any{
			"source": src, "destination": filepath.Join(dir, fmt.Sprintf("upstreams-%d-%d.conf", n, i)),
		})
	}
	c := map[string]any{
		"consul":    consulAddr,
		"logging":   map[string]any{"level": "warn"},
		"control":   map[string]any{"socket": filepath.Join(dir, fmt.Sprintf("ctl-%d.sock", n))},
		"jobs":      jobs,
		"watches":   watches,
		"templates": templates,
	}
	if tport > 0 {
		c["telemetry"] = map[string]any{
			"port": tport, "interfaces": []string{"static:127.0.0.1"}, "tags": []string{"bench"},
			"metrics": []map[string]any{
				{"namespace": "app", "name": "hits", "help": "hits", "type": "counter"},
				{"namespace": "app", "name": "latency_seconds", "help": "latency", "type": "histogram"},
			},
		}
	}
	return json.MarshalIndent(c, "", "  ")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// telemetry is scenario 6: the idle cost of the metrics endpoint. The same
// config runs twice side by side, with and without its telemetry block,
// while the first is scraped every 5 s (a busy Prometheus) and its
// registration heartbeats.
func (e *env) telemetry(cfg config) (*table, error) {
	a, dir, err := e.backendsScenario("telemetry")
	if err != nil {
		return nil, err
	}
	defer a.proc.stop(5 * time.Second)
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	tport, err := freePort()
	if err != nil {
		return nil, err
	}
	ap := e.tools[0].bin
	tb := &table{title: fmt.Sprintf("6. Idle cost, ten jobs, three watches, two templates: autopilot with telemetry on (scraped every 5 s) vs off, %s idle", cfg.idle)}
	tb.cols = [2]string{"telemetry on", "telemetry off"}
	var ps [2]*proc
	var confs [2][]byte
	for i, port := range []int{tport, 0} {
		conf, err := telemetryConfig(a.addr, dir, self, port, i)
		if err != nil {
			return nil, err
		}
		confs[i] = conf
		path := filepath.Join(dir, fmt.Sprintf("autopilot-%d.json5", i))
		if err := os.WriteFile(path, conf, 0o644); err != nil {
			return nil, err
		}
		stamp := filepath.Join(dir, fmt.Sprintf("stamp-%d", i))
		p, err := start(fmt.Sprintf("autopilot-telemetry-%d", i), []string{helperEnv + "=" + stamp}, nil, ap, "-config", path)
		if err != nil {
			return nil, err
		}
		defer p.stop(5 * time.Second)
		ps[i] = p
		if err := waitUntil(e.ctx, 15*time.Second, "app start stamp", func() (bool, error) {
			if done, perr := p.exited(); done {
				return false, fmt.Errorf("exited (%v): %s", perr, p.tail())
			}
			_, err := os.Stat(stamp)
			return err == nil, nil
		}); err != nil {
			tb.note("autopilot with `%s` did not start: %v", path, err)
			return tb, nil
		}
	}
	url := "http://127.0.0.1:" + strconv.Itoa(tport) + "/metrics"
	var scrapes []time.Duration
	var size int
	scrape := func() error {
		t0 := time.Now()
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		scrapes, size = append(scrapes, time.Since(t0)), int(n)
		return nil
	}
	if err := waitUntil(e.ctx, 15*time.Second, "first scrape", func() (bool, error) { return scrape() == nil, nil }); err != nil {
		return nil, err
	}
	time.Sleep(3 * time.Second) // registrations and first watch answers settle
	var c0 [2]time.Duration
	for i, p := range ps {
		c0[i], _ = cpuTime(p.pid())
	}
	w0 := time.Now()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	end := time.After(cfg.idle)
idle:
	for {
		select {
		case <-tick.C:
			if err := scrape(); err != nil {
				return nil, fmt.Errorf("scrape: %w", err)
			}
		case <-end:
			break idle
		case <-e.ctx.Done():
			return nil, e.ctx.Err()
		}
	}
	wall := time.Since(w0)
	var c1 [2]time.Duration
	var mem [2]memory
	for i, p := range ps {
		c1[i], _ = cpuTime(p.pid())
		mem[i], _ = readMemory(p.pid())
	}
	tb.add("idle RSS of the process (VmRSS)", mib(mem[0].RSS), mib(mem[1].RSS), "MiB")
	tb.add("peak RSS of the process (VmHWM)", mib(mem[0].HWM), mib(mem[1].HWM), "MiB")
	tb.add(fmt.Sprintf("CPU over %s idle, %% of one core", cfg.idle), 100*float64(c1[0]-c0[0])/float64(wall), 100*float64(c1[1]-c0[1])/float64(wall), "%")
	tb.rows = append(tb.rows, row{metric: "scrape time, median", ap: float64(percentile(scrapes, 50)) / 1e6, ct: 0, unit: "ms", noRatio: true})
	tb.rows = append(tb.rows, row{metric: "scrape size", ap: float64(size) / 1024, ct: 0, unit: "KiB", noRatio: true})
	tb.command(fmt.Sprintf("%s -config autopilot.json5   (app job: the harness binary idling)", filepath.Base(ap)))
	tb.note("Goals (issues 8, 10, 13): idle RSS under 20 MB and CPU under 1%% of a core, with telemetry on. The autopilot process is measured alone (the app is its child). %d scrapes of /metrics during the window. Config with telemetry: %s", len(scrapes), strings.Join(strings.Fields(string(confs[0])), " "))
	return tb, nil
}
