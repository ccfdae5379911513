package main

import (
	"fmt"
	"time"
)

// propagation is scenario 1: register/deregister one instance cfg.changes
// times with cfg.spacing between changes; time from the API call returning
// to each tool's file showing it.
func (e *env) propagation(cfg config) (*table, error) {
	a, cat, dir, err := e.scenario("propagation")
	if err != nil {
		return nil, err
	}
	defer a.proc.stop(5 * time.Second)
	const svc = "web"
	if err := cat.registerMany(e.ctx, svc, 0, 3); err != nil {
		return nil, err
	}
	src, err := writeTemplate(dir, "web.ctmpl", upstreamTemplate(svc))
	if err != nil {
		return nil, err
	}
	rs, err := e.startBoth(dir, [2]string{a.addr, a.addr}, "", []string{src}, nil)
	if err != nil {
		return nil, err
	}
	defer stopBoth(rs)
	if err := e.waitAll(rs, 30*time.Second, contains("# web-2\n")); err != nil {
		return nil, err
	}

	in := instance{svc, 1000}
	marker := "# " + in.id() + "\n"
	var lat [2][]time.Duration
	missed := [2]int{}
	for i := range cfg.changes {
		began := time.Now()
		apply, ok := func() error { return cat.register(e.ctx, in) }, contains(marker)
		if i%2 == 1 {
			apply, ok = func() error { return cat.deregister(e.ctx, in) }, lacks(marker)
		}
		l, err := e.change(rs, 0, 5*time.Second, apply, ok)
		if err != nil {
			return nil, err
		}
		for t := range 2 {
			if l[t] < 0 {
				missed[t]++
				continue
			}
			lat[t] = append(lat[t], l[t])
		}
		if d := cfg.spacing - time.Since(began); d > 0 {
			time.Sleep(d)
		}
	}

	tb := &table{title: fmt.Sprintf("1. Propagation: %d single-instance changes, %s apart (change-to-file latency)", cfg.changes, cfg.spacing)}
	for _, p := range []struct {
		name string
		p    float64
	}{{"p50", 50}, {"p90", 90}, {"p99", 99}, {"max", 100}} {
		tb.addMs(p.name, percentile(lat[0], p.p), percentile(lat[1], p.p))
	}
	tb.add("changes not seen within 5s", float64(missed[0]), float64(missed[1]), "")
	for _, r := range rs {
		tb.command(r.cmdline)
	}
	tb.note("Changes: `PUT /v1/catalog/register` / `PUT /v1/catalog/deregister` of node %s on a `consul agent -dev`; latency is from the API call returning to the destination file holding the change (stat polled every 1 ms).", in.node())
	return tb, nil
}
