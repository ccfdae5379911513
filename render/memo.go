package render

import (
	"errors"
	"reflect"
	"strconv"
	"sync/atomic"
	"text/template"
	"text/template/parse"

	"github.com/autopilot/autopilot/internal/dep"
)

// A {{ range }} over a service's instances runs its body once per instance
// at every change, through text/template's reflection (a field looked up by
// name, a method value built per call): 3-4 µs an instance, 35 ms of CPU per
// change at 10,000 instances, most of what a change costs. Between two
// answers all instances but the changed one are the same values (dep.Decoder
// keeps their pointers), so when a body depends on nothing but its element,
// its output for them is the same as last time. Parse finds such ranges and
// has each run by a function that reuses an element's output from the
// previous execution and runs the body only for elements it has not seen.
//
// A body qualifies when, on the parse tree, it reads and declares no
// variable ($ included), has no {{ template }}, {{ break }} or
// {{ continue }}, and calls only functions in memoSafe, whose results depend
// on their arguments alone: its output is then a function of its element.
// Elements are remembered by identity when they are pointers to dep's values
// (decoded once, shared by every template, never modified) and by value when
// they are strings, integers or booleans; any other element runs the body
// every time. A template that calls a function that sorts its argument in
// place (memoMutators) anywhere gets no memo: it could change a shared value
// behind a remembered pointer.
//
// An execution that fails runs again with every range as written, so errors
// and output are text/template's own; if that run succeeds, the memo was the
// cause (a range over a map, a number or nothing) and the template keeps
// running as written. TestMemoMatchesPlain and FuzzMemo compare the two.
type memo struct {
	ranges []*memoRange
	b      *bound // the running execution's; nil between executions
}

// memoRange is one remembered {{ range PIPE }}BODY{{ else }}ELSE{{ end }}.
// While remembering it reads {{ range NAME (PIPE) }}{{ . }}{{ else }}ELSE
// {{ end }}: NAME ranges over PIPE's value itself, reusing or producing each
// element's output, and returns the whole output as the one element of a
// list, or an empty list when there is nothing to range over, so that ELSE
// runs as written.
type memoRange struct {
	m           *memo
	node        *parse.RangeNode
	pipe, call  *parse.PipeNode    // PIPE as written; NAME (PIPE)
	body, print *parse.ListNode    // BODY as written; {{ . }}
	sub         *template.Template // runs BODY with an element as dot
	off         bool               // ranged over something else than a list: stays as written
	// prev holds the outputs of the last successful execution, cur this
	// execution's: an element not seen in the last one is forgotten. spare
	// is the map before prev, emptied, for the next cur.
	prev, cur, spare map[any]string
	buf, out         []byte
	runs             atomic.Int64 // executions of BODY, for tests
}

// errNotList makes an execution run again as written: text/template ranges
// over maps (in its own key order), numbers, channels and iterators too.
var errNotList = errors.New("range over something else than a list")

// memoSafe are the functions a remembered body may call: text/template's
// builtins except call, and the helpers whose result depends only on their
// arguments (not env, file, timestamp, scratch, executeTemplate, loop, or
// any function that reads Consul).
var memoSafe = func() map[string]bool {
	names := []string{
		// text/template.
		"and", "or", "not", "len", "index", "slice", "eq", "ne", "lt", "le", "gt", "ge",
		"print", "printf", "println", "html", "js", "urlquery",
		// consul-template's helpers.
		"byKey", "byTag", "byMeta", "contains", "containsAll", "containsAny", "containsNone",
		"containsNotAll", "in", "explode", "explodeMap", "join", "split", "splitToMap", "indent",
		"trim", "trimPrefix", "trimSuffix", "trimSpace", "replaceAll", "regexMatch",
		"regexReplaceAll", "toLower", "toUpper", "toTitle", "parseBool", "parseFloat", "parseInt",
		"parseUint", "parseJSON", "parseYAML", "toJSON", "toJSONPretty", "toUnescapedJSON",
		"toUnescapedJSONPretty", "toYAML", "toTOML", "base64Encode", "base64Decode",
		"base64URLEncode", "base64URLDecode", "sha256Hex", "md5sum", "hmacSHA256Hex",
		"add", "subtract", "multiply", "divide", "modulo", "minimum", "maximum",
	}
	// Sprig's string and conversion functions, under both spellings.
	for _, n := range []string{
		"upper", "lower", "title", "untitle", "trimAll", "quote", "squote", "replace",
		"hasPrefix", "hasSuffix", "default", "empty", "coalesce", "ternary", "toString",
		"atoi", "int", "int64", "repeat", "substr", "trunc", "nospace", "nindent", "cat",
		"b64enc", "b64dec", "sha1sum", "sha256sum", "splitList",
	} {
		names = append(names, n, "sprig_"+n)
	}
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}()

// memoMutators sort a []string argument in place.
var memoMutators = map[string]bool{"sortAlpha": true, "sprig_sortAlpha": true}

// memoCallPrefix names the functions that run remembered ranges. A
// template cannot call them: they are given to it after its text parsed.
const memoCallPrefix = "_autopilotMemo"

// newMemo finds the ranges of tm's templates worth remembering, gives tm
// the functions that run them and puts them in place. funcs is what tm was
// parsed with; strict is Options.Strict. nil: nothing to remember.
func newMemo(tm *template.Template, funcs template.FuncMap, strict bool) *memo {
	var trees []*parse.Tree
	for _, x := range tm.Templates() {
		if x.Tree != nil && x.Root != nil {
			trees = append(trees, x.Tree)
		}
	}
	for _, tr := range trees {
		mutates := false
		walkNodes(tr.Root, func(n parse.Node) bool {
			if id, ok := n.(*parse.IdentifierNode); ok && memoMutators[id.Ident] {
				mutates = true
			}
			return !mutates
		})
		if mutates {
			return nil
		}
	}
	missingkey := "missingkey=zero"
	if strict {
		missingkey = "missingkey=error"
	}
	m := &memo{}
	stand := template.FuncMap{}
	for _, tr := range trees {
		walkNodes(tr.Root, func(n parse.Node) bool {
			rn, ok := n.(*parse.RangeNode)
			if !ok || !memoizable(rn) {
				return true
			}
			r := &memoRange{m: m, node: rn, pipe: rn.Pipe, body: rn.List}
			name := memoCallPrefix + strconv.Itoa(len(m.ranges))
			fn := func(v reflect.Value) ([]string, error) { return r.run(v) }
			stub, err := parse.Parse(name, "{{range "+name+" .}}{{.}}{{end}}", "{{", "}}", map[string]any{name: fn})
			if err != nil {
				return true // a fixed text: cannot happen; the range stays as written
			}
			sr := stub[name].Root.Nodes[0].(*parse.RangeNode)
			r.call, r.print = sr.Pipe, sr.List
			r.call.Cmds[0].Args[1] = rn.Pipe // NAME (PIPE)
			used := template.FuncMap{}
			walkNodes(rn.List, func(n parse.Node) bool {
				if id, ok := n.(*parse.IdentifierNode); ok && funcs[id.Ident] != nil {
					used[id.Ident] = funcs[id.Ident]
				}
				return true
			})
			// BODY's nodes stay tm's, so an error in it still names the
			// template's file, line and column.
			r.sub = template.New(tm.Name()).Option(missingkey).Funcs(used)
			if _, err := r.sub.AddParseTree(tm.Name(), &parse.Tree{Name: tm.Name(), ParseName: tr.ParseName, Root: rn.List}); err != nil {
				return true
			}
			stand[name] = fn
			m.ranges = append(m.ranges, r)
			return false // nested ranges run inside sub, as written
		})
	}
	if len(m.ranges) == 0 {
		return nil
	}
	tm.Funcs(stand)
	m.apply()
	return m
}

// walkNodes calls f on n and, while f returns true, on everything under n.
func walkNodes(n parse.Node, f func(parse.Node) bool) {
	if n == nil || reflect.ValueOf(n).IsNil() || !f(n) {
		return
	}
	switch n := n.(type) {
	case *parse.ListNode:
		for _, c := range n.Nodes {
			walkNodes(c, f)
		}
	case *parse.ActionNode:
		walkNodes(n.Pipe, f)
	case *parse.PipeNode:
		for _, v := range n.Decl {
			walkNodes(v, f)
		}
		for _, c := range n.Cmds {
			walkNodes(c, f)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			walkNodes(a, f)
		}
	case *parse.ChainNode:
		walkNodes(n.Node, f)
	case *parse.IfNode:
		walkBranch(&n.BranchNode, f)
	case *parse.WithNode:
		walkBranch(&n.BranchNode, f)
	case *parse.RangeNode:
		walkBranch(&n.BranchNode, f)
	case *parse.TemplateNode:
		walkNodes(n.Pipe, f)
	}
}

func walkBranch(b *parse.BranchNode, f func(parse.Node) bool) {
	walkNodes(b.Pipe, f)
	walkNodes(b.List, f)
	walkNodes(b.ElseList, f)
}

// memoizable reports whether rn's body depends on its element alone (see
// memo) and does enough work to be worth remembering.
func memoizable(rn *parse.RangeNode) bool {
	if rn.List == nil || rn.Pipe == nil || len(rn.Pipe.Decl) > 0 {
		return false
	}
	ok, work := true, false
	walkNodes(rn.List, func(n parse.Node) bool {
		switch n := n.(type) {
		case *parse.VariableNode, *parse.TemplateNode, *parse.BreakNode, *parse.ContinueNode:
			ok = false
		case *parse.PipeNode:
			if len(n.Decl) > 0 {
				ok = false
			}
		case *parse.IdentifierNode:
			if !memoSafe[n.Ident] {
				ok = false
			}
		case *parse.ActionNode, *parse.IfNode, *parse.WithNode, *parse.RangeNode:
			work = true
		}
		return ok
	})
	return ok && work
}

// apply puts the remembering ranges in place; unapply puts the ranges as
// written back.
func (m *memo) apply() {
	for _, r := range m.ranges {
		if !r.off {
			r.node.Pipe, r.node.List = r.call, r.print
		}
	}
}

func (m *memo) unapply() {
	for _, r := range m.ranges {
		r.node.Pipe, r.node.List = r.pipe, r.body
	}
}

// begin starts an execution writing to b.
func (m *memo) begin(b *bound) {
	m.b = b
	for _, r := range m.ranges {
		r.cur, r.spare = r.spare, nil
		if r.cur == nil {
			r.cur = make(map[any]string, len(r.prev))
		}
	}
}

// end finishes it: a successful execution's outputs are the next one's to
// reuse; a failed one's are dropped.
func (m *memo) end(ok bool) {
	m.b = nil
	for _, r := range m.ranges {
		if ok {
			r.prev, r.cur = r.cur, r.prev
		}
		clear(r.cur)
		r.cur, r.spare = nil, r.cur
	}
}

// run ranges over v as text/template does over a list, and returns the
// output of all elements as one element, or none for an empty list or nil
// (so that the range's else branch runs).
func (r *memoRange) run(v reflect.Value) ([]string, error) {
	v = indirect(v)
	switch v.Kind() {
	case reflect.Invalid:
		return nil, nil
	case reflect.Slice, reflect.Array:
		if v.Len() == 0 {
			return nil, nil
		}
	default:
		r.off = true
		return nil, errNotList
	}
	r.out = r.out[:0]
	for i := range v.Len() {
		s, err := r.element(v.Index(i))
		if err != nil {
			return nil, err
		}
		r.out = append(r.out, s...)
	}
	return []string{string(r.out)}, nil
}

// element is the body's output for one element.
func (r *memoRange) element(v reflect.Value) (string, error) {
	key, keyed := memoKey(v)
	if keyed {
		if s, ok := r.cur[key]; ok {
			return s, nil
		}
		if s, ok := r.prev[key]; ok {
			r.cur[key] = s
			return s, nil
		}
	}
	r.runs.Add(1)
	w := &memoWriter{b: r.m.b, before: len(r.out), buf: r.buf[:0]}
	err := r.sub.Execute(w, v)
	r.buf = w.buf
	if err != nil {
		return "", err
	}
	s := string(w.buf)
	if keyed {
		r.cur[key] = s
	}
	return s, nil
}

// indirect is text/template's: through pointers and interfaces to the
// value, stopping at a nil one.
func indirect(v reflect.Value) reflect.Value {
	for ; v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface; v = v.Elem() {
		if v.IsNil() {
			return v
		}
	}
	return v
}

// depPkg is dep's import path, to recognise its values.
var depPkg = reflect.TypeFor[dep.HealthService]().PkgPath()

// memoKey is what v is remembered by, if it can be.
func memoKey(v reflect.Value) (any, bool) {
	if !v.IsValid() || !v.CanInterface() {
		return nil, false
	}
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() && v.Type().Elem().PkgPath() == depPkg {
			return v.Interface(), true
		}
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Interface(), true
	}
	return nil, false
}

// memoWriter collects one body's output within the execution's bounds: it
// stops when the execution is cancelled or when the output so far (before
// bytes of this range and the execution's own) and this body's would pass
// the cap.
type memoWriter struct {
	b      *bound
	before int
	buf    []byte
}

func (w *memoWriter) Write(p []byte) (int, error) {
	if err := w.b.check(); err != nil {
		return 0, err
	}
	if w.b.n+int64(w.before+len(w.buf)+len(p)) > w.b.max {
		return 0, ErrOutputLimit
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}
