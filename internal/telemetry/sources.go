package telemetry

import (
	"github.com/autopilot/autopilot/internal/consul"
	"github.com/autopilot/autopilot/render"
)

// Templates turns render.Runner.Stats into the templates of a Snapshot.
func Templates(stats []render.Stats) []TemplateStatus {
	out := make([]TemplateStatus, len(stats))
	for i, s := range stats {
		out[i] = TemplateStatus{
			Source:           s.Source,
			Destination:      s.Destination,
			Renders:          uint64(s.Renders),
			Writes:           uint64(s.Writes),
			Unchanged:        uint64(s.Unchanged),
			CheckFailures:    uint64(s.CheckFailures),
			Reloads:          uint64(s.Commands),
			ReloadFailures:   uint64(s.ReloadFailures),
			Rollbacks:        uint64(s.Rollbacks),
			WriteErrors:      uint64(s.WriteErrors),
			RuntimeApplied:   uint64(s.RuntimeApplied),
			RuntimeFallbacks: uint64(s.RuntimeFallbacks),
			RenderTime:       Durations{Count: uint64(s.Renders), Seconds: s.RenderTime.Seconds()},
			LastWrite:        s.LastWrite,
			MissingSince:     s.MissingSince,
			Missing:          s.Missing,
			LastCheck:        outcome(s.LastCheck),
			LastReload:       outcome(s.LastReload),
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

// Consul turns the Consul client's counters into a Snapshot's Consul part
// (Address, Reachable and LastError are the caller's to fill).
func Consul(st consul.ClientStats) ConsulStatus {
	c := ConsulStatus{
		IndexResets: uint64(st.IndexResets),
		EmptyHeld:   uint64(st.EmptyHeld),
		BlockingLatency: Histogram{
			Count:   uint64(st.BlockingLatency.Count),
			Seconds: st.BlockingLatency.Sum.Seconds(),
		},
	}
	for _, r := range st.Requests {
		c.Requests = append(c.Requests, RequestCount{Endpoint: r.Endpoint, Outcome: r.Outcome, Count: uint64(r.Count)})
	}
	for i, n := range st.BlockingLatency.Counts {
		if i < len(consul.LatencyBuckets) {
			c.BlockingLatency.Buckets = append(c.BlockingLatency.Buckets, Bucket{UpperBound: consul.LatencyBuckets[i].Seconds(), Count: uint64(n)})
		}
	}
	return c
}

// Watches turns the watcher's per-query state into a Snapshot's watches.
func Watches(ws []consul.WatchInfo) []WatchStatus {
	out := make([]WatchStatus, len(ws))
	for i, w := range ws {
		out[i] = WatchStatus{
			Query:       w.Query,
			Instances:   w.Instances,
			LastChange:  w.LastChange,
			Requests:    uint64(w.Requests),
			Errors:      uint64(w.Errors),
			IndexResets: uint64(w.IndexResets),
			EmptyHeld:   uint64(w.EmptyHeld),
			Latency:     Durations{Count: uint64(w.Answered), Seconds: w.Latency.Seconds()},
		}
		if w.Err != nil {
			out[i].LastError = w.Err.Error()
		}
	}
	return out
}
