package supervisor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/autopilot/autopilot/supervisor/config"
)

// Bounds of the quick re-checks of a job that has never been healthy.
const (
	firstCheckRetryMin = 10 * time.Millisecond
	// firstCheckDivisor: while never healthy, the next check comes after
	// a tenth of the time since checking began (at least
	// firstCheckRetryMin, at most the interval), so a fresh app is seen
	// healthy within about 10% of its start-up time (100 ms for one that
	// takes a second to listen) while a never-healthy one is checked less
	// and less often, down to the configured interval.
	firstCheckDivisor = 10
)

// healthCheck runs a job's health command every interval and publishes the
// job's healthy and unhealthy events on each change of status; a job with
// a registration also gets every result, as its TTL heartbeat.
type healthCheck struct {
	j   *job
	cfg config.Health

	mu       sync.Mutex
	runs     int
	failures int
}

func (h *healthCheck) counts() (runs, failures int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.runs, h.failures
}

func (h *healthCheck) run(ctx context.Context) {
	j := h.j
	// A job's health is checked once its process has started; a job
	// without a process (a registration for a process another job runs)
	// once the Main job has started, if there is one.
	owner := j
	if j.cfg.Exec.IsZero() {
		owner = j.g.main
	}
	if owner != nil {
		r, _ := owner.snapshot()
		select {
		case <-r.started:
		case <-ctx.Done():
			return
		}
	}
	interval := max(h.cfg.Interval, time.Millisecond)
	timeout := h.cfg.Timeout
	if timeout <= 0 {
		timeout = interval
	}
	began := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		status, output := h.check(ctx, timeout)
		if ctx.Err() != nil {
			return
		}
		h.mu.Lock()
		h.runs++
		if status != api.HealthPassing {
			h.failures++
		}
		h.mu.Unlock()
		var publish config.Event
		var ever bool
		j.update(func(r *jobRun) {
			if status != r.health {
				r.health = status
				publish = config.Unhealthy
				if status == api.HealthPassing {
					publish = config.Healthy
				}
			}
			if status == api.HealthPassing {
				r.everHealth = true
			}
			ever = r.everHealth
		})
		if publish != "" {
			j.g.router.publish(eventKey{j.cfg.Name, publish})
		}
		if status == api.HealthPassing {
			j.g.ready.pass(j.cfg.Name)
		}
		if j.svc != nil {
			j.svc.report(status, output)
		}
		next := interval - time.Since(start)
		if !ever {
			next = min(interval, max(firstCheckRetryMin, time.Since(began)/firstCheckDivisor))
		}
		t.Reset(max(0, next))
	}
}

// check runs the health command with its timeout.
func (h *healthCheck) check(ctx context.Context, timeout time.Duration) (status, output string) {
	j := h.j
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, err := j.s.runner.Output(hctx, h.cfg.Exec)
	if err == nil {
		j.log.Debug().Msg("health check passed")
		return api.HealthPassing, strings.TrimSpace(string(out))
	}
	if ctx.Err() != nil {
		return "", ""
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("health check timed out after %s: %w", timeout, err)
	}
	j.log.Warn().Err(err).Str("output", tail(string(out), 512)).Msg("health check failed")
	return api.HealthCritical, strings.TrimSpace(err.Error() + "\n" + string(out))
}
