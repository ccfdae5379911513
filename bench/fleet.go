package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// fleet is scenario 7: one server and one client agent on loopback, and
// cfg.renderers autopilot renderers on the client agent watching the same
// service of cfg.fleetInstances instances, as the proxies of a fleet would.
// It counts what reaches the server per change (RPC requests from its
// Prometheus counters, bytes it sent on its RPC port from the kernel's
// tcp_info) without and with -cached (the agent cache, which serves every
// renderer from one query to the server).
func (e *env) fleet(cfg config) (*table, error) {
	tb, err := e.fleetOn(cfg, false)
	if err != nil {
		return nil, err
	}
	tb2, err := e.fleetOn(cfg, true)
	if err != nil {
		return nil, err
	}
	// One table: the streaming rows after the others.
	for _, r := range tb2.rows {
		r.metric = "streaming on: " + r.metric
		tb.rows = append(tb.rows, r)
	}
	tb.notes = append(tb.notes, "The first rows are a client agent with `use_streaming_backend = false` (each blocking query it cannot serve from its cache is an RPC to the server); the \"streaming on\" rows are Consul 1.14's default, where the client agent follows health queries through one streaming subscription that carries only the changed instances.")
	return tb, nil
}

func (e *env) fleetOn(cfg config, streaming bool) (*table, error) {
	dir := filepath.Join(e.dir, fmt.Sprintf("fleet-%v", streaming))
	if err := mkdir(dir); err != nil {
		return nil, err
	}
	srv, err := startAgentKind(e.ctx, e.consulBin, dir, agentServer, 0, "")
	if err != nil {
		return nil, err
	}
	defer srv.proc.stop(5 * time.Second)
	cli, err := startAgentKind(e.ctx, e.consulBin, dir, agentClient, srv.serfLAN, fmt.Sprintf("use_streaming_backend = %v", streaming))
	if err != nil {
		return nil, err
	}
	defer cli.proc.stop(5 * time.Second)
	cat := newCatalog(srv.addr)
	const svc = "fleet"
	n := cfg.fleetInstances
	if err := cat.registerMany(e.ctx, svc, 0, n); err != nil {
		return nil, err
	}
	src, err := writeTemplate(dir, "fleet.ctmpl", upstreamTemplate(svc))
	if err != nil {
		return nil, err
	}
	tb := &table{title: fmt.Sprintf("7. Fleet: %d renderers on one client agent, one service of %d instances, %d changes; what reaches the server",
		cfg.renderers, n, cfg.scaleChanges), cols: [2]string{"autopilot", "autopilot -cached"}}
	var res [2]fleetResult
	for mode := range 2 {
		cached := mode == 1
		mdir := filepath.Join(dir, fmt.Sprintf("cached-%v", cached))
		if err := mkdir(mdir); err != nil {
			return nil, err
		}
		var procs []*proc
		var dests []string
		for i := range cfg.renderers {
			dest := filepath.Join(mdir, fmt.Sprintf("out-%02d", i))
			args := []string{"render", "-consul", cli.addr, "-log-level", "warn", "-template", src + ":" + dest}
			if cached {
				args = append(args, "-cached")
			}
			p, err := start("autopilot", nil, nil, e.tools[0].bin, args...)
			if err != nil {
				return nil, err
			}
			defer p.stop(5 * time.Second)
			procs, dests = append(procs, p), append(dests, dest)
			if i == 0 {
				tb.command(commandLine(e.tools[0].bin, args))
			}
		}
		waitAll := func(ok func([]byte) bool) error {
			for _, d := range dests {
				if _, err := waitFile(e.ctx, d, 60*time.Second, ok); err != nil {
					return err
				}
			}
			return nil
		}
		if err := waitAll(contains(fmt.Sprintf("# %s\n", instance{svc, n - 1}.id()))); err != nil {
			return nil, err
		}
		time.Sleep(2 * time.Second) // let the first answers' traffic settle
		r0, b0, err := serverLoad(e.ctx, srv)
		if err != nil {
			return nil, err
		}
		in := instance{svc, 900000}
		marker := "# " + in.id() + "\n"
		start := time.Now()
		var lat []time.Duration
		for i := range cfg.scaleChanges {
			apply, ok := func() error { return cat.register(e.ctx, in) }, contains(marker)
			if i%2 == 1 {
				apply, ok = func() error { return cat.deregister(e.ctx, in) }, lacks(marker)
			}
			if err := apply(); err != nil {
				return nil, err
			}
			t0 := time.Now()
			if err := waitAll(ok); err != nil {
				return nil, err
			}
			lat = append(lat, time.Since(t0))
			time.Sleep(200 * time.Millisecond)
		}
		took := time.Since(start)
		r1, b1, err := serverLoad(e.ctx, srv)
		if err != nil {
			return nil, err
		}
		for _, p := range procs {
			p.stop(5 * time.Second)
		}
		res[mode] = fleetResult{requests: float64(r1-r0) / float64(cfg.scaleChanges), bytes: float64(b1-b0) / float64(cfg.scaleChanges),
			lat: percentile(lat, 50), took: took}
	}
	tb.add("server RPC requests per change", res[0].requests, res[1].requests, "req")
	tb.add("bytes the server sent on its RPC port per change", res[0].bytes/(1<<10), res[1].bytes/(1<<10), "KiB")
	tb.addMs("median change-to-all-files (all renderers)", res[0].lat, res[1].lat)
	tb.note("Topology: `consul agent -server -bootstrap-expect 1` and a client agent (`consul agent -retry-join` the server) on loopback; every renderer talks to the client agent. Requests are the server's `consul_rpc_request` counter (`/v1/agent/metrics?format=prometheus`), bytes the sum of `bytes_sent` (`ss -ti`) over the server's RPC connections, both over the change phase, divided by the number of changes. Each change is one instance registered or deregistered through the server.")
	return tb, nil
}

type fleetResult struct {
	requests, bytes float64
	lat, took       time.Duration
}

var rpcRequest = regexp.MustCompile(`(?m)^consul_rpc_request(?:\{[^}]*\})? ([0-9.e+]+)$`)

// serverLoad reads the server's cumulative RPC request count and the bytes
// it has sent on its RPC port's live connections.
func serverLoad(ctx context.Context, a *agent) (requests int64, bytes int64, err error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.addr+"/v1/agent/metrics?format=prometheus", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range rpcRequest.FindAllSubmatch(body, -1) {
		f, _ := strconv.ParseFloat(string(m[1]), 64)
		requests += int64(f)
	}
	out, err := exec.CommandContext(ctx, "ss", "-tinH", "state", "established", fmt.Sprintf("( sport = :%d )", a.serverPort)).Output()
	if err != nil {
		return requests, 0, fmt.Errorf("ss: %w", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		for _, f := range strings.Fields(sc.Text()) {
			if v, ok := strings.CutPrefix(f, "bytes_sent:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				bytes += n
			}
		}
	}
	return requests, bytes, nil
}
