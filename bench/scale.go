package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// point is one scale's medians, for the plot.
type point struct {
	Agent                string
	Instances            int
	Floor, AP, CT        float64 // median change-to-file (floor: to last byte), ms
	Bytes                int     // size of one answer
	CPUAP, CPUCT         float64 // CPU per change, ms
	PeakRSSAP, PeakRSSCT float64 // MiB
	// Each tool alone with the floor (the other one stopped), ms.
	FloorAloneAP, APAlone, FloorAloneCT, CTAlone float64
}

// scale is scenario 2: one service with each of cfg.scales instances,
// then cfg.scaleChanges single changes; median latency against the floor
// (a bare client's time to the answer's last byte, on the same query in
// the same run), CPU and peak RSS. Both tools start fresh at each scale so
// the peak belongs to that scale. server picks a non-dev server agent
// (compact JSON, as in production) over a dev agent (indented JSON).
func (e *env) scale(cfg config, server bool) (*table, []point, error) {
	kind := "dev agent"
	if server {
		kind = "server agent"
	}
	a, cat, dir, err := e.scenarioOn(fmt.Sprintf("scale-%v", server), server)
	if err != nil {
		return nil, nil, err
	}
	defer a.proc.stop(5 * time.Second)
	const svc = "big"
	src, err := writeTemplate(dir, "big.ctmpl", upstreamTemplate(svc))
	if err != nil {
		return nil, nil, err
	}
	tb := &table{title: fmt.Sprintf("2. Scale (%s): one service with %v instances, %d single changes each", kind, cfg.scales, cfg.scaleChanges)}
	var points []point
	registered := 0
	for _, n := range cfg.scales {
		regStart := time.Now()
		if n > registered {
			if err := cat.registerMany(e.ctx, svc, registered, n); err != nil {
				return nil, nil, err
			}
			registered = n
		}
		fmt.Fprintf(cfg.log, "bench: scale %d (%s): %d instances registered in %s\n", n, kind, registered, time.Since(regStart).Round(time.Millisecond))
		sdir := fmt.Sprintf("%s/n%d", dir, n)
		started := time.Now()
		rs, err := e.startBoth(sdir, [2]string{a.addr, a.addr}, "", []string{src}, nil)
		if err != nil {
			return nil, nil, err
		}
		last := fmt.Sprintf("# %s\n", instance{svc, n - 1}.id())
		ts, err := e.waitBoth(rs, 0, 120*time.Second, contains(last))
		if err != nil {
			stopBoth(rs)
			return nil, nil, err
		}
		first := [2]time.Duration{ts[0].Sub(started), ts[1].Sub(started)}
		// One floor per scale, stopped with it: a floor left following the
		// query would be one more answer for Consul to write at every change
		// of the later scales.
		fctx, stopFloor := context.WithCancel(e.ctx)
		defer stopFloor()
		fl := startFloor(fctx, a.addr, "/v1/health/service/"+svc+"?passing=1")
		if _, err := fl.wait(e.ctx, time.Time{}, time.Time{}, 60*time.Second, contains(`"`+instance{svc, n - 1}.id()+`"`)); err != nil {
			stopBoth(rs)
			return nil, nil, err
		}
		_, cpu0 := peaks(rs)
		in := instance{svc, 900000 + n}
		both, err := e.changes(rs, fl, cat, in, cfg.scaleChanges)
		if err != nil {
			stopBoth(rs)
			return nil, nil, err
		}
		mem, cpu1 := peaks(rs)

		// Each tool alone with the floor: the other one's decode and
		// render no longer share the 2 cores (consul-template's CPU per
		// change is 4-5 × autopilot's) and Consul answers one query less.
		rs[1].proc.stop(5 * time.Second)
		apAlone, err := e.changes([2]*running{rs[0], nil}, fl, cat, in, cfg.scaleChanges)
		rs[0].proc.stop(5 * time.Second)
		if err != nil {
			return nil, nil, err
		}
		ct, err := e.startTool(1, sdir+"/alone", a.addr, "", []string{src}, nil)
		if err != nil {
			return nil, nil, err
		}
		if _, err := e.waitBoth([2]*running{nil, ct}, 0, 120*time.Second, contains(last)); err != nil {
			ct.proc.stop(5 * time.Second)
			return nil, nil, err
		}
		ctAlone, err := e.changes([2]*running{nil, ct}, fl, cat, in, cfg.scaleChanges)
		ct.proc.stop(5 * time.Second)
		if err != nil {
			return nil, nil, err
		}
		stopFloor()

		p := func(s string) string { return fmt.Sprintf("%d instances: %s", n, s) }
		fm := percentile(both.floor, 50)
		am, cm := percentile(both.lat[0], 50), percentile(both.lat[1], 50)
		tb.addMs(p("median change-to-file"), am, cm)
		tb.rows = append(tb.rows, row{metric: p("median floor (bare client, time to last byte)"), ap: ms(fm), ct: ms(fm), unit: "ms", noRatio: true})
		tb.add(p("median change-to-file / floor"), ms(am)/ms(fm), ms(cm)/ms(fm), "×")
		tb.addMs(p("p90 change-to-file"), percentile(both.lat[0], 90), percentile(both.lat[1], 90))
		aam, cam := percentile(apAlone.lat[0], 50), percentile(ctAlone.lat[1], 50)
		afm, cfm := percentile(apAlone.floor, 50), percentile(ctAlone.floor, 50)
		tb.addMs(p("alone: median change-to-file (the other tool stopped)"), aam, cam)
		tb.rows = append(tb.rows, row{metric: p("alone: median floor (in that tool's phase)"), ap: ms(afm), ct: ms(cfm), unit: "ms", noRatio: true})
		tb.add(p("alone: median change-to-file / floor"), ms(aam)/ms(afm), ms(cam)/ms(cfm), "×")
		tb.add(p("peak RSS (VmHWM)"), mib(mem[0].HWM), mib(mem[1].HWM), "MiB")
		tb.add(p("RSS after the changes (VmRSS)"), mib(mem[0].RSS), mib(mem[1].RSS), "MiB")
		cpuAP := float64(cpu1[0]-cpu0[0]) / 1e6 / float64(cfg.scaleChanges)
		cpuCT := float64(cpu1[1]-cpu0[1]) / 1e6 / float64(cfg.scaleChanges)
		tb.add(p("CPU per change"), cpuAP, cpuCT, "ms")
		tb.addMs(p("start to first complete file"), first[0], first[1])
		missed := [2]int{both.missed[0] + apAlone.missed[0], both.missed[1] + ctAlone.missed[1]}
		if missed[0]+missed[1] > 0 {
			tb.add(p("changes not seen within 20s"), float64(missed[0]), float64(missed[1]), "")
		}
		holds := func(lat, floor time.Duration) string {
			if ms(lat) <= ms(floor)*1.25+10 {
				return "holds"
			}
			return "**does not hold**"
		}
		tb.note("%d instances: answer %.1f MiB; goal change-to-file ≤ 1.25 × floor + 10 ms: both running %.1f ms against %.1f ms, %s; autopilot alone %.1f ms against %.1f ms, %s.",
			n, float64(fl.size())/(1<<20), ms(am), ms(fm)*1.25+10, holds(am, fm), ms(aam), ms(afm)*1.25+10, holds(aam, afm))
		points = append(points, point{Agent: kind, Instances: n, Floor: ms(fm), AP: ms(am), CT: ms(cm), Bytes: fl.size(),
			CPUAP: cpuAP, CPUCT: cpuCT, PeakRSSAP: mib(mem[0].HWM), PeakRSSCT: mib(mem[1].HWM),
			FloorAloneAP: ms(afm), APAlone: ms(aam), FloorAloneCT: ms(cfm), CTAlone: ms(cam)})
		for _, r := range rs {
			tb.command(r.cmdline)
		}
	}
	agentCmd := "consul agent -dev"
	if server {
		agentCmd = "consul agent -server -bootstrap-expect 1 -data-dir DIR"
	}
	tb.note("Agent: `%s` on loopback. Instances are registered with `PUT /v1/catalog/register` (one node per instance, address 127.x.y.z, a passing check); each change registers or deregisters one more instance. The floor is a bare HTTP client in the harness following the same blocking query (`/v1/health/service/big?passing=1`, no gzip) and only reading the answer: its change-to-last-byte is what Consul takes; both tools start from the same instant. The changes are made three times: with both tools running (the autopilot / consul-template ratios, peak RSS and CPU), then with autopilot alone and with consul-template alone (the \"alone\" rows: each against the floor measured in its own phase, without the other tool's CPU on the same 2 cores). Both tools are restarted at each scale, so peak RSS is that scale's. CPU per change is utime+stime (10 ms ticks) over the change phase divided by the number of changes.", agentCmd)
	return tb, points, nil
}

// series is one phase's measurements: each running tool's change-to-file
// latencies and the floor's, from the same instants.
type series struct {
	lat    [2][]time.Duration
	floor  []time.Duration
	missed [2]int
}

// changes registers and deregisters in by turns, count times (rounded up
// to even, so in ends as it started: deregistered), and measures each tool
// of rs that runs (not nil) and the floor fl from the same instant.
func (e *env) changes(rs [2]*running, fl *floor, cat *catalog, in instance, count int) (series, error) {
	var out series
	marker := "# " + in.id() + "\n"
	jsonID := `"` + in.id() + `"`
	for i := range count + count%2 {
		apply, ok, fok := func() error { return cat.register(e.ctx, in) }, contains(marker), contains(jsonID)
		if i%2 == 1 {
			apply, ok, fok = func() error { return cat.deregister(e.ctx, in) }, lacks(marker), lacks(jsonID)
		}
		var fd time.Duration
		var ferr error
		var wg sync.WaitGroup
		l, err := e.change(rs, 0, 20*time.Second, func() error {
			since := time.Now()
			if err := apply(); err != nil {
				return err
			}
			// The floor waits beside the tools, from the same instant.
			t0 := time.Now()
			wg.Add(1)
			go func() { defer wg.Done(); fd, ferr = fl.wait(e.ctx, since, t0, 20*time.Second, fok) }()
			return nil
		}, ok)
		wg.Wait()
		if err != nil {
			return out, err
		}
		if ferr != nil {
			return out, ferr
		}
		out.floor = append(out.floor, fd)
		for t := range 2 {
			switch {
			case rs[t] == nil:
			case l[t] < 0:
				out.missed[t]++
			default:
				out.lat[t] = append(out.lat[t], l[t])
			}
		}
		time.Sleep(100 * time.Millisecond) // let both settle before the next change
	}
	return out, nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
