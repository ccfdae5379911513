package supervisor

import "github.com/autopilot/autopilot/internal/consul"

// ConsulClient is the supervisor's Consul client. The telemetry endpoint
// registers itself through it, so that every request autopilot sends is
// counted in one client's stats.
func (s *Supervisor) ConsulClient() *consul.Client { return s.client }

// Watches describes every unique query the supervisor's shared watcher
// follows (jobs' watches and templates alike), for metrics and /status.
func (s *Supervisor) Watches() []consul.WatchInfo { return s.watcher.Watches() }

// LastReloadError is why the most recent reload (SIGHUP or Reload) was
// refused, "" when it was accepted or none was tried.
func (s *Supervisor) LastReloadError() string {
	if p := s.reloadErr.Load(); p != nil {
		return *p
	}
	return ""
}

func (s *Supervisor) noteReload(err error) {
	if err == nil {
		s.reloadErr.Store(nil)
		return
	}
	msg := err.Error()
	s.reloadErr.Store(&msg)
}
