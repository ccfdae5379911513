package supervisor

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/autopilot/autopilot/internal/consul"
	"github.com/autopilot/autopilot/render"
	"github.com/autopilot/autopilot/supervisor/config"
)

// generation is everything one accepted config runs: jobs, registrations,
// watches and templates. A reload builds a complete new generation and
// swaps it in; the running one is never changed field by field.
type generation struct {
	n         int
	cfg       *config.Config
	s         *Supervisor
	router    router
	jobs      []*job
	byName    map[string]*job
	main      *job
	services  []*service
	watches   []*watch
	templates *render.Runner
	ready     *readiness
	readyMax  time.Duration
	env       map[string]string // AUTOPILOT_<NAME>_IP and friends

	stopping atomic.Bool // shutdown began: jobs start only stop hooks

	loopsCancel context.CancelFunc // health, registrations, watches, templates
	loopsWG     sync.WaitGroup
	jobsCancel  context.CancelFunc // the jobs' goroutines
	jobsWG      sync.WaitGroup
}

// build turns cfg into a generation without starting anything or changing
// any state: a config it rejects changes nothing.
func (s *Supervisor) build(cfg *config.Config, n int) (*generation, error) {
	g := &generation{
		n: n, cfg: cfg, s: s, byName: map[string]*job{}, env: map[string]string{},
		router: router{seq: &s.seq, version: &s.version, subs: map[eventKey][]*job{}},
	}
	if f := s.opts.OnEvent; f != nil {
		g.router.onEvent = func(k eventKey) { f(k.source, k.event) }
	}
	host, _ := os.Hostname()
	// The host's addresses are read (a netlink dump per interface) only
	// when a job's interfaces need them: a static address does not.
	hostAddrs := sync.OnceValues(config.HostAddrs)
	if v := cfg.PIDEnvVar(); v != "AUTOPILOT_APP_PID" {
		g.env[v] = strconv.Itoa(os.Getpid()) // ContainerPilot's: the supervisor's own PID
	}
	var ids []string
	for _, jc := range cfg.Jobs {
		if jc.Name == "" {
			return nil, fmt.Errorf("%s: a job without a name", cfg.Name)
		}
		if g.byName[jc.Name] != nil {
			return nil, fmt.Errorf("%s: job %q defined twice", cfg.Name, jc.Name)
		}
		j := newJob(s, g, jc)
		g.jobs = append(g.jobs, j)
		g.byName[jc.Name] = j
		if jc.Main {
			if g.main != nil {
				return nil, fmt.Errorf("%s: jobs %q and %q are both the main job", cfg.Name, g.main.cfg.Name, jc.Name)
			}
			g.main = j
		}
		if jc.Health != nil {
			j.hc = &healthCheck{j: j, cfg: *jc.Health}
			ids = append(ids, jc.Name)
			g.readyMax = max(g.readyMax, jc.Health.TTL, 2*jc.Health.Interval)
		}
		if jc.Port > 0 {
			var addrs []config.HostAddr
			if len(jc.Interfaces) == 0 || jc.Interfaces[0].Kind != config.KindStatic {
				var err error
				if addrs, err = hostAddrs(); err != nil {
					return nil, err
				}
			}
			ip, err := config.ResolveAddress(jc.Interfaces, addrs)
			if err != nil {
				return nil, fmt.Errorf("job %s: %w", jc.Name, err)
			}
			addr := ip.String()
			// The dialect's variable, and autopilot's in every dialect.
			g.env[cfg.IPEnvVar(jc.Name)] = addr
			g.env[EnvName(jc.Name)] = addr
			if jc.Health == nil {
				s.log.Warn().Str("job", jc.Name).Msg("a port without a health check: not registered in Consul")
				continue
			}
			id := cfg.ServiceID(&jc, host)
			j.svc = &service{
				def: consul.Service{
					ID: id, Name: jc.Name, Address: addr, Port: jc.Port, Tags: jc.Tags,
					TTL: jc.Health.TTL, DeregisterCriticalAfter: jc.Consul.DeregisterCriticalServiceAfter,
				},
				init: jc.InitialStatus, s: s, wake: make(chan struct{}, 1),
				log: s.log.With().Str("service", id).Logger(),
			}
			g.services = append(g.services, j.svc)
		}
	}
	seen := map[string]bool{}
	for _, v := range g.services {
		if seen[v.def.ID] {
			return nil, fmt.Errorf("%s: two services with the ID %q", cfg.Name, v.def.ID)
		}
		seen[v.def.ID] = true
	}
	watchNames := map[string]bool{}
	for _, wc := range cfg.Watches {
		w := newWatch(g, wc)
		if watchNames[w.source()] {
			return nil, fmt.Errorf("%s: watch %q defined twice", cfg.Name, wc.Name)
		}
		watchNames[w.source()] = true
		g.watches = append(g.watches, w)
	}
	for _, j := range g.jobs {
		if j.periodic && !j.gated || j.cfg.Exec.IsZero() {
			continue
		}
		src := j.trigger.source
		switch {
		case src == "":
		case strings.HasPrefix(src, "watch."):
			if !watchNames[src] {
				return nil, fmt.Errorf("job %s: when.source %q: no such watch", j.cfg.Name, src)
			}
		case g.byName[src] == nil:
			return nil, fmt.Errorf("job %s: when.source %q: no such job", j.cfg.Name, src)
		}
		g.router.subs[j.trigger] = append(g.router.subs[j.trigger], j)
	}
	for _, j := range g.jobs {
		t := j.trigger
		if j.periodic || j.cfg.When.Each || t.event != config.ExitSuccess && t.event != config.ExitFailed {
			continue
		}
		if src := g.byName[t.source]; src != nil && src.cfg.Timeout == 0 && !src.periodic &&
			!src.cfg.Restarts.Unlimited && src.cfg.Restarts.Max == 0 && src.timeout == 0 {
			src.timeout = DefaultSetupTimeout
		}
	}
	if s.ready != nil && isClosed(s.ready.Done()) {
		g.ready = s.ready
	} else {
		g.ready = newReadiness(ids)
	}
	if g.readyMax == 0 {
		g.readyMax = 30 * time.Second
	}
	tr, err := s.newTemplates(cfg)
	if err != nil {
		return nil, err
	}
	g.templates = tr
	return g, nil
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// EnvName is the AUTOPILOT_<SERVICE>_IP variable name for a service.
func EnvName(service string) string {
	var b strings.Builder
	b.WriteString("AUTOPILOT_")
	for _, r := range strings.ToUpper(service) {
		if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	b.WriteString("_IP")
	return b.String()
}

// start starts the generation's goroutines. Templates keep rendering from
// here on (the first render happened before).
func (g *generation) start() {
	g.startJobs()
	g.startLoops()
}

// startJobs starts the jobs' goroutines, with the environment they export
// (AUTOPILOT_<NAME>_IP…) set first.
func (g *generation) startJobs() {
	for k, v := range g.env {
		g.s.runner.SetEnv(k, v)
	}
	jctx, jcancel := context.WithCancel(context.Background())
	g.jobsCancel = jcancel
	for _, j := range g.jobs {
		g.jobsWG.Add(1)
		go func() { defer g.jobsWG.Done(); j.loop(jctx) }()
	}
}

// startLoops starts health checks, registrations, watches and templates:
// everything that talks to Consul or runs check commands.
func (g *generation) startLoops() {
	lctx, lcancel := context.WithCancel(context.Background())
	g.loopsCancel = lcancel
	for _, j := range g.jobs {
		if j.hc != nil {
			g.loopsWG.Add(1)
			go func() { defer g.loopsWG.Done(); j.hc.run(lctx) }()
		}
		if j.svc != nil {
			g.loopsWG.Add(1)
			go func() { defer g.loopsWG.Done(); j.svc.run(lctx) }()
		}
	}
	for _, w := range g.watches {
		g.loopsWG.Add(1)
		go func() { defer g.loopsWG.Done(); w.run(lctx) }()
	}
	if g.templates != nil {
		g.loopsWG.Add(1)
		go func() {
			defer g.loopsWG.Done()
			if err := g.templates.Run(lctx); err != nil {
				g.s.log.Error().Err(err).Msg("templates")
			}
		}()
	}
}

// awaitMainStart waits, at most maxWait, until every job that the startup
// event starts (the Main job, co-processes, a preStart; not a job that
// waits for another event) has had its process started (or failed to
// start), runs afterForks (if not nil), and waits grace more, so that the
// loops that talk to Consul and run health checks do not compete with
// those forks, execs and the processes' own start-up for the CPU and for
// syscall.ForkLock (issue 13: start-to-exec). A job that waits for another
// event (a preStart's success, a watch) is not waited for: the loops may be
// what it waits for.
func (g *generation) awaitMainStart(maxWait, grace time.Duration, afterForks func()) {
	var started []chan struct{}
	for _, j := range g.jobs {
		if j.cfg.Exec.IsZero() || j.trigger != (eventKey{"", config.Startup}) {
			continue
		}
		if r, _ := j.snapshot(); r.started != nil {
			started = append(started, r.started)
		}
	}
	forked := true
	t := time.NewTimer(maxWait)
	defer t.Stop()
wait:
	for _, ch := range started {
		select {
		case <-ch:
		case <-t.C:
			forked = false
			break wait
		}
	}
	if afterForks != nil {
		afterForks()
	}
	if forked && len(started) > 0 {
		t.Reset(grace)
		<-t.C
	}
}

// stopLoops stops health checks, registrations, watches and templates and
// waits for them (a running check or template command is killed).
func (g *generation) stopLoops() {
	if g.loopsCancel != nil {
		g.loopsCancel()
		g.loopsWG.Wait()
	}
}

// stopJobs stops the jobs' goroutines, leaving their processes alone.
func (g *generation) stopJobs() {
	if g.jobsCancel != nil {
		g.jobsCancel()
		g.jobsWG.Wait()
	}
}

// publishWait publishes k and waits until every job it triggers has run to
// completion; each is bounded by its timeout, and the whole by ctx.
func (g *generation) publishWait(ctx context.Context, k eventKey) {
	seq := g.router.publish(k)
	var wg sync.WaitGroup
	for _, j := range g.router.subscribers(k) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bound := j.timeout
			if bound <= 0 {
				bound = DefaultStopHookTimeout
			}
			c, cancel := context.WithTimeout(ctx, bound+j.stopTO+time.Second)
			defer cancel()
			j.waitHandled(c, seq)
		}()
	}
	wg.Wait()
}

// sameProcess reports whether a reload leaves job a's process as it is:
// same command, trigger, restart policy and bounds. Registration and health
// may change without touching the process.
func sameProcess(a, b config.Job) bool {
	return a.Name == b.Name && reflect.DeepEqual(a.Exec, b.Exec) && a.Main == b.Main &&
		a.When == b.When && a.Restarts == b.Restarts && a.Timeout == b.Timeout &&
		a.StopTimeout == b.StopTimeout && a.Sensor == b.Sensor
}

// ended reports whether the run is over, and its exit code. With a Main
// job, the run ends when it has exited for good (its code) or can never
// start (the first failing code of another job, else 1). Without one, it
// ends when no job runs or can ever run again (the first failing code, or
// 0); a config with no process at all runs until it is stopped.
func (g *generation) ended() (int, bool) {
	v := g.s.version.Load()
	code, end := g.evaluate()
	if g.s.version.Load() != v {
		return 0, false // something changed meanwhile: the caller is poked again
	}
	return code, end
}

func (g *generation) evaluate() (int, bool) {
	if m := g.main; m != nil {
		r, _ := m.snapshot()
		switch {
		case r.state == StateDone:
			return r.lastExit, true
		case r.state == StateWaiting && !g.canRun(m, map[*job]bool{}):
			code := g.s.firstFailure()
			if code == 0 {
				code = ExitError
			}
			return code, true
		}
		return 0, false
	}
	procs := false
	for _, j := range g.jobs {
		if j.cfg.Exec.IsZero() {
			continue
		}
		procs = true
		if g.canRun(j, map[*job]bool{}) {
			return 0, false
		}
	}
	if !procs {
		return 0, false
	}
	return g.s.firstFailure(), true
}

// canRun reports whether job j runs, or may run again.
func (g *generation) canRun(j *job, visiting map[*job]bool) bool {
	if visiting[j] {
		return false
	}
	visiting[j] = true
	defer delete(visiting, j)
	j.mu.Lock()
	r, taking := j.run, j.taking
	j.mu.Unlock()
	if taking || j.inbox.has(j.trigger) {
		return true
	}
	switch r.state {
	case StateRunning, StateRestarting, StateStopping:
		return true
	case StateDone, StateStopped:
		return false
	}
	if j.periodic && (!j.gated || r.fired) {
		return true
	}
	if r.fired && !j.cfg.When.Each {
		return false
	}
	return g.canPublish(j.trigger, visiting)
}

// canPublish reports whether event k may still happen during the run.
func (g *generation) canPublish(k eventKey, visiting map[*job]bool) bool {
	switch {
	case k.source == "":
		// Maintenance can change at any time; startup happened; stopping,
		// stopped and shutdown belong to the shutdown.
		return k.event == config.EnterMaintenance || k.event == config.ExitMaintenance
	case strings.HasPrefix(k.source, "watch."):
		return true
	}
	src := g.byName[k.source]
	if src == nil {
		return false
	}
	switch k.event {
	case config.Healthy, config.Unhealthy:
		return src.hc != nil
	case config.Stopping:
		return false
	case config.Stopped:
		r, _ := src.snapshot()
		return !r.stopped && !src.cfg.Main && !src.cfg.Exec.IsZero() && g.canRun(src, visiting)
	}
	if src.cfg.Exec.IsZero() {
		return false
	}
	return g.canRun(src, visiting)
}
