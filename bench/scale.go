package main

import (
	"fmt"
	"time"
)

// scale is scenario 2: one service with each of cfg.scales instances,
// then cfg.scaleChanges single changes; median latency and peak RSS.
// Both tools start fresh at each scale so the peak belongs to that scale.
func (e *env) scale(cfg config) (*table, error) {
	a, cat, dir, err := e.scenario("scale")
	if err != nil {
		return nil, err
	}
	defer a.proc.stop(5 * time.Second)
	const svc = "big"
	src, err := writeTemplate(dir, "big.ctmpl", upstreamTemplate(svc))
	if err != nil {
		return nil, err
	}
	tb := &table{title: fmt.Sprintf("2. Scale: one service with %v instances, %d single changes each", cfg.scales, cfg.scaleChanges)}
	registered := 0
	for _, n := range cfg.scales {
		regStart := time.Now()
		if n > registered {
			if err := cat.registerMany(e.ctx, svc, registered, n); err != nil {
				return nil, err
			}
			registered = n
		}
		fmt.Fprintf(cfg.log, "bench: scale %d: %d instances registered in %s\n", n, registered, time.Since(regStart).Round(time.Millisecond))
		sdir := fmt.Sprintf("%s/n%d", dir, n)
		started := time.Now()
		rs, err := e.startBoth(sdir, [2]string{a.addr, a.addr}, "", []string{src}, nil)
		if err != nil {
			return nil, err
		}
		last := fmt.Sprintf("# %s\n", instance{svc, n - 1}.id())
		ts, err := e.waitBoth(rs, 0, 120*time.Second, contains(last))
		if err != nil {
			stopBoth(rs)
			return nil, err
		}
		first := [2]time.Duration{ts[0].Sub(started), ts[1].Sub(started)}
		_, cpu0 := peaks(rs)
		in := instance{svc, 900000 + n}
		marker := "# " + in.id() + "\n"
		var lat [2][]time.Duration
		missed := [2]int{}
		for i := range cfg.scaleChanges {
			apply, ok := func() error { return cat.register(e.ctx, in) }, contains(marker)
			if i%2 == 1 {
				apply, ok = func() error { return cat.deregister(e.ctx, in) }, lacks(marker)
			}
			l, err := e.change(rs, 0, 20*time.Second, apply, ok)
			if err != nil {
				stopBoth(rs)
				return nil, err
			}
			for t := range 2 {
				if l[t] < 0 {
					missed[t]++
				} else {
					lat[t] = append(lat[t], l[t])
				}
			}
			time.Sleep(100 * time.Millisecond) // let both settle before the next change
		}
		mem, cpu1 := peaks(rs)
		stopBoth(rs)
		p := func(s string) string { return fmt.Sprintf("%d instances: %s", n, s) }
		tb.addMs(p("median change-to-file"), percentile(lat[0], 50), percentile(lat[1], 50))
		tb.addMs(p("p90 change-to-file"), percentile(lat[0], 90), percentile(lat[1], 90))
		tb.add(p("peak RSS (VmHWM)"), mib(mem[0].HWM), mib(mem[1].HWM), "MiB")
		tb.add(p("RSS after the changes (VmRSS)"), mib(mem[0].RSS), mib(mem[1].RSS), "MiB")
		tb.add(p("CPU per change"), float64(cpu1[0]-cpu0[0])/1e6/float64(cfg.scaleChanges), float64(cpu1[1]-cpu0[1])/1e6/float64(cfg.scaleChanges), "ms")
		tb.addMs(p("start to first complete file"), first[0], first[1])
		if missed[0]+missed[1] > 0 {
			tb.add(p("changes not seen within 20s"), float64(missed[0]), float64(missed[1]), "")
		}
		for _, r := range rs {
			tb.command(r.cmdline)
		}
	}
	tb.note("Instances are registered with `PUT /v1/catalog/register` (one node per instance, address 127.x.y.z, a passing check); each change registers or deregisters one more instance. Both tools are restarted at each scale, so peak RSS is that scale's. CPU per change is utime+stime (10 ms ticks) over the change phase divided by the number of changes.")
	return tb, nil
}
