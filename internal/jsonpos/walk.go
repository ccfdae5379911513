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
	"strconv"
	"strings"
)

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// checkSyntax places the first syntax error in data, or data after the
// value. A valid document passes json.Valid's one scan; a Decoder reading the
// first value then says where one is not: it counts offsets from the start
// of data, and unlike Unmarshal stops at the value's end.
func checkSyntax(data []byte, pos *Positions) error {
	if json.Valid(data) {
		return nil
	}
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

// walker decodes a document's tokens into Go values as encoding/json
// would, checking each against its type and recording where each value
// starts. It reads data, whose syntax was checked, itself (token.go).
type walker struct {
	data   []byte
	off    int // where the next token is read
	pos    *Positions
	opts   Options
	fields map[reflect.Type][]field
}

func newWalker(data []byte, pos *Positions, opts Options) *walker {
	return &walker{data: data, pos: pos, opts: opts, fields: map[reflect.Type][]field{}}
}

// walk decodes the value at path into v, which must be settable, with
// encoding/json's rules: a null sets a pointer, map, slice or interface to
// nil and leaves other values alone; pointers are allocated as needed; a
// type with UnmarshalJSON (or, for a string, UnmarshalText) decodes itself
// and its error is placed at the value.
func (w *walker) walk(v reflect.Value, path string) error {
	start := w.next()
	w.pos.offsets[path] = start
	null := start < int64(len(w.data)) && w.data[start] == 'n' // the syntax was checked: "null"
	for {
		pt := reflect.PointerTo(v.Type()) // v is addressable: see Decode and the callers below
		if pt.Implements(unmarshalerType) {
			return w.unmarshaler(v.Addr().Interface().(json.Unmarshaler), start, path)
		}
		if pt.Implements(textUnmarshalerType) {
			return w.textUnmarshaler(v.Addr().Interface().(encoding.TextUnmarshaler), start, path)
		}
		if v.Kind() != reflect.Pointer || null {
			break
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	tok, err := w.token()
	if err != nil {
		return err
	}
	if tok.kind == 'n' {
		switch v.Kind() {
		case reflect.Interface, reflect.Pointer, reflect.Map, reflect.Slice:
			v.SetZero()
		}
		return nil
	}
	t := v.Type()
	wrong := func(want string) error {
		return w.pos.at(start, path, fmt.Sprintf("want %s, got %s", want, describe(tok)))
	}
	switch t.Kind() {
	case reflect.Interface:
		if t.NumMethod() > 0 {
			return fmt.Errorf("jsonpos: cannot decode into %s at %q", t, path)
		}
		x, err := w.anyValue(tok, start, path)
		if err != nil {
			return err
		}
		if x == nil {
			v.SetZero()
		} else {
			v.Set(reflect.ValueOf(x))
		}
		return nil
	case reflect.Struct:
		if tok.kind != '{' {
			return wrong("an object")
		}
		fields, err := w.structFields(t)
		if err != nil {
			return err
		}
		return w.object(path, func(key string, keyAt int64) (reflect.Value, string, func(), error) {
			f, ok := w.match(fields, key)
			if !ok {
				return reflect.Value{}, "", nil, w.pos.at(keyAt, JoinPath(path, key), "unknown field (want one of "+names(fields)+")")
			}
			return v.Field(f.index), JoinPath(path, f.name), nil, nil
		})
	case reflect.Map:
		if t.Key().Kind() != reflect.String || reflect.PointerTo(t.Key()).Implements(textUnmarshalerType) {
			return fmt.Errorf("jsonpos: cannot decode into %s at %q: only string keys", t, path)
		}
		if tok.kind != '{' {
			return wrong("an object")
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(t))
		}
		return w.object(path, func(key string, _ int64) (reflect.Value, string, func(), error) {
			// Map elements are not addressable: each is decoded fresh
			// and stored once decoded, as encoding/json does.
			elem := reflect.New(t.Elem()).Elem()
			k := reflect.ValueOf(key).Convert(t.Key())
			return elem, JoinPath(path, key), func() { v.SetMapIndex(k, elem) }, nil
		})
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 && !implementsAny(t.Elem()) {
			if tok.kind != '"' {
				return wrong("a base64 string")
			}
			b, err := base64.StdEncoding.DecodeString(tok.text)
			if err != nil {
				return wrong("a base64 string")
			}
			v.SetBytes(b)
			return nil
		}
		if tok.kind != '[' {
			return wrong("a list")
		}
		i := 0
		for ; w.more(); i++ {
			elemPath := indexPath(path, i)
			if t.Kind() == reflect.Slice {
				if i >= v.Cap() {
					v.Grow(1)
				}
				if i >= v.Len() {
					v.SetLen(i + 1)
				}
			}
			if i < v.Len() {
				if err := w.walk(v.Index(i), elemPath); err != nil {
					return err
				}
			} else if err := w.walk(reflect.New(t.Elem()).Elem(), elemPath); err != nil {
				return err // an array's surplus elements are checked and dropped
			}
		}
		switch {
		case t.Kind() == reflect.Array:
			for j := i; j < v.Len(); j++ {
				v.Index(j).SetZero()
			}
		case i == 0:
			v.Set(reflect.MakeSlice(t, 0, 0)) // [] is an empty slice, not nil
		case i < v.Len():
			v.SetLen(i)
		}
		_, err := w.token()
		return err
	case reflect.String:
		if tok.kind != '"' {
			return wrong("a string")
		}
		v.SetString(tok.text)
	case reflect.Bool:
		if tok.kind != 't' && tok.kind != 'f' {
			return wrong("true or false")
		}
		v.SetBool(tok.kind == 't')
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if tok.kind != '0' {
			return wrong("a number")
		}
		n := tok.text
		i, err := strconv.ParseInt(n, 10, t.Bits())
		if err != nil {
			return wrong(fmt.Sprintf("a whole number that fits in %d bits", t.Bits()))
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if tok.kind != '0' {
			return wrong("a number")
		}
		n := tok.text
		u, err := strconv.ParseUint(n, 10, t.Bits())
		if err != nil {
			return wrong(fmt.Sprintf("a whole number from 0 that fits in %d bits", t.Bits()))
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		if tok.kind != '0' {
			return wrong("a number")
		}
		n := tok.text
		f, err := strconv.ParseFloat(n, t.Bits())
		if err != nil {
			return wrong(fmt.Sprintf("a number that fits in a float%d", t.Bits()))
		}
		v.SetFloat(f)
	default:
		return fmt.Errorf("jsonpos: cannot decode into %s at %q", t, path)
	}
	return nil
}

func implementsAny(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return pt.Implements(unmarshalerType) || pt.Implements(textUnmarshalerType)
}

// unmarshaler hands the value's bytes to u, placing its error at the value.
// They are a slice of data, as encoding/json's Unmarshal passes them, capped
// at the value's end so that an append by u copies.
func (w *walker) unmarshaler(u json.Unmarshaler, start int64, path string) error {
	w.skip()
	raw := w.data[start:w.off:w.off]
	if err := u.UnmarshalJSON(raw); err != nil {
		return w.pos.at(start, path, unmarshalerMessage(err, raw))
	}
	return nil
}

// unmarshalerMessage words an UnmarshalJSON error. One that unmarshals the
// whole value into a Go type of the wrong kind says so as the walk would.
func unmarshalerMessage(err error, raw []byte) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field == "" {
		if want := kindWord(te.Type); want != "" {
			if tok, terr := (&walker{data: raw}).token(); terr == nil {
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

// textUnmarshaler hands a string value to u's UnmarshalText; a null leaves
// the value alone.
func (w *walker) textUnmarshaler(u encoding.TextUnmarshaler, start int64, path string) error {
	tok, err := w.token()
	if err != nil {
		return err
	}
	if tok.kind == 'n' {
		return nil
	}
	if tok.kind != '"' {
		return w.pos.at(start, path, "want a string, got "+describe(tok))
	}
	if err := u.UnmarshalText([]byte(tok.text)); err != nil {
		return w.pos.at(start, path, err.Error())
	}
	return nil
}

// anyType is the type of an empty interface's elements.
var anyType = reflect.TypeFor[any]()

// anyValue decodes a value into an empty interface, its first token read,
// as encoding/json does (objects to map[string]any, lists to []any, numbers
// to float64); its keys must not repeat and its numbers must fit in a
// float64.
func (w *walker) anyValue(tok token, start int64, path string) (any, error) {
	switch tok.kind {
	case '{', '[':
		if tok.kind == '{' {
			m := map[string]any{}
			err := w.object(path, func(key string, _ int64) (reflect.Value, string, func(), error) {
				elem := reflect.New(anyType).Elem()
				return elem, JoinPath(path, key), func() { m[key] = elem.Interface() }, nil
			})
			return m, err
		}
		l := []any{}
		for i := 0; w.more(); i++ {
			elem := reflect.New(anyType).Elem()
			if err := w.walk(elem, indexPath(path, i)); err != nil {
				return nil, err
			}
			l = append(l, elem.Interface())
		}
		_, err := w.token()
		return l, err
	case '0':
		f, err := strconv.ParseFloat(tok.text, 64)
		if err != nil {
			return nil, w.pos.at(start, path, "want a number that fits in a float64, got the number "+tok.text)
		}
		return f, nil
	case '"':
		return tok.text, nil
	case 't', 'f':
		return tok.kind == 't', nil
	}
	return nil, nil // null
}

// object decodes the members of an object whose '{' was read: member gives
// the value to decode each key's value into, its path, and what to do once
// it is decoded (nil: nothing), or rejects the key.
func (w *walker) object(path string, member func(key string, keyAt int64) (reflect.Value, string, func(), error)) error {
	seen := map[string]bool{}
	for w.more() {
		keyAt := w.next()
		tok, err := w.token()
		if err != nil {
			return err
		}
		key := tok.text // object keys are always strings
		v, p, done, err := member(key, keyAt)
		if err != nil {
			return err
		}
		if seen[p] {
			return w.pos.at(keyAt, p, "duplicate key")
		}
		seen[p] = true
		if err := w.walk(v, p); err != nil {
			return err
		}
		if done != nil {
			done()
		}
	}
	_, err := w.token()
	return err
}

// field is a struct field that JSON can set.
type field struct {
	name  string // the JSON name
	index int    // in its struct
}

// structFields lists the fields of t that encoding/json decodes into.
func (w *walker) structFields(t reflect.Type) ([]field, error) {
	if fs, ok := w.fields[t]; ok {
		return fs, nil
	}
	fs := make([]field, 0, t.NumField())
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
		if hasOption(opts, "string") {
			return nil, fmt.Errorf("jsonpos: the ,string option of %s.%s is not supported", t, f.Name)
		}
		if name == "" {
			name = f.Name
		}
		fs = append(fs, field{name: name, index: i})
	}
	w.fields[t] = fs
	return fs, nil
}

// hasOption reports whether a tag's comma-separated options have opt.
func hasOption(opts, opt string) bool {
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		if o == opt {
			return true
		}
	}
	return false
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

func describe(tok token) string {
	switch tok.kind {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case '0':
		return "the number " + tok.text
	case 't':
		return "true"
	case 'f':
		return "false"
	}
	// null, as fmt prints a nil json.Token: only an Unmarshaler's type error
	// on null (unmarshalerMessage) describes one.
	return "<nil>"
}
