// Package supervisor runs an app on autopilot: as PID 1 of its container it
// renders the app's config templates, runs its hooks, starts it, keeps its
// Consul registration true with TTL heartbeats fed by its health checks,
// runs onChange handlers when the services it depends on change, forwards
// signals and reaps orphans. The config format is ContainerPilot's (v2) JSON
// plus templates; see Parse.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/consul"
	"github.com/autopilot/autopilot/internal/proc"
)

// Exit codes of the supervisor itself; otherwise it exits with the app's.
const (
	ExitError  = 1 // a startup step failed (templates, addresses)
	ExitConfig = 2 // bad configuration
)

// Options are the supervisor's environment, apart from the config.
type Options struct {
	// Consul, if set, overrides the config's consul address (-consul).
	Consul string
	// ConfigSpec is what the config was loaded from, re-read on SIGHUP.
	// Empty disables reloading.
	ConfigSpec string
	// Env looks up ${VAR} in a reloaded config (default os.LookupEnv).
	Env func(string) (string, bool)
	// Stdin, Stdout and Stderr are the app's and the hooks' stdio
	// (default os.Stdin, os.Stdout, os.Stderr).
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Log is the supervisor's log, at its starting level; a reload that
	// changes logging.level changes the level of the supervisor's copy.
	Log zerolog.Logger
	// Signals, if set, replaces signal.Notify as the source of signals
	// (tests drive an in-process supervisor with it).
	Signals <-chan os.Signal
	// WatchOptions tune the shared Consul watch.
	WatchOptions consul.WatchOptions
}

// Supervisor is one run of an app. It is created and driven by Run.
type Supervisor struct {
	opts   Options
	log    zerolog.Logger
	level  *logLevel // of log and every logger derived from it; SIGHUP changes it
	runner *proc.Runner
	reaper *proc.Reaper

	client  *consul.Client
	agent   *consul.Agent
	watcher *consul.Watcher

	appMu  sync.Mutex
	appPID int // 0 when the app is not running

	cfg      *Config
	services []*service
	ready    *readiness // backends hold their first onChange until it is done
	backends []*backend
	loops    context.CancelFunc // stops services, backends and templates of cfg
	loopsWG  sync.WaitGroup
	maint    bool
}

// Run supervises argv under cfg until the app exits or ctx is cancelled (a
// shutdown, as SIGTERM), and returns the exit code: the app's (128+N if
// signal N killed it, 127 not found, 126 not executable), a preStart's
// non-zero code, or ExitError if a startup step failed.
func Run(ctx context.Context, cfg *Config, argv []string, opts Options) int {
	if opts.Env == nil {
		opts.Env = os.LookupEnv
	}
	if opts.Stdin == nil {
		opts.Stdin = os.Stdin
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	s := &Supervisor{opts: opts}
	s.log, s.level = withLogLevel(opts.Log)
	return s.run(ctx, cfg, argv)
}

func (s *Supervisor) run(ctx context.Context, cfg *Config, argv []string) int {
	if len(argv) == 0 {
		s.log.Error().Msg("no app command")
		return ExitConfig
	}
	if os.Getpid() != 1 {
		if err := proc.BecomeSubreaper(); err != nil {
			s.log.Warn().Err(err).Msg("cannot become a child subreaper: orphans will not be reaped")
		}
	}
	// Signals first, so that none arriving during startup is lost or kills us.
	sigs := s.opts.Signals
	if sigs == nil {
		ch, stop := notifySignals()
		defer stop()
		sigs = ch
	}

	rctx, stopReaper := context.WithCancel(context.WithoutCancel(ctx))
	defer stopReaper()
	s.reaper = proc.NewReaper(s.log)
	go s.reaper.Run(rctx)
	s.runner = &proc.Runner{Reaper: s.reaper, Stdout: s.opts.Stdout, Stderr: s.opts.Stderr}

	addr := cfg.Consul
	if s.opts.Consul != "" {
		addr = s.opts.Consul
	}
	client, err := consul.NewClient(addr)
	if err != nil {
		s.log.Error().Err(err).Msg("consul client")
		return ExitConfig
	}
	s.client, s.agent = client, consul.NewAgent(client)
	// The watcher outlives ctx: after a shutdown request it still serves
	// nothing new, but it must not stop before the loops using it.
	wctx, stopWatcher := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWatcher()
	s.watcher = consul.NewWatcher(wctx, client, s.opts.WatchOptions, s.log)

	services, err := s.newServices(cfg)
	if err != nil {
		s.log.Error().Err(err).Msg("services")
		return ExitError
	}
	s.cfg, s.services = cfg, services
	s.exportAddresses(services)
	s.watchReadiness(services)
	s.backends = s.newBackends(cfg, nil)

	// 1. Templates: the app never starts against a missing config.
	tr, err := s.renderFirst(ctx, cfg)
	if err != nil {
		s.log.Error().Err(err).Msg("first render of the templates")
		return ExitError
	}
	// 2. preStart.
	if !cfg.PreStart.IsZero() {
		s.log.Info().Stringer("command", cfg.PreStart).Msg("running preStart")
		if err := s.runner.Run(ctx, cfg.PreStart); err != nil {
			code := proc.ExitCode(err)
			s.log.Error().Err(err).Int("code", code).Msg("preStart failed: not starting the app")
			return code
		}
	}
	// 3. The app.
	appDone, err := s.startApp(argv)
	if err != nil {
		code := startExitCode(err)
		s.log.Error().Err(err).Int("code", code).Msg("cannot start the app")
		s.runHook(context.WithoutCancel(ctx), "postStop", cfg.PostStop)
		return code
	}
	// 4-5. Services, backends and template updates.
	s.startLoops(cfg, tr)

	var code int
	exited := false
loop:
	for {
		select {
		case code = <-appDone:
			exited = true
			s.log.Info().Int("code", code).Msg("app exited")
			break loop
		case <-ctx.Done():
			s.log.Info().Msg("shutdown requested")
			break loop
		case sig := <-sigs:
			if s.handleSignal(sig.(syscall.Signal)) {
				s.log.Info().Stringer("signal", sig).Msg("shutting down")
				break loop
			}
		}
	}
	return s.shutdown(context.WithoutCancel(ctx), appDone, exited, code)
}

// shutdown deregisters the services so proxies drain them, runs preStop,
// stops the app (SIGTERM, SIGKILL after stopTimeout), runs postStop and
// returns the app's exit code.
func (s *Supervisor) shutdown(ctx context.Context, appDone <-chan int, exited bool, code int) int {
	s.stopLoops()
	s.deregisterAll(ctx)
	cfg := s.cfg
	s.runHook(ctx, "preStop", cfg.PreStop)
	if !exited {
		pid := s.pid()
		s.log.Info().Int("pid", pid).Msg("sending SIGTERM to the app")
		if err := proc.SignalGroup(pid, syscall.SIGTERM); err != nil {
			s.log.Debug().Err(err).Msg("SIGTERM")
		}
		t := time.NewTimer(cfg.StopTimeout.D())
		select {
		case code = <-appDone:
			t.Stop()
		case <-t.C:
			s.log.Warn().Dur("stopTimeout", cfg.StopTimeout.D()).Msg("app still running: SIGKILL")
			_ = proc.SignalGroup(pid, syscall.SIGKILL)
			code = <-appDone
		}
		s.log.Info().Int("code", code).Msg("app exited")
	}
	s.runHook(ctx, "postStop", cfg.PostStop)
	return code
}

func (s *Supervisor) runHook(ctx context.Context, name string, c proc.Command) {
	if c.IsZero() {
		return
	}
	s.log.Info().Stringer("command", c).Msgf("running %s", name)
	if err := s.runner.Run(ctx, c); err != nil {
		s.log.Error().Err(err).Msgf("%s failed", name)
	}
}

// startApp starts the app in its own process group with our stdio, and
// returns a channel that yields its exit code once.
func (s *Supervisor) startApp(argv []string) (<-chan int, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), s.runner.Env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.opts.Stdin, s.opts.Stdout, s.opts.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.reaper.Start(cmd); err != nil {
		return nil, err
	}
	pid := cmd.Process.Pid
	s.appMu.Lock()
	s.appPID = pid
	s.appMu.Unlock()
	s.runner.SetEnv("AUTOPILOT_APP_PID", strconv.Itoa(pid))
	s.log.Info().Int("pid", pid).Strs("argv", argv).Msg("app started")
	done := make(chan int, 1)
	go func() {
		err := s.reaper.Wait(cmd)
		s.appMu.Lock()
		s.appPID = 0
		s.appMu.Unlock()
		done <- waitExitCode(cmd, err)
	}()
	return done, nil
}

// pid is the running app's pid, or 0.
func (s *Supervisor) pid() int {
	s.appMu.Lock()
	defer s.appMu.Unlock()
	return s.appPID
}

func waitExitCode(cmd *exec.Cmd, err error) int {
	if cmd.ProcessState != nil {
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
			if ws.Signaled() {
				return 128 + int(ws.Signal())
			}
			return ws.ExitStatus()
		}
	}
	if err != nil {
		return ExitError
	}
	return 0
}

// startExitCode is the shell's status for a command that could not start.
func startExitCode(err error) int {
	var pe *fs.PathError
	switch {
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, syscall.ENOTDIR):
		return 127
	case errors.As(err, &pe) && errors.Is(pe.Err, syscall.ENOENT):
		if _, serr := os.Stat(pe.Path); serr != nil {
			return 127
		}
		return 126 // the #! interpreter is missing
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM), errors.Is(err, syscall.ENOEXEC),
		errors.Is(err, exec.ErrDot):
		return 126
	}
	return 127
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

// startLoops starts the services' health loops, the backends' watches and
// the template runner tr (nil: none) for cfg.
func (s *Supervisor) startLoops(cfg *Config, tr templateRunner) {
	ctx, cancel := context.WithCancel(context.Background())
	s.loops = cancel
	for _, svc := range s.services {
		s.loopsWG.Add(1)
		go func() { defer s.loopsWG.Done(); svc.run(ctx) }()
	}
	for _, b := range s.backends {
		s.loopsWG.Add(1)
		go func() { defer s.loopsWG.Done(); b.run(ctx) }()
	}
	if tr != nil {
		s.loopsWG.Add(1)
		go func() {
			defer s.loopsWG.Done()
			if err := tr.Run(ctx); err != nil {
				s.log.Error().Err(err).Msg("templates")
			}
		}()
	}
}

// stopLoops stops what startLoops started and waits for it (a running
// onChange handler or health check is killed).
func (s *Supervisor) stopLoops() {
	if s.loops != nil {
		s.loops()
		s.loopsWG.Wait()
		s.loops = nil
	}
}

func (s *Supervisor) describe() string {
	return fmt.Sprintf("%d services, %d backends", len(s.services), len(s.backends))
}
