package supervisor

import (
	"io/fs"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/autopilot/autopilot/internal/proc"
	"github.com/autopilot/autopilot/render"
	"github.com/autopilot/autopilot/supervisor/config"
)

// Temporary: this file translates the legacy Config (ContainerPilot 2 plus
// templates) into the job model until supervisor/config's parsers land;
// it goes away with config.go.

// defaultPreStartTimeout bounds a v2 preStart (it has no field for it).
const defaultPreStartTimeout = 5 * time.Minute

// Model translates c, with argv as the app (the Main job), into the job
// model: preStart runs at startup and the app waits for its success;
// services are registrations (no process) with their health checks;
// backends are watches with an onChange job each; preStop runs on the
// app's stopping, postStop on its stopped.
func (c *Config) Model(argv []string) *config.Config {
	m := &config.Config{
		Name: c.Name, Dir: c.Dir, Dialect: config.Autopilot, Consul: c.Consul,
		Logging:     config.Logging{Level: c.Logging.Level, Format: c.Logging.Format, Output: "stderr"},
		StopTimeout: c.StopTimeout.D(), RenderTimeout: c.RenderTimeout.D(),
	}
	names := map[string]bool{}
	for _, sv := range c.Services {
		names[sv.Name] = true
	}
	app := "app"
	for names[app] {
		app = "_" + app
	}
	appWhen := config.When{Event: config.Startup}
	if !c.PreStart.IsZero() {
		m.Jobs = append(m.Jobs, config.Job{
			Name: "preStart", Exec: c.PreStart, Timeout: defaultPreStartTimeout,
			When: config.When{Event: config.Startup},
		})
		appWhen = config.When{Source: "preStart", Event: config.ExitSuccess}
	}
	if len(argv) > 0 {
		m.Jobs = append(m.Jobs, config.Job{Name: app, Exec: proc.Command{Argv: argv}, Main: true, When: appWhen})
	}
	for _, sv := range c.Services {
		j := config.Job{
			Name: sv.Name, ID: sv.ID, Port: sv.Port, Tags: sv.Tags,
			Health: &config.Health{Exec: sv.Health, Interval: sv.Poll.D(), TTL: sv.TTL.D(), Timeout: sv.Timeout.D()},
			Consul: config.JobConsul{DeregisterCriticalServiceAfter: sv.DeregisterCriticalServiceAfter.D()},
		}
		for _, spec := range sv.Interfaces {
			j.Interfaces = append(j.Interfaces, parseInterface(spec))
		}
		m.Jobs = append(m.Jobs, j)
	}
	for _, b := range c.Backends {
		m.Watches = append(m.Watches, config.Watch{Name: b.Name, Interval: b.Poll.D(), Tag: b.Tag, DC: b.DC})
		m.Jobs = append(m.Jobs, config.Job{
			Name: "onChange." + b.Name, Exec: b.OnChange,
			When: config.When{Source: "watch." + b.Name, Event: config.Changed, Each: true},
		})
	}
	if len(argv) > 0 && !c.PreStop.IsZero() {
		m.Jobs = append(m.Jobs, config.Job{Name: "preStop", Exec: c.PreStop, When: config.When{Source: app, Event: config.Stopping}})
	}
	if len(argv) > 0 && !c.PostStop.IsZero() {
		m.Jobs = append(m.Jobs, config.Job{Name: "postStop", Exec: c.PostStop, When: config.When{Source: app, Event: config.Stopped}})
	}
	for _, t := range c.Templates {
		w, _ := render.ParseWait(t.Wait) // validated by Parse
		m.Templates = append(m.Templates, config.Template{
			Source: c.TemplatePath(t), Destination: t.Destination, Perms: fsMode(t.Perms), Check: t.Check,
			Reload: t.Reload, ReloadSignal: sigOf(t.ReloadSignal), Wait: w, MinInstances: t.MinInstances,
		})
	}
	return m
}

func parseInterface(spec string) config.Interface {
	switch {
	case spec == "inet":
		return config.Interface{Kind: config.KindFamily, Family: 4}
	case spec == "inet6":
		return config.Interface{Kind: config.KindFamily, Family: 6}
	case strings.HasPrefix(spec, "static:"):
		a, _ := netip.ParseAddr(strings.TrimPrefix(spec, "static:"))
		return config.Interface{Kind: config.KindStatic, Addr: a}
	case strings.Contains(spec, "/"):
		p, _ := netip.ParsePrefix(spec)
		return config.Interface{Kind: config.KindCIDR, Prefix: p}
	}
	name, fam, _ := strings.Cut(spec, ":")
	f := 4
	if fam == "inet6" {
		f = 6
	}
	return config.Interface{Kind: config.KindName, Name: name, Index: -1, Family: f}
}

func fsMode(p Perms) fs.FileMode { return fs.FileMode(p) }

func sigOf(s Signal) syscall.Signal { return syscall.Signal(s) }
