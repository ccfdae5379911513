package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// burst is scenario 4: cfg.burst registrations within 1 s, then as many
// deregistrations, with wait 200ms:1s: file writes and command runs of each.
func (e *env) burst(cfg config) (*table, error) {
	a, cat, dir, err := e.scenario("burst")
	if err != nil {
		return nil, err
	}
	defer a.proc.stop(5 * time.Second)
	const svc = "burst"
	if err := cat.registerMany(e.ctx, svc, 0, 1); err != nil {
		return nil, err
	}
	src, err := writeTemplate(dir, "burst.ctmpl", upstreamTemplate(svc))
	if err != nil {
		return nil, err
	}
	script := filepath.Join(dir, "count.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho run >> \"$1\"\n"), 0o755); err != nil {
		return nil, err
	}
	counter := func(tool string) string { return filepath.Join(dir, tool+".commands") }
	const wait = "200ms:1s"
	rs, err := e.startBoth(dir, [2]string{a.addr, a.addr}, wait, []string{src},
		func(tool string) string { return script + " " + counter(tool) })
	if err != nil {
		return nil, err
	}
	defer stopBoth(rs)
	if err := e.waitAll(rs, 30*time.Second, contains("# burst-0\n")); err != nil {
		return nil, err
	}
	time.Sleep(1500 * time.Millisecond) // past the initial render's command and any wait window

	commands := func() [2]int {
		var n [2]int
		for i, r := range rs {
			b, _ := os.ReadFile(counter(r.tool.name))
			n[i] = bytes.Count(b, []byte("\n"))
		}
		return n
	}
	tb := &table{title: fmt.Sprintf("4. Bursts: %d changes within 1 s, %d rounds each way, both with -wait %s", cfg.burst, cfg.burstRounds, wait)}
	// The burst lasts about as long as the wait's max, so whether a tool's
	// max deadline fires just before or just after the last change is a
	// coin flip: repeat, and report totals.
	var writes, runs [2]map[string]int
	var final [2]map[string][]time.Duration
	for i := range 2 {
		writes[i], runs[i], final[i] = map[string]int{}, map[string]int{}, map[string][]time.Duration{}
	}
	rounds := []string{}
	for range cfg.burstRounds {
		rounds = append(rounds, "registrations", "deregistrations")
	}
	for _, round := range rounds {
		wc := [2]*writeCounter{{path: rs[0].dests[0]}, {path: rs[1].dests[0]}}
		ctx, stop := context.WithCancel(e.ctx)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // count file versions at 1 ms resolution
			defer wg.Done()
			for ctx.Err() == nil {
				wc[0].poll()
				wc[1].poll()
				time.Sleep(time.Millisecond)
			}
		}()
		before := commands()
		spacing := time.Second / time.Duration(cfg.burst)
		t0 := time.Now()
		for i := range cfg.burst {
			in := instance{svc, 1 + i}
			if round == "registrations" {
				err = cat.register(e.ctx, in)
			} else {
				err = cat.deregister(e.ctx, in)
			}
			if err != nil {
				stop()
				wg.Wait()
				return nil, err
			}
			if d := time.Duration(i+1)*spacing - time.Since(t0); d > 0 {
				time.Sleep(d)
			}
		}
		burstTook := time.Since(t0)
		lastID := fmt.Sprintf("# %s\n", instance{svc, cfg.burst}.id())
		ok := contains(lastID)
		if round != "registrations" {
			ok = lacks(lastID)
		}
		ts, err := e.waitBoth(rs, 0, 10*time.Second, ok)
		if err != nil {
			stop()
			wg.Wait()
			return nil, err
		}
		time.Sleep(2500 * time.Millisecond) // a quiet period longer than the max wait
		stop()
		wg.Wait()
		after := commands()
		for i := range 2 {
			writes[i][round] += wc[i].writes
			runs[i][round] += after[i] - before[i]
			final[i][round] = append(final[i][round], max(0, ts[i].Sub(t0)-burstTook))
		}
	}
	for _, round := range []string{"registrations", "deregistrations"} {
		p := func(s string) string { return fmt.Sprintf("%d× %d %s: %s", cfg.burstRounds, cfg.burst, round, s) }
		tb.add(p("file writes"), float64(writes[0][round]), float64(writes[1][round]), "")
		tb.add(p("command runs"), float64(runs[0][round]), float64(runs[1][round]), "")
		tb.addMs(p("burst end to final file, median"), percentile(final[0][round], 50), percentile(final[1][round], 50))
	}
	for _, r := range rs {
		tb.command(r.cmdline)
	}
	tb.note("Each change is one `PUT /v1/catalog/register` (or deregister), spaced evenly over 1 s. File writes are distinct versions of the destination seen by a 1 ms stat poll (both tools replace the file by rename); command runs are lines appended by the template command.")
	return tb, nil
}
