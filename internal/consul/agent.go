package consul

import (
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
// heartbeats and maintenance. It is safe for concurrent use.
type Agent struct {
	client *api.Client
}

// NewAgent returns an Agent that talks to client's agent.
func NewAgent(client *api.Client) *Agent { return &Agent{client: client} }

// Register registers s and its TTL check in one call.
func (a *Agent) Register(s Service) error {
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
	if err := a.client.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{}); err != nil {
		return fmt.Errorf("register service %s: %w", s.ID, err)
	}
	// The check's initial output is set by a first TTL update; Status in the
	// registration already made it passing or critical atomically.
	if s.Output != "" {
		_ = a.UpdateTTL(s.ID, s.Status, s.Output)
	}
	return nil
}

// UpdateTTL reports the service's health: status is api.HealthPassing,
// api.HealthWarning or api.HealthCritical. An error wrapping ErrNotRegistered
// means the agent no longer knows the check.
func (a *Agent) UpdateTTL(serviceID, status, output string) error {
	err := a.client.Agent().UpdateTTL(CheckID(serviceID), truncate(output), status)
	if err != nil {
		return fmt.Errorf("update TTL of %s: %w", serviceID, classify(err))
	}
	return nil
}

// Deregister removes the service (and its check).
func (a *Agent) Deregister(serviceID string) error {
	if err := a.client.Agent().ServiceDeregister(serviceID); err != nil {
		return fmt.Errorf("deregister service %s: %w", serviceID, classify(err))
	}
	return nil
}

// EnableMaintenance puts the service into maintenance mode: it leaves the
// healthy set so that proxies drain it.
func (a *Agent) EnableMaintenance(serviceID, reason string) error {
	if err := a.client.Agent().EnableServiceMaintenance(serviceID, reason); err != nil {
		return fmt.Errorf("enable maintenance of %s: %w", serviceID, classify(err))
	}
	return nil
}

// DisableMaintenance takes the service out of maintenance mode.
func (a *Agent) DisableMaintenance(serviceID string) error {
	if err := a.client.Agent().DisableServiceMaintenance(serviceID); err != nil {
		return fmt.Errorf("disable maintenance of %s: %w", serviceID, classify(err))
	}
	return nil
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
