package supervisor

import (
	"sync/atomic"

	"github.com/rs/zerolog"
)

// logLevel is the supervisor's log level, held in one place so that a
// reload can change it: every logger of the supervisor (services, backends,
// templates, the watcher and the reaper) derives from the one Run builds,
// which carries logLevel as a hook that drops events below the level.
type logLevel struct {
	min atomic.Int32 // a zerolog.Level
}

// withLogLevel returns log with its level taken over by a logLevel
// (starting at log's own level), and that logLevel.
func withLogLevel(log zerolog.Logger) (zerolog.Logger, *logLevel) {
	l := &logLevel{}
	lvl := log.GetLevel()
	l.min.Store(int32(lvl))
	if lvl == zerolog.Disabled {
		return log, l // nowhere to write: a reload cannot change that
	}
	// The logger lets everything a config can ask for through to the hook.
	return log.Level(min(lvl, zerolog.DebugLevel)).Hook(l), l
}

// Run implements zerolog.Hook.
func (l *logLevel) Run(e *zerolog.Event, level zerolog.Level, _ string) {
	if level < zerolog.Level(l.min.Load()) {
		e.Discard()
	}
}

// set changes the level; it is safe while other goroutines log.
func (l *logLevel) set(level zerolog.Level) { l.min.Store(int32(level)) }

func (l *logLevel) get() zerolog.Level { return zerolog.Level(l.min.Load()) }
