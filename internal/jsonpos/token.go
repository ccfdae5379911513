package jsonpos

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// The walker reads data's tokens itself rather than through a json.Decoder:
// checkSyntax has checked data, so reading it needs no validation, and the
// walker knows where each value ends (an Unmarshaler's bytes are a slice of
// data, not a second decode).

// token is one JSON token.
type token struct {
	kind byte   // '{', '}', '[', ']'; '"' a string, '0' a number, 't' true, 'f' false, 'n' null
	text string // a string's value, a number's literal
}

// next moves past whitespace and the separators ':' and ',' to the next
// token, and returns its offset.
func (w *walker) next() int64 {
	for w.off < len(w.data) && (isSpace(w.data[w.off]) || w.data[w.off] == ':' || w.data[w.off] == ',') {
		w.off++
	}
	return int64(w.off)
}

// more reports whether the list or object being read has another element.
func (w *walker) more() bool {
	w.next()
	return w.off < len(w.data) && w.data[w.off] != ']' && w.data[w.off] != '}'
}

// token reads the next token.
func (w *walker) token() (token, error) {
	start := int(w.next())
	switch c := w.data[start]; c {
	case '{', '}', '[', ']':
		w.off++
		return token{kind: c}, nil
	case '"':
		s, err := w.str()
		return token{kind: '"', text: s}, err
	case 't', 'f', 'n':
		w.off += literalLen(w.data[start:])
		return token{kind: c}, nil
	}
	w.off += literalLen(w.data[start:])
	return token{kind: '0', text: string(w.data[start:w.off])}, nil
}

// str reads the string at w.off as encoding/json does: a string without
// escapes in valid UTF-8 is its bytes; encoding/json unquotes the rest
// (escapes, and invalid UTF-8, which it turns into U+FFFD).
func (w *walker) str() (string, error) {
	start := w.off
	escaped := w.skipString()
	if body := w.data[start+1 : w.off-1]; !escaped && utf8.Valid(body) {
		return string(body), nil
	}
	var s string
	if err := json.Unmarshal(w.data[start:w.off], &s); err != nil {
		return "", fmt.Errorf("jsonpos: unquote %s: %w", w.data[start:w.off], err)
	}
	return s, nil
}

// skipString moves past the string at w.off and reports whether it has
// escapes.
func (w *walker) skipString() (escaped bool) {
	w.off++ // the opening quote
	for w.data[w.off] != '"' {
		if w.data[w.off] == '\\' {
			escaped = true
			w.off++ // the escaped byte is never the closing quote, nor are a \u's digits
		}
		w.off++
	}
	w.off++
	return escaped
}

// skip moves past the value at w.off.
func (w *walker) skip() {
	depth := 0
	for {
		switch c := w.data[w.off]; {
		case c == '"':
			w.skipString()
		case c == '{' || c == '[':
			depth++
			w.off++
		case c == '}' || c == ']':
			depth--
			w.off++
		case isLiteral(c):
			w.off += literalLen(w.data[w.off:])
		default: // whitespace, ':' and ',' inside a list or object
			w.off++
		}
		if depth == 0 {
			return
		}
	}
}

// literalLen is the length of the true, false, null or number that b
// starts with.
func literalLen(b []byte) int {
	n := 0
	for n < len(b) && isLiteral(b[n]) {
		n++
	}
	return n
}

func isLiteral(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'E'
}
