package supervisor

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/proc"
	"github.com/autopilot/autopilot/supervisor/config"
)

// Job states, as Status reports them.
const (
	StateWaiting    = "waiting"    // not started yet: its trigger has not fired
	StateRunning    = "running"    // its process runs
	StateRestarting = "restarting" // exited; a restart is scheduled
	StateIdle       = "idle"       // ran; runs again on its next trigger (each, interval)
	StateDone       = "done"       // will not run again
	StateStopping   = "stopping"   // shutdown: SIGTERM sent, waiting for the exit
	StateStopped    = "stopped"    // shut down
	StateService    = "service"    // no process: a registration or health check only
)

// Default bounds of jobs that do not set their own timeout.
const (
	// DefaultStopHookTimeout bounds a job run by a stopping or stopped
	// event (preStop, postStop): shutdown waits for it at most that long.
	DefaultStopHookTimeout = 10 * time.Second
	// DefaultChangeHookTimeout bounds a job run by a watch's changed event
	// (onChange).
	DefaultChangeHookTimeout = 60 * time.Second
	// DefaultSetupTimeout bounds a job that another job waits for (its
	// exitSuccess or exitFailed starts that job, e.g. preStart before the
	// app) and that is never restarted.
	DefaultSetupTimeout = 5 * time.Minute
	// restartBackoffMax caps the delay before restarting a job that keeps
	// exiting within restartQuick of its start.
	restartBackoffMax = 5 * time.Second
	restartQuick      = 2 * time.Second
)

// jobRun is the part of a job's state that outlives a reload when the job's
// process definition is unchanged: its process keeps running and its
// counters keep counting.
type jobRun struct {
	proc       *proc.Process
	state      string
	fired      bool // its once trigger has fired
	pendingRun bool // an each trigger fired during a run: run again after
	restarts   int  // restarts done
	quick      int  // consecutive quick exits, for the restart backoff
	starts     int
	exited     bool
	lastExit   int
	exitsOK    int
	exitsFail  int
	exitsSig   int
	stopped    bool // stopped was emitted
	started    chan struct{}
	health     string // last health status published ("" none yet)
	everHealth bool   // passed a health check once
}

// job runs one config.Job: its goroutine owns the process and reacts to
// its trigger, its process' exit and the supervisor's stop request.
type job struct {
	cfg      config.Job
	s        *Supervisor
	g        *generation
	log      zerolog.Logger
	inbox    *inbox
	trigger  eventKey
	periodic bool
	// gated: a periodic job whose ticking starts at an event (When.Source
	// or an Event other than startup), e.g. a ContainerPilot 2 task after
	// preStart.
	gated    bool
	stopHook bool // triggered by stopping/stopped: runs during shutdown
	kick     bool // start at once: a reload replaced a running process of this job
	timeout  time.Duration
	stopTO   time.Duration
	ctl      chan chan struct{}
	svc      *service      // nil unless the job has a port and a health check
	hc       *healthCheck  // nil unless the job has a health check
	sensor   *bytes.Buffer // stdout of a sensor run (owned by the goroutine)

	mu      sync.Mutex
	run     jobRun
	handled uint64        // highest event sequence number taken from the inbox
	taking  bool          // events taken from the inbox are being handled
	changed chan struct{} // closed and replaced on every state change
}

func newJob(s *Supervisor, g *generation, jc config.Job) *job {
	j := &job{
		cfg: jc, s: s, g: g, inbox: newInbox(), ctl: make(chan chan struct{}),
		log:     s.log.With().Str("job", jc.Name).Logger(),
		changed: make(chan struct{}),
		run:     jobRun{state: StateWaiting, started: make(chan struct{})},
	}
	if jc.Exec.IsZero() {
		j.run.state = StateService
	}
	ev := jc.When.Event
	if ev == "" {
		ev = config.Startup
	}
	j.trigger = eventKey{jc.When.Source, ev}
	j.periodic = jc.When.Interval > 0
	j.gated = j.periodic && (jc.When.Source != "" || ev != config.Startup)
	j.stopHook = !j.periodic && (ev == config.Stopping || ev == config.Stopped || ev == config.Shutdown)
	j.timeout = jc.Timeout
	switch {
	case j.timeout > 0:
	case j.periodic:
		j.timeout = jc.When.Interval // as ContainerPilot: a periodic run ends before the next
	case j.stopHook:
		j.timeout = DefaultStopHookTimeout
	case ev == config.Changed:
		j.timeout = DefaultChangeHookTimeout
	}
	j.stopTO = jc.StopTimeout
	if j.stopTO <= 0 {
		j.stopTO = g.cfg.StopTimeout
	}
	if j.stopTO <= 0 {
		j.stopTO = 5 * time.Second
	}
	return j
}

// snapshot returns a copy of the job's state.
func (j *job) snapshot() (jobRun, uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.run, j.handled
}

// update changes the state under the lock and tells whoever waits.
func (j *job) update(f func(r *jobRun)) {
	j.mu.Lock()
	f(&j.run)
	j.s.version.Add(1)
	close(j.changed)
	j.changed = make(chan struct{})
	j.mu.Unlock()
	j.s.poke()
}

// busy reports whether the job runs or is about to run again on its own.
func (r *jobRun) busy() bool {
	return r.state == StateRunning || r.state == StateRestarting || r.state == StateStopping || r.pendingRun
}

// waitHandled waits until the job has taken the event numbered seq from its
// inbox and no run it started is left, or until ctx ends.
func (j *job) waitHandled(ctx context.Context, seq uint64) {
	for {
		j.mu.Lock()
		ok := j.handled >= seq && !j.run.busy()
		ch := j.changed
		j.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// timer is a time.Timer whose channel is nil while it is not armed, for
// selects.
type timer struct{ t *time.Timer }

func (t *timer) arm(d time.Duration) {
	t.stop()
	t.t = time.NewTimer(d)
}

func (t *timer) stop() {
	if t.t != nil {
		t.t.Stop()
		t.t = nil
	}
}

func (t *timer) c() <-chan time.Time {
	if t.t == nil {
		return nil
	}
	return t.t.C
}

// loop is the job's goroutine. It returns when ctx ends, leaving a running
// process alone: a reload hands it to the next generation, a shutdown has
// stopped it already.
func (j *job) loop(ctx context.Context) {
	var (
		tick      *time.Ticker
		tickC     <-chan time.Time
		restart   timer
		deadline  timer // the job's timeout
		kill      timer // SIGKILL after stopTimeout
		giveUp    timer // when.timeout: the trigger did not come in time
		stopReply chan struct{}
	)
	defer func() { restart.stop(); deadline.stop(); kill.stop(); giveUp.stop() }()
	if j.cfg.Exec.IsZero() {
		<-ctx.Done()
		return
	}
	startTicking := func() {
		tick = time.NewTicker(j.cfg.When.Interval)
		tickC = tick.C
		if r, _ := j.snapshot(); r.starts == 0 {
			j.start(&deadline)
		}
	}
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	if r, _ := j.snapshot(); j.periodic && (!j.gated || r.fired) {
		startTicking()
	} else if j.kick && !j.periodic {
		j.start(&deadline)
	}
	if r, _ := j.snapshot(); r.proc != nil && j.timeout > 0 {
		// Handed over by a reload while running: the bound still holds.
		deadline.arm(max(0, j.timeout-time.Since(r.proc.Started)))
	} else if r.state == StateRestarting {
		restart.arm(0) // handed over while a restart was pending
	} else if r.state == StateWaiting && !r.fired && j.cfg.When.Timeout > 0 {
		giveUp.arm(j.cfg.When.Timeout)
	}
	for {
		var done <-chan struct{}
		j.mu.Lock()
		if j.run.proc != nil {
			done = j.run.proc.Done()
		}
		j.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-j.inbox.ready:
			j.onEvents(&deadline, &restart, &giveUp)
			if r, _ := j.snapshot(); j.gated && r.fired && tick == nil && !j.g.stopping.Load() {
				startTicking()
			}
		case <-tickC:
			if r, _ := j.snapshot(); r.proc == nil && !j.g.stopping.Load() {
				j.start(&deadline)
			}
		case <-done:
			deadline.stop()
			kill.stop()
			j.onExit(&deadline, &restart, stopReply != nil)
			if stopReply != nil {
				close(stopReply)
				stopReply = nil
			}
		case <-restart.c():
			restart.stop()
			if j.g.stopping.Load() {
				j.update(func(r *jobRun) { r.state = StateDone })
				continue
			}
			j.update(func(r *jobRun) { r.restarts++ })
			j.start(&deadline)
		case <-deadline.c():
			deadline.stop()
			if r, _ := j.snapshot(); r.proc != nil {
				j.log.Warn().Dur("timeout", j.timeout).Int("pid", r.proc.Pid).Msg("job timed out: killing its process group")
				_ = r.proc.SignalGroup(syscall.SIGKILL)
			}
		case <-giveUp.c():
			giveUp.stop()
			if r, _ := j.snapshot(); r.state == StateWaiting && !r.fired {
				j.log.Warn().Dur("timeout", j.cfg.When.Timeout).Str("source", j.trigger.source).
					Str("event", string(j.trigger.event)).Msg("when.timeout: its event did not come; giving up")
				j.g.router.publish(eventKey{j.cfg.Name, config.Stopped})
				j.update(func(r *jobRun) { r.state, r.stopped = StateDone, true })
			}
		case <-kill.c():
			kill.stop()
			if r, _ := j.snapshot(); r.proc != nil {
				j.log.Warn().Dur("stopTimeout", j.stopTO).Int("pid", r.proc.Pid).Msg("still running after stopTimeout: SIGKILL")
				_ = r.proc.SignalGroup(syscall.SIGKILL)
			}
		case reply := <-j.ctl:
			restart.stop()
			r, _ := j.snapshot()
			if r.proc == nil {
				j.update(func(r *jobRun) {
					if r.state == StateRestarting {
						r.state = StateDone
					}
				})
				close(reply)
				continue
			}
			msg := "stopping: SIGTERM to its process group"
			if j.cfg.Main {
				msg = "sending SIGTERM to the app"
			}
			j.log.Info().Int("pid", r.proc.Pid).Msg(msg)
			j.update(func(r *jobRun) { r.state = StateStopping })
			if err := r.proc.SignalGroup(syscall.SIGTERM); err != nil {
				j.log.Debug().Err(err).Msg("SIGTERM")
			}
			kill.arm(j.stopTO)
			stopReply = reply
		}
	}
}

// stop asks the job's goroutine to stop its process (SIGTERM, SIGKILL after
// stopTimeout) and waits for the exit, or for ctx.
func (j *job) stop(ctx context.Context) {
	reply := make(chan struct{})
	select {
	case j.ctl <- reply:
	case <-ctx.Done():
		return
	}
	select {
	case <-reply:
	case <-ctx.Done():
	}
}

// onEvents takes the inbox and starts the job for each trigger that applies.
func (j *job) onEvents(deadline, restart, giveUp *timer) {
	j.mu.Lock()
	j.taking = true
	j.s.version.Add(1)
	j.mu.Unlock()
	defer func() {
		j.mu.Lock()
		j.taking = false
		j.s.version.Add(1)
		close(j.changed)
		j.changed = make(chan struct{})
		j.mu.Unlock()
		j.s.poke()
	}()
	for _, p := range j.inbox.take() {
		j.handle(p, deadline, restart, giveUp)
		j.mu.Lock()
		if p.seq > j.handled {
			j.handled = p.seq
		}
		close(j.changed)
		j.changed = make(chan struct{})
		j.mu.Unlock()
	}
}

func (j *job) handle(p pending, deadline, restart, giveUp *timer) {
	if p.key != j.trigger || j.periodic && !j.gated {
		return
	}
	if j.periodic {
		if r, _ := j.snapshot(); !r.fired {
			j.update(func(r *jobRun) { r.fired = true })
		}
		return
	}
	r, _ := j.snapshot()
	switch {
	case r.state == StateDone || r.state == StateStopped || r.state == StateStopping:
		return
	case j.g.stopping.Load() && !j.stopHook:
		return
	case !j.cfg.When.Each && r.fired:
		return
	}
	giveUp.stop()
	j.update(func(r *jobRun) { r.fired = true })
	if r.proc != nil {
		if j.cfg.When.Each {
			j.update(func(r *jobRun) { r.pendingRun = true })
		}
		return
	}
	restart.stop()
	j.log.Debug().Str("source", p.key.source).Str("event", string(p.key.event)).Msg("triggered")
	j.start(deadline)
}

// start starts the job's process. A command that cannot start counts as
// a run that exited with the shell's status (127, 126).
func (j *job) start(deadline *timer) {
	o := proc.StartOptions{}
	if j.cfg.Main {
		o.Stdin = j.s.opts.Stdin
	}
	if j.cfg.Sensor != "" {
		j.sensor = &bytes.Buffer{}
		o.Stdout = &limitedWriter{w: j.sensor, n: 64 << 10}
	}
	p, err := j.s.runner.Start(j.cfg.Exec, o)
	if err != nil {
		code := proc.ExitCode(err)
		j.log.Error().Err(err).Int("code", code).Msg("cannot start")
		j.update(func(r *jobRun) {
			r.starts++
			r.state = StateRunning
			if r.started != nil {
				select {
				case <-r.started:
				default:
					close(r.started)
				}
			}
		})
		j.exited(code, 0, 0, nil, false)
		return
	}
	if j.cfg.Main {
		j.s.mainPID.Store(int64(p.Pid))
		j.s.runner.SetEnv("AUTOPILOT_APP_PID", strconv.Itoa(p.Pid))
	}
	msg := "started"
	if j.cfg.Main {
		msg = "app started"
	}
	j.log.Info().Int("pid", p.Pid).Stringer("command", j.cfg.Exec).Msg(msg)
	j.update(func(r *jobRun) {
		r.proc = p
		r.starts++
		r.state = StateRunning
		r.pendingRun = false
		select {
		case <-r.started:
		default:
			close(r.started)
		}
	})
	if j.timeout > 0 {
		deadline.arm(j.timeout)
	}
}

// onExit handles the exit of the job's process.
func (j *job) onExit(deadline, restart *timer, stopping bool) {
	r, _ := j.snapshot()
	p := r.proc
	code, sig := p.ExitCode(), p.Signaled()
	if j.cfg.Main {
		j.s.mainPID.CompareAndSwap(int64(p.Pid), 0)
	}
	j.exited(code, sig, time.Since(p.Started), restart, stopping)
	if r2, _ := j.snapshot(); r2.pendingRun && !stopping && !j.g.stopping.Load() {
		j.start(deadline)
	}
}

// exited records an exit, publishes exitSuccess or exitFailed and decides
// what comes next: a restart, another run on the next trigger, or done.
func (j *job) exited(code int, sig syscall.Signal, ran time.Duration, restart *timer, stopping bool) {
	ev := j.log.Info().Int("code", code)
	if sig != 0 {
		ev = ev.Str("signal", sig.String())
	}
	ev.Dur("ran", ran).Msg("exited")
	if code != 0 && !stopping {
		j.s.noteFailure(code)
	}
	if code == 0 && j.sensor != nil {
		j.feedSensor()
	}
	// Decide under the lock, publish, then make the new state visible:
	// whoever sees the job exited also sees its events in their inboxes
	// (see generation.ended).
	var next string
	var backoff time.Duration
	j.mu.Lock()
	r := j.run
	j.mu.Unlock()
	quick := r.quick + 1
	if ran >= restartQuick {
		quick = 0
	}
	switch {
	case stopping:
		next = StateStopped
	case j.g.stopping.Load() && !j.stopHook:
		next = StateDone
	case r.pendingRun, j.periodic:
		next = StateIdle // a pending run is started again by onExit
	case restart != nil && (j.cfg.Restarts.Unlimited || r.restarts < j.cfg.Restarts.Max):
		next = StateRestarting
		if quick > 1 {
			backoff = min(100*time.Millisecond<<min(quick-2, 10), restartBackoffMax)
		}
	case j.cfg.When.Each:
		next = StateIdle
	default:
		next = StateDone
	}
	event := config.ExitSuccess
	if code != 0 {
		event = config.ExitFailed
	}
	j.g.router.publish(eventKey{j.cfg.Name, event})
	// Finished for good. The Main job's stopping/stopped belong to the
	// shutdown its exit starts.
	finished := next == StateDone && !j.cfg.Main && !j.g.stopping.Load()
	if finished {
		j.g.router.publish(eventKey{j.cfg.Name, config.Stopped})
	}
	j.update(func(r *jobRun) {
		r.proc = nil
		r.exited, r.lastExit = true, code
		switch {
		case sig != 0:
			r.exitsSig++
		case code == 0:
			r.exitsOK++
		default:
			r.exitsFail++
		}
		r.quick = quick
		r.state = next
		if next == StateStopped || finished {
			r.stopped = true
		}
	})
	switch next {
	case StateRestarting:
		j.log.Info().Dur("in", backoff).Msg("restarting")
		restart.arm(backoff)
	}
}

// feedSensor turns a sensor run's output (its last line, a number) into a
// metric value.
func (j *job) feedSensor() {
	out := strings.TrimSpace(j.sensor.String())
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		out = out[i+1:]
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(out), 64)
	if err != nil {
		j.log.Warn().Str("output", tail(out, 200)).Msg("sensor output is not a number")
		return
	}
	if j.s.opts.PutMetric == nil {
		return
	}
	if err := j.s.opts.PutMetric(j.cfg.Sensor, v); err != nil {
		j.log.Warn().Err(err).Str("metric", j.cfg.Sensor).Msg("sensor")
	}
}

// limitedWriter keeps the first n bytes written to w and drops the rest.
type limitedWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
