package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// env is what every scenario gets: the two tools, Consul, a scratch dir.
type env struct {
	ctx       context.Context
	tools     [2]tool // autopilot first, consul-template second
	consulBin string
	dir       string
}

// scenarioEnv starts a fresh agent for one scenario in its own subdirectory.
func (e *env) scenario(name string) (*agent, *catalog, string, error) {
	return e.scenarioOn(name, false)
}

// backendsScenario is scenario with backend-0..2 registered, three
// instances each: what the supervisor configs of scenarios 5 and 6 watch.
func (e *env) backendsScenario(name string) (*agent, string, error) {
	a, cat, dir, err := e.scenario(name)
	if err != nil {
		return nil, "", err
	}
	for i := range 3 {
		if err := cat.registerMany(e.ctx, fmt.Sprintf("backend-%d", i), 0, 3); err != nil {
			a.proc.stop(5 * time.Second)
			return nil, "", err
		}
	}
	return a, dir, nil
}

// scenarioOn is scenario on a dev agent, or with server on a single
// non-dev server.
func (e *env) scenarioOn(name string, server bool) (*agent, *catalog, string, error) {
	dir := filepath.Join(e.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, "", err
	}
	a, err := startAgentMode(e.ctx, e.consulBin, dir, server)
	if err != nil {
		return nil, nil, "", err
	}
	return a, newCatalog(a.addr), dir, nil
}

// running is one tool rendering a set of templates.
type running struct {
	tool    tool
	proc    *proc
	cmdline string
	dests   []string
}

// startBoth starts both tools on the same template sources, each writing
// under dir/<tool>/, against consulAddr[i] (the agent, or a proxy per tool).
func (e *env) startBoth(dir string, consulAddr [2]string, wait string, srcs []string, command func(toolName string) string) ([2]*running, error) {
	var rs [2]*running
	for i := range e.tools {
		r, err := e.startTool(i, dir, consulAddr[i], wait, srcs, command)
		if err != nil {
			stopBoth(rs)
			return rs, err
		}
		rs[i] = r
	}
	return rs, nil
}

// startTool starts tool i (0 autopilot, 1 consul-template) as startBoth does.
func (e *env) startTool(i int, dir, consulAddr, wait string, srcs []string, command func(toolName string) string) (*running, error) {
	t := e.tools[i]
	out := filepath.Join(dir, t.name)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	var specs []tmplSpec
	var dests []string
	for _, src := range srcs {
		dest := filepath.Join(out, filepath.Base(src)+".out")
		s := tmplSpec{src: src, dest: dest}
		if command != nil {
			s.command = command(t.name)
		}
		specs = append(specs, s)
		dests = append(dests, dest)
	}
	p, cl, err := t.run(consulAddr, wait, specs)
	if err != nil {
		return nil, err
	}
	return &running{tool: t, proc: p, cmdline: cl, dests: dests}, nil
}

func stopBoth(rs [2]*running) {
	for _, r := range rs {
		if r != nil {
			r.proc.stop(5 * time.Second)
		}
	}
}

// waitAll waits until every destination of both tools satisfies ok.
func (e *env) waitAll(rs [2]*running, timeout time.Duration, ok func([]byte) bool) error {
	for _, r := range rs {
		if r == nil {
			continue
		}
		for _, d := range r.dests {
			if _, err := waitFileAlive(e.ctx, r, d, timeout, ok); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitFileAlive is waitFile that also fails early, with the tool's output,
// when the tool exits.
func waitFileAlive(ctx context.Context, r *running, path string, timeout time.Duration, ok func([]byte) bool) (time.Time, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-r.proc.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	t, err := waitFile(ctx, path, timeout, ok)
	if err != nil {
		if done, perr := r.proc.exited(); done {
			return t, fmt.Errorf("%s exited (%v) while waiting for %s:\n%s", r.tool.name, perr, path, r.proc.tail())
		}
		return t, fmt.Errorf("%s: %w", r.tool.name, err)
	}
	return t, nil
}

// waitBoth waits for destination dest of both tools at the same time and
// returns when each first satisfied ok.
func (e *env) waitBoth(rs [2]*running, dest int, timeout time.Duration, ok func([]byte) bool) ([2]time.Time, error) {
	ts, errs := e.waitEach(rs, dest, timeout, ok)
	return ts, errors.Join(errs[0], errs[1])
}

// waitEach waits for both tools' destination dest concurrently and returns
// each tool's time and error separately; a nil entry of rs (a tool that is
// not running) gets neither.
func (e *env) waitEach(rs [2]*running, dest int, timeout time.Duration, ok func([]byte) bool) ([2]time.Time, [2]error) {
	var ts [2]time.Time
	var errs [2]error
	var wg sync.WaitGroup
	for i, r := range rs {
		if r == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts[i], errs[i] = waitFileAlive(e.ctx, r, r.dests[dest], timeout, ok)
		}()
	}
	wg.Wait()
	return ts, errs
}

// change applies one catalog change and measures, for each tool, the time
// from the API call returning to its file satisfying ok. A tool that
// misses the deadline gets -1; one that is not running (nil) gets 0.
func (e *env) change(rs [2]*running, dest int, timeout time.Duration, apply func() error, ok func([]byte) bool) ([2]time.Duration, error) {
	var lat [2]time.Duration
	if err := apply(); err != nil {
		return lat, err
	}
	t0 := time.Now()
	ts, errs := e.waitEach(rs, dest, timeout, ok)
	for i := range rs {
		switch {
		case rs[i] == nil:
		case errs[i] == nil:
			lat[i] = ts[i].Sub(t0)
		case e.ctx.Err() != nil:
			return lat, e.ctx.Err()
		default:
			if done, _ := rs[i].proc.exited(); done {
				return lat, errs[i]
			}
			lat[i] = -1
		}
	}
	return lat, nil
}

func contains(s string) func([]byte) bool {
	return func(b []byte) bool { return bytes.Contains(b, []byte(s)) }
}

func lacks(s string) func([]byte) bool {
	return func(b []byte) bool { return !bytes.Contains(b, []byte(s)) }
}

// upstreamTemplate is the template both tools render in the latency and
// scale scenarios: an nginx-style upstream list, in consul-template syntax.
func upstreamTemplate(service string) string {
	return "upstream " + service + " {\n{{- range service \"" + service + "\"}}\n  server {{.Address}}:{{.Port}}; # {{.ID}}\n{{- end}}\n}\n"
}

func writeTemplate(dir, name, text string) (string, error) {
	p := filepath.Join(dir, name)
	return p, os.WriteFile(p, []byte(text), 0o644)
}

// peaks reads each tool's memory and CPU time.
func peaks(rs [2]*running) ([2]memory, [2]time.Duration) {
	var m [2]memory
	var c [2]time.Duration
	for i, r := range rs {
		if r == nil {
			continue
		}
		m[i], _ = readMemory(r.proc.pid())
		c[i], _ = cpuTime(r.proc.pid())
	}
	return m, c
}

func mkdir(d string) error { return os.MkdirAll(d, 0o755) }
