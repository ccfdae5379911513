package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// helperEnv makes the harness binary act as the supervised app: it writes
// its start time (Unix ns) to the named file and idles until signalled.
const helperEnv = "AUTOPILOT_BENCH_APP_STAMP"

func runHelperApp(stamp string) {
	now := time.Now().UnixNano()
	becomeReady()
	if err := os.WriteFile(stamp, []byte(strconv.FormatInt(now, 10)), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
	os.Exit(0)
}

// supervisorConfig is a ContainerPilot-style config with 3 services and 3 backends.
func supervisorConfig(consulAddr string) ([]byte, error) {
	var services, backends []map[string]any
	for i := range 3 {
		services = append(services, map[string]any{
			"name": fmt.Sprintf("app-%d", i), "port": 18000 + i, "health": []string{"true"},
			"poll": 5, "ttl": 15, "interfaces": []string{"static:127.0.0.1"},
		})
		backends = append(backends, map[string]any{
			"name": fmt.Sprintf("backend-%d", i), "poll": 3, "onChange": []string{"true"},
		})
	}
	return json.MarshalIndent(map[string]any{
		"consul":   consulAddr,
		"logging":  map[string]any{"level": "warn"},
		"services": services,
		"backends": backends,
	}, "", "  ")
}

// supervisor is scenario 5: autopilot supervising an app vs the app run bare.
func (e *env) supervisor(cfg config) (*table, error) {
	st, err := e.startupScenario("supervisor")
	if err != nil {
		return nil, err
	}
	defer st.agent.proc.stop(5 * time.Second)
	dir, conf, confPath, self, ap := st.dir, st.conf, st.confPath, st.self, st.ap
	tb := &table{title: fmt.Sprintf("5. Supervisor overhead: autopilot supervising an app (3 services, 3 backends) vs the app run bare, %d starts, %s idle", cfg.starts, cfg.idle)}

	// startOnce starts the app (bare or under autopilot) and returns the
	// process and the time from Start to the app's first instruction.
	startOnce := func(i int, supervised bool) (*proc, time.Duration, error) {
		stamp := filepath.Join(dir, fmt.Sprintf("stamp-%v-%d", supervised, i))
		if supervised {
			return e.timeToApp(stamp, ap, "-config", confPath, "--", self)
		}
		return e.timeToApp(stamp, self)
	}

	var lat [2][]time.Duration // 0 supervised, 1 bare
	for i := range cfg.starts {
		for k, supervised := range []bool{true, false} {
			p, d, err := startOnce(i, supervised)
			if err != nil {
				if supervised {
					tb.note("The supervisor could not be measured: `%s -config %s -- APP` failed: %v", filepath.Base(ap), confPath, err)
					tb.command(fmt.Sprintf("%s -config autopilot.json -- APP", filepath.Base(ap)))
					return tb, nil
				}
				return nil, err
			}
			lat[k] = append(lat[k], d)
			p.stop(5 * time.Second)
		}
	}

	// Idle: both at once, measured over the same window.
	sup, _, err := startOnce(cfg.starts, true)
	if err != nil {
		return nil, err
	}
	defer sup.stop(5 * time.Second)
	bare, _, err := startOnce(cfg.starts, false)
	if err != nil {
		return nil, err
	}
	defer bare.stop(5 * time.Second)
	time.Sleep(3 * time.Second) // registrations and first backend queries settle
	c0s, _ := cpuTime(sup.pid())
	c0b, _ := cpuTime(bare.pid())
	w0 := time.Now()
	select {
	case <-time.After(cfg.idle):
	case <-e.ctx.Done():
		return nil, e.ctx.Err()
	}
	c1s, _ := cpuTime(sup.pid())
	c1b, _ := cpuTime(bare.pid())
	wall := time.Since(w0)
	ms, _ := readMemory(sup.pid())
	mb, _ := readMemory(bare.pid())

	tb.cols = [2]string{"supervised", "bare"}
	tb.addMs("start-to-exec latency, median", percentile(lat[0], 50), percentile(lat[1], 50))
	tb.addMs("start-to-exec latency, max", percentile(lat[0], 100), percentile(lat[1], 100))
	tb.add("idle RSS of the process (VmRSS)", mib(ms.RSS), mib(mb.RSS), "MiB")
	tb.add("peak RSS of the process (VmHWM)", mib(ms.HWM), mib(mb.HWM), "MiB")
	tb.add(fmt.Sprintf("CPU over %s idle, %% of one core", cfg.idle), 100*float64(c1s-c0s)/float64(wall), 100*float64(c1b-c0b)/float64(wall), "%")
	tb.command(fmt.Sprintf("%s -config autopilot.json -- APP", filepath.Base(ap)))
	tb.command("APP  (the harness binary re-run as a helper that stamps its start time and idles)")
	tb.note("Columns here are **autopilot supervising** vs **the app run bare** (not consul-template). The autopilot process is measured alone (the app is its child and is not included). Config: %s", strings.Join(strings.Fields(string(conf)), " "))
	return tb, nil
}

// timeToApp starts path with args, whose app is the harness binary run as
// the helper app (see helperEnv) writing its start time to stamp, and
// returns the process and the time from Start to the app's first
// instruction. The caller stops the process.
func (e *env) timeToApp(stamp, path string, args ...string) (*proc, time.Duration, error) {
	t0 := time.Now()
	p, err := start("app", []string{helperEnv + "=" + stamp}, nil, path, args...)
	if err != nil {
		return nil, 0, err
	}
	err = waitUntil(e.ctx, 15*time.Second, "app start stamp", func() (bool, error) {
		if done, perr := p.exited(); done {
			return false, fmt.Errorf("exited (%v): %s", perr, p.tail())
		}
		b, err := os.ReadFile(stamp)
		return err == nil && len(b) > 0, nil
	})
	if err != nil {
		p.stop(5 * time.Second)
		return nil, 0, err
	}
	b, _ := os.ReadFile(stamp)
	ns, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return p, time.Unix(0, ns).Sub(t0), nil
}

// startup is what scenarios 5 and 9 share: an agent with three backends,
// scenario 5's config written to confPath, and the binaries they compare
// evicted from the page cache.
type startup struct {
	agent    *agent
	dir      string
	conf     []byte
	confPath string
	self     string // the harness binary, which runs as the app
	ap       string // autopilot
}

// startupScenario sets up a startup in the scenario's directory name; the
// caller stops its agent. others are binaries evicted with autopilot and
// the app.
func (e *env) startupScenario(name string, others ...string) (*startup, error) {
	a, dir, err := e.backendsScenario(name)
	if err != nil {
		return nil, err
	}
	st := &startup{agent: a, dir: dir, confPath: filepath.Join(dir, "autopilot.json"), ap: e.tools[0].bin}
	if err := st.prepare(others); err != nil {
		a.proc.stop(5 * time.Second)
		return nil, err
	}
	return st, nil
}

func (st *startup) prepare(others []string) error {
	var err error
	if st.conf, err = supervisorConfig(st.agent.addr); err != nil {
		return err
	}
	if err := os.WriteFile(st.confPath, st.conf, 0o644); err != nil {
		return err
	}
	if st.self, err = os.Executable(); err != nil {
		return err
	}
	return dropPageCache(append([]string{st.ap, st.self}, others...)...)
}
