package supervisor

import (
	"context"

	"github.com/autopilot/autopilot/internal/consul"
)

// agentAPI is what the supervisor asks of the local Consul agent
// (consul.Agent): every call takes a context and ends within the client's
// call timeout, so no caller can hang on a hung or partitioned agent.
type agentAPI interface {
	Register(ctx context.Context, s consul.Service) error
	UpdateTTL(ctx context.Context, id, status, output string) error
	Deregister(ctx context.Context, id string) error
	EnableMaintenance(ctx context.Context, id, reason string) error
	DisableMaintenance(ctx context.Context, id string) error
}
