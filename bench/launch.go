package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// readyEnv makes the helper app (see helperEnv) become "ready" after a
// delay: "PATH:DELAY" writes the ready time (Unix ns) to PATH after DELAY,
// as an app that starts answering its health check some time after exec.
const readyEnv = "AUTOPILOT_BENCH_APP_READY"

func becomeReady() {
	spec := os.Getenv(readyEnv)
	if spec == "" {
		return
	}
	path, d, _ := strings.Cut(spec, ":")
	delay, _ := time.ParseDuration(d)
	go func() {
		time.Sleep(delay)
		now := time.Now().UnixNano()
		tmp := path + ".tmp"
		if os.WriteFile(tmp, []byte(strconv.FormatInt(now, 10)), 0o644) == nil {
			_ = os.Rename(tmp, path)
		}
	}()
}

// launch is scenario 8: how long after the app starts answering its health
// check the service is passing in Consul. The app becomes ready 300 ms
// after it starts; its health check (`test -f READY`) fails until then.
// autopilot only (consul-template has no supervisor); the goal is 100 ms.
func (e *env) launch(cfg config) (*table, error) {
	a, _, dir, err := e.scenario("launch")
	if err != nil {
		return nil, err
	}
	defer a.proc.stop(5 * time.Second)
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ap := e.tools[0].bin
	tb := &table{title: fmt.Sprintf("8. Launch to passing: app ready 300 ms after it starts, health check every 1 s (poll: 1), %d starts", cfg.starts),
		cols: [2]string{"autopilot", "goal"}}
	var lat []time.Duration
	for i := range cfg.starts {
		name := fmt.Sprintf("launch-%d", i)
		ready := filepath.Join(dir, name+".ready")
		conf, _ := json.MarshalIndent(map[string]any{
			"consul":  a.addr,
			"logging": map[string]any{"level": "warn"},
			"services": []map[string]any{{"name": name, "port": 19000 + i, "health": []string{"test", "-f", ready},
				"poll": 1, "ttl": 10, "interfaces": []string{"static:127.0.0.1"}}},
		}, "", "  ")
		confPath := filepath.Join(dir, name+".json")
		if err := os.WriteFile(confPath, conf, 0o644); err != nil {
			return nil, err
		}
		env := []string{helperEnv + "=" + filepath.Join(dir, name+".stamp"), readyEnv + "=" + ready + ":300ms"}
		p, err := start("app", env, nil, ap, "-config", confPath, "--", self)
		if err != nil {
			return nil, err
		}
		var passing time.Time
		err = waitUntil(e.ctx, 20*time.Second, name+" passing", func() (bool, error) {
			if done, perr := p.exited(); done {
				return false, fmt.Errorf("autopilot exited (%v): %s", perr, p.tail())
			}
			resp, err := http.Get("http://" + a.addr + "/v1/health/service/" + name + "?passing=1")
			if err != nil {
				return false, nil
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if len(b) > 4 {
				passing = time.Now()
				return true, nil
			}
			return false, nil
		})
		p.stop(5 * time.Second)
		if err != nil {
			return nil, err
		}
		b, err := os.ReadFile(ready)
		if err != nil {
			return nil, err
		}
		ns, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		lat = append(lat, passing.Sub(time.Unix(0, ns)))
		tb.command(fmt.Sprintf("%s -config %s.json -- APP", filepath.Base(ap), name))
		tb.commands = tb.commands[:1]
	}
	tb.rows = append(tb.rows, row{metric: "ready to passing in Consul, median", ap: ms(percentile(lat, 50)), ct: 100, unit: "ms"})
	tb.rows = append(tb.rows, row{metric: "ready to passing in Consul, max", ap: ms(percentile(lat, 100)), ct: 100, unit: "ms"})
	tb.note("The app is the harness binary as a helper that writes READY 300 ms after it starts; autopilot's health check for the service is `test -f READY` every `poll: 1` s, and the service registers on its first passing check. Passing is seen by polling `/v1/health/service/NAME?passing=1` (a few ms per poll). The second column is issue 13's goal, not a measurement.")
	return tb, nil
}
