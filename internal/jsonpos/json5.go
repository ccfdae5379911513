package jsonpos

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// OffsetMap maps byte offsets in a transformed text back to the text it
// was made from. It is a sorted list of segments: inside an exact segment
// (text copied unchanged) offsets map one to one; inside a rewritten one
// (a re-quoted string, a converted number) every offset maps to its start.
type OffsetMap struct {
	segs []segment
}

type segment struct {
	out, src int64
	exact    bool
}

func (m *OffsetMap) add(out, src int64, exact bool) {
	if n := len(m.segs); n > 0 && exact && m.segs[n-1].exact && out-m.segs[n-1].out == src-m.segs[n-1].src {
		return // continues the previous exact segment
	}
	if n := len(m.segs); n > 0 && m.segs[n-1].out == out {
		m.segs[n-1] = segment{out, src, exact}
		return
	}
	m.segs = append(m.segs, segment{out, src, exact})
}

// Map returns the offset in the original text of off in the transformed one.
func (m *OffsetMap) Map(off int64) int64 {
	i := sort.Search(len(m.segs), func(i int) bool { return m.segs[i].out > off }) - 1
	if i < 0 {
		return off
	}
	s := m.segs[i]
	if !s.exact {
		return s.src
	}
	return s.src + off - s.out
}

// SyntaxError is a JSON5 syntax error at a byte offset of the input.
type SyntaxError struct {
	Offset int64
	Msg    string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("offset %d: %s", e.Offset, e.Msg) }

// JSON5 converts one JSON5 value (https://spec.json5.org: comments,
// unquoted keys, single-quoted strings, trailing commas, hexadecimal and
// signed numbers) into plain JSON, with the map from offsets in the JSON
// back to src, so that Decode can place its errors in the text the user
// wrote. Plain JSON comes back unchanged. Infinity and NaN have no JSON
// form and are refused.
func JSON5(src []byte) ([]byte, *OffsetMap, error) {
	p := &json5Parser{src: src, m: &OffsetMap{}}
	p.out.Grow(len(src) + len(src)/8)
	p.space()
	if p.pos >= len(src) {
		return nil, nil, p.errAt(p.pos, "unexpected end of input, want a value")
	}
	if err := p.value(0); err != nil {
		return nil, nil, err
	}
	if err := p.space(); err != nil {
		return nil, nil, err
	}
	if p.pos < len(src) {
		return nil, nil, p.errAt(p.pos, "unexpected data after the value")
	}
	return p.out.Bytes(), p.m, nil
}

// maxJSON5Depth bounds nesting, so hostile input cannot exhaust the stack.
const maxJSON5Depth = 1000

type json5Parser struct {
	src []byte
	pos int
	out bytes.Buffer
	m   *OffsetMap
}

func (p *json5Parser) errAt(off int, format string, a ...any) error {
	return &SyntaxError{Offset: int64(off), Msg: "JSON5 syntax: " + fmt.Sprintf(format, a...)}
}

// copy emits src[from:to] unchanged.
func (p *json5Parser) copy(from, to int) {
	p.m.add(int64(p.out.Len()), int64(from), true)
	p.out.Write(p.src[from:to])
}

// emit writes s in place of the source text starting at from.
func (p *json5Parser) emit(from int, s string) {
	p.m.add(int64(p.out.Len()), int64(from), false)
	p.out.WriteString(s)
}

// space skips whitespace and comments, copying newlines and spaces so that
// the JSON keeps the source's shape.
func (p *json5Parser) space() error {
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case isSpace(c):
			end := p.pos + 1
			for end < len(p.src) && isSpace(p.src[end]) {
				end++
			}
			p.copy(p.pos, end)
			p.pos = end
		case c == '/' && p.pos+1 < len(p.src) && p.src[p.pos+1] == '/':
			end := p.pos
			for end < len(p.src) && p.src[end] != '\n' && p.src[end] != '\r' {
				end++
			}
			p.emit(p.pos, " ")
			p.pos = end
		case c == '/' && p.pos+1 < len(p.src) && p.src[p.pos+1] == '*':
			end := bytes.Index(p.src[p.pos+2:], []byte("*/"))
			if end < 0 {
				return p.errAt(p.pos, "comment not closed: want */")
			}
			p.emit(p.pos, " ")
			p.pos += 2 + end + 2
		case c >= utf8.RuneSelf || c == '\v' || c == '\f':
			r, n := utf8.DecodeRune(p.src[p.pos:])
			if r != '\v' && r != '\f' && r != 0xA0 && r != 0xFEFF && r != 0x2028 && r != 0x2029 && !unicode.Is(unicode.Zs, r) {
				return nil
			}
			p.emit(p.pos, " ")
			p.pos += n
		default:
			return nil
		}
	}
	return nil
}

func (p *json5Parser) value(depth int) error {
	if depth > maxJSON5Depth {
		return p.errAt(p.pos, "nested more than %d deep", maxJSON5Depth)
	}
	if p.pos >= len(p.src) {
		return p.errAt(p.pos, "unexpected end of input, want a value")
	}
	switch c := p.src[p.pos]; {
	case c == '{':
		return p.container(depth, '}', true)
	case c == '[':
		return p.container(depth, ']', false)
	case c == '"' || c == '\'':
		return p.str()
	case c == '-' || c == '+' || c == '.' || c >= '0' && c <= '9':
		return p.number()
	default:
		start := p.pos
		id, ok := p.ident()
		switch {
		case !ok:
			r, _ := utf8.DecodeRune(p.src[p.pos:])
			return p.errAt(p.pos, "unexpected %q, want a value", r)
		case id == "true" || id == "false" || id == "null":
			p.copy(start, p.pos)
			return nil
		case id == "Infinity" || id == "NaN":
			return p.errAt(start, "%s is not a finite number", id)
		}
		return p.errAt(start, "unquoted text %q is not a value (quote strings)", id)
	}
}

// container parses an object or array whose opening bracket is at pos.
func (p *json5Parser) container(depth int, closer byte, object bool) error {
	open := p.pos
	p.copy(p.pos, p.pos+1)
	p.pos++
	first := true
	for {
		if err := p.space(); err != nil {
			return err
		}
		if p.pos >= len(p.src) {
			return p.errAt(open, "%q not closed: want %q", p.src[open], closer)
		}
		if p.src[p.pos] == closer {
			p.copy(p.pos, p.pos+1)
			p.pos++
			return nil
		}
		if !first {
			if p.src[p.pos] != ',' {
				r, _ := utf8.DecodeRune(p.src[p.pos:])
				return p.errAt(p.pos, "unexpected %q, want ',' or %q", r, closer)
			}
			// The comma is written now, before the space after it, and
			// taken back if the closer follows (JSON has no trailing comma).
			at := p.out.Len()
			p.emit(p.pos, ",") // its own segment: never merged into another
			nseg := len(p.m.segs) - 1
			p.pos++
			if err := p.space(); err != nil {
				return err
			}
			if p.pos < len(p.src) && p.src[p.pos] == closer {
				b := p.out.Bytes()
				copy(b[at:], b[at+1:])
				p.out.Truncate(len(b) - 1)
				p.m.segs = append(p.m.segs[:nseg], p.m.segs[nseg+1:]...)
				for k := nseg; k < len(p.m.segs); k++ {
					p.m.segs[k].out--
				}
				p.copy(p.pos, p.pos+1)
				p.pos++
				return nil
			}
			if p.pos >= len(p.src) {
				continue
			}
		}
		first = false
		if object {
			if err := p.key(); err != nil {
				return err
			}
			if err := p.space(); err != nil {
				return err
			}
			if p.pos >= len(p.src) || p.src[p.pos] != ':' {
				return p.errAt(p.pos, "want ':' after an object key")
			}
			p.copy(p.pos, p.pos+1)
			p.pos++
			if err := p.space(); err != nil {
				return err
			}
		}
		if err := p.value(depth + 1); err != nil {
			return err
		}
	}
}

func (p *json5Parser) key() error {
	if p.pos < len(p.src) && (p.src[p.pos] == '"' || p.src[p.pos] == '\'') {
		return p.str()
	}
	start := p.pos
	id, ok := p.ident()
	if !ok {
		if p.pos >= len(p.src) {
			return p.errAt(p.pos, "unexpected end of input, want an object key")
		}
		r, _ := utf8.DecodeRune(p.src[p.pos:])
		return p.errAt(p.pos, "unexpected %q, want an object key", r)
	}
	p.emit(start, strconv.Quote(id))
	return nil
}

// ident reads an ECMAScript IdentifierName (without \u escapes).
func (p *json5Parser) ident() (string, bool) {
	start := p.pos
	for p.pos < len(p.src) {
		r, n := utf8.DecodeRune(p.src[p.pos:])
		ok := r == '_' || r == '$' || unicode.IsLetter(r) ||
			p.pos > start && (unicode.IsDigit(r) || unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Mc, r) || unicode.Is(unicode.Pc, r) || r == 0x200C || r == 0x200D)
		if !ok || r == utf8.RuneError && n <= 1 {
			break
		}
		p.pos += n
	}
	return string(p.src[start:p.pos]), p.pos > start
}

// str parses a single- or double-quoted JSON5 string and writes it as a
// JSON string, unchanged when it already is one.
func (p *json5Parser) str() error {
	if end, ok := p.plainString(); ok {
		p.copy(p.pos, end)
		p.pos = end
		return nil
	}
	start := p.pos
	quote := p.src[p.pos]
	p.pos++
	var b strings.Builder
	plain := quote == '"'
	for {
		if p.pos >= len(p.src) {
			return p.errAt(start, "string not closed: want %c", quote)
		}
		c := p.src[p.pos]
		switch {
		case c == quote:
			p.pos++
			if plain {
				p.copy(start, p.pos)
			} else {
				p.emit(start, quoteJSON(b.String()))
			}
			return nil
		case c == '\n' || c == '\r':
			return p.errAt(p.pos, "line break in a string (escape it as \\n)")
		case c < 0x20:
			plain = false
			b.WriteByte(c)
			p.pos++
		case c == '\\':
			if err := p.escape(&b, &plain); err != nil {
				return err
			}
		default:
			r, n := utf8.DecodeRune(p.src[p.pos:])
			if r == 0x2028 || r == 0x2029 {
				plain = false // valid JSON5 and JSON, but keep output tidy
			}
			b.WriteString(string(p.src[p.pos : p.pos+n]))
			p.pos += n
		}
	}
}

// plainString finds the end of a double-quoted string at pos that has no
// escapes, control characters, line breaks or U+2028/U+2029: one that str
// would copy unchanged, without decoding it. Other strings are str's.
func (p *json5Parser) plainString() (end int, ok bool) {
	if p.src[p.pos] != '"' {
		return 0, false
	}
	for i := p.pos + 1; i < len(p.src); i++ {
		switch c := p.src[i]; {
		case c == '"':
			return i + 1, true
		case c == '\\' || c < 0x20:
			return 0, false
		case c == 0xE2 && i+2 < len(p.src) && p.src[i+1] == 0x80 && (p.src[i+2] == 0xA8 || p.src[i+2] == 0xA9): // U+2028, U+2029
			return 0, false
		}
	}
	return 0, false
}

// escape decodes the escape sequence at pos into b; plain is cleared when
// the sequence is not also valid JSON.
func (p *json5Parser) escape(b *strings.Builder, plain *bool) error {
	at := p.pos
	if p.pos+1 >= len(p.src) {
		return p.errAt(at, "string not closed")
	}
	c := p.src[p.pos+1]
	p.pos += 2
	simple := map[byte]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}
	if v, ok := simple[c]; ok {
		b.WriteByte(v)
		return nil
	}
	switch c {
	case 'u':
		if p.pos+4 > len(p.src) {
			return p.errAt(at, `\u wants 4 hexadecimal digits`)
		}
		v, err := strconv.ParseUint(string(p.src[p.pos:p.pos+4]), 16, 32)
		if err != nil {
			return p.errAt(at, `\u wants 4 hexadecimal digits`)
		}
		p.pos += 4
		r := rune(v)
		if r >= 0xD800 && r < 0xDC00 && p.pos+6 <= len(p.src) && p.src[p.pos] == '\\' && p.src[p.pos+1] == 'u' {
			if lo, err := strconv.ParseUint(string(p.src[p.pos+2:p.pos+6]), 16, 32); err == nil && lo >= 0xDC00 && lo < 0xE000 {
				r = (r-0xD800)<<10 + (rune(lo) - 0xDC00) + 0x10000
				p.pos += 6
			}
		}
		b.WriteRune(r) // a lone surrogate becomes U+FFFD, as in encoding/json
		return nil
	case 'x':
		*plain = false
		if p.pos+2 > len(p.src) {
			return p.errAt(at, `\x wants 2 hexadecimal digits`)
		}
		v, err := strconv.ParseUint(string(p.src[p.pos:p.pos+2]), 16, 8)
		if err != nil {
			return p.errAt(at, `\x wants 2 hexadecimal digits`)
		}
		p.pos += 2
		b.WriteRune(rune(v))
		return nil
	case '\n', '\r':
		// A line continuation: the escaped line break is not in the value.
		*plain = false
		if c == '\r' && p.pos < len(p.src) && p.src[p.pos] == '\n' {
			p.pos++
		}
		return nil
	case '0':
		if p.pos < len(p.src) && p.src[p.pos] >= '0' && p.src[p.pos] <= '9' {
			return p.errAt(at, `\0 followed by a digit is not allowed`)
		}
		*plain = false
		b.WriteByte(0)
		return nil
	case 'v':
		*plain = false
		b.WriteByte('\v')
		return nil
	}
	if c >= '1' && c <= '9' {
		return p.errAt(at, `\%c is not a valid escape`, c)
	}
	// Any other character escapes itself (\' is the common one).
	*plain = false
	p.pos-- // re-read c as a whole rune
	r, n := utf8.DecodeRune(p.src[p.pos:])
	if r == 0x2028 || r == 0x2029 {
		p.pos += n
		return nil // line continuation
	}
	b.WriteString(string(p.src[p.pos : p.pos+n]))
	p.pos += n
	return nil
}

// quoteJSON writes s as a JSON string, keeping non-ASCII text as it is.
func quoteJSON(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x2028 || r == 0x2029 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// number parses a JSON5 number and writes its JSON form.
func (p *json5Parser) number() error {
	start := p.pos
	sign := ""
	if c := p.src[p.pos]; c == '+' || c == '-' {
		if c == '-' {
			sign = "-"
		}
		p.pos++
	}
	if id, ok := p.ident(); ok {
		if id == "Infinity" || id == "NaN" {
			return p.errAt(start, "%s%s is not a finite number", sign, id)
		}
		return p.errAt(start, "unexpected %q, want a number", id)
	}
	if p.pos+1 < len(p.src) && p.src[p.pos] == '0' && (p.src[p.pos+1] == 'x' || p.src[p.pos+1] == 'X') {
		p.pos += 2
		ds := p.pos
		for p.pos < len(p.src) && isHex(p.src[p.pos]) {
			p.pos++
		}
		v, err := strconv.ParseUint(string(p.src[ds:p.pos]), 16, 64)
		if err != nil || v > 1<<53 {
			return p.errAt(start, "hexadecimal number %s is not a number up to 2^53", p.src[start:p.pos])
		}
		p.emit(start, sign+strconv.FormatUint(v, 10))
		return p.afterNumber(start)
	}
	is := p.pos
	for p.pos < len(p.src) && isDigit(p.src[p.pos]) {
		p.pos++
	}
	intPart := string(p.src[is:p.pos])
	if len(intPart) > 1 && intPart[0] == '0' {
		return p.errAt(start, "number %s has a leading zero", p.src[start:p.pos])
	}
	frac := ""
	if p.pos < len(p.src) && p.src[p.pos] == '.' {
		p.pos++
		fs := p.pos
		for p.pos < len(p.src) && isDigit(p.src[p.pos]) {
			p.pos++
		}
		frac = string(p.src[fs:p.pos])
	}
	if intPart == "" && frac == "" {
		return p.errAt(start, "%q is not a number", p.src[start:p.pos])
	}
	exp := ""
	if p.pos < len(p.src) && (p.src[p.pos] == 'e' || p.src[p.pos] == 'E') {
		es := p.pos
		p.pos++
		if p.pos < len(p.src) && (p.src[p.pos] == '+' || p.src[p.pos] == '-') {
			p.pos++
		}
		ds := p.pos
		for p.pos < len(p.src) && isDigit(p.src[p.pos]) {
			p.pos++
		}
		if p.pos == ds {
			return p.errAt(start, "number %s: exponent without digits", p.src[start:p.pos])
		}
		exp = string(p.src[es:p.pos])
	}
	if intPart == "" {
		intPart = "0"
	}
	s := sign + intPart
	if frac != "" {
		s += "." + frac
	}
	s += exp
	if f, err := strconv.ParseFloat(s, 64); err != nil || math.IsInf(f, 0) {
		return p.errAt(start, "number %s is out of range", p.src[start:p.pos])
	}
	if s == string(p.src[start:p.pos]) {
		p.copy(start, p.pos)
	} else {
		p.emit(start, s)
	}
	return p.afterNumber(start)
}

// afterNumber refuses a number run into a letter ("10s" unquoted).
func (p *json5Parser) afterNumber(start int) error {
	if p.pos < len(p.src) {
		r, _ := utf8.DecodeRune(p.src[p.pos:])
		if unicode.IsLetter(r) || r == '_' || r == '.' || isDigit(p.src[p.pos]) {
			end := p.pos
			for end < len(p.src) && !strings.ContainsRune(" \t\r\n,}]/", rune(p.src[end])) {
				end++
			}
			return p.errAt(start, "%q is not a number (quote durations: \"10s\")", p.src[start:end])
		}
	}
	return nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isHex(c byte) bool   { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
