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
	tb := &table{title: fmt.Sprintf("4. Bursts: %d changes within 1 s, both with -wait %s", cfg.burst, wait)}
	for _, round := range []string{"registrations", "deregistrations"} {
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
		tb.add(fmt.Sprintf("%d %s: file writes", cfg.burst, round), float64(wc[0].writes), float64(wc[1].writes), "")
		tb.add(fmt.Sprintf("%d %s: command runs", cfg.burst, round), float64(after[0]-before[0]), float64(after[1]-before[1]), "")
		tb.addMs(fmt.Sprintf("%d %s: burst end to final file", cfg.burst, round), max(0, ts[0].Sub(t0)-burstTook), max(0, ts[1].Sub(t0)-burstTook))
	}
	for _, r := range rs {
		tb.command(r.cmdline)
	}
	tb.note("Each change is one `PUT /v1/catalog/register` (or deregister), spaced evenly over 1 s. File writes are distinct versions of the destination seen by a 1 ms stat poll (both tools replace the file by rename); command runs are lines appended by the template command.")
	return tb, nil
}
