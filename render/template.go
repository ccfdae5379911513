// Package render turns templates into config files from Consul data:
// it executes a template to discover what it depends on, waits until every
// dependency has data, writes the result atomically, and re-renders when
// the data changes. The same engine serves `autopilot render` and the
// supervisor's `templates`.
package render

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/autopilot/autopilot/internal/dep"
	"github.com/autopilot/autopilot/internal/lazyre"
)

// Template is a parsed template. Parsing happens once; each Execute binds
// the data source for that pass only, so re-renders never reparse.
// A Template is safe for concurrent use (executions are serialised).
type Template struct {
	name string // the source path, used in every error
	tmpl *template.Template

	opts Options

	// sem serialises executions and guards pass, memo and size. A channel
	// rather than a mutex so that a caller whose context ends stops waiting
	// for it.
	sem  chan struct{}
	pass *pass
	memo *memo // nil: no range body to remember (memo.go)
	size int   // the last output's length: the next one's buffer starts that large
}

// Options change how a template executes.
type Options struct {
	// Strict makes a missing map key an error (missingkey=error) instead of
	// consul-template's default, missingkey=zero: the map's zero value
	// ("" for map[string]string; "<no value>" only for interface maps).
	Strict bool
	// MinInstances makes a `service` answer with fewer instances count as
	// missing data, so the file keeps its last good content rather than
	// losing upstreams (0 = off, consul-template's behaviour).
	MinInstances int
	// MaxOutput caps the bytes one execution may produce (0 =
	// DefaultMaxOutput, 64 MiB); past it the execution fails with
	// ErrOutputLimit and nothing is written.
	MaxOutput int64
	// LeftDelim and RightDelim replace "{{" and "}}" (consul-template's
	// left_delimiter/right_delimiter); empty keeps the default.
	LeftDelim, RightDelim string
	// Env holds NAME=VALUE entries that env, mustEnv and envOrDefault look
	// up before the process environment: consul-template gives its
	// templates its CONSUL_HTTP_* settings this way.
	Env []string
	// FunctionDenylist is consul-template's function_denylist: glob
	// patterns ("*" only) of functions the template may not call. The
	// template still parses; a call fails the execution with "function is
	// disabled".
	FunctionDenylist []string
	// SandboxPath is consul-template's sandbox_path: when set, `file` reads
	// only existing files whose path, symlinks resolved, is inside it.
	SandboxPath string

	// noMemo executes every range body as written (memo.go), for tests
	// that compare the two.
	noMemo bool
}

// allHelpers is Sprig plus consul-template's helpers, shared by every
// template: they hold no state (executeTemplate and scratch are only
// placeholders until bindTemplateFuncs rebinds them per execution).
var allHelpers = sync.OnceValue(helperFuncs)

// Parse parses text as the template named name (its source path).
func Parse(name, text string, opts Options) (*Template, error) {
	t := &Template{name: name, sem: make(chan struct{}, 1)}
	// Hand text/template only the functions the source spells out (a name
	// that is not in the text cannot be called). All of them is ~450 entries
	// (Sprig twice, as NAME and sprig_NAME, plus the helpers) that it copies
	// into two maps per template: 125 KiB of live heap each, so 100
	// templates doubled the process's RSS (bench/, load scenario). The full
	// set is built once, not per template, for the same reason.
	funcs := template.FuncMap{}
	for k, v := range allHelpers() {
		if strings.Contains(text, k) {
			funcs[k] = v
		}
	}
	for k, v := range t.consulFuncs() {
		funcs[k] = v
	}
	if len(opts.Env) > 0 {
		for k, v := range envFuncs(opts.Env) {
			if _, used := funcs[k]; used {
				funcs[k] = v
			}
		}
	}
	if _, ok := funcs["file"]; ok && opts.SandboxPath != "" {
		funcs["file"] = fileIn(opts.SandboxPath)
	}
	deny(funcs, text, opts.FunctionDenylist)
	tm := template.New(name).Delims(opts.LeftDelim, opts.RightDelim).Funcs(funcs)
	if opts.Strict {
		tm = tm.Option("missingkey=error")
	} else {
		tm = tm.Option("missingkey=zero") // consul-template's default
	}
	if _, err := tm.Parse(text); err != nil {
		return nil, positionError(name, text, err)
	}
	t.tmpl = tm
	t.opts = opts
	if !opts.noMemo {
		t.memo = newMemo(tm, funcs, opts.Strict)
	}
	return t, nil
}

// ParseFile reads and parses a template file.
func ParseFile(path string, opts Options) (*Template, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", path, err)
	}
	return Parse(path, string(b), opts)
}

// Name is the template's source path.
func (t *Template) Name() string { return t.name }

// Result is the outcome of one execution.
type Result struct {
	Output []byte
	// Used lists every query the template made, in first-use order: the
	// template's dependencies for this pass.
	Used []dep.Query
	// Missing lists the queries that had no (or not enough) data; the output
	// must not be written while it is non-empty.
	Missing []Missing
}

// Complete reports whether every dependency had data.
func (r *Result) Complete() bool { return len(r.Missing) == 0 }

// Missing is a dependency that kept a render from completing, and why.
type Missing struct {
	Query  dep.Query
	Reason string // "no data yet", "key does not exist", "prefix is empty", "1 of 2 instances"
}

func (m Missing) String() string { return m.Query.String() + ": " + m.Reason }

// pass is the state of one execution: where data comes from and what was asked.
type pass struct {
	src     dep.Source
	notify  chan<- struct{}
	used    map[dep.Query]bool
	order   []dep.Query
	missing []Missing
	bound   *bound
}

// Execute runs the template against src with no deadline; see ExecuteContext.
func (t *Template) Execute(src dep.Source, notify chan<- struct{}) (*Result, error) {
	return t.ExecuteContext(context.Background(), src, notify)
}

// ExecuteContext runs the template against src. Every query it makes is
// subscribed with notify (nil: no subscription), so the caller hears about
// changes to exactly what this pass used. Queries without data render as
// empty values and are reported in Result.Missing.
//
// The execution is bounded: it stops when ctx ends (the error wraps
// ErrCanceled and ctx's cause) and when its output would exceed
// Options.MaxOutput (ErrOutputLimit). text/template has no context, so
// the output writer, `loop` and every Consul lookup check ctx; and since a
// template could still spin without calling any of them (a range over a
// large number with an empty body), ExecuteContext returns as soon as ctx
// ends in any case, leaving such an execution to finish in the background.
func (t *Template) ExecuteContext(ctx context.Context, src dep.Source, notify chan<- struct{}) (*Result, error) {
	select {
	case t.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, t.canceled(ctx)
	}
	b, stop := newBound(ctx, t.opts.MaxOutput)
	type outcome struct {
		res *Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		defer func() { <-t.sem }()
		defer stop()
		p := &pass{src: src, notify: notify, used: map[dep.Query]bool{}, bound: b}
		t.pass = p
		defer func() { t.pass = nil }()
		b.buf = make([]byte, 0, t.size+t.size/8)
		err := t.run(b)
		t.size = len(b.buf)
		if err == nil {
			// A lookup that saw the cancellation returned no data; the
			// output must not pass for complete.
			err = b.check()
		}
		res := &Result{Output: b.buf, Used: p.order, Missing: p.missing}
		if err != nil {
			done <- outcome{res, executeError(t.name, err)}
			return
		}
		done <- outcome{res, nil}
	}()
	select {
	case o := <-done:
		return o.res, o.err
	case <-ctx.Done():
		// Give an execution that noticed the cancellation a moment to
		// return its own error (it says where it stopped).
		select {
		case o := <-done:
			return o.res, o.err
		case <-time.After(50 * time.Millisecond):
			return nil, t.canceled(ctx)
		}
	}
}

// run executes the template once into b. An execution with remembered
// ranges that fails runs again as written, so that the error and the output
// are text/template's own. If that run succeeds, the memo caused the
// failure: a range that met something else than a list stays as written,
// and for any other cause the template does without the memo from now on.
func (t *Template) run(b *bound) error {
	bindTemplateFuncs(t.tmpl, b, t.opts.FunctionDenylist) // fresh scratch, executeTemplate bound to this template
	m := t.memo
	if m == nil {
		return t.tmpl.Execute(b, nil)
	}
	m.begin(b)
	err := t.tmpl.Execute(b, nil)
	m.end(err == nil)
	if err == nil {
		return nil
	}
	b.buf, b.n = b.buf[:0], 0
	bindTemplateFuncs(t.tmpl, b, t.opts.FunctionDenylist)
	m.unapply()
	if err2 := t.tmpl.Execute(b, nil); err2 != nil || errors.Is(err, errNotList) {
		m.apply() // a range that met something else than a list stays as written
		return err2
	}
	t.memo = nil
	return nil
}

func (t *Template) canceled(ctx context.Context) error {
	return fmt.Errorf("%s: %w: %w", t.name, ErrCanceled, context.Cause(ctx))
}

// recall looks q up in the current pass's source, subscribing to it.
func (t *Template) recall(q dep.Query) (any, bool) {
	p := t.pass
	if p.bound != nil && p.bound.ctx.Err() != nil {
		// Stopped: subscribe to nothing more (the caller may already have
		// unsubscribed this pass's queries) and let the writer end it.
		p.bound.stopped.Store(true)
		return nil, false
	}
	if !p.used[q] {
		p.used[q] = true
		p.order = append(p.order, q)
		if p.notify != nil {
			p.src.Subscribe(q, p.notify)
		}
	}
	v, ok := p.src.Get(q)
	if !ok {
		p.miss(q, "no data yet")
	}
	return v, ok
}

func (p *pass) miss(q dep.Query, reason string) {
	for _, m := range p.missing {
		if m.Query == q {
			return
		}
	}
	p.missing = append(p.missing, Missing{Query: q, Reason: reason})
}

// positionError makes a parse error say file:line:col. text/template
// reports "template: NAME:LINE: msg"; the column is found from the
// offending token when the message quotes one.
func positionError(name, text string, err error) error {
	msg := err.Error()
	prefix := "template: " + name + ":"
	if !strings.HasPrefix(msg, prefix) {
		return fmt.Errorf("%s: %w", name, err)
	}
	rest := msg[len(prefix):]
	line, detail, ok := strings.Cut(rest, ": ")
	if !ok {
		return fmt.Errorf("%s: %w", name, err)
	}
	var ln int
	if _, scanErr := fmt.Sscanf(line, "%d", &ln); scanErr != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if m := undefinedFunc().FindStringSubmatch(detail); m != nil {
		if why, ok := leftOut[m[1]]; ok {
			// Say why, not just "not defined": the user's template came from
			// consul-template, where the function exists.
			detail = fmt.Sprintf("%s: %s (see docs/functions.md)", m[1], why)
			col := 0
			if ls := strings.Split(text, "\n"); ln >= 1 && ln <= len(ls) {
				col = strings.Index(ls[ln-1], m[1]) + 1
			}
			return &PositionError{File: name, Line: ln, Col: col, Msg: detail, Err: err}
		}
		if near := nearestFunc(m[1]); near != "" {
			detail += fmt.Sprintf(" (did you mean %s?)", near)
		}
	}
	if strings.Contains(detail, "unexpected EOF") || strings.Contains(detail, "unexpected {{end}}") {
		if oln, ocol, what, ok := unclosedBlock(text); ok {
			return &PositionError{File: name, Line: oln, Col: ocol, Msg: fmt.Sprintf("{{ %s }} opened here is never closed with {{ end }} (the file ends at line %d)", what, ln), Err: err}
		}
	}
	col := guessColumn(text, ln, detail)
	if col > 0 {
		return &PositionError{File: name, Line: ln, Col: col, Msg: detail, Err: err}
	}
	return &PositionError{File: name, Line: ln, Msg: detail, Err: err}
}

// action matches one {{ ... }} action, with its trim markers.
var action = lazyre.New(`(?s){{-?\s*(/\*.*?\*/|[^{}]*?)\s*-?}}`)

// unclosedBlock finds the innermost block action (range, if, with, define,
// block) that has no matching end, so "unexpected EOF" can point at where
// the block opened rather than at the end of the file.
func unclosedBlock(text string) (line, col int, what string, ok bool) {
	type open struct {
		off  int
		what string
	}
	var stack []open
	for _, m := range action().FindAllStringSubmatchIndex(text, -1) {
		body := strings.TrimSpace(text[m[2]:m[3]])
		word, _, _ := strings.Cut(body, " ")
		switch word {
		case "range", "if", "with", "define", "block":
			stack = append(stack, open{off: m[0], what: body})
		case "end":
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		}
	}
	if len(stack) == 0 {
		return 0, 0, "", false
	}
	o := stack[len(stack)-1]
	before := text[:o.off]
	line = strings.Count(before, "\n") + 1
	col = o.off - strings.LastIndex(before, "\n")
	what = o.what
	if len(what) > 40 {
		what = what[:40] + "..."
	}
	return line, col, what, true
}

// nearestFunc is the known function closest to a misspelt name (at most
// two edits away, and fewer than the name's length), or "".
func nearestFunc(name string) string {
	best, bestD := "", 3
	consider := func(n string) {
		if d := editDistance(strings.ToLower(name), strings.ToLower(n)); d < bestD && d < len(name) {
			best, bestD = n, d
		} else if d == bestD && d < len(name) && n < best {
			best = n
		}
	}
	for _, n := range consulNames {
		consider(n)
	}
	for n := range consulTemplateHelpers() {
		consider(n)
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var undefinedFunc = lazyre.New(`^function "([^"]+)" not defined$`)

var quoted = lazyre.New(`"([^"]+)"|(\S+) not defined`)

// guessColumn finds the 1-based column of the token an error names on line ln.
func guessColumn(text string, ln int, detail string) int {
	lines := strings.Split(text, "\n")
	if ln < 1 || ln > len(lines) {
		return 0
	}
	l := lines[ln-1]
	if m := quoted().FindStringSubmatch(detail); m != nil {
		tok := m[1]
		if tok == "" {
			tok = m[2]
		}
		if i := strings.Index(l, tok); i >= 0 {
			return i + 1
		}
	}
	if i := strings.Index(l, "{{"); i >= 0 {
		return i + 1
	}
	return 0
}

// PositionError is a template error with its place in the source.
type PositionError struct {
	File      string
	Line, Col int // Col 0 = unknown
	Msg       string
	Err       error
}

func (e *PositionError) Error() string {
	if e.Col > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

func (e *PositionError) Unwrap() error { return e.Err }

// execPos matches text/template's "template: NAME:LINE:COL: executing ..." prefix.
var execPos = lazyre.New(`^template: (.*?):(\d+):(\d+): (.*)$`)

// executeError reformats an execution error as file:line:col: message.
func executeError(name string, err error) error {
	var ee template.ExecError
	msg := err.Error()
	if errors.As(err, &ee) {
		msg = ee.Err.Error()
	}
	if m := execPos().FindStringSubmatch(msg); m != nil {
		var ln, col int
		fmt.Sscanf(m[2], "%d", &ln)
		fmt.Sscanf(m[3], "%d", &col)
		return &PositionError{File: name, Line: ln, Col: col, Msg: tidyExecMsg(name, m[4]), Err: err}
	}
	return fmt.Errorf("%s: %w", name, err)
}

// callErr matches text/template's "error calling NAME: " prefix.
var callErr = lazyre.New(`error calling (\w+): `)

// tidyExecMsg drops what the position already says: text/template's
// `executing "FILE"` (the file is named once, in front), and a function's
// own name repeated after "error calling NAME:".
func tidyExecMsg(name, msg string) string {
	msg = strings.Replace(msg, fmt.Sprintf("executing %q at ", name), "at ", 1)
	if m := callErr().FindStringSubmatchIndex(msg); m != nil {
		fn := msg[m[2]:m[3]]
		rest := msg[m[1]:]
		if strings.HasPrefix(rest, fn+": ") {
			msg = msg[:m[1]] + rest[len(fn)+2:]
		}
	}
	return msg
}
