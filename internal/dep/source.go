package dep

// Source serves the data behind queries: the live Consul watcher, or a
// fixture for tests and offline debugging.
//
// A consumer Subscribes to each query it uses; the source then fetches it
// (once per query, however many subscribers) and signals every subscriber's
// channel, without blocking, whenever the query's value changes. Channels
// should have a buffer of one: a pending signal means "look again".
// Get returns the latest value, and ok=false until one has arrived. Values
// returned by Get are shared and must not be modified.
type Source interface {
	Subscribe(q Query, notify chan<- struct{})
	Unsubscribe(q Query, notify chan<- struct{})
	Get(q Query) (value any, ok bool)
}

// ErrorReporter is implemented by sources that can say why a query has no
// value yet (Consul unreachable, ACL denied), for timeout messages.
type ErrorReporter interface {
	LastError(q Query) error
}
