package supervisor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/consul"
	"github.com/autopilot/autopilot/internal/proc"
)

// Backoff bounds for retrying agent calls after errors.
const (
	backoffMin = 250 * time.Millisecond
	backoffMax = 10 * time.Second
)

// service keeps one configured service registered and its TTL check true.
// Its run loop owns the health status; mu guards what the signal handler
// (maintenance) and shutdown (deregistration) share with it.
type service struct {
	cfg    Service
	id     string
	addr   string
	runner *proc.Runner
	agent  *consul.Agent
	log    zerolog.Logger
	ready  *readiness // told about every passing check

	mu         sync.Mutex
	registered bool
	maint      bool
}

// newServices resolves the services' IDs and addresses. It changes
// nothing: a reload may still reject the config (see exportAddresses).
func (s *Supervisor) newServices(cfg *Config) ([]*service, error) {
	host, _ := os.Hostname()
	var out []*service
	for _, sc := range cfg.Services {
		addr, err := ResolveAddress(sc.Interfaces)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", sc.Name, err)
		}
		id := sc.ID
		if id == "" {
			id = sc.Name + "-" + host + "-" + strconv.Itoa(sc.Port)
		}
		out = append(out, &service{
			cfg: sc, id: id, addr: addr, runner: s.runner, agent: s.agent, maint: s.maint,
			log: s.log.With().Str("service", id).Logger(),
		})
	}
	return out, nil
}

// exportAddresses gives hooks, handlers and the app the services'
// addresses as AUTOPILOT_<SERVICE>_IP, once their config is accepted.
func (s *Supervisor) exportAddresses(services []*service) {
	for _, v := range services {
		s.runner.SetEnv(EnvName(v.cfg.Name), v.addr)
	}
}

// watchReadiness points services at the readiness their backends wait
// for: the current one once it is done, else a fresh one for these services
// (a reload before the app was ready must not wait for removed services).
func (s *Supervisor) watchReadiness(services []*service) {
	if s.ready == nil || !isClosed(s.ready.Done()) {
		ids := make([]string, len(services))
		for i, v := range services {
			ids[i] = v.id
		}
		s.ready = newReadiness(ids)
	}
	for _, v := range services {
		v.ready = s.ready
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// run checks health every poll and reports it to Consul until ctx ends.
// The first passing check registers the service (with its check, passing);
// a failed or timed-out check marks it critical at once; a heartbeat the
// agent refuses because it lost the registration re-registers at once.
// Agent errors are retried with jittered backoff, between polls.
func (v *service) run(ctx context.Context) {
	poll := time.NewTimer(0)
	defer poll.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var status, output string
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			start := time.Now()
			status, output = v.check(ctx)
			if ctx.Err() != nil {
				return
			}
			poll.Reset(max(0, v.cfg.Poll.D()-time.Since(start)))
			failures = 0
			if status == api.HealthPassing && v.ready != nil {
				v.ready.pass(v.id)
			}
		case <-retry.C:
		}
		if status == "" {
			continue
		}
		if err := v.report(ctx, status, output); err != nil {
			failures++
			d := jitter(backoffMin<<min(failures-1, 6), backoffMax)
			v.log.Warn().Err(err).Dur("retry", d).Msg("consul agent")
			retry.Reset(d)
		} else {
			retry.Stop()
		}
	}
}

// check runs the health command with its timeout.
func (v *service) check(ctx context.Context) (status, output string) {
	hctx, cancel := context.WithTimeout(ctx, v.cfg.Timeout.D())
	defer cancel()
	out, err := v.runner.Output(hctx, v.cfg.Health)
	if err == nil {
		v.log.Debug().Msg("health check passed")
		return api.HealthPassing, strings.TrimSpace(string(out))
	}
	if ctx.Err() != nil {
		return "", ""
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("health check timed out after %s: %w", v.cfg.Timeout.D(), err)
	}
	v.log.Warn().Err(err).Str("output", tail(string(out), 512)).Msg("health check failed")
	return api.HealthCritical, strings.TrimSpace(err.Error() + "\n" + string(out))
}

// report sends status to the agent, registering the service first if it
// is passing and not registered yet, or again if the agent lost it.
func (v *service) report(ctx context.Context, status, output string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.registered {
		if status != api.HealthPassing {
			return nil // registered only once healthy
		}
		return v.register(ctx, status, output)
	}
	err := v.agent.UpdateTTL(ctx, v.id, status, output)
	if errors.Is(err, consul.ErrNotRegistered) {
		v.log.Warn().Err(err).Msg("the agent lost the registration: registering again")
		return v.register(ctx, status, output)
	}
	return err
}

// register must be called with mu held.
func (v *service) register(ctx context.Context, status, output string) error {
	err := v.agent.Register(ctx, consul.Service{
		ID: v.id, Name: v.cfg.Name, Address: v.addr, Port: v.cfg.Port, Tags: v.cfg.Tags,
		TTL: v.cfg.TTL.D(), DeregisterCriticalAfter: v.cfg.DeregisterCriticalServiceAfter.D(),
		Status: status, Output: output,
	})
	if err != nil {
		return err
	}
	v.registered = true
	v.log.Info().Str("address", v.addr).Int("port", v.cfg.Port).Str("status", status).Msg("registered")
	if v.maint {
		if err := v.agent.EnableMaintenance(ctx, v.id, "autopilot: SIGUSR1"); err != nil {
			return err
		}
	}
	return nil
}

// setMaintenance turns maintenance on or off; a service not registered yet
// enters it when it registers.
func (v *service) setMaintenance(on bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.maint = on
	if !v.registered {
		return
	}
	var err error
	if on {
		err = v.agent.EnableMaintenance(context.Background(), v.id, "autopilot: SIGUSR1")
	} else {
		err = v.agent.DisableMaintenance(context.Background(), v.id)
	}
	if err != nil {
		v.log.Error().Err(err).Bool("maintenance", on).Msg("maintenance")
		return
	}
	v.log.Info().Bool("maintenance", on).Msg("maintenance")
}

// deregister removes the service from the agent, giving up after timeout
// so that an unreachable agent cannot hold up the shutdown.
func (v *service) deregister(timeout time.Duration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := v.agent.Deregister(ctx, v.id)
	if err != nil && !errors.Is(err, consul.ErrNotRegistered) {
		v.log.Warn().Err(err).Dur("timeout", timeout).Msg("deregister")
		return
	}
	v.registered = false
	v.log.Info().Msg("deregistered")
}

func (s *Supervisor) deregisterAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, v := range s.services {
		wg.Add(1)
		go func() { defer wg.Done(); v.deregister(5 * time.Second) }()
	}
	wg.Wait()
}

func (s *Supervisor) toggleMaintenance() {
	s.maint = !s.maint
	for _, v := range s.services {
		v.setMaintenance(s.maint)
	}
}

// jitter returns a random duration in [d/2, d], capped at limit.
func jitter(d, limit time.Duration) time.Duration {
	d = min(d, limit)
	return d/2 + rand.N(d/2+1)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
