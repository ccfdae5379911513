package config

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/autopilot/autopilot/internal/jsonpos"
	"github.com/autopilot/autopilot/internal/lazyre"
	"github.com/autopilot/autopilot/internal/tmpltree"
)

// Interpolation, as ContainerPilot renders its config: the raw text is a Go
// template executed with the environment as data (a variable that is not
// set is ""), with ContainerPilot's functions. On top of that, autopilot's
// own ${VAR} and ${VAR:-default} are expanded in the text outside template
// actions. Two rules keep other uses of the same characters working:
//
//   - {{.Path}} (with any spacing) renders as {{.Path}}: it is autopilot's
//     placeholder for the candidate file in templates[].check, expanded when
//     the check runs. .Path is therefore never an environment variable.
//   - ${VAR} whose VAR is not set and that has no :-default is left as it
//     is, so that a shell command in the config ("sh -c 'echo $${HOME}'", or
//     ContainerPilot's CONTAINERPILOT_<JOB>_IP, which is only set for the
//     processes autopilot starts) still sees it.
//
// Positions survive interpolation: every piece of literal text in the
// output is marked with where it came from, so an error in the rendered
// text is reported at the place in the file the user wrote; text that a
// template action or ${VAR} produced is reported at that action, and the
// message says so.

var envRef = lazyre.New(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// Limits that keep a hostile or mistaken config from exhausting the
// machine while it is rendered.
const (
	maxRendered  = 4 << 20 // bytes of rendered config
	maxLoopItems = 100000  // elements produced by all loop calls of one render
	// maxIterations bounds the iterations of all range actions of one
	// render: Go templates also range over integers ({{range 1000000000}})
	// and recurse through {{template}}, with no output to stop them.
	maxIterations = 100000
)

// iterFunc is the function autopilot puts at the start of every range
// body to count iterations; it renders nothing.
const iterFunc = "autopilotIteration"

// pathPlaceholder is what {{.Path}} renders as during interpolation.
const pathPlaceholder = "{{.Path}}"

// textMap maps offsets in the rendered text to the raw text.
type textMap struct {
	segs []textSeg
	// unset are the raw-text offsets of bare {{.VAR}} actions whose VAR
	// is not set, for the check-command rule (see checkPlaceholders).
	unset []unsetRef
}

type unsetRef struct {
	off  int64
	name string
}

type textSeg struct {
	out, src, n int64
	expansion   bool // the bytes come from ${VAR}, not from template text
}

// Map implements the jsonpos.Options MapOffset contract.
func (m *textMap) Map(off int64) (int64, string) {
	if m == nil {
		return off, ""
	}
	i := sort.Search(len(m.segs), func(i int) bool { return m.segs[i].out > off }) - 1
	if i < 0 {
		return 0, "in text a template action rendered, at the action"
	}
	s := m.segs[i]
	k := off - s.out
	switch {
	case s.expansion:
		return s.src, "in the value a ${VAR} expanded to"
	case k < s.n:
		return s.src + k, ""
	}
	return s.src + s.n, "in text a template action rendered, at the action"
}

// emptyActionAt reports whether the rendered offset off directly follows a
// template action or ${VAR} that rendered nothing: the likely cause of a
// syntax error there ("port: {{ .PORT }}," with PORT unset).
func (m *textMap) emptyActionAt(off int64) bool {
	if m == nil {
		return false
	}
	i := sort.Search(len(m.segs), func(i int) bool { return m.segs[i].out >= off })
	if i == 0 || i >= len(m.segs) || m.segs[i].out != off {
		return false
	}
	p := m.segs[i-1]
	if p.expansion {
		return p.out == off
	}
	return p.out+p.n == off && p.src+p.n < m.segs[i].src
}

// Marker bytes framing "OFFSET:LEN:KIND" in the marked output. NUL cannot
// occur in environment values, and the raw text is refused if it has one.
const (
	markOpen  = '\x00'
	markClose = '\x01'
)

// interpolate renders src (the file name) and returns the rendered text
// with the map back to src.
func interpolate(src []byte, name string, env func(string) (string, bool)) ([]byte, *textMap, error) {
	if i := bytes.IndexByte(src, 0); i >= 0 {
		return nil, nil, errorAtSrc(src, name, int64(i), "NUL byte in the config")
	}
	if !bytes.Contains(src, []byte("{{")) && !bytes.Contains(src, []byte("${")) {
		return src, nil, nil
	}
	budget, iterations := maxLoopItems, 0
	funcs := templateFuncs(env, &budget)
	funcs[iterFunc] = func() (string, error) {
		if iterations++; iterations > maxIterations {
			return "", fmt.Errorf("more than %d range iterations in the whole config", maxIterations)
		}
		return "", nil
	}
	tmpl, err := template.New(name).Funcs(funcs).Option("missingkey=zero").Parse(string(unescapeActions(src)))
	if err != nil {
		return nil, nil, templateError(src, name, err)
	}
	tick, err := template.New("tick").Funcs(funcs).Parse("{{" + iterFunc + "}}")
	if err != nil {
		return nil, nil, err
	}
	tickNode := tick.Tree.Root.Nodes[0]
	if err := noRecursion(tmpl); err != nil {
		return nil, nil, &jsonpos.Error{File: name, Msg: "template: " + err.Error()}
	}
	data := map[string]string{}
	var unset []unsetRef
	for _, t := range tmpl.Templates() {
		if t.Tree == nil || t.Tree.Root == nil {
			continue
		}
		tmpltree.Walk(t.Tree.Root, func(n parse.Node) bool {
			switch n := n.(type) {
			case *parse.RangeNode:
				if n.List != nil {
					n.List.Nodes = append([]parse.Node{tickNode}, n.List.Nodes...)
				}
			case *parse.ActionNode:
				if f := bareField(n); f != "" && f != "Path" {
					if _, ok := env(f); !ok {
						unset = append(unset, unsetRef{off: int64(n.Pos), name: f})
					}
				}
			case *parse.TextNode:
				n.Text = markText(n.Text, int64(n.Pos), env)
			case *parse.FieldNode:
				for _, id := range n.Ident {
					data[id] = ""
				}
			case *parse.VariableNode:
				for _, id := range n.Ident[1:] {
					data[id] = ""
				}
			case *parse.StringNode:
				// The data holds only the variables the template names
				// (env gives a lookup, not a list): string literals are
				// candidates too, for {{ index . "X" }}.
				if envRef().MatchString("${"+n.Text+"}") && len(n.Text) < 256 {
					data[n.Text] = ""
				}
			}
			return true
		})
	}
	for k := range data {
		if v, ok := env(k); ok {
			data[k] = v
		} else {
			delete(data, k)
		}
	}
	data["Path"] = pathPlaceholder
	var out limitedBuffer
	if err := tmpl.Execute(&out, data); err != nil {
		if strings.Contains(err.Error(), iterFunc) {
			return nil, nil, &jsonpos.Error{File: name, Msg: fmt.Sprintf("template: more than %d range iterations in the whole config", maxIterations)}
		}
		if errors.Is(err, errTooLarge) {
			return nil, nil, &jsonpos.Error{File: name, Msg: fmt.Sprintf("the config renders to more than %d bytes", maxRendered)}
		}
		return nil, nil, templateError(src, name, err)
	}
	rendered, m, err := unmark(out.Bytes(), src, name)
	if m != nil {
		m.unset = unset
	}
	return rendered, m, err
}

// noRecursion refuses templates that call themselves, directly or through
// others: a config has no use for recursion, and text/template takes time
// quadratic in the depth to give up on it.
func noRecursion(tmpl *template.Template) error {
	calls := map[string][]string{}
	for _, t := range tmpl.Templates() {
		if t.Tree == nil || t.Tree.Root == nil {
			continue
		}
		tmpltree.Walk(t.Tree.Root, func(n parse.Node) bool {
			if c, ok := n.(*parse.TemplateNode); ok {
				calls[t.Name()] = append(calls[t.Name()], c.Name)
			}
			return true
		})
	}
	state := map[string]int{} // 1 on the path, 2 done
	var visit func(string) error
	visit = func(name string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("template %q calls itself; recursion is not allowed in a config", name)
		case 2:
			return nil
		}
		state[name] = 1
		for _, c := range calls[name] {
			if err := visit(c); err != nil {
				return err
			}
		}
		state[name] = 2
		return nil
	}
	names := make([]string, 0, len(calls))
	for name := range calls {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := visit(name); err != nil {
			return err
		}
	}
	return nil
}

// bareField is X for an action that is just {{.X}}, else "".
func bareField(a *parse.ActionNode) string {
	if a.Pipe == nil || len(a.Pipe.Decl) > 0 || len(a.Pipe.Cmds) != 1 || len(a.Pipe.Cmds[0].Args) != 1 {
		return ""
	}
	if f, ok := a.Pipe.Cmds[0].Args[0].(*parse.FieldNode); ok && len(f.Ident) == 1 {
		return f.Ident[0]
	}
	return ""
}

// unescapeActions accepts template actions written with JSON-escaped
// quotes, as configs do inside JSON strings:
// "{{ .CONSUL | default \"consul\" }}:8500". In Go's template language a
// backslash outside a string literal is always a syntax error, so a \"
// there can only mean a quote: it opens a string literal that the next \"
// closes. Each \" becomes a quote and a space, keeping every offset.
func unescapeActions(src []byte) []byte {
	if !bytes.Contains(src, []byte(`\"`)) {
		return src
	}
	out := bytes.Clone(src)
	for i := 0; i+1 < len(out); i++ {
		if out[i] != '{' || out[i+1] != '{' {
			continue
		}
		i += 2
		if j := bytes.Index(out[i:], []byte("}}")); j >= 0 && bytes.HasPrefix(bytes.TrimLeft(out[i:i+j], "- "), []byte("/*")) {
			if k := bytes.Index(out[i:], []byte("*/")); k >= 0 {
				i += k + 1
			}
			continue
		}
		for ; i+1 < len(out) && !(out[i] == '}' && out[i+1] == '}'); i++ {
			switch {
			case out[i] == '\\' && out[i+1] == '"':
				// An escaped string: up to the next \".
				out[i], out[i+1] = ' ', '"'
				for i += 2; i+1 < len(out); i++ {
					if out[i] == '\\' && out[i+1] == '"' {
						out[i], out[i+1] = '"', ' '
						i++
						break
					}
				}
			case out[i] == '"':
				for i++; i < len(out) && out[i] != '"'; i++ {
					if out[i] == '\\' {
						i++
					}
				}
			case out[i] == '`':
				for i++; i < len(out) && out[i] != '`'; i++ {
				}
			}
		}
		i++
	}
	return out
}

// markText prefixes each piece of a template text node with a marker of
// where it is in the raw text, expanding ${VAR} on the way.
func markText(text []byte, pos int64, env func(string) (string, bool)) []byte {
	var b bytes.Buffer
	mark := func(off, n int64, expansion bool) {
		kind := "t"
		if expansion {
			kind = "e"
		}
		fmt.Fprintf(&b, "%c%d:%d:%s%c", markOpen, off, n, kind, markClose)
	}
	last := 0
	for _, m := range envRef().FindAllSubmatchIndex(text, -1) {
		v, ok := env(string(text[m[2]:m[3]]))
		hasDefault := m[4] >= 0
		if !ok && !hasDefault {
			continue // left as it is: see the package rules
		}
		if (!ok || v == "") && hasDefault {
			v = string(text[m[6]:m[7]])
		}
		if m[0] > last {
			mark(pos+int64(last), int64(m[0]-last), false)
			b.Write(text[last:m[0]])
		}
		mark(pos+int64(m[0]), 0, true)
		b.WriteString(v)
		last = m[1]
	}
	mark(pos+int64(last), int64(len(text)-last), false)
	b.Write(text[last:])
	return b.Bytes()
}

// unmark strips the markers from the executed output, building the map.
func unmark(marked, src []byte, name string) ([]byte, *textMap, error) {
	m := &textMap{}
	out := make([]byte, 0, len(marked))
	for {
		i := bytes.IndexByte(marked, markOpen)
		if i < 0 {
			out = append(out, marked...)
			return out, m, nil
		}
		out = append(out, marked[:i]...)
		j := bytes.IndexByte(marked[i:], markClose)
		var off, n int64
		var kind string
		ok := j > 0
		if ok {
			parts := strings.Split(string(marked[i+1:i+j]), ":")
			ok = len(parts) == 3
			if ok {
				var e1, e2 error
				off, e1 = strconv.ParseInt(parts[0], 10, 64)
				n, e2 = strconv.ParseInt(parts[1], 10, 64)
				kind = parts[2]
				ok = e1 == nil && e2 == nil && (kind == "t" || kind == "e")
			}
		}
		if !ok {
			// Only a template action can put a NUL in the output.
			mo, _ := m.Map(int64(len(out)))
			return nil, nil, errorAtSrc(src, name, mo, "the config renders a NUL byte")
		}
		m.segs = append(m.segs, textSeg{out: int64(len(out)), src: off, n: n, expansion: kind == "e"})
		marked = marked[i+j+1:]
	}
}

var templateErrPos = lazyre.New(`^(\d+)(?::(\d+))?:\s*(.*)$`)

// templateError turns a text/template error into a positioned one.
func templateError(src []byte, name string, err error) error {
	msg := err.Error()
	rest, ok := strings.CutPrefix(msg, "template: "+name+":")
	if !ok {
		return &jsonpos.Error{File: name, Msg: "template: " + strings.TrimPrefix(msg, "template: ")}
	}
	m := templateErrPos().FindStringSubmatch(rest)
	if m == nil {
		return &jsonpos.Error{File: name, Msg: "template: " + rest}
	}
	line, _ := strconv.Atoi(m[1])
	col := 0
	if m[2] != "" {
		// text/template counts the column in bytes from 0 here; convert
		// it to the characters the rest of the errors count, from 1.
		c, _ := strconv.Atoi(m[2])
		col = charCol(src, line, c)
	}
	text := m[3]
	// "executing "NAME" at <.X>: ..." repeats the file name.
	text = strings.Replace(text, fmt.Sprintf("executing %q at ", name), "at ", 1)
	return &jsonpos.Error{File: name, Line: line, Col: col, Msg: "template: " + text}
}

// charCol converts a 0-based byte column on line (1-based) to a 1-based
// character column.
func charCol(src []byte, line, byteCol int) int {
	lines := bytes.SplitN(src, []byte("\n"), line+1)
	if line-1 >= len(lines) {
		return byteCol + 1
	}
	l := lines[line-1]
	if byteCol > len(l) {
		byteCol = len(l)
	}
	return len([]rune(string(l[:byteCol]))) + 1
}

// errorAtSrc is an error at a byte offset of the raw text.
func errorAtSrc(src []byte, name string, off int64, msg string) error {
	line, col := lineColAt(src, off)
	return &jsonpos.Error{File: name, Line: line, Col: col, Msg: msg}
}

// lineColAt is the 1-based line and character column of a byte offset.
func lineColAt(src []byte, off int64) (line, col int) {
	off = min(max(off, 0), int64(len(src)))
	before := src[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = len([]rune(string(before[bytes.LastIndexByte(before, '\n')+1:]))) + 1
	return line, col
}

var errTooLarge = errors.New("rendered config too large")

// limitedBuffer is a bytes.Buffer that refuses to grow past maxRendered.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > maxRendered*2 { // markers count too
		return 0, errTooLarge
	}
	return b.Buffer.Write(p)
}

// templateFuncs are ContainerPilot's config template functions, with the
// same names, argument orders and results. budget bounds loop.
func templateFuncs(env func(string) (string, bool), budget *int) template.FuncMap {
	return template.FuncMap{
		"default": func(def, v any) string {
			if s, ok := v.(string); ok && s != "" {
				return s
			}
			if s, ok := def.(string); ok {
				return s
			}
			return fmt.Sprint(def)
		},
		"env": func(name string) string {
			v, _ := env(name)
			return v
		},
		"split": func(sep, s string) []string {
			s = strings.TrimSpace(s)
			if s == "" {
				return []string{}
			}
			return strings.Split(s, sep)
		},
		"join": func(sep string, s []string) string { return strings.Join(s, sep) },
		"replaceAll": func(from, to, s string) string {
			return strings.ReplaceAll(s, from, to)
		},
		"regexReplaceAll": func(re, to, s string) (string, error) {
			r, err := regexp.Compile(re)
			if err != nil {
				return "", err
			}
			return r.ReplaceAllString(s, to), nil
		},
		"loop": func(params ...any) ([]int, error) {
			ints := make([]int, len(params))
			for i, p := range params {
				switch v := p.(type) {
				case int:
					ints[i] = v
				case string:
					n, err := strconv.Atoi(v)
					if err != nil {
						return nil, fmt.Errorf("loop: %q is not a whole number", v)
					}
					ints[i] = n
				default:
					return nil, fmt.Errorf("loop: want whole numbers, got %T", p)
				}
			}
			var start, stop int
			switch len(ints) {
			case 1:
				stop = ints[0]
			case 2:
				start, stop = ints[0], ints[1]
			default:
				return nil, fmt.Errorf("loop: want 1 or 2 arguments, got %d", len(ints))
			}
			n := stop - start
			if n < 0 {
				n = -n
			}
			if n < 0 || n > *budget {
				return nil, fmt.Errorf("loop: more than %d iterations in the whole config", maxLoopItems)
			}
			*budget -= n
			out := make([]int, 0, n)
			for i := start; i != stop; {
				out = append(out, i)
				if stop > start {
					i++
				} else {
					i--
				}
			}
			return out, nil
		},
	}
}
