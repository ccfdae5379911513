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
// document name (used in errors). It first walks the value against v's
// type, so every problem with the input is an *Error placed in data; v is
// then filled by encoding/json, with its rules for null, Unmarshalers and
// defaults. Fields tagged `json:"-"` are unknown fields here. Types the
// walk cannot check (embedded structs, ",string" fields, maps with
// non-string keys, non-empty interfaces) give a plain error when reached:
// a bug in the caller, not in the input.
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
	if err := newWalker(data, pos, opts).walk(rv.Type().Elem(), ""); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, v); err != nil {
		// The walk accepts only what Unmarshal accepts; this is a bug in
		// the walk, not bad input.
		return nil, &Error{File: name, Msg: err.Error()}
	}
	return pos, nil
}
