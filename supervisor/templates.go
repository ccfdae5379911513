package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/proc"
	"github.com/autopilot/autopilot/render"
)

// templateRunner is what the supervisor needs of render.Runner.
type templateRunner interface {
	Run(ctx context.Context) error
}

// newTemplates builds the render runner of cfg's templates, sharing the
// supervisor's watcher and command runner. It returns nil without templates.
func (s *Supervisor) newTemplates(cfg *Config) (*render.Runner, error) {
	if len(cfg.Templates) == 0 {
		return nil, nil
	}
	var cfgs []render.Config
	for _, t := range cfg.Templates {
		rc := render.Config{
			Source:      cfg.TemplatePath(t),
			Destination: t.Destination,
			Perms:       fs.FileMode(t.Perms),
			Check:       t.Check,
			Options:     render.Options{MinInstances: t.MinInstances},
		}
		if t.Wait != "" {
			w, err := render.ParseWait(t.Wait)
			if err != nil {
				return nil, fmt.Errorf("template %s: wait: %w", t.Source, err)
			}
			rc.Wait = w
		}
		switch {
		case t.ReloadSignal != 0:
			rc.Reload = s.signalApp(syscall.Signal(t.ReloadSignal))
		case !t.Reload.IsZero():
			rc.Reload = s.reloadCommand(t.Reload)
		}
		cfgs = append(cfgs, rc)
	}
	r, err := render.NewRunner(s.watcher, cfgs, render.RunnerOptions{Commands: s.runner, Log: s.log})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// signalApp is a template's reloadSignal: it signals the app's process if
// the app is running, and does nothing otherwise (the app will read the
// file when it starts).
func (s *Supervisor) signalApp(sig syscall.Signal) func(context.Context) error {
	return func(context.Context) error {
		pid := s.pid()
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
// starts and reads the file anyway (`nginx -s reload` would fail then).
func (s *Supervisor) reloadCommand(c proc.Command) func(context.Context) error {
	return func(ctx context.Context) error {
		if s.pid() == 0 {
			s.log.Debug().Stringer("command", c).Msg("reload: the app is not running")
			return nil
		}
		s.log.Info().Stringer("command", c).Msg("reload")
		out, err := s.runner.Output(ctx, c)
		if err != nil {
			return fmt.Errorf("reload %s: %w: %s", c, err, bytes.TrimSpace(out))
		}
		return nil
	}
}

// renderFirst renders every template once, waiting at most renderTimeout
// for the data. If that fails but every destination already exists, the app
// starts with the existing files and a warning; otherwise the error names
// the missing data.
func (s *Supervisor) renderFirst(ctx context.Context, cfg *Config) (templateRunner, error) {
	r, err := s.newTemplates(cfg)
	if err != nil || r == nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, cfg.RenderTimeout.D())
	defer cancel()
	s.log.Info().Int("templates", len(cfg.Templates)).Dur("renderTimeout", cfg.RenderTimeout.D()).Msg("rendering templates")
	err = r.Once(octx)
	if err == nil {
		return r, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	for _, t := range cfg.Templates {
		if _, serr := os.Stat(t.Destination); serr != nil {
			return nil, fmt.Errorf("%s has no file yet: %w", t.Destination, err)
		}
	}
	s.log.Warn().Err(err).Msg("templates not rendered in time: starting with the existing files")
	return r, nil
}

// reload re-reads the config on SIGHUP. A config that does not load, or
// whose services or templates cannot be set up, is rejected and the old one
// keeps running. A good one replaces the services (those gone are
// deregistered), backends and templates; the app is not restarted.
func (s *Supervisor) reload() {
	if s.opts.ConfigSpec == "" {
		s.log.Warn().Msg("SIGHUP: no config file to reload")
		return
	}
	cfg, err := Load(s.opts.ConfigSpec, s.opts.Env)
	if err == nil && cfg.Consul != s.cfg.Consul && s.opts.Consul == "" {
		err = errors.New("consul: the address cannot change on reload")
	}
	var services []*service
	if err == nil {
		services, err = s.newServices(cfg)
	}
	var tr *render.Runner
	if err == nil {
		tr, err = s.newTemplates(cfg)
	}
	if err != nil {
		s.log.Error().Err(err).Msg("config reload rejected: keeping the old config")
		return
	}
	old := s.cfg.Logging
	s.stopLoops()
	keep := map[string]bool{}
	for _, v := range services {
		keep[v.id] = true
	}
	for _, v := range s.services {
		if !keep[v.id] {
			v.deregister(5 * time.Second)
		}
	}
	s.exportAddresses(services)
	s.watchReadiness(services)
	s.backends = s.newBackends(cfg, s.backends)
	s.cfg, s.services = cfg, services
	var runner templateRunner
	if tr != nil {
		runner = tr
	}
	// While the loops are stopped, so that none of them logs across the change.
	s.reloadLogging(old, cfg.Logging)
	s.startLoops(cfg, runner)
	s.log.Info().Str("config", cfg.Name).Msg("config reloaded: " + s.describe())
}

// reloadLogging applies a changed logging.level. The change is logged at
// info while the more verbose of the two levels is in force, so that it
// shows whenever either level shows info. A changed format needs a restart.
func (s *Supervisor) reloadLogging(old, cfg Logging) {
	if cfg.Format != old.Format {
		s.log.Warn().Str("format", old.Format).Msg("logging.format: a change applies at the next start")
	}
	if cfg.Level == old.Level {
		return
	}
	lvl, err := zerolog.ParseLevel(cfg.Level)
	if err != nil { // Parse validated it
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
