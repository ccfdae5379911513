package main

import (
	"fmt"
	"strings"
	"time"
)

const loadServices = 20

// loadTemplate reads the same 20 services; the first line makes each
// template's source distinct, as separate config files would be.
func loadTemplate(i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# template %d\n", i)
	for s := range loadServices {
		fmt.Fprintf(&b, "{{range service \"svc-%02d\"}}svc-%02d {{.Address}}:{{.Port}} # {{.ID}}\n{{end}}", s, s)
	}
	return b.String()
}

// load is scenario 3: N templates over the same 20 services, a change every
// second for cfg.steady; requests each tool sent through its own counting proxy.
func (e *env) load(cfg config) (*table, error) {
	a, cat, dir, err := e.scenario("load")
	if err != nil {
		return nil, err
	}
	defer a.proc.stop(5 * time.Second)
	for s := range loadServices {
		if err := cat.registerMany(e.ctx, fmt.Sprintf("svc-%02d", s), 0, 3); err != nil {
			return nil, err
		}
	}
	tb := &table{title: fmt.Sprintf("3. Load on Consul: N templates over the same %d services, %s steady state, one change per second", loadServices, cfg.steady)}
	for _, n := range cfg.templates {
		ndir := fmt.Sprintf("%s/n%d", dir, n)
		if err := mkdir(ndir); err != nil {
			return nil, err
		}
		var srcs []string
		for i := range n {
			p, err := writeTemplate(ndir, fmt.Sprintf("t%03d.ctmpl", i), loadTemplate(i))
			if err != nil {
				return nil, err
			}
			srcs = append(srcs, p)
		}
		var px [2]*countingProxy
		for i := range px {
			if px[i], err = startProxy(a.addr); err != nil {
				return nil, err
			}
			defer px[i].close()
		}
		rs, err := e.startBoth(ndir, [2]string{px[0].addr, px[1].addr}, "", srcs, nil)
		if err != nil {
			return nil, err
		}
		if err := e.waitAll(rs, 60*time.Second, contains("# svc-19-2\n")); err != nil {
			stopBoth(rs)
			return nil, err
		}
		time.Sleep(time.Second) // let the startup requests settle
		startup := [2]int64{px[0].requests.Load(), px[1].requests.Load()}
		_, cpu0 := peaks(rs)

		tick := time.NewTicker(time.Second)
		end := time.After(cfg.steady)
		changes := 0
	steady:
		for {
			select {
			case <-e.ctx.Done():
				tick.Stop()
				stopBoth(rs)
				return nil, e.ctx.Err()
			case <-end:
				break steady
			case <-tick.C:
				// An instance number of this round's own, so the first pass
				// registers something new even after an earlier round.
				in := instance{fmt.Sprintf("svc-%02d", changes%loadServices), 1000 + n}
				var err error
				if (changes/loadServices)%2 == 0 {
					err = cat.register(e.ctx, in)
				} else {
					err = cat.deregister(e.ctx, in)
				}
				if err != nil {
					tick.Stop()
					stopBoth(rs)
					return nil, err
				}
				changes++
			}
		}
		tick.Stop()
		time.Sleep(500 * time.Millisecond) // the last change's requests
		steady := [2]int64{px[0].requests.Load() - startup[0], px[1].requests.Load() - startup[1]}
		mem, cpu1 := peaks(rs)
		stopBoth(rs)
		p := func(s string) string { return fmt.Sprintf("%d templates: %s", n, s) }
		tb.add(p("requests in steady state"), float64(steady[0]), float64(steady[1]), "")
		tb.add(p("requests per change"), float64(steady[0])/float64(changes), float64(steady[1])/float64(changes), "")
		tb.add(p("requests at startup"), float64(startup[0]), float64(startup[1]), "")
		tb.add(p("CPU in steady state"), float64(cpu1[0]-cpu0[0])/1e6, float64(cpu1[1]-cpu0[1])/1e6, "ms")
		tb.add(p("peak RSS"), mib(mem[0].HWM), mib(mem[1].HWM), "MiB")
		for _, r := range rs {
			tb.command(r.cmdline)
		}
	}
	tb.note("Each tool talks to Consul through its own counting reverse proxy on loopback, so the counts are per tool. %d unique queries (`service \"svc-NN\"`); each change registers or deregisters one instance of one of them, so an ideal client sends about 1 request per change in steady state.", loadServices)
	return tb, nil
}
