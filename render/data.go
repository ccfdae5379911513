package render

import (
	"fmt"
	"strings"
	"text/template"

	"github.com/autopilot/autopilot/internal/dep"
)

// consulNames are the functions that read Consul data; they are bound to
// the template's current pass.
var consulNames = []string{"service", "services", "key", "keyOrDefault", "keyExists", "ls", "safeLs", "tree", "safeTree", "node", "nodes"}

// consulFuncs are the data functions, with consul-template's names,
// arguments and results. A query without data yields an empty value and is
// recorded as missing, so the pass completes but its output is not written.
func (t *Template) consulFuncs() template.FuncMap {
	return template.FuncMap{
		"service": func(args ...string) ([]*dep.HealthService, error) {
			if len(args) == 0 || args[0] == "" {
				return []*dep.HealthService{}, nil // consul-template: no name, no query
			}
			q, err := dep.ParseService(strings.Join(args, "|"))
			if err != nil {
				return nil, err
			}
			s, ok, err := recallAs[[]*dep.HealthService](t, q)
			if err != nil || !ok {
				return []*dep.HealthService{}, err
			}
			if n := t.opts.MinInstances; n > 0 && len(s) < n {
				t.pass.miss(q, fmt.Sprintf("%d of at least %d instances (minInstances)", len(s), n))
			}
			return s, nil
		},
		"services": func(args ...string) ([]*dep.CatalogSnippet, error) {
			q, err := dep.ParseDC(dep.KindCatalogServices, strings.Join(args, ""))
			if err != nil {
				return nil, err
			}
			s, ok, err := recallAs[[]*dep.CatalogSnippet](t, q)
			if err != nil || !ok {
				return []*dep.CatalogSnippet{}, err
			}
			return s, nil
		},
		"key": func(s string) (string, error) {
			if s == "" {
				return "", nil
			}
			kp, ok, err := t.key(s)
			if err != nil || !ok {
				return "", err
			}
			if kp == nil {
				// consul-template blocks rendering until the key exists.
				q, _ := dep.ParseKey(s)
				t.pass.miss(q, "key does not exist")
				return "", nil
			}
			return kp.Value, nil
		},
		"keyExists": func(s string) (bool, error) {
			if s == "" {
				return false, nil
			}
			kp, _, err := t.key(s)
			return kp != nil, err
		},
		"keyOrDefault": func(s, def string) (string, error) {
			if s == "" {
				return def, nil
			}
			kp, _, err := t.key(s)
			if err != nil {
				return "", err
			}
			if kp == nil || kp.Value == "" {
				return def, nil // consul-template: an empty value also takes the default
			}
			return kp.Value, nil
		},
		"ls":       t.list(false, false),
		"safeLs":   t.list(false, true),
		"tree":     t.list(true, false),
		"safeTree": t.list(true, true),
		"node": func(args ...string) (*dep.CatalogNode, error) {
			q, err := dep.ParseNode(strings.Join(args, ""))
			if err != nil {
				return nil, err
			}
			n, _, err := recallAs[*dep.CatalogNode](t, q)
			return n, err
		},
		"nodes": func(args ...string) ([]*dep.Node, error) {
			q, err := dep.ParseDC(dep.KindCatalogNodes, strings.Join(args, ""))
			if err != nil {
				return nil, err
			}
			ns, ok, err := recallAs[[]*dep.Node](t, q)
			if err != nil || !ok {
				return []*dep.Node{}, err
			}
			return ns, nil
		},
	}
}

// key looks a KV get up: ok is false while there is no answer yet, and a
// nil pair with ok true means the key does not exist.
func (t *Template) key(s string) (kp *dep.KeyPair, ok bool, err error) {
	q, err := dep.ParseKey(s)
	if err != nil {
		return nil, false, err
	}
	return recallAs[*dep.KeyPair](t, q)
}

// recallAs is recall with the value typed as q's kind defines it (dep's
// kind table): a value of another type is an error naming both, not a panic.
func recallAs[T any](t *Template, q dep.Query) (T, bool, error) {
	v, ok := t.recall(q)
	if !ok {
		var zero T
		return zero, false, nil
	}
	x, err := dep.As[T](q, v)
	return x, err == nil, err
}

// list builds ls (top-level keys only) and tree (every key but folders);
// the safe variants treat an empty prefix as missing data, so an outage or
// a wiped prefix never renders an empty file.
func (t *Template) list(recursive, safe bool) func(string) ([]*dep.KeyPair, error) {
	return func(s string) ([]*dep.KeyPair, error) {
		if s == "" {
			return []*dep.KeyPair{}, nil // consul-template: no prefix, no query
		}
		q, err := dep.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		all, ok, err := recallAs[[]*dep.KeyPair](t, q)
		if err != nil || !ok {
			return []*dep.KeyPair{}, err
		}
		out := make([]*dep.KeyPair, 0, len(all))
		for _, p := range all {
			switch {
			case recursive && !strings.HasSuffix(p.Key, "/") && p.Key != "":
				out = append(out, p)
			case !recursive && p.Key != "" && !strings.Contains(p.Key, "/"):
				out = append(out, p)
			}
		}
		if safe && len(out) == 0 {
			t.pass.miss(q, "prefix is empty (safe"+map[bool]string{false: "Ls", true: "Tree"}[recursive]+" waits for keys)")
		}
		return out, nil
	}
}
