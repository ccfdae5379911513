package supervisor

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/autopilot/autopilot/internal/proc"
)

// notifySignals subscribes to every signal the supervisor handles or
// forwards. SIGCHLD is left to the Reaper.
func notifySignals() (<-chan os.Signal, func()) {
	ch := make(chan os.Signal, 32)
	signal.Notify(ch, append(proc.HandledSignals(), proc.ForwardableSignals()...)...)
	return ch, func() { signal.Stop(ch) }
}

// handleSignal acts on sig and reports whether it asks for a shutdown:
// SIGTERM and SIGINT shut down, SIGHUP reloads the config, SIGUSR1 toggles
// maintenance, anything else goes to the app's process group.
func (s *Supervisor) handleSignal(sig syscall.Signal) (shutdown bool) {
	switch sig {
	case syscall.SIGTERM, syscall.SIGINT:
		return true
	case syscall.SIGHUP:
		s.reload()
	case syscall.SIGUSR1:
		s.toggleMaintenance()
	default:
		pid := s.pid()
		if pid == 0 {
			s.log.Debug().Stringer("signal", sig).Msg("no app to forward the signal to")
			return false
		}
		s.log.Debug().Stringer("signal", sig).Int("pid", pid).Msg("forwarding signal")
		if err := proc.SignalGroup(pid, sig); err != nil {
			s.log.Warn().Err(err).Stringer("signal", sig).Msg("forwarding signal")
		}
	}
	return false
}
