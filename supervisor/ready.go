package supervisor

import "sync"

// readiness tells backends when the app can take an onChange: once every
// service's health check has passed one time. An app gets no SIGHUP from
// an onChange before it could have installed its handler (a just-started
// app would die of it), and no handler races the app's own startup.
type readiness struct {
	mu      sync.Mutex
	pending map[string]bool
	done    chan struct{}
}

func newReadiness(ids []string) *readiness {
	r := &readiness{pending: map[string]bool{}, done: make(chan struct{})}
	for _, id := range ids {
		r.pending[id] = true
	}
	if len(r.pending) == 0 {
		close(r.done)
	}
	return r
}

// pass records that service id's health check passed.
func (r *readiness) pass(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.pending[id] {
		return
	}
	delete(r.pending, id)
	if len(r.pending) == 0 {
		close(r.done)
	}
}

// Done is closed once every service has passed.
func (r *readiness) Done() <-chan struct{} { return r.done }
