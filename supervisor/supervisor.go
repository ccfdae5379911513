// Package supervisor runs a config.Config on autopilot, as PID 1 of a
// container: its jobs (the app, co-processes, hooks, periodic tasks) with
// their triggers and restart policies, their Consul registrations kept true
// with TTL heartbeats fed by health checks, watches that publish changes of
// the services they follow, and templates kept rendered. It forwards
// signals, reaps orphans and exits with a defined code.
//
// Every job and watch owns its goroutine and state; events travel from
// publisher to subscriber through per-subscriber inboxes that coalesce and
// never block the publisher. A reload builds a complete new generation and
// swaps it in.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/consul"
	"github.com/autopilot/autopilot/internal/proc"
	"github.com/autopilot/autopilot/supervisor/config"
)

// Exit codes of the supervisor itself; otherwise it exits with a job's.
const (
	ExitError  = 1 // a startup step failed (templates, addresses)
	ExitConfig = 2 // bad configuration
)

// mainStartWait bounds how long Run holds back the loops that talk to
// Consul while the Main job's process is being started; loopsGrace is how
// long after its fork they still wait, while the app starts up: a health
// check then would fail anyway (nothing listens yet), and the first checks,
// watch answers and hooks otherwise take a core from a starting app on a
// small machine (bench scenario 5, 2 cores: about 3 ms of start-to-exec).
const (
	mainStartWait = 250 * time.Millisecond
	loopsGrace    = 30 * time.Millisecond
)

// ErrNotRunning is returned by the control methods when Run is not (or no
// longer) running.
var ErrNotRunning = errors.New("supervisor is not running")

// Options are the supervisor's environment, apart from the config.
type Options struct {
	// Consul, if set, overrides the config's consul address (-consul).
	Consul string
	// Load loads the config again, for a reload (SIGHUP, Reload). nil
	// disables reloading.
	Load func() (*config.Config, error)
	// Stdin is the Main job's; Stdout and Stderr are every job's (default
	// os.Stdin, os.Stdout, os.Stderr).
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Log is the supervisor's log, at its starting level; a reload that
	// changes logging.level changes the level of the supervisor's copy.
	Log zerolog.Logger
	// Catcher, if set, is the caller's proc.Catch of the signals Run acts
	// on (CatchSignals), started early so that enabling them overlaps the
	// config's load; Run adds the signals it forwards once the app is
	// forked, and stops it (the caller may too). By default Run catches
	// them itself.
	Catcher *proc.Catcher
	// Signals, if set, replaces catching signals (tests drive an
	// in-process supervisor with it).
	Signals <-chan os.Signal
	// WatchOptions tune the shared Consul watch.
	WatchOptions consul.WatchOptions
	// PutMetric receives the values of sensor jobs (config.Job.Sensor). nil
	// drops them.
	PutMetric func(name string, value float64) error
	// VerifyInterval is how often each registration compares the agent's
	// state with autopilot's and repairs drift (default 10s); it also
	// happens after every reload, maintenance change and agent error.
	VerifyInterval time.Duration
	// OnEvent, if set, is called for every event published (tests and
	// benchmarks); it must not block.
	OnEvent func(source string, event config.Event)
}

// Supervisor runs one config, across reloads, until its run ends.
type Supervisor struct {
	opts  Options
	log   zerolog.Logger
	level *logLevel

	runner  *proc.Runner
	reaper  *proc.Reaper
	client  *consul.Client
	agent   agentAPI
	watcher *consul.Watcher
	stopW   context.CancelFunc

	seq     atomic.Uint64 // event sequence numbers
	version atomic.Uint64 // bumped on every job state change and event
	maint   atomic.Bool   // desired maintenance mode
	mainPID atomic.Int64  // the Main job's pid, 0 when it does not run
	poked   chan struct{} // a job's state changed
	ctl     chan ctlReq
	running atomic.Bool
	// reloadErr is why the last reload was refused (nil: accepted or none).
	reloadErr atomic.Pointer[string]

	mu    sync.Mutex
	gen   *generation
	ready *readiness
	fail  int // first failing exit code of a job
}

type ctlReq struct {
	reload bool
	reply  chan error
}

// New checks cfg and builds the supervisor's first generation; nothing runs
// until Run. An error means cfg cannot run (an address that does not
// resolve, a template that does not parse, a trigger naming no job).
func New(cfg *config.Config, opts Options) (*Supervisor, error) {
	if opts.Stdin == nil {
		opts.Stdin = os.Stdin
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.VerifyInterval <= 0 {
		opts.VerifyInterval = verifyEvery
	}
	s := &Supervisor{opts: opts, poked: make(chan struct{}, 1), ctl: make(chan ctlReq)}
	s.log, s.level = withLogLevel(opts.Log)
	s.reaper = proc.NewReaper(s.log)
	s.runner = &proc.Runner{Reaper: s.reaper, Stdout: opts.Stdout, Stderr: opts.Stderr}
	addr := cfg.Consul
	if opts.Consul != "" {
		addr = opts.Consul
	}
	client, err := consul.NewClientWithOptions(addr, consul.ClientOptions{Configure: consulClientConfig(cfg.ConsulClient)})
	if err != nil {
		return nil, fmt.Errorf("consul client: %w", err)
	}
	s.client, s.agent = client, consul.NewAgent(client)
	wctx, stop := context.WithCancel(context.Background())
	s.stopW = stop
	s.watcher = consul.NewWatcher(wctx, client, opts.WatchOptions, s.log)
	g, err := s.build(cfg, 1)
	if err != nil {
		stop()
		return nil, err
	}
	s.gen, s.ready = g, g.ready
	return s, nil
}

// consulClientConfig applies ContainerPilot 3's consul token and TLS
// settings over consul/api's defaults and environment.
func consulClientConfig(cc config.ConsulClient) func(*api.Config) {
	return func(c *api.Config) {
		if cc.Token != "" {
			c.Token = cc.Token
		}
		t := cc.TLS
		if t.CAFile != "" || t.CAPath != "" || t.ClientCert != "" || t.ClientKey != "" || t.ServerName != "" {
			c.Scheme = "https"
		}
		set := func(dst *string, v string) {
			if v != "" {
				*dst = v
			}
		}
		set(&c.TLSConfig.CAFile, t.CAFile)
		set(&c.TLSConfig.CAPath, t.CAPath)
		set(&c.TLSConfig.CertFile, t.ClientCert)
		set(&c.TLSConfig.KeyFile, t.ClientKey)
		set(&c.TLSConfig.Address, t.ServerName)
		if t.Verify != nil {
			c.TLSConfig.InsecureSkipVerify = !*t.Verify
		}
	}
}

// CatchSignals starts catching, in the background, the signals Run acts on
// (proc.HandledSignals), for Options.Catcher.
func CatchSignals() *proc.Catcher { return proc.Catch(proc.HandledSignals()...) }

func (s *Supervisor) current() *generation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// poke tells Run that a job's state changed; it never blocks.
func (s *Supervisor) poke() {
	select {
	case s.poked <- struct{}{}:
	default:
	}
}

func (s *Supervisor) noteFailure(code int) {
	s.mu.Lock()
	if s.fail == 0 {
		s.fail = code
	}
	s.mu.Unlock()
}

func (s *Supervisor) firstFailure() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fail
}

// Run runs the config until the run ends or a shutdown is asked for
// (SIGTERM, SIGINT, or ctx), and returns the exit code:
//   - with a Main job: its exit code (128+N if signal N killed it, 127 not
//     found, 126 not executable); if it can never start (its trigger cannot
//     happen any more, e.g. a preStart failed), the first failing code;
//   - without one: the run ends when no job runs or can run again, with the
//     first failing exit code of any job, or 0;
//   - a shutdown asked for before the Main job started (or without a Main
//     job) exits 128+N for signal N (143 for SIGTERM and a cancelled ctx);
//   - ExitError if a startup step failed (the first render).
//
// Run may be called once.
func (s *Supervisor) Run(ctx context.Context) int {
	if !s.running.CompareAndSwap(false, true) {
		s.log.Error().Msg("Run called twice")
		return ExitError
	}
	defer s.running.Store(false)
	defer s.stopW()
	if os.Getpid() != 1 {
		if err := proc.BecomeSubreaper(); err != nil {
			s.log.Warn().Err(err).Msg("cannot become a child subreaper: orphans will not be reaped")
		}
	}
	// Signals first, so that none arriving during startup is lost or kills us.
	// Only the ones Run acts on, though: the runtime enables one signal at
	// a time, each a round trip to its signal thread, so the signals that
	// are only forwarded to the app are caught once it has been forked.
	sigs := s.opts.Signals
	var forward func()
	if sigs == nil {
		c := s.opts.Catcher
		if c == nil {
			c = CatchSignals()
		}
		defer c.Stop()
		sigs = c.C()
		forward = func() { c.Add(proc.ForwardableSignals()...) }
	}
	stopPipe := ignoreSIGPIPE()
	defer stopPipe()
	rctx, stopReaper := context.WithCancel(context.Background())
	defer stopReaper()
	go s.reaper.Run(rctx)

	g := s.current()
	s.log.Info().Str("config", g.cfg.Name).Int("jobs", len(g.jobs)).Int("watches", len(g.watches)).
		Int("templates", len(g.cfg.Templates)).Msg("starting")

	// 1. The first render, before any job starts: interruptible.
	code, done := s.firstRender(ctx, g, sigs)
	if done {
		return code
	}
	// 2. The jobs, unless a shutdown was caught while the config loaded.
	if code, done := s.pendingShutdown(sigs); done {
		return code
	}
	g.startJobs()
	g.router.publish(eventKey{"", config.Startup})
	// The app first: the signals to forward to it, health checks,
	// registrations, watches and templates (all Consul traffic) start once
	// it has been forked and had a moment.
	g.awaitMainStart(mainStartWait, loopsGrace, forward)
	g.startLoops()
	var stopSig syscall.Signal
loop:
	for {
		if code, end := s.current().ended(); end {
			s.log.Info().Int("code", code).Msg("run ended")
			break loop
		}
		select {
		case <-s.poked:
		case <-ctx.Done():
			s.log.Info().Msg("shutdown requested")
			stopSig = syscall.SIGTERM
			break loop
		case sig := <-sigs:
			if sg, _ := sig.(syscall.Signal); sg == syscall.SIGTERM || sg == syscall.SIGINT {
				s.log.Info().Stringer("signal", sig).Msg("shutting down")
				stopSig = sg
				break loop
			}
			s.handleSignal(sig.(syscall.Signal))
		case req := <-s.ctl:
			req.reply <- s.reload()
		}
	}
	return s.shutdown(s.current(), stopSig)
}

// pendingShutdown handles the signals caught before the jobs start (the
// command line catches them from before the config loads): a SIGTERM or
// SIGINT among them ends the run with 128+N before any job starts.
func (s *Supervisor) pendingShutdown(sigs <-chan os.Signal) (int, bool) {
	for {
		select {
		case sig := <-sigs:
			sg, _ := sig.(syscall.Signal)
			if sg == syscall.SIGTERM || sg == syscall.SIGINT {
				s.log.Info().Stringer("signal", sig).Msg("shutting down before the jobs start")
				return 128 + int(sg), true
			}
			s.handleSignal(sg)
		default:
			return 0, false
		}
	}
}

// firstRender renders the templates once while answering signals: SIGTERM
// or SIGINT abandon it and exit 128+N. It reports done with the exit code
// when the run ends here.
func (s *Supervisor) firstRender(ctx context.Context, g *generation, sigs <-chan os.Signal) (int, bool) {
	if g.templates == nil {
		return 0, false
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := make(chan error, 1)
	go func() { res <- s.renderFirst(rctx, g) }()
	reload := false
	for {
		select {
		case err := <-res:
			if err != nil {
				if ctx.Err() != nil {
					return 128 + int(syscall.SIGTERM), true
				}
				s.log.Error().Err(err).Msg("first render of the templates")
				return ExitError, true
			}
			if reload {
				if err := s.reload(); err != nil {
					s.log.Error().Err(err).Msg("reload")
				}
			}
			return 0, false
		case sig := <-sigs:
			sg, _ := sig.(syscall.Signal)
			switch sg {
			case syscall.SIGTERM, syscall.SIGINT:
				s.log.Info().Stringer("signal", sig).Msg("shutting down during the first render")
				cancel()
				<-res
				return 128 + int(sg), true
			case syscall.SIGHUP:
				reload = true // once the first render is done
			case syscall.SIGUSR1:
				s.toggleMaintenance()
			default:
				s.log.Debug().Stringer("signal", sig).Msg("no job runs yet to forward the signal to")
			}
		case req := <-s.ctl:
			reload = reload || req.reload
			req.reply <- nil
		}
	}
}

// handleSignal acts on a signal other than SIGTERM/SIGINT: SIGHUP reloads,
// SIGUSR1 toggles maintenance, anything else goes to the Main job's process
// group (without a Main job: to every job's running process group).
func (s *Supervisor) handleSignal(sig syscall.Signal) {
	switch sig {
	case syscall.SIGHUP:
		if err := s.reload(); err != nil && !errors.Is(err, errNoReload) {
			s.log.Error().Err(err).Msg("config reload rejected: keeping the old config")
		}
		return
	case syscall.SIGUSR1:
		s.toggleMaintenance()
		return
	}
	g := s.current()
	var pids []int
	if g.main != nil {
		if pid := int(s.mainPID.Load()); pid != 0 {
			pids = append(pids, pid)
		}
	} else {
		for _, j := range g.jobs {
			if r, _ := j.snapshot(); r.proc != nil {
				pids = append(pids, r.proc.Pid)
			}
		}
	}
	if len(pids) == 0 {
		s.log.Debug().Stringer("signal", sig).Msg("no process to forward the signal to")
	}
	for _, pid := range pids {
		s.log.Debug().Stringer("signal", sig).Int("pid", pid).Msg("forwarding signal")
		if err := proc.SignalGroup(pid, sig); err != nil {
			s.log.Warn().Err(err).Stringer("signal", sig).Msg("forwarding signal")
		}
	}
}

func (s *Supervisor) toggleMaintenance() {
	s.setMaintenance(!s.maint.Load())
}

func (s *Supervisor) setMaintenance(on bool) {
	was := s.maint.Swap(on)
	s.log.Info().Bool("maintenance", on).Msg("maintenance requested")
	g := s.current()
	for _, v := range g.services {
		v.poke(true)
	}
	if was != on {
		ev := config.ExitMaintenance
		if on {
			ev = config.EnterMaintenance
		}
		g.router.publish(eventKey{"", ev})
	}
}

// SetMaintenance turns maintenance on or off for every registration and
// waits until the agent confirmed it for every registered service, or ctx
// ends (the reconciliation goes on regardless).
func (s *Supervisor) SetMaintenance(ctx context.Context, on bool) error {
	s.setMaintenance(on)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		ok := true
		for _, v := range s.current().services {
			st := v.snapshot()
			if st.Registered && st.Maintenance != on {
				ok = false
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("maintenance %v: not confirmed by the agent yet: %w", on, ctx.Err())
		case <-t.C:
		}
	}
}

// PutEnv sets an environment variable for every job run started from now
// on (ContainerPilot's putenv).
func (s *Supervisor) PutEnv(key, value string) { s.runner.SetEnv(key, value) }

// Reload loads the config again and swaps in a new generation built from
// it; a config that does not load or build changes nothing and is returned
// as the error.
func (s *Supervisor) Reload(ctx context.Context) error {
	if !s.running.Load() {
		return ErrNotRunning
	}
	req := ctlReq{reload: true, reply: make(chan error, 1)}
	select {
	case s.ctl <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

var errNoReload = errors.New("no config to reload")

// reload builds a new generation from a freshly loaded config and swaps it
// in: jobs whose process definition is unchanged keep their process and
// counters, the others are stopped and replaced; registrations that are
// gone are deregistered; watches keep their last instance set; the new
// templates start. A rejected config changes nothing.
func (s *Supervisor) reload() error {
	if s.opts.Load == nil {
		s.log.Warn().Msg("reload: no config file to reload")
		return errNoReload
	}
	old := s.current()
	cfg, err := s.opts.Load()
	if err == nil && cfg.Consul != old.cfg.Consul && s.opts.Consul == "" {
		err = errors.New("consul: the address cannot change on reload")
	}
	var ng *generation
	if err == nil {
		ng, err = s.build(cfg, old.n+1)
	}
	s.noteReload(err)
	if err != nil {
		s.log.Error().Err(err).Msg("config reload rejected: keeping the old config")
		return err
	}
	old.stopLoops()
	old.stopJobs()
	kept := 0
	var stops sync.WaitGroup // changed and removed jobs stop at once, not one after another
	for _, oj := range old.jobs {
		nj := ng.byName[oj.cfg.Name]
		r, h := oj.snapshot()
		if nj != nil && sameProcess(oj.cfg, nj.cfg) {
			nj.run, nj.handled = r, h
			kept++
			continue
		}
		running := r.proc != nil
		if running {
			oj.log.Info().Msg("reload: the job changed or is gone: stopping its process")
			stops.Add(1)
			go func() { defer stops.Done(); stopProcess(oj, r.proc) }()
		}
		if nj != nil && !nj.cfg.Exec.IsZero() {
			// Changed: the new definition takes over the old one's place
			// (its trigger's state and counters); if the old process was
			// running, the new one starts at once.
			nj.run = jobRun{
				state: StateWaiting, fired: r.fired, starts: r.starts, restarts: r.restarts,
				exited: r.exited, lastExit: r.lastExit, exitsOK: r.exitsOK, exitsFail: r.exitsFail,
				exitsSig: r.exitsSig, started: make(chan struct{}),
			}
			switch {
			case running:
				nj.kick = true
			case r.state == StateDone || r.state == StateStopped:
				nj.run.state = StateDone
			case r.state == StateIdle:
				nj.run.state = StateIdle
			}
			nj.handled = h
		}
	}
	newIDs := map[string]*service{}
	for _, v := range ng.services {
		newIDs[v.def.ID] = v
	}
	for _, ov := range old.services {
		ov.mu.Lock()
		ap, st, status, output := ov.applied, ov.st, ov.status, ov.output
		ov.mu.Unlock()
		if nv := newIDs[ov.def.ID]; nv != nil {
			nv.applied, nv.st, nv.status, nv.output, nv.fresh = ap, st, status, output, status != ""
			continue
		}
		if ap.registered {
			stops.Add(1)
			go func() { defer stops.Done(); ov.deregister(context.Background()) }()
		}
	}
	stops.Wait()
	for _, nw := range ng.watches {
		for _, ow := range old.watches {
			if ow.q == nw.q {
				ow.mu.Lock()
				nw.last, nw.instances, nw.lastChange, nw.changes = ow.last, ow.instances, ow.lastChange, ow.changes
				ow.mu.Unlock()
			}
		}
	}
	s.reloadLogging(old.cfg.Logging, cfg.Logging)
	s.mu.Lock()
	s.gen, s.ready = ng, ng.ready
	s.mu.Unlock()
	ng.start()
	ng.router.publish(eventKey{"", config.Startup}) // for jobs the reload added
	s.log.Info().Str("config", cfg.Name).Int("generation", ng.n).Int("jobs", len(ng.jobs)).Int("kept", kept).
		Int("watches", len(ng.watches)).Int("templates", len(cfg.Templates)).Msg("config reloaded")
	s.poke()
	return nil
}

// stopProcess stops a process whose job goroutine is gone: SIGTERM to its
// group, SIGKILL after the job's stopTimeout.
func stopProcess(j *job, p *proc.Process) { p.Stop(syscall.SIGTERM, j.stopTO) }

// shutdown ends the run: it stops health checks, watches and templates,
// deregisters every service so proxies drain it, publishes the
// supervisor's stopping, then stops every job at once (its stopping event
// and the jobs it triggers, e.g. preStop; SIGTERM; SIGKILL after its
// stopTimeout; its stopped event and the jobs it triggers, e.g. postStop),
// publishes the supervisor's stopped, and returns the exit code (see Run).
//
// Bound: deregistration (5 s) + the longest stopping hook + the longest
// stopTimeout + the longest stopped hook; hooks without a timeout get
// DefaultStopHookTimeout.
func (s *Supervisor) shutdown(g *generation, sig syscall.Signal) int {
	ctx := context.Background()
	g.stopping.Store(true)
	g.publishWait(ctx, eventKey{"", config.Shutdown})
	g.stopLoops()
	var wg sync.WaitGroup
	for _, v := range g.services {
		wg.Add(1)
		go func() { defer wg.Done(); v.deregister(ctx) }()
	}
	wg.Wait()
	g.publishWait(ctx, eventKey{"", config.Stopping})
	for _, j := range g.jobs {
		if j.stopHook || j.cfg.Exec.IsZero() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _ := j.snapshot()
			if r.starts == 0 || r.stopped {
				return // never ran, or finished and said so
			}
			g.publishWait(ctx, eventKey{j.cfg.Name, config.Stopping})
			j.stop(ctx)
			j.update(func(r *jobRun) { r.stopped = true })
			g.publishWait(ctx, eventKey{j.cfg.Name, config.Stopped})
			j.update(func(r *jobRun) { r.state = StateStopped })
		}()
	}
	wg.Wait()
	g.publishWait(ctx, eventKey{"", config.Stopped})
	g.stopJobs()
	// Whatever still runs (a hook past its bound) is killed.
	for _, j := range g.jobs {
		if r, _ := j.snapshot(); r.proc != nil {
			_ = r.proc.SignalGroup(syscall.SIGKILL)
			select {
			case <-r.proc.Done():
			case <-time.After(time.Second):
			}
		}
	}
	if m := g.main; m != nil {
		if r, _ := m.snapshot(); r.exited {
			s.log.Info().Int("code", r.lastExit).Msg("exiting with the main job's code")
			return r.lastExit
		}
		if sig == 0 {
			if code := s.firstFailure(); code != 0 {
				return code
			}
			return ExitError
		}
	}
	if sig != 0 {
		return 128 + int(sig)
	}
	return s.firstFailure()
}

// reloadLogging applies a changed logging.level. The change is logged at
// info while the more verbose of the two levels is in force, so that it
// shows whenever either level shows info. A changed format needs a restart.
func (s *Supervisor) reloadLogging(old, cfg config.Logging) {
	if cfg.Format != old.Format {
		s.log.Warn().Str("format", old.Format).Msg("logging.format: a change applies at the next start")
	}
	if cfg.Level == old.Level || cfg.Level == "" {
		return
	}
	lvl, err := zerolog.ParseLevel(cfg.Level)
	if err != nil {
		s.log.Error().Err(err).Msg("logging.level")
		return
	}
	msg := s.log.Info().Str("from", old.Level).Str("to", cfg.Level)
	if lvl < s.level.get() {
		s.level.set(lvl)
		msg.Msg("log level changed")
		return
	}
	msg.Msg("log level changed")
	s.level.set(lvl)
}
