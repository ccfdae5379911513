package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/autopilot/autopilot/internal/haproxy"
	"github.com/autopilot/autopilot/internal/proc"
	"github.com/autopilot/autopilot/render"
	"github.com/autopilot/autopilot/supervisor/config"
)

// Default bounds of the template hooks.
const (
	// DefaultCheckTimeout bounds a template's check command when its
	// checkTimeout is not set.
	DefaultCheckTimeout = 30 * time.Second
	// DefaultReloadTimeout bounds a template's reload command.
	DefaultReloadTimeout = 30 * time.Second
)

// newTemplates builds the render runner of cfg's templates, sharing the
// supervisor's watcher and command runner. It returns nil without templates.
func (s *Supervisor) newTemplates(cfg *config.Config) (*render.Runner, error) {
	if len(cfg.Templates) == 0 {
		return nil, nil
	}
	var cfgs []render.Config
	for _, t := range cfg.Templates {
		rc := render.Config{
			Source:       t.Source,
			Destination:  t.Destination,
			Perms:        t.Perms,
			Check:        s.runner.CheckFunc(t.Check),
			CheckName:    t.Check.String(),
			CheckTimeout: t.CheckTimeout,
			Wait:         t.Wait,
			Options:      render.Options{MinInstances: t.MinInstances},
		}
		if rc.CheckTimeout <= 0 {
			rc.CheckTimeout = DefaultCheckTimeout
		}
		switch {
		case t.ReloadSignal != 0:
			rc.Reload = s.signalApp(t.ReloadSignal)
		case !t.Reload.IsZero():
			rc.Reload = s.reloadCommand(t.Reload)
		}
		if t.ConfirmWorkers && rc.Reload != nil {
			rc.Reload = proc.ConfirmNewChild(proc.ConfirmOptions{
				PID: func() int { return int(s.mainPID.Load()) }, Trigger: rc.Reload,
				Log: s.log.With().Str("template", rc.Source).Logger(),
			})
		}
		if t.HAProxy != nil {
			s.withHAProxy(&rc, t.HAProxy)
		}
		cfgs = append(cfgs, rc)
	}
	return render.NewRunner(s.watcher, cfgs, render.RunnerOptions{Log: s.log})
}

// signalApp is a template's reloadSignal: it signals the Main job's process
// if it runs, and does nothing otherwise (the app will read the file when it
// starts).
func (s *Supervisor) signalApp(sig syscall.Signal) func(context.Context) error {
	return func(context.Context) error {
		pid := int(s.mainPID.Load())
		if pid == 0 {
			s.log.Debug().Stringer("signal", sig).Msg("reloadSignal: the app is not running")
			return nil
		}
		s.log.Info().Stringer("signal", sig).Int("pid", pid).Msg("reloadSignal")
		if err := syscall.Kill(pid, sig); err != nil {
			return fmt.Errorf("reloadSignal %s to %d: %w", sig, pid, err)
		}
		return nil
	}
}

// reloadCommand is a template's reload command. Like reloadSignal it runs
// only while the app is running: the first render happens before the app
// starts and reads the file anyway (`nginx -s reload` would fail then). It
// is killed, with its process group, after DefaultReloadTimeout.
func (s *Supervisor) reloadCommand(c proc.Command) func(context.Context) error {
	return func(ctx context.Context) error {
		if s.mainPID.Load() == 0 {
			s.log.Debug().Stringer("command", c).Msg("reload: the app is not running")
			return nil
		}
		s.log.Info().Stringer("command", c).Msg("reload")
		ctx, cancel := context.WithTimeout(ctx, DefaultReloadTimeout)
		defer cancel()
		out, err := s.runner.Output(ctx, c)
		if err != nil {
			return fmt.Errorf("reload %s: %w: %s", c, err, bytes.TrimSpace(out))
		}
		return nil
	}
}

// withHAProxy gives a template its `haproxy` hooks: server changes through
// the runtime API while the app (HAProxy) runs, and reloads confirmed on
// the master CLI, triggered by the template's reload or reloadSignal (or by
// the master CLI's own `reload`). While the app is not running both step
// aside: HAProxy reads the file when it starts.
//
// The Runtime is never closed: after a config reload its pending
// deletions of drained servers still have to happen, and each ends by
// itself within the drain bound plus a minute.
func (s *Supervisor) withHAProxy(rc *render.Config, h *config.HAProxy) {
	log := s.log.With().Str("template", rc.Source).Logger()
	if h.Runtime != "" {
		rt := haproxy.NewRuntime(haproxy.RuntimeOptions{Socket: h.Runtime, Drain: h.Drain, Log: log})
		rc.Apply = func(ctx context.Context, old, new []byte) (bool, error) {
			if s.mainPID.Load() == 0 {
				return false, nil
			}
			return rt.Apply(ctx, old, new)
		}
	}
	if h.Master != "" {
		rl := haproxy.NewReloader(haproxy.ReloaderOptions{Master: h.Master, Trigger: rc.Reload, Log: log})
		rc.Reload = func(ctx context.Context) error {
			if s.mainPID.Load() == 0 {
				log.Debug().Msg("reload: the app is not running")
				return nil
			}
			return rl.Reload(ctx)
		}
	}
}

// renderFirst renders every template once, waiting at most renderTimeout
// for the data (and not at all once ctx ends: a shutdown). If the wait
// times out but every destination already exists, the jobs start with the
// existing files and a warning; otherwise the error names the missing data.
func (s *Supervisor) renderFirst(ctx context.Context, g *generation) error {
	r := g.templates
	if r == nil {
		return nil
	}
	cfg := g.cfg
	octx, cancel := context.WithTimeout(ctx, cfg.RenderTimeout)
	defer cancel()
	s.log.Info().Int("templates", len(cfg.Templates)).Dur("renderTimeout", cfg.RenderTimeout).Msg("rendering templates")
	err := r.Once(octx)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for _, t := range cfg.Templates {
		if _, serr := os.Stat(t.Destination); serr != nil {
			return fmt.Errorf("%s has no file yet: %w", t.Destination, err)
		}
	}
	s.log.Warn().Err(err).Msg("templates not rendered in time: starting with the existing files")
	return nil
}
