package telemetry

import (
	"github.com/autopilot/autopilot/render"
)

// Templates turns render.Runner.Stats into the templates of a Snapshot.
func Templates(stats []render.Stats) []TemplateStatus {
	out := make([]TemplateStatus, len(stats))
	for i, s := range stats {
		out[i] = TemplateStatus{
			Source:         s.Source,
			Destination:    s.Destination,
			Renders:        uint64(s.Renders),
			Writes:         uint64(s.Writes),
			Unchanged:      uint64(s.Unchanged),
			CheckFailures:  uint64(s.CheckFailures),
			Reloads:        uint64(s.Commands),
			ReloadFailures: uint64(s.ReloadFailures),
			Rollbacks:      uint64(s.Rollbacks),
			RenderTime:     Durations{Count: uint64(s.Renders), Seconds: s.RenderTime.Seconds()},
			LastWrite:      s.LastWrite,
			MissingSince:   s.MissingSince,
			Missing:        s.Missing,
			LastCheck:      outcome(s.LastCheck),
			LastReload:     outcome(s.LastReload),
		}
	}
	return out
}

func outcome(o *render.Outcome) *Outcome {
	if o == nil {
		return nil
	}
	return &Outcome{At: o.At, OK: o.OK, Output: o.Output}
}
