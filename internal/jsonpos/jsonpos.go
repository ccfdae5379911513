// Package jsonpos decodes hand-written JSON strictly and says where it is
// wrong. Syntax errors, wrong types, unknown fields, duplicate keys and
// errors from UnmarshalJSON methods all come back as an *Error naming the
// file, line, column and field path ("app.json:7:18: services[0].poll:
// ..."). encoding/json alone accepts unknown fields and duplicate keys, and
// gives an offset without a path, a path without a place, or, for its
// Unmarshalers, neither; config files and fixtures need all of it.
package jsonpos

import (
	"encoding/json"
	"fmt"
	"reflect"
)

// Options change how Decode matches a document to Go types.
type Options struct {
	// CaseSensitive makes object keys match fields' JSON names exactly.
	// Otherwise a key that matches no name exactly may match one
	// case-insensitively, as in encoding/json.
	CaseSensitive bool
	// Source, when set, is the text the user wrote, of which data is a
	// transformation (a rendered template, JSON5 normalised to JSON).
	// Errors then count lines and columns in Source, at the offset
	// MapOffset gives for an offset in data; its note, when not empty, is
	// added to the message (e.g. that the place is in text a template
	// action rendered).
	Source    []byte
	MapOffset func(off int64) (srcOff int64, note string)
}

// Decode fills v, a non-nil pointer, from data, a single JSON value from the
// document name (used in errors), as encoding/json's Unmarshal would (its
// rules for null, pointers, Unmarshalers, TextUnmarshalers, slices and
// maps; numbers in an empty interface are float64), checking every value
// against its type on the way, so that every problem with the input is an
// *Error placed in data. It decodes by itself rather than calling Unmarshal
// after the check: encoding/json's first decode of a type builds caches for
// all its fields (0.3 ms for a config's types, on the supervisor's way to
// its app's fork). Fields tagged `json:"-"` are unknown fields here. Types
// it does not support (embedded structs, ",string" fields, maps with
// non-string keys, non-empty interfaces) give a plain error when reached:
// a bug in the caller, not in the input. On an error v may be partly
// filled.
//
// The returned Positions place later checks of the decoded value.
func Decode(data []byte, name string, v any, opts Options) (*Positions, error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return nil, fmt.Errorf("jsonpos: Decode into %T, want a non-nil pointer", v)
	}
	pos := &Positions{name: name, data: data, offsets: map[string]int64{}, src: opts.Source, mapOff: opts.MapOffset}
	if err := checkSyntax(data, pos); err != nil {
		return nil, err
	}
	if err := newWalker(data, pos, opts).walk(rv.Elem(), ""); err != nil {
		return nil, err
	}
	return pos, nil
}

// Keys returns the keys of the object data holds, in order and with any
// repeats, or nil when data is not one valid JSON value or not an object:
// the keys json.Unmarshal would put in a map, for a caller to choose what
// to Decode into without decoding the document twice.
func Keys(data []byte) []string {
	if !json.Valid(data) {
		return nil
	}
	w := &walker{data: data}
	if tok, _ := w.token(); tok.kind != '{' {
		return nil
	}
	var keys []string
	for w.more() {
		key, err := w.token()
		if err != nil {
			return nil
		}
		keys = append(keys, key.text)
		w.next()
		w.skip()
	}
	return keys
}
