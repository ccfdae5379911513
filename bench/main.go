// Command bench runs autopilot and consul-template side by side on the same
// real Consul agent and prints one Markdown table per scenario (issues 5 and
// 13): 1 propagation, 2 scale against the floor, 3 load on Consul, 4 bursts,
// 5 supervisor overhead, 6 idle cost of telemetry, 7 a fleet on a client
// agent, 8 launch to passing, 9 where the start-to-exec overhead goes.
//
//	go run ./bench                 # full run, under 10 minutes
//	go run ./bench -quick          # about a minute
//	go run ./bench -only 2 -scale 1000,3000
//
// Every process it starts runs in its own process group and is killed on
// exit, on Ctrl-C and on panics.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	scales         []int
	changes        int
	spacing        time.Duration
	scaleChanges   int
	renderers      int
	fleetInstances int
	templates      []int
	steady         time.Duration
	burst          int
	burstRounds    int
	starts         int
	idle           time.Duration
	only           []int
	log            io.Writer
}

func main() {
	if stamp := os.Getenv(helperEnv); stamp != "" {
		runHelperApp(stamp)
		return
	}
	os.Exit(run())
}

func run() (code int) {
	var (
		cfg       = config{log: os.Stderr}
		scale     = flag.String("scale", "1000,3000,10000", "scenario 2: instance counts of the one service")
		templates = flag.String("templates", "10,100", "scenario 3: template counts")
		only      = flag.String("only", "1,2,3,4,5,6,7,8,9", "scenarios to run")
		quick     = flag.Bool("quick", false, "smoke run of about a minute: small scales, short steady state")
		apBin     = flag.String("autopilot", "bin/autopilot", "autopilot binary")
		build     = flag.Bool("build", true, "run `make build` first")
		out       = flag.String("out", "", "also write the tables to this file")
		limit     = flag.Duration("timeout", 10*time.Minute, "stop everything after this long")
		agents    = flag.String("scale-agents", "server,dev", "scenario 2: agents to run it on, in order: server (a non-dev server, compact JSON) and/or dev")
		pointsOut = flag.String("points", "", "write scenario 2's medians (JSON) to this file, for bench/plot")
		workdir   = flag.String("workdir", "", "where templates and rendered files go (default: a new temporary directory; /dev/shm takes fsync out of the figures)")
	)
	flag.IntVar(&cfg.changes, "changes", 100, "scenario 1: number of changes")
	flag.DurationVar(&cfg.spacing, "spacing", 300*time.Millisecond, "scenario 1: time between changes")
	flag.IntVar(&cfg.scaleChanges, "scale-changes", 20, "scenarios 2 and 7: changes per scale")
	flag.IntVar(&cfg.renderers, "renderers", 10, "scenario 7: renderers on the client agent")
	flag.IntVar(&cfg.fleetInstances, "fleet-instances", 1000, "scenario 7: instances of the watched service")
	flag.DurationVar(&cfg.steady, "steady", 60*time.Second, "scenario 3: steady-state duration per template count")
	flag.IntVar(&cfg.burst, "burst", 50, "scenario 4: changes in the 1 s burst")
	flag.IntVar(&cfg.burstRounds, "burst-rounds", 3, "scenario 4: bursts of registrations (and as many of deregistrations)")
	flag.IntVar(&cfg.starts, "starts", 10, "scenarios 5 and 8: starts measured")
	flag.DurationVar(&cfg.idle, "idle", 30*time.Second, "scenarios 5 and 6: idle measurement window")
	flag.Parse()
	if *quick {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		def := func(name, v string) {
			if !set[name] {
				flag.Set(name, v)
			}
		}
		def("scale", "300,1000")
		def("changes", "20")
		def("scale-changes", "4")
		def("templates", "10")
		def("steady", "8s")
		def("starts", "3")
		def("idle", "5s")
		def("burst-rounds", "1")
		def("scale-agents", "server")
	}
	var err error
	if cfg.scales, err = intList(*scale); err != nil {
		return usage("-scale: %v", err)
	}
	if cfg.templates, err = intList(*templates); err != nil {
		return usage("-templates: %v", err)
	}
	if cfg.only, err = intList(*only); err != nil {
		return usage("-only: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *limit)
	defer cancel()
	defer procs.stopAll()
	defer func() {
		if p := recover(); p != nil {
			procs.stopAll()
			panic(p)
		}
	}()

	e := &env{ctx: ctx}
	if e.consulBin, err = consulBin(); err != nil {
		return fail(err)
	}
	ct, err := consulTemplateBin()
	if err != nil {
		return fail(err)
	}
	ap, err := autopilotBin(*apBin, *build)
	if err != nil {
		return fail(err)
	}
	e.tools = [2]tool{{name: "autopilot", bin: ap}, {name: "consul-template", bin: ct}}
	if e.dir, err = os.MkdirTemp(*workdir, "autopilot-bench-"); err != nil {
		return fail(err)
	}
	defer os.RemoveAll(e.dir)

	w := io.Writer(os.Stdout)
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		w = io.MultiWriter(os.Stdout, f)
	}
	began := time.Now()
	fmt.Fprintf(w, "## autopilot vs consul-template\n\n")
	fmt.Fprintf(w, "- date: %s\n- cores: %d (%s)\n- %s\n- %s\n- consul: %s\n- go: %s\n- ratios are autopilot / consul-template: below 1.00× means autopilot is lower (faster, lighter)\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.NumCPU(), cpuModel(),
		versionOf(ap, "version"), versionOf(ct, "-version"), versionOf(e.consulBin, "version"), runtime.Version())

	scenarios := []struct {
		n   int
		run func(config) (*table, error)
	}{{1, e.propagation}, {2, nil}, {3, e.load}, {4, e.burst}, {5, e.supervisor}, {6, e.telemetry}, {7, e.fleet}, {8, e.launch}, {9, e.deps}}
	var points []point
	failed := false
	for _, s := range scenarios {
		if !slices.Contains(cfg.only, s.n) {
			continue
		}
		t0 := time.Now()
		fmt.Fprintf(os.Stderr, "bench: scenario %d...\n", s.n)
		var tbs []*table
		var err error
		if s.n == 2 {
			for _, ag := range strings.Split(*agents, ",") {
				var tb *table
				var ps []point
				if tb, ps, err = e.scale(cfg, strings.TrimSpace(ag) == "server"); err != nil {
					break
				}
				tbs, points = append(tbs, tb), append(points, ps...)
			}
		} else {
			var tb *table
			tb, err = s.run(cfg)
			tbs = append(tbs, tb)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: scenario %d: %v\n", s.n, err)
			failed = true
			if ctx.Err() != nil {
				break
			}
			continue
		}
		for _, tb := range tbs {
			tb.write(w)
		}
		fmt.Fprintf(os.Stderr, "bench: scenario %d took %s\n", s.n, time.Since(t0).Round(time.Second))
	}
	fmt.Fprintf(w, "\nTotal run time: %s.\n", time.Since(began).Round(time.Second))
	if *pointsOut != "" && len(points) > 0 {
		b, _ := json.MarshalIndent(points, "", "  ")
		if err := os.WriteFile(*pointsOut, append(b, '\n'), 0o644); err != nil {
			return fail(err)
		}
	}
	if failed {
		return 1
	}
	return 0
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func usage(format string, a ...any) int {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...)
	return 2
}

func fail(err error) int {
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "bench: interrupted")
		return 130
	}
	fmt.Fprintf(os.Stderr, "bench: %v\n", err)
	return 1
}
