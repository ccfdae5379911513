package supervisor

import "github.com/autopilot/autopilot/internal/consul"

// ConsulClient is the supervisor's Consul client. The telemetry endpoint
// registers itself through it, so that every request autopilot sends is
// counted in one client's stats.
func (s *Supervisor) ConsulClient() *consul.Client { return s.client }

// Watches describes every unique query the supervisor's shared watcher
// follows (jobs' watches and templates alike), for metrics and /status.
func (s *Supervisor) Watches() []consul.WatchInfo { return s.watcher.Watches() }
