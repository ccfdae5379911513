package render

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/autopilot/autopilot/internal/dep"
)

// mapSource is an in-memory dep.Source for edge cases; the real-Consul
// tests cover the watcher itself.
type mapSource struct {
	mu   sync.Mutex
	data map[dep.Query]any
	subs map[dep.Query]map[chan<- struct{}]bool
}

func newMapSource() *mapSource {
	return &mapSource{data: map[dep.Query]any{}, subs: map[dep.Query]map[chan<- struct{}]bool{}}
}

func (s *mapSource) Subscribe(q dep.Query, ch chan<- struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs[q] == nil {
		s.subs[q] = map[chan<- struct{}]bool{}
	}
	s.subs[q][ch] = true
}

func (s *mapSource) Unsubscribe(q dep.Query, ch chan<- struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.subs[q], ch)
}

func (s *mapSource) Get(q dep.Query) (any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[q]
	return v, ok
}

func (s *mapSource) set(q dep.Query, v any) {
	s.mu.Lock()
	s.data[q] = v
	var subs []chan<- struct{}
	for ch := range s.subs[q] {
		subs = append(subs, ch)
	}
	s.mu.Unlock()
	for _, ch := range subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func svcQuery(t testing.TB, s string) dep.Query {
	t.Helper()
	q, err := dep.ParseService(s)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func instances(name string, addrs ...string) []*dep.HealthService {
	var out []*dep.HealthService
	for i, a := range addrs {
		out = append(out, &dep.HealthService{Node: "node", ID: name + "-" + string(rune('a'+i)), Name: name, Address: a, Port: 8000 + i, Status: "passing", Tags: dep.ServiceTags{}})
	}
	return out
}

func writeTemp(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}
