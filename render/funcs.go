package render

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"dario.cat/mergo"
	"github.com/BurntSushi/toml"
	"github.com/Masterminds/sprig/v3"
	socktmpl "github.com/hashicorp/go-sockaddr/template"
	yaml "go.yaml.in/yaml/v2"
	"golang.org/x/text/cases"
	"golang.org/x/text/language"

	"github.com/autopilot/autopilot/internal/dep"
	"github.com/autopilot/autopilot/internal/lazyre"
)

// This file holds consul-template's helper functions: everything a
// template can call that does not read Consul (those live in data.go).
// Names, argument order and results are consul-template's, so existing
// .ctmpl files render the same bytes. docs/functions.md is the reference.

// sprigClashes are the Sprig functions whose names consul-template's
// helpers also use; the consul-template version wins under the plain name
// and Sprig's stays reachable as sprig_NAME. TestSprigClashes keeps this
// list equal to the real intersection.
//
//	add             consul-template: add b a (two numbers, any kind);   Sprig: add a b c... (int64 sum)
//	contains        consul-template: contains needle list-or-string;    Sprig: contains substr str (strings only)
//	env             same meaning (os.Getenv)
//	indent          consul-template: skips empty lines;                  Sprig: indents every line
//	join            consul-template: join sep list;                      Sprig: join sep list (stringifies any list)
//	regexMatch      same order (regex, s)
//	regexReplaceAll consul-template: regexReplaceAll re repl s;          Sprig: regexReplaceAll re s repl
//	split           consul-template: split sep s -> list;                Sprig: split sep s -> map _0, _1...
//	trim            consul-template: trim cutset s;                      Sprig: trim s (spaces)
//	trimPrefix      same order (prefix, s)
//	trimSuffix      same order (suffix, s)
var sprigClashes = []string{
	"add", "contains", "env", "indent", "join", "regexMatch", "regexReplaceAll",
	"split", "trim", "trimPrefix", "trimSuffix",
}

// leftOut lists consul-template functions autopilot does not provide, and
// why. Calling one is a parse error that gives this reason
// ("secret: Vault is not supported by autopilot (see docs/functions.md)");
// TestDocumentedFunctions keeps docs/functions.md in step with it.
var leftOut = map[string]string{
	// Vault.
	"secret":  "Vault is not supported by autopilot: it only reads Consul",
	"secrets": "Vault is not supported by autopilot: it only reads Consul",
	"pkiCert": "Vault is not supported by autopilot: it only reads Consul",
	// Connect and other Consul endpoints without a dep.Query kind.
	"connect":          "Consul Connect (service mesh) is not supported by autopilot: use service with the sidecar's name",
	"caLeaf":           "Consul Connect CA certificates are not supported by autopilot",
	"caRoots":          "Consul Connect CA certificates are not supported by autopilot",
	"datacenters":      "datacenters is not supported by autopilot: name other datacenters with @dc",
	"partitions":       "Consul Enterprise admin partitions are not supported by autopilot",
	"peerings":         "cluster peering is not supported by autopilot",
	"exportedServices": "cluster peering and partitions are not supported by autopilot",
	"importedServices": "cluster peering and partitions are not supported by autopilot",
	// Nomad.
	"nomadServices":    "Nomad is not supported by autopilot: it only reads Consul",
	"nomadService":     "Nomad is not supported by autopilot: it only reads Consul",
	"nomadVarList":     "Nomad is not supported by autopilot: it only reads Consul",
	"nomadVarListSafe": "Nomad is not supported by autopilot: it only reads Consul",
	"nomadVar":         "Nomad is not supported by autopilot: it only reads Consul",
	"nomadVarExists":   "Nomad is not supported by autopilot: it only reads Consul",
	// Side effects and host-specific helpers.
	"writeToFile": "a render must not write files other than its destination; use a second template",
	"plugin":      "runs arbitrary programs during every render; render a file and run the program from the backend instead",
	// Debugging.
	"spew_dump":    "debugging aid writing to stdout; use toJSONPretty or printf \"%#v\"",
	"spew_sdump":   "debugging aid; use toJSONPretty or printf \"%#v\"",
	"spew_printf":  "debugging aid writing to stdout; use printf",
	"spew_sprintf": "debugging aid; use printf",
	// Undocumented upstream.
	"byPort": "undocumented in consul-template, so there is no contract to be compatible with",
}

// helperFuncs returns every non-Consul function: all of Sprig under its
// own names and as sprig_NAME (consul-template's spelling), overlaid with
// consul-template's helpers, which win the clashes listed in sprigClashes.
// Each call returns a new map with a fresh scratchpad.
func helperFuncs() template.FuncMap {
	fm := template.FuncMap{}
	for name, fn := range sprig.TxtFuncMap() {
		fm[name] = fn
		fm["sprig_"+name] = fn
	}
	for name, fn := range consulTemplateHelpers() {
		fm[name] = fn
	}
	return fm
}

// bindTemplateFuncs gives tm the functions that belong to one template
// rather than to the process: executeTemplate (it runs tm's own defined
// templates), a fresh scratch, and a loop that stops when the execution's
// bound b is cancelled (so nested loops end at the next inner loop).
// consul-template rebuilds the first two for every execution, so call it
// before each Execute (Funcs may replace entries of a parsed template;
// executions must not run concurrently with it). A function the denylist
// matches keeps the denied stand-in Parse gave it.
func bindTemplateFuncs(tm *template.Template, b *bound, denylist []string) {
	fm := template.FuncMap{
		"executeTemplate": executeTemplateFunc(tm),
		"scratch":         scratchFunc(),
		"loop": func(args ...any) ([]int64, error) {
			if err := b.check(); err != nil {
				return nil, err
			}
			return loop(args...)
		},
	}
	for name := range fm {
		if isDenied(name, denylist) {
			delete(fm, name)
		}
	}
	tm.Funcs(fm)
}

func consulTemplateHelpers() template.FuncMap {
	fm := template.FuncMap{
		// Grouping Consul answers.
		"byKey":  byKey,
		"byTag":  byTag,
		"byMeta": byMeta,

		// Membership.
		"contains":       contains,
		"containsAll":    containsSome("containsAll", true, true),
		"containsAny":    containsSome("containsAny", false, false),
		"containsNone":   containsSome("containsNone", true, false),
		"containsNotAll": containsSome("containsNotAll", false, true),
		"in":             in,

		// Environment and files.
		// env, mustEnv and envOrDefault come from envFuncs(nil).
		"file": fileIn(""), // Parse binds a sandboxed one for Options.SandboxPath

		// Templates and scratch state; bindTemplateFuncs replaces both per execution.
		"executeTemplate": func(string, ...any) (string, error) {
			return "", errors.New("executeTemplate: not bound to a template")
		},
		"scratch": scratchFunc(),

		// Maps and lists.
		"explode":              explode,
		"explodeMap":           explodeMap,
		"mergeMap":             mergeMap,
		"mergeMapWithOverride": mergeMapWithOverride,
		"loop":                 loop,
		"join":                 join,
		"split":                split,
		"splitToMap":           splitToMap,

		// Strings.
		"indent":          indent,
		"trim":            func(cutset, s string) string { return strings.Trim(s, cutset) },
		"trimPrefix":      func(prefix, s string) string { return strings.TrimPrefix(s, prefix) },
		"trimSuffix":      func(suffix, s string) string { return strings.TrimSuffix(s, suffix) },
		"trimSpace":       strings.TrimSpace,
		"replaceAll":      func(from, to, s string) string { return strings.ReplaceAll(s, from, to) },
		"regexMatch":      regexMatch,
		"regexReplaceAll": regexReplaceAll,
		"toLower":         strings.ToLower,
		"toUpper":         strings.ToUpper,
		"toTitle":         toTitle,

		// Parsing and encoding.
		"parseBool":             parseBool,
		"parseFloat":            parseFloat,
		"parseInt":              parseInt,
		"parseUint":             parseUint,
		"parseJSON":             parseJSON,
		"parseYAML":             parseYAML,
		"toJSON":                toJSON,
		"toJSONPretty":          toJSONPretty,
		"toUnescapedJSON":       toUnescapedJSON,
		"toUnescapedJSONPretty": toUnescapedJSONPretty,
		"toYAML":                toYAML,
		"toTOML":                toTOML,
		"sockaddr":              sockaddr,
		"base64Encode":          func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
		"base64Decode":          base64Decode(base64.StdEncoding, "base64Decode"),
		"base64URLEncode":       func(s string) string { return base64.URLEncoding.EncodeToString([]byte(s)) },
		"base64URLDecode":       base64Decode(base64.URLEncoding, "base64URLDecode"),
		"sha256Hex":             sha256Hex,
		"md5sum":                md5sum,
		"hmacSHA256Hex":         hmacSHA256Hex,

		"timestamp": timestamp,

		// Math, in consul-template's order: the piped value is the last
		// argument and the left operand, so {{ 5 | subtract 2 }} is 3.
		"add":      arith("add", func(a, b int64) (int64, error) { return a + b, nil }, func(a, b uint64) (uint64, error) { return a + b, nil }, func(a, b float64) float64 { return a + b }),
		"subtract": arith("subtract", func(a, b int64) (int64, error) { return a - b, nil }, func(a, b uint64) (uint64, error) { return a - b, nil }, func(a, b float64) float64 { return a - b }),
		"multiply": arith("multiply", func(a, b int64) (int64, error) { return a * b, nil }, func(a, b uint64) (uint64, error) { return a * b, nil }, func(a, b float64) float64 { return a * b }),
		"divide":   arith("divide", divInt, divUint, func(a, b float64) float64 { return a / b }),
		"modulo":   arith("modulo", modInt, modUint, nil),
		"minimum":  pick("minimum", func(c int) bool { return c < 0 }),
		"maximum":  pick("maximum", func(c int) bool { return c > 0 }),
	}
	maps.Copy(fm, envFuncs(nil))
	return fm
}

// byKey groups pairs (from tree or ls) by their first path segment; the
// group's pairs are copies whose Key has that segment stripped. Pairs
// with nothing after the segment (the folder itself) are dropped.
func byKey(pairs []*dep.KeyPair) (map[string]map[string]*dep.KeyPair, error) {
	m := make(map[string]map[string]*dep.KeyPair)
	for _, p := range pairs {
		top, rest, _ := strings.Cut(p.Key, "/")
		if rest == "" {
			continue
		}
		if m[top] == nil {
			m[top] = make(map[string]*dep.KeyPair)
		}
		cp := *p
		cp.Key = rest
		m[top][rest] = &cp
	}
	return m, nil
}

// byTag groups services (from service or services) by tag; an entry with
// several tags is in several groups, in input order.
func byTag(in any) (any, error) {
	switch s := in.(type) {
	case nil:
		return map[string][]any{}, nil
	case []*dep.HealthService:
		return groupByTags(s, func(x *dep.HealthService) []string { return x.Tags }), nil
	case []*dep.CatalogSnippet:
		return groupByTags(s, func(x *dep.CatalogSnippet) []string { return x.Tags }), nil
	}
	return nil, fmt.Errorf("byTag: wrong argument type %T (want the result of service or services)", in)
}

func groupByTags[T any](items []T, tags func(T) []string) map[string][]T {
	m := make(map[string][]T)
	for _, it := range items {
		for _, t := range tags(it) {
			m[t] = append(m[t], it)
		}
	}
	return m
}

var metaUnsafe = lazyre.New(`[^a-zA-Z0-9_-]`)

// byMeta groups services by the values of one or more comma-separated
// ServiceMeta keys, joined with "_". A missing value is "_no_KEY_"; a key
// suffixed "|int" is parsed as a number (missing = 0) and zero-padded to
// five digits so that map order is numeric order.
func byMeta(meta string, services []*dep.HealthService) (map[string][]*dep.HealthService, error) {
	keys := strings.Split(meta, ",")
	groups := make(map[string][]*dep.HealthService)
	for _, s := range services {
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			name, isInt := strings.CutSuffix(k, "|int")
			v := s.ServiceMeta[name]
			switch {
			case v == "" && isInt:
				v = "0"
			case v == "":
				v = "_no_" + name + "_"
			}
			if isInt {
				n, err := strconv.Atoi(v)
				if err != nil {
					return nil, fmt.Errorf("byMeta: service %s: meta %s=%q is not a number: %w", s.ID, name, v, err)
				}
				v = fmt.Sprintf("%05d", n)
			}
			parts = append(parts, metaUnsafe().ReplaceAllString(v, "_"))
		}
		key := strings.Join(parts, "_")
		groups[key] = append(groups[key], s)
	}
	return groups, nil
}

// contains is in with its arguments swapped, for pipes: {{ .Tags | contains "x" }}.
func contains(needle, list any) (bool, error) { return in(list, needle) }

// in reports whether list (a slice or array) holds needle, or whether list
// (a string) contains needle as a substring. As in consul-template, any
// signed integers compare by value, any floats by value, and strings only
// when their types are identical; other kinds never match.
func in(list, needle any) (bool, error) {
	lv, nv := reflect.ValueOf(list), reflect.ValueOf(needle)
	switch lv.Kind() {
	case reflect.Array, reflect.Slice:
		for i := 0; i < lv.Len(); i++ {
			e := lv.Index(i)
			if e.Kind() == reflect.Interface {
				e = e.Elem()
			}
			if sameScalar(e, nv) {
				return true, nil
			}
		}
	case reflect.String:
		if nv.IsValid() && nv.Type() == lv.Type() && strings.Contains(lv.String(), nv.String()) {
			return true, nil
		}
	}
	return false, nil
}

func sameScalar(e, v reflect.Value) bool {
	switch {
	case isInt(e):
		return isInt(v) && v.Int() == e.Int()
	case isFloat(e):
		return isFloat(v) && v.Float() == e.Float()
	case e.Kind() == reflect.String:
		return v.IsValid() && v.Type() == e.Type() && v.String() == e.String()
	}
	return false
}

// containsSome builds containsAll (retTrue, invert), containsAny, containsNone
// (retTrue) and containsNotAll (invert): the loop stops at the first needle
// whose membership differs from invert and returns !retTrue, else retTrue.
// consul-template only accepts []interface{} needles; any list works here.
func containsSome(name string, retTrue, invert bool) func(needles, list any) (bool, error) {
	return func(needles, list any) (bool, error) {
		nv := reflect.ValueOf(needles)
		switch nv.Kind() {
		case reflect.Invalid:
			return retTrue, nil
		case reflect.Slice, reflect.Array:
		default:
			return false, fmt.Errorf("%s: needles must be a list, not %T", name, needles)
		}
		for i := 0; i < nv.Len(); i++ {
			if ok, _ := in(list, nv.Index(i).Interface()); ok != invert {
				return !retTrue, nil
			}
		}
		return retTrue, nil
	}
}

// envFuncs are env, mustEnv and envOrDefault looking name up in env
// (NAME=VALUE entries, the first of a name wins) before the process
// environment, as consul-template's take the environment it gives its
// children. envFuncs(nil) reads the process environment alone.
func envFuncs(env []string) template.FuncMap {
	lookup := func(name string) (string, bool) {
		for _, kv := range env {
			if k, v, _ := strings.Cut(kv, "="); k == name {
				return v, true
			}
		}
		return os.LookupEnv(name)
	}
	return template.FuncMap{
		"env": func(name string) string { v, _ := lookup(name); return v },
		"mustEnv": func(name string) (string, error) {
			if v, _ := lookup(name); v != "" {
				return v, nil
			}
			return "", fmt.Errorf("required environment variable %s is empty", name)
		},
		// envOrDefault returns the variable if it is set, even to "".
		"envOrDefault": func(name, def string) string {
			if v, ok := lookup(name); ok {
				return v
			}
			return def
		},
	}
}

// executeTemplateFunc runs one of t's defined templates, with data as dot
// (nil when absent), and returns its output.
func executeTemplateFunc(t *template.Template) func(string, ...any) (string, error) {
	return func(name string, data ...any) (string, error) {
		var dot any
		switch len(data) {
		case 0:
		case 1:
			dot = data[0]
		default:
			return "", fmt.Errorf("executeTemplate: wrong number of arguments, expected 1 or 2, but got %d", len(data)+1)
		}
		var b bytes.Buffer
		if err := t.ExecuteTemplate(&b, name, dot); err != nil {
			return "", err
		}
		return b.String(), nil
	}
}

// scratch is consul-template's per-template scratchpad: {{ scratch.Set "k" v }}.
type scratch struct {
	values map[string]any
}

func scratchFunc() func() *scratch {
	s := &scratch{values: map[string]any{}}
	return func() *scratch { return s }
}

// Key reports whether k was set, even to nil.
func (s *scratch) Key(k string) bool { _, ok := s.values[k]; return ok }

// Get returns the value at k, or nil.
func (s *scratch) Get(k string) any { return s.values[k] }

// Set stores v at k, replacing any value.
func (s *scratch) Set(k string, v any) string { s.values[k] = v; return "" }

// SetX stores v at k unless k is set.
func (s *scratch) SetX(k string, v any) string {
	if _, ok := s.values[k]; !ok {
		s.values[k] = v
	}
	return ""
}

// MapSet stores v under mk in the map named k, replacing any value.
func (s *scratch) MapSet(k, mk string, v any) (string, error) { return s.mapSet(k, mk, v, true) }

// MapSetX stores v under mk in the map named k unless mk is set.
func (s *scratch) MapSetX(k, mk string, v any) (string, error) { return s.mapSet(k, mk, v, false) }

func (s *scratch) mapSet(k, mk string, v any, overwrite bool) (string, error) {
	if _, ok := s.values[k]; !ok {
		s.values[k] = map[string]any{}
	}
	m, ok := s.values[k].(map[string]any)
	if !ok {
		return "", fmt.Errorf("%q is not a map", k)
	}
	if _, ok := m[mk]; overwrite || !ok {
		m[mk] = v
	}
	return "", nil
}

// MapValues returns the values of the map named k sorted by their keys
// (nil if k is not a map).
func (s *scratch) MapValues(k string) ([]any, error) {
	m, ok := s.values[k].(map[string]any)
	if !ok {
		return nil, nil
	}
	keys := make([]string, 0, len(m))
	for mk := range m {
		keys = append(keys, mk)
	}
	sort.Strings(keys)
	out := make([]any, len(keys))
	for i, mk := range keys {
		out[i] = m[mk]
	}
	return out, nil
}

// explode turns KV pairs into nested maps on "/": a/b=1 gives {a: {b: "1"}}.
func explode(pairs []*dep.KeyPair) (map[string]any, error) {
	m := make(map[string]any)
	for _, p := range pairs {
		if err := explodeInto(m, p.Key, p.Value, p.Key); err != nil {
			return nil, fmt.Errorf("explode: %w", err)
		}
	}
	return m, nil
}

// explodeMap is explode for a flat map, applied in key order.
func explodeMap(in map[string]any) (map[string]any, error) {
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string]any)
	for _, k := range keys {
		if err := explodeInto(out, k, in[k], k); err != nil {
			return nil, fmt.Errorf("explodeMap: %w", err)
		}
	}
	return out, nil
}

func explodeInto(m map[string]any, k string, v any, path string) error {
	top, rest, nested := strings.Cut(k, "/")
	if !nested {
		if k != "" {
			m[k] = v
		}
		return nil
	}
	if _, ok := m[top]; !ok {
		m[top] = make(map[string]any)
	}
	sub, ok := m[top].(map[string]any)
	if !ok {
		return fmt.Errorf("not a map: %q: %q already has value %q", path, top, m[top])
	}
	return explodeInto(sub, rest, v, k)
}

// mergeMap merges src into dst (and returns dst) without replacing dst's
// values: {{ $overrides | mergeMap $base }} fills $base's gaps.
func mergeMap(dst, src map[string]any) (map[string]any, error) {
	if err := mergo.Map(&dst, src); err != nil {
		return nil, fmt.Errorf("mergeMap: %w", err)
	}
	return dst, nil
}

// mergeMapWithOverride is mergeMap where src's values win.
func mergeMapWithOverride(dst, src map[string]any) (map[string]any, error) {
	if err := mergo.Map(&dst, src, mergo.WithOverride); err != nil {
		return nil, fmt.Errorf("mergeMapWithOverride: %w", err)
	}
	return dst, nil
}

// maxLoop bounds loop's result so a bad number (say a key parsed with
// parseInt) fails the render instead of exhausting memory.
const maxLoop = 10_000_000

// loop returns the integers [0, n) or [start, stop). consul-template
// returns a channel fed by a goroutine; a slice ranges the same way and
// cannot leak the goroutine when a render stops early.
func loop(args ...any) ([]int64, error) {
	var from, to any
	switch len(args) {
	case 1:
		from, to = 0, args[0]
	case 2:
		from, to = args[0], args[1]
	default:
		return nil, fmt.Errorf("loop: wrong number of arguments, expected 1 or 2, but got %d", len(args))
	}
	start, err := loopInt(from)
	if err != nil {
		return nil, err
	}
	stop, err := loopInt(to)
	if err != nil {
		return nil, err
	}
	if stop <= start {
		return []int64{}, nil
	}
	if stop-start > maxLoop || stop-start < 0 {
		return nil, fmt.Errorf("loop: %d to %d is more than %d iterations", start, stop, maxLoop)
	}
	out := make([]int64, 0, stop-start)
	for i := start; i < stop; i++ {
		out = append(out, i)
	}
	return out, nil
}

func loopInt(x any) (int64, error) {
	v := reflect.ValueOf(x)
	switch {
	case isInt(v):
		return v.Int(), nil
	case isUint(v):
		return int64(v.Uint()), nil
	case v.Kind() == reflect.String:
		return parseInt(v.String())
	}
	return 0, fmt.Errorf("loop: bad argument type: %T", x)
}

// join joins a list on sep. consul-template takes only []string; other
// lists are joined with each element printed as by print.
func join(sep string, list any) (string, error) {
	switch l := list.(type) {
	case nil:
		return "", nil
	case []string:
		return strings.Join(l, sep), nil
	case dep.ServiceTags:
		return strings.Join(l, sep), nil
	}
	v := reflect.ValueOf(list)
	if v.Kind() != reflect.Slice && v.Kind() != reflect.Array {
		return "", fmt.Errorf("join: want a list, not %T", list)
	}
	parts := make([]string, v.Len())
	for i := range parts {
		parts[i] = fmt.Sprint(v.Index(i).Interface())
	}
	return strings.Join(parts, sep), nil
}

// split splits s on sep after trimming spaces; "" gives an empty list.
func split(sep, s string) []string {
	s = strings.TrimSpace(s)
	if s == "" {
		return []string{}
	}
	return strings.Split(s, sep)
}

// splitToMap splits s on sep1 into items and each item on the first sep2
// into key and value; items without sep2 are skipped.
func splitToMap(sep1, sep2, s string) map[string]string {
	s = strings.TrimSpace(s)
	m := map[string]string{}
	if s == "" {
		return m
	}
	for _, item := range strings.Split(s, sep1) {
		if k, v, ok := strings.Cut(item, sep2); ok {
			m[k] = v
		}
	}
	return m
}

// indent prefixes every non-empty line with n spaces.
func indent(n int, s string) (string, error) {
	if n < 0 {
		return "", errors.New("indent value must be a positive integer")
	}
	prefix := strings.Repeat(" ", n)
	var b strings.Builder
	atStart := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if atStart && c != '\n' {
			b.WriteString(prefix)
		}
		b.WriteByte(c)
		atStart = c == '\n'
	}
	return b.String(), nil
}

func regexMatch(re, s string) (bool, error) {
	r, err := regexp.Compile(re)
	if err != nil {
		return false, fmt.Errorf("regexMatch: %w", err)
	}
	return r.MatchString(s), nil
}

// regexReplaceAll replaces matches of re in s with repl, which may use $1.
func regexReplaceAll(re, repl, s string) (string, error) {
	r, err := regexp.Compile(re)
	if err != nil {
		return "", fmt.Errorf("regexReplaceAll: %w", err)
	}
	return r.ReplaceAllString(s, repl), nil
}

// toTitle upper-cases the first letter of each word, leaving the rest.
func toTitle(s string) string { return cases.Title(language.Und, cases.NoLower).String(s) }

// The parse functions read "" as the zero value (a key that has no data yet).

func parseBool(s string) (bool, error) {
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("parseBool: %w", err)
	}
	return b, nil
}

func parseFloat(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("parseFloat: %w", err)
	}
	return f, nil
}

func parseInt(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parseInt: %w", err)
	}
	return n, nil
}

func parseUint(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parseUint: %w", err)
	}
	return n, nil
}

// parseJSON decodes s (numbers become float64); "" gives an empty map.
func parseJSON(s string) (any, error) {
	if s == "" {
		return map[string]any{}, nil
	}
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("parseJSON: %w", err)
	}
	return v, nil
}

// parseYAML decodes s with YAML 1.1 rules as consul-template does (yaml.v2:
// integers stay integers); "" gives an empty map. Mappings whose keys are
// all strings become map[string]any, so the result can go to toJSON.
func parseYAML(s string) (any, error) {
	if s == "" {
		return map[string]any{}, nil
	}
	var v any
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("parseYAML: %w", err)
	}
	return stringKeys(v), nil
}

func stringKeys(v any) any {
	switch x := v.(type) {
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			ks, ok := k.(string)
			if !ok {
				out = nil
				break
			}
			out[ks] = stringKeys(e)
		}
		if out != nil {
			return out
		}
		for k, e := range x {
			x[k] = stringKeys(e)
		}
	case []any:
		for i, e := range x {
			x[i] = stringKeys(e)
		}
	}
	return v
}

func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("toJSON: %w", err)
	}
	return string(bytes.TrimSpace(b)), nil
}

func toJSONPretty(v any) (string, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", fmt.Errorf("toJSONPretty: %w", err)
	}
	return string(bytes.TrimSpace(b)), nil
}

// toUnescapedJSON is toJSON without escaping <, > and &.
func toUnescapedJSON(v any) (string, error) { return unescapedJSON("toUnescapedJSON", v, "") }

// toUnescapedJSONPretty is toJSONPretty without escaping <, > and &.
func toUnescapedJSONPretty(v any) (string, error) {
	return unescapedJSON("toUnescapedJSONPretty", v, "  ")
}

func unescapedJSON(name string, v any, indent string) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", indent)
	if err := enc.Encode(v); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return strings.TrimRight(b.String(), "\r\n"), nil
}

// toYAML encodes v as YAML (yaml.v2, as consul-template), without the final newline.
func toYAML(v any) (string, error) {
	b, err := yaml.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("toYAML: %w", err)
	}
	return string(bytes.TrimSpace(b)), nil
}

// toTOML encodes a map as TOML with BurntSushi/toml, the library and
// version consul-template v0.42.1 uses, so the bytes are the same.
func toTOML(v any) (string, error) {
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(v); err != nil {
		return "", fmt.Errorf("toTOML: %w", err)
	}
	return string(bytes.TrimSpace(b.Bytes())), nil
}

// sockaddr evaluates a go-sockaddr template expression against the host's
// interfaces, as consul-template does:
// {{ sockaddr "GetPrivateInterfaces | include \"type\" \"IPv4\" | attr \"address\"" }}.
func sockaddr(args ...string) (string, error) {
	out, err := socktmpl.Parse("{{ " + strings.Join(args, " ") + " }}")
	if err != nil {
		return "", fmt.Errorf("sockaddr: %w", err)
	}
	return out, nil
}

func base64Decode(enc *base64.Encoding, name string) func(string) (string, error) {
	return func(s string) (string, error) {
		b, err := enc.DecodeString(s)
		if err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		return string(b), nil
	}
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func md5sum(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// hmacSHA256Hex signs message with key: {{ $secret | hmacSHA256Hex $msg }}.
func hmacSHA256Hex(message, key string) string {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(message))
	return hex.EncodeToString(mac.Sum(nil))
}

// now is the clock of timestamp, replaced in tests.
var now = func() time.Time { return time.Now().UTC() }

// timestamp formats the current UTC time: RFC 3339 by default, with a Go
// layout when given one, or as Unix seconds for "unix".
func timestamp(layout ...string) (string, error) {
	switch len(layout) {
	case 0:
		return now().Format(time.RFC3339), nil
	case 1:
		if layout[0] == "unix" {
			return strconv.FormatInt(now().Unix(), 10), nil
		}
		return now().Format(layout[0]), nil
	}
	return "", fmt.Errorf("timestamp: wrong number of arguments, expected 0 or 1, but got %d", len(layout))
}

// Math. consul-template's functions take (b, a) and compute a OP b, where a
// is the piped (last) value. Signed and unsigned integers of any size mix
// as int64 (two unsigned stay uint64); a float anywhere makes it float64.

type numClass int

const (
	notNumber numClass = iota
	signed
	unsigned
	floating
)

func classify(v reflect.Value) numClass {
	switch {
	case isInt(v):
		return signed
	case isUint(v):
		return unsigned
	case isFloat(v):
		return floating
	}
	return notNumber
}

func isInt(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return true
	}
	return false
}

func isUint(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return true
	}
	return false
}

func isFloat(v reflect.Value) bool {
	return v.Kind() == reflect.Float32 || v.Kind() == reflect.Float64
}

func asInt64(v reflect.Value) int64 {
	if isUint(v) {
		return int64(v.Uint())
	}
	return v.Int()
}

func asFloat64(v reflect.Value) float64 {
	switch classify(v) {
	case signed:
		return float64(v.Int())
	case unsigned:
		return float64(v.Uint())
	}
	return v.Float()
}

// own returns v as the 64-bit type of its own class.
func own(v reflect.Value) any {
	switch classify(v) {
	case signed:
		return v.Int()
	case unsigned:
		return v.Uint()
	}
	return v.Float()
}

func operands(name string, b, a any, floatOK bool) (av, bv reflect.Value, err error) {
	av, bv = reflect.ValueOf(a), reflect.ValueOf(b)
	if c := classify(av); c == notNumber || (c == floating && !floatOK) {
		return av, bv, fmt.Errorf("%s: unsupported type %T (value %v)", name, a, a)
	}
	if c := classify(bv); c == notNumber || (c == floating && !floatOK) {
		return av, bv, fmt.Errorf("%s: unsupported type %T (value %v)", name, b, b)
	}
	return av, bv, nil
}

// arith builds a math function; a nil floatOp means floats are refused.
func arith(name string, intOp func(a, b int64) (int64, error), uintOp func(a, b uint64) (uint64, error), floatOp func(a, b float64) float64) func(b, a any) (any, error) {
	return func(b, a any) (any, error) {
		av, bv, err := operands(name, b, a, floatOp != nil)
		if err != nil {
			return nil, err
		}
		ac, bc := classify(av), classify(bv)
		var r any
		switch {
		case ac == floating || bc == floating:
			return floatOp(asFloat64(av), asFloat64(bv)), nil
		case ac == unsigned && bc == unsigned:
			r, err = uintOp(av.Uint(), bv.Uint())
		default:
			r, err = intOp(asInt64(av), asInt64(bv))
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return r, nil
	}
}

var errDivZero = errors.New("division by zero")

func divInt(a, b int64) (int64, error) {
	if b == 0 {
		return 0, errDivZero
	}
	return a / b, nil
}

func divUint(a, b uint64) (uint64, error) {
	if b == 0 {
		return 0, errDivZero
	}
	return a / b, nil
}

func modInt(a, b int64) (int64, error) {
	if b == 0 {
		return 0, errDivZero
	}
	return a % b, nil
}

func modUint(a, b uint64) (uint64, error) {
	if b == 0 {
		return 0, errDivZero
	}
	return a % b, nil
}

// pick builds minimum and maximum: it returns a (as its own 64-bit type)
// when wins(compare(a, b)), else b, as consul-template does.
func pick(name string, wins func(cmp int) bool) func(b, a any) (any, error) {
	return func(b, a any) (any, error) {
		av, bv, err := operands(name, b, a, true)
		if err != nil {
			return nil, err
		}
		var c int
		ac, bc := classify(av), classify(bv)
		switch {
		case ac == floating || bc == floating:
			c = cmp3(asFloat64(av), asFloat64(bv))
		case ac == unsigned && bc == unsigned:
			c = cmp3(av.Uint(), bv.Uint())
		default:
			c = cmp3(asInt64(av), asInt64(bv))
		}
		if wins(c) {
			return own(av), nil
		}
		return own(bv), nil
	}
}

func cmp3[T int64 | uint64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
