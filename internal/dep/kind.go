package dep

import (
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"
)

// kindSpec is everything one query kind means: how it prints, which HTTP
// request fetches it, how its answer decodes into the value templates see,
// what "empty" is and the value's Go type. It is the one place a kind is
// defined; Query, the Consul watcher and the typed accessors read it.
// Adding a kind is adding a row to kinds (and its value type to types.go).
type kindSpec struct {
	// name is Kind.String, also the endpoint name in the client's stats.
	name string
	// format renders q as a template writes it; at is "@dc" or "".
	format func(q Query, at string) string
	// path is the HTTP path of q's request (Consul's API, /v1/...).
	path func(q Query) string
	// params adds q's kind-specific query parameters (tag, passing...).
	params func(q Query, p url.Values)
	// cacheable is true when the endpoint supports Consul's agent cache
	// (?cached, background refresh).
	cacheable bool
	// notFound is true when Consul answers 404 for "nothing there" (a
	// missing key), which decodes as an absent value, not an error.
	notFound bool
	// decode turns a whole answer (nil: nothing there) into q's value.
	decode func(q Query, body []byte) (any, error)
	// element, if set, decodes one element of an answer that is a JSON
	// array (a nil result is filtered out), and assemble builds the value
	// from the elements in answer order. The incremental Decoder uses them
	// to decode only elements whose bytes changed; element values are
	// shared between answers, so assemble must not modify them. decode and
	// element+assemble must give equal values (the fuzz test checks).
	element  func(q Query, raw []byte) (any, error)
	assemble func(q Query, elems []any) any
	// empty reports whether a value carries no data.
	empty func(v any) bool
	// size is how many elements a value holds.
	size func(v any) int
	// value is the Go type of the value.
	value reflect.Type
}

var kinds = [...]kindSpec{
	KindHealthService: {
		name: "health.service",
		format: func(q Query, at string) string {
			s := q.Name
			if q.Tag != "" {
				s = q.Tag + "." + s
			}
			s += at
			if q.Near != "" {
				s += "~" + q.Near
			}
			return fmt.Sprintf("service %q", s+"|"+q.Filter)
		},
		path:      func(q Query) string { return "/v1/health/service/" + q.Name },
		cacheable: true,
		params: func(q Query, p url.Values) {
			if q.Tag != "" {
				p.Set("tag", q.Tag)
			}
			if q.PassingOnly() {
				p.Set("passing", "1")
			}
			if q.Near != "" {
				p.Set("near", q.Near)
			}
		},
		decode: func(q Query, body []byte) (any, error) {
			var entries []*api.ServiceEntry
			if err := unmarshal(body, &entries); err != nil {
				return nil, err
			}
			return FromServiceEntries(q, entries), nil
		},
		element: func(q Query, raw []byte) (any, error) {
			var e *api.ServiceEntry
			if err := safeUnmarshal(raw, &e); err != nil {
				return nil, err
			}
			if s := FromServiceEntries(q, []*api.ServiceEntry{e}); len(s) == 1 {
				return s[0], nil
			}
			return nil, nil
		},
		assemble: func(q Query, elems []any) any {
			out := make([]*HealthService, 0, len(elems))
			for _, e := range elems {
				if e != nil {
					out = append(out, e.(*HealthService))
				}
			}
			if q.Near == "" {
				// With ~near Consul's order (by round-trip time) is the point.
				SortHealthServices(out)
			}
			return out
		},
		empty: func(v any) bool { return len(v.([]*HealthService)) == 0 },
		size:  func(v any) int { return len(v.([]*HealthService)) },
		value: reflect.TypeFor[[]*HealthService](),
	},
	KindCatalogServices: {
		name:      "catalog.services",
		format:    func(q Query, at string) string { return fmt.Sprintf("services %q", at) },
		path:      func(Query) string { return "/v1/catalog/services" },
		cacheable: true,
		decode: func(q Query, body []byte) (any, error) {
			var m map[string][]string
			if err := unmarshal(body, &m); err != nil {
				return nil, err
			}
			return FromCatalogServices(m), nil
		},
		empty: func(v any) bool { return len(v.([]*CatalogSnippet)) == 0 },
		size:  func(v any) int { return len(v.([]*CatalogSnippet)) },
		value: reflect.TypeFor[[]*CatalogSnippet](),
	},
	KindKVGet: {
		name:     "kv.get",
		format:   func(q Query, at string) string { return fmt.Sprintf("key %q", q.Name+at) },
		path:     func(q Query) string { return "/v1/kv/" + strings.TrimPrefix(q.Name, "/") },
		notFound: true,
		decode: func(q Query, body []byte) (any, error) {
			var ps []*api.KVPair
			if err := unmarshal(body, &ps); err != nil {
				return nil, err
			}
			var p *api.KVPair
			if len(ps) > 0 {
				p = ps[0]
			}
			return FromKVPair(q.Name, p), nil
		},
		empty: func(v any) bool { return Empty(v) },
		size: func(v any) int {
			if Empty(v) {
				return 0
			}
			return 1
		},
		value: reflect.TypeFor[*KeyPair](),
	},
	KindKVList: {
		name:     "kv.list",
		format:   func(q Query, at string) string { return fmt.Sprintf("tree %q", q.Name+at) },
		path:     func(q Query) string { return "/v1/kv/" + strings.TrimPrefix(q.Name, "/") },
		params:   func(q Query, p url.Values) { p.Set("recurse", "") },
		notFound: true,
		decode: func(q Query, body []byte) (any, error) {
			var ps api.KVPairs
			if err := unmarshal(body, &ps); err != nil {
				return nil, err
			}
			return FromKVPairs(q.Name, slices.DeleteFunc(ps, isNil)), nil
		},
		element: func(q Query, raw []byte) (any, error) {
			var p *api.KVPair
			if err := safeUnmarshal(raw, &p); err != nil || p == nil {
				return nil, err
			}
			return p, nil
		},
		assemble: func(q Query, elems []any) any {
			ps := make(api.KVPairs, 0, len(elems))
			for _, e := range elems {
				if e != nil {
					ps = append(ps, e.(*api.KVPair))
				}
			}
			return FromKVPairs(q.Name, ps)
		},
		empty: func(v any) bool { return len(v.([]*KeyPair)) == 0 },
		size:  func(v any) int { return len(v.([]*KeyPair)) },
		value: reflect.TypeFor[[]*KeyPair](),
	},
	KindCatalogNode: {
		name:   "catalog.node",
		format: func(q Query, at string) string { return fmt.Sprintf("node %q", q.Name+at) },
		path:   func(q Query) string { return "/v1/catalog/node/" + q.Name },
		decode: func(q Query, body []byte) (any, error) {
			var n *api.CatalogNode
			if err := unmarshal(body, &n); err != nil {
				return nil, err
			}
			return FromCatalogNode(n), nil
		},
		empty: func(v any) bool { return Empty(v) },
		size: func(v any) int {
			if Empty(v) {
				return 0
			}
			return 1
		},
		value: reflect.TypeFor[*CatalogNode](),
	},
	KindCatalogNodes: {
		name:   "catalog.nodes",
		format: func(q Query, at string) string { return fmt.Sprintf("nodes %q", at) },
		path:   func(Query) string { return "/v1/catalog/nodes" },
		decode: func(q Query, body []byte) (any, error) {
			var ns []*api.Node
			if err := unmarshal(body, &ns); err != nil {
				return nil, err
			}
			return FromNodes(slices.DeleteFunc(ns, isNil)), nil
		},
		element: func(q Query, raw []byte) (any, error) {
			var n *api.Node
			if err := safeUnmarshal(raw, &n); err != nil || n == nil {
				return nil, err
			}
			return n, nil
		},
		assemble: func(q Query, elems []any) any {
			ns := make([]*api.Node, 0, len(elems))
			for _, e := range elems {
				if e != nil {
					ns = append(ns, e.(*api.Node))
				}
			}
			return FromNodes(ns)
		},
		empty: func(v any) bool { return len(v.([]*Node)) == 0 },
		size:  func(v any) int { return len(v.([]*Node)) },
		value: reflect.TypeFor[[]*Node](),
	},
}

// spec returns k's row, or nil for an unknown kind.
func (k Kind) spec() *kindSpec {
	if int(k) < len(kinds) && kinds[k].name != "" {
		return &kinds[k]
	}
	return nil
}

func isNil[T any](p *T) bool { return p == nil }

// unmarshal decodes body into out; an empty body (a 404) leaves out zero.
func unmarshal(body []byte, out any) error {
	if len(body) == 0 {
		return nil
	}
	return safeUnmarshal(body, out)
}

// safeUnmarshal is json.Unmarshal that turns a panic into an error: some of
// consul/api's UnmarshalJSON methods dereference nil on input Consul would
// not send (a health check whose Definition is null, found by FuzzDecoder),
// and a malformed answer must never take PID 1 down.
func safeUnmarshal(data []byte, out any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("decode Consul's answer: malformed JSON (%v)", r)
		}
	}()
	return json.Unmarshal(data, out)
}

// Path is the HTTP path of the request that fetches q, e.g.
// "/v1/health/service/web". A node query with no name needs the local
// node's name filled in first.
func (q Query) Path() string {
	if s := q.Kind.spec(); s != nil {
		return s.path(q)
	}
	return ""
}

// Params returns the kind-specific query parameters of q's request (tag,
// passing, near, recurse); the caller adds dc, index, wait and stale.
func (q Query) Params() url.Values {
	p := url.Values{}
	if q.DC != "" {
		p.Set("dc", q.DC)
	}
	if s := q.Kind.spec(); s != nil && s.params != nil {
		s.params(q, p)
	}
	return p
}

// Cacheable reports whether q's endpoint can be answered from the local
// agent's cache (?cached): health.service and catalog.services.
func (q Query) Cacheable() bool {
	s := q.Kind.spec()
	return s != nil && s.cacheable
}

// NotFoundIsEmpty reports whether Consul answers 404 when q's data is not
// there (a missing key): that answer decodes with Decode(q, nil).
func (q Query) NotFoundIsEmpty() bool {
	s := q.Kind.spec()
	return s != nil && s.notFound
}

// Decode converts a whole answer to q's value; a nil body means nothing is
// there (a 404 where NotFoundIsEmpty).
func Decode(q Query, body []byte) (any, error) {
	s := q.Kind.spec()
	if s == nil {
		return nil, fmt.Errorf("%s: unsupported query kind", q)
	}
	v, err := s.decode(q, body)
	if err != nil {
		return nil, fmt.Errorf("%s: decode answer: %w", q, err)
	}
	return v, nil
}

// Size is how many elements v, a value of q, holds: instances, services,
// keys or nodes; 0 or 1 for a single key or node.
func (q Query) Size(v any) int {
	if s := q.Kind.spec(); s != nil && v != nil && reflect.TypeOf(v) == s.value {
		return s.size(v)
	}
	return 0
}

// IsEmpty reports whether v, a value of q, carries no data.
func (q Query) IsEmpty(v any) bool {
	if s := q.Kind.spec(); s != nil && v != nil && reflect.TypeOf(v) == s.value {
		return s.empty(v)
	}
	return v == nil
}

// As returns v, a value of q, as the type templates use for q's kind, or an
// error naming both when T is not that type.
func As[T any](q Query, v any) (T, error) {
	t, ok := v.(T)
	if !ok {
		var zero T
		return zero, fmt.Errorf("%s: value is %T, not %T", q, v, zero)
	}
	return t, nil
}

// ValueType is the Go type of q's value (nil for an unknown kind).
func (q Query) ValueType() reflect.Type {
	if s := q.Kind.spec(); s != nil {
		return s.value
	}
	return nil
}
