package consul

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"
)

// ErrNotRegistered means the agent does not know the service or check a call
// named: typically the agent restarted and lost its local state. The caller
// re-registers.
var ErrNotRegistered = errors.New("not registered with the agent")

// Service is what the supervisor registers for one service: the service and
// its TTL check, sent together in one call so that Consul never holds a
// service without its check (which it would report as healthy).
type Service struct {
	ID      string
	Name    string
	Address string
	Port    int
	Tags    []string
	// TTL is the check's time to live: it turns critical when no heartbeat
	// arrives within it.
	TTL time.Duration
	// DeregisterCriticalAfter removes the service once its check has been
	// critical that long (0 = never).
	DeregisterCriticalAfter time.Duration
	// Status is the check's initial status ("passing" once the first health
	// check passed).
	Status string
	// Output is the initial check output.
	Output string
}

// CheckID is the ID of the TTL check registered with service id.
func CheckID(serviceID string) string { return "service:" + serviceID }

// Agent makes the local-agent calls of the supervisor: registration, TTL
// heartbeats and maintenance. Every call ends within the client's
// CallTimeout (or earlier, when ctx ends): a hung agent yields an error
// wrapping context.DeadlineExceeded, never a stuck caller. It holds no
// lock; it is safe for concurrent use.
type Agent struct {
	c *Client
}

// NewAgent returns an Agent that talks to client's agent.
func NewAgent(client *Client) *Agent { return &Agent{c: client} }

// call runs fn with ctx bounded by CallTimeout and counts it under endpoint.
func (a *Agent) call(ctx context.Context, endpoint string, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, a.c.opts.CallTimeout)
	defer cancel()
	start := time.Now()
	err := a.c.explain(fn(ctx))
	if a.c.stats.request(endpoint, err, false, time.Since(start)) == OutcomeTimeout {
		err = fmt.Errorf("consul agent did not answer within %s: %w", a.c.opts.CallTimeout, err)
	}
	return err
}

// Register registers s and its TTL check in one call.
func (a *Agent) Register(ctx context.Context, s Service) error {
	check := &api.AgentServiceCheck{
		CheckID: CheckID(s.ID),
		Name:    s.Name + " health",
		TTL:     s.TTL.String(),
		Status:  s.Status,
		Notes:   "TTL heartbeat from autopilot",
	}
	if s.DeregisterCriticalAfter > 0 {
		check.DeregisterCriticalServiceAfter = s.DeregisterCriticalAfter.String()
	}
	reg := &api.AgentServiceRegistration{
		ID:      s.ID,
		Name:    s.Name,
		Address: s.Address,
		Port:    s.Port,
		Tags:    s.Tags,
		Check:   check,
	}
	err := a.call(ctx, EndpointAgentRegister, func(ctx context.Context) error {
		return a.c.api.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{}.WithContext(ctx))
	})
	if err != nil {
		return fmt.Errorf("register service %s: %w", s.ID, err)
	}
	// The check's initial output is set by a first TTL update; Status in the
	// registration already made it passing or critical atomically.
	if s.Output != "" {
		_ = a.UpdateTTL(ctx, s.ID, s.Status, s.Output)
	}
	return nil
}

// UpdateTTL reports the service's health: status is api.HealthPassing,
// api.HealthWarning or api.HealthCritical. An error wrapping ErrNotRegistered
// means the agent no longer knows the check.
func (a *Agent) UpdateTTL(ctx context.Context, serviceID, status, output string) error {
	err := a.call(ctx, EndpointAgentTTL, func(ctx context.Context) error {
		return a.c.api.Agent().UpdateTTLOpts(CheckID(serviceID), truncate(output), status, (&api.QueryOptions{}).WithContext(ctx))
	})
	if err != nil {
		return fmt.Errorf("update TTL of %s: %w", serviceID, classify(err))
	}
	return nil
}

// Deregister removes the service (and its check).
func (a *Agent) Deregister(ctx context.Context, serviceID string) error {
	err := a.call(ctx, EndpointAgentDeregister, func(ctx context.Context) error {
		return a.c.api.Agent().ServiceDeregisterOpts(serviceID, (&api.QueryOptions{}).WithContext(ctx))
	})
	if err != nil {
		return fmt.Errorf("deregister service %s: %w", serviceID, classify(err))
	}
	return nil
}

// EnableMaintenance puts the service into maintenance mode: it leaves the
// healthy set so that proxies drain it.
func (a *Agent) EnableMaintenance(ctx context.Context, serviceID, reason string) error {
	err := a.call(ctx, EndpointAgentMaint, func(ctx context.Context) error {
		return a.c.api.Agent().EnableServiceMaintenanceOpts(serviceID, reason, (&api.QueryOptions{}).WithContext(ctx))
	})
	if err != nil {
		return fmt.Errorf("enable maintenance of %s: %w", serviceID, classify(err))
	}
	return nil
}

// DisableMaintenance takes the service out of maintenance mode.
func (a *Agent) DisableMaintenance(ctx context.Context, serviceID string) error {
	err := a.call(ctx, EndpointAgentMaint, func(ctx context.Context) error {
		return a.c.api.Agent().DisableServiceMaintenanceOpts(serviceID, (&api.QueryOptions{}).WithContext(ctx))
	})
	if err != nil {
		return fmt.Errorf("disable maintenance of %s: %w", serviceID, classify(err))
	}
	return nil
}

// NodeName returns the name of the agent's node.
func (a *Agent) NodeName(ctx context.Context) (string, error) {
	var self struct{ Config struct{ NodeName string } }
	err := a.call(ctx, EndpointAgentSelf, func(ctx context.Context) error {
		_, err := a.c.api.Raw().Query("/v1/agent/self", &self, (&api.QueryOptions{}).WithContext(ctx))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("agent self: %w", err)
	}
	if self.Config.NodeName == "" {
		return "", errors.New("agent self: no node name in the answer")
	}
	return self.Config.NodeName, nil
}

// classify turns the agent's "unknown check/service" answers into
// ErrNotRegistered, keeping the original error in the chain.
func classify(err error) error {
	var se api.StatusError
	msg := err.Error()
	notFound := errors.As(err, &se) && se.Code == 404
	if notFound || strings.Contains(msg, "does not have associated TTL") ||
		strings.Contains(msg, "Unknown check") || strings.Contains(msg, "Unknown service") ||
		strings.Contains(msg, "unknown check") || strings.Contains(msg, "unknown service") ||
		strings.Contains(msg, "CheckID") && strings.Contains(msg, "not found") {
		return fmt.Errorf("%w: %w", ErrNotRegistered, err)
	}
	return err
}

// truncate keeps check output within what Consul shows usefully.
func truncate(s string) string {
	const max = 4 << 10
	if len(s) > max {
		return s[len(s)-max:]
	}
	return s
}
