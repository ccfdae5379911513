package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/consul"
	"github.com/autopilot/autopilot/internal/control"
	"github.com/autopilot/autopilot/internal/telemetry"
	"github.com/autopilot/autopilot/render"
	"github.com/autopilot/autopilot/supervisor"
	"github.com/autopilot/autopilot/supervisor/config"
)

// TelemetryServiceName is the Consul service the telemetry endpoint
// registers as: ContainerPilot's name, so Prometheus configs written for
// ContainerPilot find autopilot too.
const TelemetryServiceName = "containerpilot"

// observer is everything around a running supervisor that lets operators
// see and steer it: the user's metrics, the telemetry server and its Consul
// registration, and the control socket. It reads the supervisor's state at
// request time and owns no counter of its own.
type observer struct {
	cfg     *config.Config
	consul  string // the agent address, for /status
	log     zerolog.Logger
	metrics *telemetry.UserMetrics

	sup *supervisor.Supervisor // set by attach, before serve

	ctl *control.Server   // nil: no control socket
	tel *telemetry.Server // nil: no telemetry block
}

// runObserved builds the supervisor for model with its control socket,
// telemetry server and user metrics, runs it, and returns its exit code.
// Errors in the telemetry or control config exit 2 before any job starts.
func runObserved(ctx context.Context, name string, model *config.Config, opts supervisor.Options, stderr io.Writer) int {
	obs, err := newObserver(model, consulAddress(opts.Consul, model.Consul), opts.Log)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitUsage
	}
	opts.PutMetric = obs.metrics.Put
	if opts.Load != nil {
		opts.Load = obs.load(opts.Load)
	}
	s, err := supervisor.New(model, opts)
	if err != nil {
		obs.close()
		opts.Log.Error().Err(err).Msg("cannot run the config")
		return exitError
	}
	// The control socket and telemetry outlive ctx (a shutdown request) so
	// that status answers while jobs stop; they end when Run returns.
	octx, stop := context.WithCancel(context.Background())
	wait := obs.serve(octx, s)
	code := s.Run(ctx)
	stop()
	wait()
	return code
}

// consulAddress is the agent address for status pages: the flag, the
// config, the environment, or consul/api's default.
func consulAddress(flagValue, cfgValue string) string {
	for _, a := range []string{flagValue, cfgValue, os.Getenv("CONSUL_HTTP_ADDR")} {
		if a != "" {
			return a
		}
	}
	return "127.0.0.1:8500"
}

// newObserver validates the config's metrics and binds the control socket
// and the telemetry port, so that every error is reported before any job
// starts. An explicitly configured control socket that cannot be created is
// an error; the default one (ContainerPilot's /var/run path) is skipped with
// a warning, so that several autopilots on one host (tests, a laptop) run.
func newObserver(cfg *config.Config, consulAddr string, log zerolog.Logger) (*observer, error) {
	o := &observer{cfg: cfg, consul: consulAddr, log: log}
	var defs []config.Metric
	if cfg.Telemetry != nil {
		defs = cfg.Telemetry.Metrics
	}
	um, err := telemetry.NewUserMetrics(defs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Name, err)
	}
	o.metrics = um
	sock := cfg.Control.Socket
	if sock == "" {
		sock = config.DefaultControlSocket
	}
	ctl, err := control.Listen(sock, log)
	switch {
	case err == nil:
		o.ctl = ctl
	case sock == config.DefaultControlSocket:
		log.Warn().Err(err).Msg("no control socket: -reload, -maintenance, -putenv, -putmetric and status cannot reach this autopilot (set control.socket)")
	default:
		return nil, err
	}
	if t := cfg.Telemetry; t != nil {
		addr, err := telemetryAddr(t)
		if err != nil {
			o.close()
			return nil, err
		}
		tel, err := telemetry.Listen(telemetry.Options{Addr: addr, Source: o, Metrics: um, Log: log})
		if err != nil {
			o.close()
			return nil, err
		}
		o.tel = tel
	}
	return o, nil
}

// telemetryAddr is telemetry.port on the address telemetry.interfaces
// resolves to.
func telemetryAddr(t *config.Telemetry) (string, error) {
	host, err := config.HostAddrs()
	if err != nil {
		return "", fmt.Errorf("telemetry: %w", err)
	}
	ip, err := config.ResolveAddress(t.Interfaces, host)
	if err != nil {
		return "", fmt.Errorf("telemetry.interfaces: %w", err)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(t.Port)), nil
}

// close releases what newObserver bound, when the run does not start.
func (o *observer) close() {
	if o.ctl != nil {
		o.ctl.Close()
	}
}

// load wraps a config loader for reloads: a new config's metric
// declarations must be valid, and replace the current set when it loads.
func (o *observer) load(load func() (*config.Config, error)) func() (*config.Config, error) {
	return func() (*config.Config, error) {
		c, err := load()
		if err == nil {
			var defs []config.Metric
			if c.Telemetry != nil {
				defs = c.Telemetry.Metrics
			}
			err = o.metrics.Update(defs)
		}
		return c, err
	}
}

// serve runs the control socket, the telemetry server and its registration
// until ctx ends, and returns when all have stopped.
func (o *observer) serve(ctx context.Context, sup *supervisor.Supervisor) (wait func()) {
	o.sup = sup
	var wg sync.WaitGroup
	if o.ctl != nil {
		wg.Go(func() {
			if err := o.ctl.Serve(ctx, o); err != nil {
				o.log.Error().Err(err).Msg("control socket stopped")
			}
		})
	}
	if o.tel != nil {
		wg.Go(func() {
			if err := o.tel.Serve(ctx); err != nil {
				o.log.Error().Err(err).Msg("telemetry server stopped")
			}
		})
		host, _ := os.Hostname()
		tcp, _ := o.tel.Addr().(*net.TCPAddr)
		svc := consul.Service{ID: TelemetryServiceName + "-" + host, Name: TelemetryServiceName,
			Tags: append(append([]string(nil), o.cfg.Telemetry.Tags...), Version)}
		if tcp != nil {
			svc.Address, svc.Port = tcp.IP.String(), tcp.Port
		}
		reg := &telemetry.Registration{Agent: consul.NewAgent(sup.ConsulClient()), Service: svc, Log: o.log}
		wg.Go(func() { reg.Run(ctx) })
	}
	return wg.Wait
}

// Snapshot implements telemetry.Source from the supervisor's status and its
// Consul client's counters.
func (o *observer) Snapshot() telemetry.Snapshot {
	s := telemetry.Snapshot{Version: Version, Time: time.Now()}
	if o.sup == nil {
		return s
	}
	st := o.sup.Status()
	s.Config = telemetry.ConfigStatus{File: st.Config, Generation: st.Generation, LastReloadError: o.sup.LastReloadError()}
	cs := o.sup.ConsulClient().Stats()
	s.Consul = telemetry.Consul(cs)
	s.Consul.Address, s.Consul.Reachable = o.consul, cs.Reachable()
	if !s.Consul.Reachable {
		s.Consul.LastError = cs.LastError
	}
	svcs := map[string]supervisor.ServiceStatus{}
	for _, v := range st.Services {
		svcs[v.Name] = v
		s.Services = append(s.Services, telemetry.ServiceStatus{ID: v.ID, Name: v.Name, Address: v.Address, Port: v.Port,
			Health: v.Health, Maintenance: v.Maintenance, Registered: v.Registered})
	}
	for _, j := range st.Jobs {
		js := telemetry.JobStatus{Name: j.Name, State: j.State, Running: j.State == supervisor.StateRunning, PID: j.Pid,
			Starts: uint64(j.Starts), Restarts: uint64(j.Restarts),
			Exits: telemetry.ExitCounts{Success: uint64(j.ExitsSuccess), Failure: uint64(j.ExitsFailure), Signal: uint64(j.ExitsSignal)}}
		if j.LastExit >= 0 {
			js.LastExit = &telemetry.ExitStatus{Code: j.LastExit}
		}
		if j.Health != "" || j.HealthRuns > 0 {
			h := &telemetry.HealthStatus{Status: j.Health, Runs: uint64(j.HealthRuns), Failures: uint64(j.HealthFailures)}
			if h.Status == "" {
				h.Status = "unknown"
			}
			if v, ok := svcs[j.Name]; ok {
				h.TTLUpdates, h.Reregistrations = uint64(v.TTLUpdates), uint64(v.Reregistrations)
			}
			js.Health = h
		}
		s.Jobs = append(s.Jobs, js)
	}
	if o.ctl != nil {
		s.Control.Socket = o.ctl.Path()
		for _, r := range o.ctl.Requests() {
			s.Control.Requests = append(s.Control.Requests, telemetry.ControlRequestCount{Path: r.Path, Code: r.Code, Count: r.Count})
		}
	}
	s.Watches = telemetry.Watches(o.sup.Watches())
	stats := make([]telemetry.TemplateStatus, 0, len(st.Templates))
	for _, t := range st.Templates {
		ts := telemetry.Templates([]render.Stats{t.Stats})[0]
		ts.Source, ts.Destination = t.Source, t.Destination
		stats = append(stats, ts)
	}
	s.Templates = stats
	return s
}

// The control.Controller methods: the supervisor's, with bounds so that a
// command never hangs on an unreachable Consul.

func (o *observer) Reload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return o.sup.Reload(ctx)
}

func (o *observer) SetMaintenance(ctx context.Context, on bool) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := o.sup.SetMaintenance(ctx, on)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w (autopilot keeps applying it)", err)
	}
	return err
}

func (o *observer) PutEnv(key, value string) { o.sup.PutEnv(key, value) }

func (o *observer) PutMetric(name string, value float64) error { return o.metrics.Put(name, value) }

func (o *observer) Status() telemetry.Snapshot { return o.Snapshot() }
