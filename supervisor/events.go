package supervisor

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/autopilot/autopilot/supervisor/config"
)

// eventKey names one kind of event from one source: ("", startup) is the
// supervisor's, ("app", healthy) a job's, ("watch.db", changed) a watch's.
type eventKey struct {
	source string
	event  config.Event
}

// pending is an event waiting in an inbox, with the sequence number of its
// latest occurrence.
type pending struct {
	key eventKey
	seq uint64
}

// inbox is one subscriber's mailbox. Posting never blocks: occurrences of
// the same event that the subscriber has not taken yet coalesce into one
// (keeping the latest sequence number), so a slow subscriber holds at most
// one entry per event kind it listens to and cannot stall the publisher or
// any other subscriber (ContainerPilot 3's shared bus could: its issues 548
// and 590).
type inbox struct {
	mu    sync.Mutex
	items map[eventKey]uint64
	ready chan struct{} // has a token while items is not empty
}

func newInbox() *inbox {
	return &inbox{items: map[eventKey]uint64{}, ready: make(chan struct{}, 1)}
}

func (b *inbox) post(k eventKey, seq uint64) {
	b.mu.Lock()
	b.items[k] = seq
	b.mu.Unlock()
	select {
	case b.ready <- struct{}{}:
	default:
	}
}

// has reports whether k waits in the inbox.
func (b *inbox) has(k eventKey) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.items[k]
	return ok
}

// take empties the inbox and returns what it held, oldest first.
func (b *inbox) take() []pending {
	b.mu.Lock()
	out := make([]pending, 0, len(b.items))
	for k, s := range b.items {
		out = append(out, pending{k, s})
	}
	clear(b.items)
	b.mu.Unlock()
	slices.SortFunc(out, func(a, b pending) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

// router delivers events to the inboxes of the jobs whose `when` names
// them. Its subscriber table is fixed when a generation is built, so
// publishing takes no lock but each inbox's own.
type router struct {
	seq *atomic.Uint64 // shared by every generation: sequence numbers only grow
	// version is bumped before every post, so that a reader of the jobs'
	// states can tell whether it saw a consistent picture (see ended).
	version *atomic.Uint64
	subs    map[eventKey][]*job
	// onEvent, if set, is told about every event (the supervisor's
	// recorder for tests and status); it must not block.
	onEvent func(eventKey)
}

// publish posts the event to its subscribers and returns its sequence number.
func (r *router) publish(k eventKey) uint64 {
	seq := r.seq.Add(1)
	r.version.Add(1)
	for _, j := range r.subs[k] {
		j.inbox.post(k, seq)
	}
	if r.onEvent != nil {
		r.onEvent(k)
	}
	return seq
}

// subscribers are the jobs that listen to k.
func (r *router) subscribers(k eventKey) []*job { return r.subs[k] }
