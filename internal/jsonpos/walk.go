package jsonpos

import (
	"bytes"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// checkSyntax places the first syntax error in data, or data after the
// value. A Decoder reading the first value counts offsets from the start of
// data, and unlike Unmarshal stops at the value's end.
func checkSyntax(data []byte, pos *Positions) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return syntaxError(err, pos)
	}
	end := dec.InputOffset()
	for end < int64(len(data)) && isSpace(data[end]) {
		end++
	}
	if end < int64(len(data)) {
		return pos.at(end, "", "unexpected data after the JSON value")
	}
	return nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func syntaxError(err error, pos *Positions) error {
	var se *json.SyntaxError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return pos.at(int64(len(pos.data)), "", "JSON syntax: unexpected end of input")
	case errors.As(err, &se):
		// Offset counts the bad byte as read.
		return pos.at(max(se.Offset-1, 0), "", "JSON syntax: "+strings.TrimPrefix(se.Error(), "json: "))
	}
	return &Error{File: pos.name, Msg: err.Error()}
}

// walker checks a document's tokens against a Go type, recording where
// each value starts.
type walker struct {
	data   []byte
	dec    *json.Decoder
	pos    *Positions
	opts   Options
	fields map[reflect.Type][]field
}

func newWalker(data []byte, pos *Positions, opts Options) *walker {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return &walker{data: data, dec: dec, pos: pos, opts: opts, fields: map[reflect.Type][]field{}}
}

// next returns the offset of the next token: the decoder's offset past
// whitespace and the separators it has not consumed yet.
func (w *walker) next() int64 {
	off := w.dec.InputOffset()
	for off < int64(len(w.data)) && (isSpace(w.data[off]) || w.data[off] == ':' || w.data[off] == ',') {
		off++
	}
	return off
}

func (w *walker) token() (json.Token, error) {
	tok, err := w.dec.Token()
	if err != nil {
		return nil, syntaxError(err, w.pos)
	}
	return tok, nil
}

// walk checks the value at path against t, as encoding/json would decode
// it into a t.
func (w *walker) walk(t reflect.Type, path string) error {
	start := w.next()
	w.pos.offsets[path] = start
	isPtr := false
	for {
		pt := reflect.PointerTo(t)
		if pt.Implements(unmarshalerType) {
			return w.unmarshaler(t, isPtr, start, path)
		}
		if pt.Implements(textUnmarshalerType) {
			return w.textUnmarshaler(t, start, path)
		}
		if t.Kind() != reflect.Pointer {
			break
		}
		t, isPtr = t.Elem(), true
	}
	tok, err := w.token()
	if err != nil {
		return err
	}
	if tok == nil {
		return nil // null leaves the value alone, as in encoding/json
	}
	wrong := func(want string) error {
		return w.pos.at(start, path, fmt.Sprintf("want %s, got %s", want, describe(tok)))
	}
	switch t.Kind() {
	case reflect.Interface:
		if t.NumMethod() > 0 {
			return fmt.Errorf("jsonpos: cannot decode into %s at %q", t, path)
		}
		return w.anyValue(t, tok, start, path)
	case reflect.Struct:
		if tok != json.Delim('{') {
			return wrong("an object")
		}
		fields, err := w.structFields(t)
		if err != nil {
			return err
		}
		return w.object(path, func(key string, keyAt int64) (reflect.Type, string, error) {
			f, ok := w.match(fields, key)
			if !ok {
				return nil, "", w.pos.at(keyAt, JoinPath(path, key), "unknown field (want one of "+names(fields)+")")
			}
			return f.typ, JoinPath(path, f.name), nil
		})
	case reflect.Map:
		if t.Key().Kind() != reflect.String || reflect.PointerTo(t.Key()).Implements(textUnmarshalerType) {
			return fmt.Errorf("jsonpos: cannot decode into %s at %q: only string keys", t, path)
		}
		if tok != json.Delim('{') {
			return wrong("an object")
		}
		return w.object(path, func(key string, _ int64) (reflect.Type, string, error) {
			return t.Elem(), JoinPath(path, key), nil
		})
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 && !implementsAny(t.Elem()) {
			s, ok := tok.(string)
			if !ok {
				return wrong("a base64 string")
			}
			if _, err := base64.StdEncoding.DecodeString(s); err != nil {
				return wrong("a base64 string")
			}
			return nil
		}
		if tok != json.Delim('[') {
			return wrong("a list")
		}
		for i := 0; w.dec.More(); i++ {
			if err := w.walk(t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		_, err := w.token()
		return err
	case reflect.String:
		if _, ok := tok.(string); !ok {
			return wrong("a string")
		}
	case reflect.Bool:
		if _, ok := tok.(bool); !ok {
			return wrong("true or false")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := tok.(json.Number)
		if !ok {
			return wrong("a number")
		}
		if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			return wrong(fmt.Sprintf("a whole number that fits in %d bits", t.Bits()))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		n, ok := tok.(json.Number)
		if !ok {
			return wrong("a number")
		}
		if _, err := strconv.ParseUint(string(n), 10, t.Bits()); err != nil {
			return wrong(fmt.Sprintf("a whole number from 0 that fits in %d bits", t.Bits()))
		}
	case reflect.Float32, reflect.Float64:
		n, ok := tok.(json.Number)
		if !ok {
			return wrong("a number")
		}
		if _, err := strconv.ParseFloat(string(n), t.Bits()); err != nil {
			return wrong(fmt.Sprintf("a number that fits in a float%d", t.Bits()))
		}
	default:
		return fmt.Errorf("jsonpos: cannot decode into %s at %q", t, path)
	}
	return nil
}

func implementsAny(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return pt.Implements(unmarshalerType) || pt.Implements(textUnmarshalerType)
}

// unmarshaler hands the value to a fresh t's UnmarshalJSON, so that its
// error is placed at the value; the real decode calls it again.
func (w *walker) unmarshaler(t reflect.Type, isPtr bool, start int64, path string) error {
	var raw json.RawMessage
	if err := w.dec.Decode(&raw); err != nil {
		return syntaxError(err, w.pos)
	}
	if isPtr && string(raw) == "null" {
		return nil // encoding/json sets the pointer to nil without asking
	}
	if err := reflect.New(t).Interface().(json.Unmarshaler).UnmarshalJSON(raw); err != nil {
		return w.pos.at(start, path, unmarshalerMessage(err, raw))
	}
	return nil
}

// unmarshalerMessage words an UnmarshalJSON error. One that unmarshals the
// whole value into a Go type of the wrong kind says so as the walk would.
func unmarshalerMessage(err error, raw json.RawMessage) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field == "" {
		if want := kindWord(te.Type); want != "" {
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			if tok, terr := dec.Token(); terr == nil {
				return fmt.Sprintf("want %s, got %s", want, describe(tok))
			}
		}
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func kindWord(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return ""
}

// textUnmarshaler checks a string value with a fresh t's UnmarshalText.
func (w *walker) textUnmarshaler(t reflect.Type, start int64, path string) error {
	tok, err := w.token()
	if err != nil {
		return err
	}
	if tok == nil {
		return nil
	}
	s, ok := tok.(string)
	if !ok {
		return w.pos.at(start, path, "want a string, got "+describe(tok))
	}
	if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
		return w.pos.at(start, path, err.Error())
	}
	return nil
}

// anyValue checks a value decoded into an empty interface whose first
// token was read: any value goes, but its keys must not repeat and its
// numbers must fit in a float64.
func (w *walker) anyValue(t reflect.Type, tok json.Token, start int64, path string) error {
	switch tok {
	case json.Delim('{'):
		return w.object(path, func(key string, _ int64) (reflect.Type, string, error) {
			return t, JoinPath(path, key), nil
		})
	case json.Delim('['):
		for i := 0; w.dec.More(); i++ {
			if err := w.walk(t, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		_, err := w.token()
		return err
	}
	if n, ok := tok.(json.Number); ok {
		if _, err := strconv.ParseFloat(string(n), 64); err != nil {
			return w.pos.at(start, path, "want a number that fits in a float64, got the number "+string(n))
		}
	}
	return nil
}

// object walks the members of an object whose '{' was read; member gives
// the type and path of each key's value or rejects the key.
func (w *walker) object(path string, member func(key string, keyAt int64) (reflect.Type, string, error)) error {
	seen := map[string]bool{}
	for w.dec.More() {
		keyAt := w.next()
		tok, err := w.token()
		if err != nil {
			return err
		}
		key := tok.(string) // object keys are always strings
		t, p, err := member(key, keyAt)
		if err != nil {
			return err
		}
		if seen[p] {
			return w.pos.at(keyAt, p, "duplicate key")
		}
		seen[p] = true
		if err := w.walk(t, p); err != nil {
			return err
		}
	}
	_, err := w.token()
	return err
}

// field is a struct field that JSON can set.
type field struct {
	name string // the JSON name
	typ  reflect.Type
}

// structFields lists the fields of t that encoding/json decodes into.
func (w *walker) structFields(t reflect.Type) ([]field, error) {
	if fs, ok := w.fields[t]; ok {
		return fs, nil
	}
	var fs []field
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			// encoding/json promotes the fields of embedded structs with
			// rules of its own; nothing decoded here needs them yet.
			return nil, fmt.Errorf("jsonpos: embedded field %s in %s is not supported", f.Name, t)
		}
		if !f.IsExported() {
			continue
		}
		if slices.Contains(strings.Split(opts, ","), "string") {
			return nil, fmt.Errorf("jsonpos: the ,string option of %s.%s is not supported", t, f.Name)
		}
		if name == "" {
			name = f.Name
		}
		fs = append(fs, field{name: name, typ: f.Type})
	}
	w.fields[t] = fs
	return fs, nil
}

// match finds key's field: by exact name, else, unless case-sensitive,
// case-insensitively as encoding/json does.
func (w *walker) match(fields []field, key string) (field, bool) {
	var fold *field
	for i, f := range fields {
		if f.name == key {
			return f, true
		}
		if fold == nil && !w.opts.CaseSensitive && strings.EqualFold(f.name, key) {
			fold = &fields[i]
		}
	}
	if fold != nil {
		return *fold, true
	}
	return field{}, false
}

func names(fields []field) string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f.name
	}
	return strings.Join(out, ", ")
}

func describe(tok json.Token) string {
	switch x := tok.(type) {
	case json.Delim:
		if x == '{' {
			return "an object"
		}
		return "a list"
	case string:
		return "a string"
	case json.Number:
		return "the number " + string(x)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(tok)
}
