package dep

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/autopilot/autopilot/internal/lazyre"
)

// Kind is the kind of Consul endpoint a Query reads.
type Kind uint8

// The kinds of data a template can depend on.
const (
	KindHealthService   Kind = iota + 1 // /v1/health/service/:name, filtered on aggregated status
	KindCatalogServices                 // /v1/catalog/services
	KindKVGet                           // /v1/kv/:key
	KindKVList                          // /v1/kv/:prefix?recurse (ls and tree share it)
	KindCatalogNode                     // /v1/catalog/node/:name ("" = the local agent's node)
	KindCatalogNodes                    // /v1/catalog/nodes
)

func (k Kind) String() string {
	if s := k.spec(); s != nil {
		return s.name
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Health statuses as Consul and consul-template spell them. Any is a filter
// only: it accepts every status.
const (
	StatusAny         = "any"
	StatusPassing     = "passing"
	StatusWarning     = "warning"
	StatusCritical    = "critical"
	StatusMaintenance = "maintenance"
)

// Query identifies one piece of Consul data. It is comparable, and two
// queries are the same dependency exactly when they are ==, which is what
// lets one blocking query serve every template and backend that asks for it.
type Query struct {
	Kind Kind
	Name string // service name, key, key prefix or node name
	Tag  string // HealthService only
	DC   string // "" = the agent's datacenter
	Near string // HealthService only: sort by RTT from this node ("_agent" = local)
	// Filter is the sorted, comma-joined list of accepted statuses for a
	// HealthService query; "passing" unless the template asked otherwise.
	Filter string
}

// PassingOnly reports whether Consul can do the filtering itself
// (?passing), which is cheaper than fetching every instance.
func (q Query) PassingOnly() bool { return q.Kind == KindHealthService && q.Filter == StatusPassing }

// Accepts reports whether a HealthService query keeps an instance whose
// aggregated status is status.
func (q Query) Accepts(status string) bool {
	for _, f := range strings.Split(q.Filter, ",") {
		if f == StatusAny || f == status {
			return true
		}
	}
	return false
}

// String renders the query the way a template would write it, for logs and
// error messages: `service "web@dc1|passing"`, `key "a/b"`.
func (q Query) String() string {
	at := ""
	if q.DC != "" {
		at = "@" + q.DC
	}
	if s := q.Kind.spec(); s != nil {
		return s.format(q, at)
	}
	return q.Kind.String()
}

// The query grammar is consul-template's, so existing templates keep working.
var (
	serviceRe = lazyre.New(`\A` +
		`((?P<tag>[[:word:]=:\.\-\_]+)\.)?` +
		`(?P<name>[[:word:]\-\_]+)` +
		`(@(?P<dc>[[:word:]\.\-\_]+))?` +
		`(~(?P<near>[[:word:]\.\-\_]+))?` +
		`(\|(?P<filter>[[:word:]\,]+))?` +
		`\z`)
	kvRe   = lazyre.New(`\A(?P<key>[^@]+)(@(?P<dc>[[:word:]\.\-\_]+))?\z`)
	nodeRe = lazyre.New(`\A(?P<name>[[:word:]\.\-\_]+)?(@(?P<dc>[[:word:]\.\-\_]+))?\z`)
	onlyDC = lazyre.New(`\A(@(?P<dc>[[:word:]\.\-\_]+))?\z`)
)

func groups(re *regexp.Regexp, s string) map[string]string {
	m := re.FindStringSubmatch(s)
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for i, name := range re.SubexpNames() {
		if name != "" {
			out[name] = m[i]
		}
	}
	return out
}

// ParseService parses consul-template's `[tag.]name[@dc][~near][|filter]`.
// The filter is a comma list of any, passing, warning, critical and
// maintenance; without one only passing instances are kept.
func ParseService(s string) (Query, error) {
	m := groups(serviceRe(), s)
	if m == nil {
		return Query{}, fmt.Errorf("service %q: want [tag.]name[@dc][~near][|filter]", s)
	}
	q := Query{Kind: KindHealthService, Name: m["name"], Tag: m["tag"], DC: m["dc"], Near: m["near"], Filter: StatusPassing}
	if m["filter"] != "" {
		f, err := ParseFilter(m["filter"])
		if err != nil {
			return Query{}, fmt.Errorf("service %q: %w", s, err)
		}
		q.Filter = f
	}
	return q, nil
}

// ParseFilter validates a comma list of statuses and returns it sorted and
// de-duplicated, the canonical form used in Query.Filter.
func ParseFilter(s string) (string, error) {
	seen := map[string]bool{}
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		switch f {
		case "":
			continue
		case StatusAny, StatusPassing, StatusWarning, StatusCritical, StatusMaintenance:
			if !seen[f] {
				seen[f] = true
				out = append(out, f)
			}
		default:
			return "", fmt.Errorf("invalid health filter %q (want any, passing, warning, critical or maintenance)", f)
		}
	}
	if len(out) == 0 {
		return StatusPassing, nil
	}
	sort.Strings(out)
	return strings.Join(out, ","), nil
}

// ParseKey parses `key[@dc]` for key, keyOrDefault and keyExists.
func ParseKey(s string) (Query, error) {
	m := groups(kvRe(), s)
	if m == nil {
		return Query{}, fmt.Errorf("key %q: want key[@dc]", s)
	}
	return Query{Kind: KindKVGet, Name: strings.TrimPrefix(m["key"], "/"), DC: m["dc"]}, nil
}

// ParsePrefix parses `prefix[@dc]` for ls, safeLs, tree and safeTree. An
// empty prefix (the whole store) is allowed.
func ParsePrefix(s string) (Query, error) {
	q := Query{Kind: KindKVList}
	if s == "" {
		return q, nil
	}
	m := groups(kvRe(), s)
	if m == nil {
		if m = groups(onlyDC(), s); m == nil {
			return Query{}, fmt.Errorf("prefix %q: want prefix[@dc]", s)
		}
	}
	q.Name = strings.TrimPrefix(m["key"], "/")
	q.DC = m["dc"]
	return q, nil
}

// ParseNode parses `[name][@dc]` for node; no name means the local agent's node.
func ParseNode(s string) (Query, error) {
	m := groups(nodeRe(), s)
	if m == nil {
		return Query{}, fmt.Errorf("node %q: want [name][@dc]", s)
	}
	return Query{Kind: KindCatalogNode, Name: m["name"], DC: m["dc"]}, nil
}

// ParseDC parses the optional `@dc` argument of services and nodes.
func ParseDC(kind Kind, s string) (Query, error) {
	m := groups(onlyDC(), s)
	if m == nil {
		return Query{}, fmt.Errorf("%s %q: want [@dc]", kind, s)
	}
	return Query{Kind: kind, DC: m["dc"]}, nil
}
