package jsonpos

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Error is a problem in a JSON document, at a place in it.
type Error struct {
	File      string
	Line, Col int    // 1-based, Col counted in characters; 0 when unknown (Col 0 is not printed)
	Path      string // field path, e.g. services[0].port or kv["a/b"]; "" for syntax errors
	Msg       string
}

// Error formats e as file:line:col: path: msg, leaving out what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Col > 0 {
			fmt.Fprintf(&b, ":%d", e.Col)
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Positions maps the field paths of a decoded document to where their
// values start, so that checks made after decoding can still say where.
type Positions struct {
	name    string
	data    []byte
	offsets map[string]int64
	// src and mapOff place errors in the user's text (Options.Source).
	src    []byte
	mapOff func(int64) (int64, string)
}

// ErrorAt returns msg as an *Error at path's value or, for a value the
// document leaves out (a defaulted field), at the closest enclosing value
// it has.
func (p *Positions) ErrorAt(path, msg string) *Error {
	off, ok := p.offsets[path]
	if !ok {
		best := -1
		for q, o := range p.offsets {
			if len(q) > best && encloses(q, path) {
				best, off, ok = len(q), o, true
			}
		}
	}
	if !ok {
		return &Error{File: p.name, Path: path, Msg: msg}
	}
	return p.at(off, path, msg)
}

func (p *Positions) at(off int64, path, msg string) *Error {
	if p.mapOff != nil && p.src != nil {
		src, note := p.mapOff(off)
		if note != "" {
			msg += " (" + note + ")"
		}
		line, col := lineCol(p.src, src)
		return &Error{File: p.name, Line: line, Col: col, Path: path, Msg: msg}
	}
	line, col := lineCol(p.data, off)
	return &Error{File: p.name, Line: line, Col: col, Path: path, Msg: msg}
}

// JoinPath appends an object member to a field path the way Decode writes
// paths (services.web, kv["a/b"]), for building paths to give
// Positions.ErrorAt.
func JoinPath(path, key string) string {
	if !plainKey(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// plainKey reports whether key is written after a dot in a path: it is not
// empty and all of it is in [A-Za-z0-9_-]. Decode asks for every member, so
// it is a loop, not a regular expression.
func plainKey(key string) bool {
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return key != ""
}

// indexPath appends a list index to a field path: services[0].
func indexPath(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// encloses reports whether outer is path or one of its parents: services.web
// encloses services.web[0].ID but not services.webx.
func encloses(outer, path string) bool {
	rest, ok := strings.CutPrefix(path, outer)
	return ok && (outer == "" || rest == "" || rest[0] == '.' || rest[0] == '[')
}

// lineCol turns a byte offset into a 1-based line and a 1-based column
// counted in characters.
func lineCol(data []byte, off int64) (line, col int) {
	off = min(off, int64(len(data)))
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	lineStart := bytes.LastIndexByte(before, '\n') + 1
	col = utf8.RuneCount(before[lineStart:]) + 1
	return line, col
}
