package telemetry

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/consul"
)

// Registration of the telemetry endpoint in Consul, as ContainerPilot 3
// registered its own: a service with a TTL check fed by a heartbeat, so that
// Prometheus' Consul service discovery finds every instance's /metrics.
const (
	// ServiceTTL and Heartbeat are ContainerPilot 3's fixed values.
	ServiceTTL = 15 * time.Second
	Heartbeat  = 5 * time.Second
)

// Registration keeps the telemetry service registered and passing.
type Registration struct {
	Agent   *consul.Agent
	Service consul.Service // TTL and Status are set by Run
	Log     zerolog.Logger
}

// Run registers the service, heartbeats it every Heartbeat, registers it
// again when the agent lost it, and deregisters it when ctx ends (within 2
// seconds, so a hung agent adds little to the shutdown). Consul being down
// delays nothing else: Run retries with jittered backoff in its own
// goroutine.
func (r *Registration) Run(ctx context.Context) {
	svc := r.Service
	svc.TTL, svc.Status, svc.Output = ServiceTTL, api.HealthPassing, "telemetry endpoint serving"
	log := r.Log.With().Str("service", svc.ID).Logger()
	registered := false
	failures := 0
	defer func() {
		if !registered {
			return
		}
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := r.Agent.Deregister(dctx, svc.ID); err != nil {
			log.Warn().Err(err).Msg("telemetry: deregister failed")
		}
	}()
	for {
		var err error
		if !registered {
			if err = r.Agent.Register(ctx, svc); err == nil {
				registered = true
				log.Info().Str("name", svc.Name).Int("port", svc.Port).Msg("telemetry: registered in Consul")
			}
		} else if err = r.Agent.UpdateTTL(ctx, svc.ID, api.HealthPassing, "telemetry endpoint serving"); errors.Is(err, consul.ErrNotRegistered) {
			registered = false
			log.Info().Msg("telemetry: the agent lost the registration; registering again")
			continue
		}
		wait := Heartbeat
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			if failures == 1 {
				log.Warn().Err(err).Msg("telemetry: Consul registration failed; retrying")
			}
			wait = backoff(failures)
		} else if failures > 0 {
			failures = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// backoff is a jittered exponential delay, 250ms to the heartbeat.
func backoff(n int) time.Duration {
	d := 250 * time.Millisecond << min(n-1, 5)
	d = min(d, Heartbeat)
	return d/2 + rand.N(d/2+1)
}
