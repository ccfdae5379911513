package supervisor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/consul"
)

// Timing of the reconciliation with the agent.
const (
	backoffMin = 250 * time.Millisecond
	backoffMax = 10 * time.Second
	// verifyEvery is how often a registration compares the agent's view
	// (registered? in maintenance?) with what autopilot wants, besides
	// after every reload, maintenance change and agent error.
	verifyEvery = 10 * time.Second
	// deregisterTimeout bounds each deregistration at shutdown and reload.
	deregisterTimeout = 5 * time.Second
	maintReason       = "autopilot: maintenance"
)

// service is a job's Consul registration, kept as desired state: the
// service is registered once healthy (or at once with an initial status),
// its TTL check carries every health result, and its maintenance follows
// the supervisor's. Its goroutine alone talks to the agent, never under a
// lock; it re-checks the agent's view every verifyEvery and after every
// error, and logs each drift it repairs.
type service struct {
	def  consul.Service // ID, Name, Address, Port, Tags, TTL, DeregisterCriticalAfter
	init string         // initial status: register before the first check
	s    *Supervisor
	log  zerolog.Logger
	wake chan struct{}

	mu      sync.Mutex
	status  string // latest health result ("" none yet)
	output  string
	fresh   bool // status not sent yet
	verify  bool // compare with the agent at the next pass
	st      ServiceStatus
	applied applied
}

// applied is what the agent was last confirmed to hold; it survives a
// reload with the registration's ID.
type applied struct {
	registered bool
	def        string // definition registered (tags, address…), to re-register on change
	maint      bool
}

func (v *service) report(status, output string) {
	v.mu.Lock()
	v.status, v.output, v.fresh = status, output, true
	v.mu.Unlock()
	v.poke(false)
}

// poke wakes the goroutine; verify asks it to compare with the agent.
func (v *service) poke(verify bool) {
	if verify {
		v.mu.Lock()
		v.verify = true
		v.mu.Unlock()
	}
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

func defKey(d consul.Service) string {
	return fmt.Sprintf("%s|%s|%s|%d|%q|%s|%s", d.ID, d.Name, d.Address, d.Port, d.Tags, d.TTL, d.DeregisterCriticalAfter)
}

func (v *service) run(ctx context.Context) {
	retry := timer{}
	defer retry.stop()
	verify := time.NewTicker(v.s.opts.VerifyInterval)
	defer verify.Stop()
	failures := 0
	v.poke(true)
	for {
		select {
		case <-ctx.Done():
			return
		case <-v.wake:
		case <-verify.C:
			v.poke(true)
			continue
		case <-retry.c():
			retry.stop()
			v.mu.Lock()
			v.verify = true
			v.mu.Unlock()
		}
		if err := v.reconcile(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			v.mu.Lock()
			v.st.AgentErrors++
			v.verify = true // after an error, trust nothing we believed
			v.mu.Unlock()
			d := jitter(backoffMin<<min(failures-1, 6), backoffMax)
			v.log.Warn().Err(err).Dur("retry", d).Msg("consul agent")
			retry.arm(d)
		} else {
			failures = 0
		}
	}
}

// reconcile brings the agent to the desired state. It holds no lock
// across agent calls.
func (v *service) reconcile(ctx context.Context) error {
	v.mu.Lock()
	status, output, fresh, verify, ap := v.status, v.output, v.fresh, v.verify, v.applied
	v.fresh, v.verify = false, false
	v.mu.Unlock()
	a := v.s.agent
	wantMaint := v.s.maint.Load()
	def := v.def
	key := defKey(def)
	undo := func() {
		v.mu.Lock()
		if fresh && !v.fresh {
			v.fresh = true
		}
		v.mu.Unlock()
	}
	register := func(why string) error {
		st := status
		if st == "" {
			st = v.init
		}
		d := def
		d.Status, d.Output = st, output
		if err := a.Register(ctx, d); err != nil {
			undo()
			return err
		}
		v.mu.Lock()
		v.applied = applied{registered: true, def: key}
		v.st.Registrations++
		v.mu.Unlock()
		ap = applied{registered: true, def: key}
		v.log.Info().Str("address", def.Address).Int("port", def.Port).Str("status", st).Str("why", why).Msg("registered")
		fresh, verify = false, true
		return nil
	}

	if !ap.registered {
		if status != api.HealthPassing && v.init == "" {
			return nil // registered only once healthy
		}
		if err := register("first"); err != nil {
			return err
		}
	} else if ap.def != key {
		if err := register("definition changed"); err != nil {
			return err
		}
	}
	if fresh && status != "" {
		err := a.UpdateTTL(ctx, def.ID, status, output)
		if errors.Is(err, consul.ErrNotRegistered) {
			v.log.Warn().Err(err).Msg("drift repaired: the agent lost the registration, registering again")
			v.count(func(s *ServiceStatus) { s.DriftRepairs++ })
			return register("lost by the agent")
		}
		if err != nil {
			undo()
			return err
		}
		v.count(func(s *ServiceStatus) { s.TTLUpdates++ })
	}
	if !verify {
		return nil
	}
	state, err := v.s.serviceState(ctx, def.ID)
	if err != nil {
		return err
	}
	if !state.exists {
		v.log.Warn().Msg("drift repaired: the agent does not have the registration, registering again")
		v.count(func(s *ServiceStatus) { s.DriftRepairs++ })
		if err := register("missing at the agent"); err != nil {
			return err
		}
		state.maint = false
	}
	if state.maint != wantMaint {
		if ap.maint == wantMaint && ap.registered {
			v.log.Warn().Bool("agent", state.maint).Bool("want", wantMaint).Msg("drift repaired: maintenance")
			v.count(func(s *ServiceStatus) { s.DriftRepairs++ })
		}
		if wantMaint {
			err = a.EnableMaintenance(ctx, def.ID, maintReason)
		} else {
			err = a.DisableMaintenance(ctx, def.ID)
		}
		if err != nil {
			return err
		}
		v.log.Info().Bool("maintenance", wantMaint).Msg("maintenance")
	}
	v.mu.Lock()
	v.applied.maint = wantMaint
	v.mu.Unlock()
	if v.s.maint.Load() != wantMaint {
		v.poke(true) // changed meanwhile
	}
	return nil
}

func (v *service) count(f func(*ServiceStatus)) {
	v.mu.Lock()
	f(&v.st)
	v.mu.Unlock()
}

// deregister removes the registration, within deregisterTimeout.
func (v *service) deregister(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, deregisterTimeout)
	defer cancel()
	err := v.s.agent.Deregister(ctx, v.def.ID)
	if err != nil && !errors.Is(err, consul.ErrNotRegistered) {
		v.log.Warn().Err(err).Msg("deregister")
		return
	}
	v.mu.Lock()
	v.applied = applied{}
	v.mu.Unlock()
	v.log.Info().Msg("deregistered")
}

func (v *service) snapshot() ServiceStatus {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := v.st
	st.ID, st.Name, st.Address, st.Port = v.def.ID, v.def.Name, v.def.Address, v.def.Port
	st.Tags = slices.Clone(v.def.Tags)
	st.Registered = v.applied.registered
	st.Maintenance = v.applied.maint && v.applied.registered
	st.Health = v.status
	return st
}

// jitter returns a random duration in [d/2, d], capped at limit.
func jitter(d, limit time.Duration) time.Duration {
	d = min(d, limit)
	return d/2 + rand.N(d/2+1)
}

// agentState is the agent's view of one registration.
type agentState struct {
	exists bool
	maint  bool
}

// serviceState reads the agent's view of service id: registered, and in
// maintenance.
func (s *Supervisor) serviceState(ctx context.Context, id string) (agentState, error) {
	ctx, cancel := context.WithTimeout(ctx, consul.DefaultCallTimeout)
	defer cancel()
	_, info, err := s.client.API().Agent().AgentHealthServiceByIDOpts(id, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return agentState{}, fmt.Errorf("read service %s from the agent: %w", id, err)
	}
	if info == nil || info.Service == nil {
		return agentState{}, nil
	}
	st := agentState{exists: true}
	for _, c := range info.Checks {
		if strings.HasPrefix(c.CheckID, "_service_maintenance:") {
			st.maint = true
		}
	}
	return st, nil
}
