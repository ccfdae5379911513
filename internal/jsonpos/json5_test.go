package jsonpos

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestJSON5(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{`{"a": 1}`, `{"a": 1}`, ""},
		{`{a: 1, 'b': 'x"y', c: [1, 2,], }`, `{"a": 1, "b": "x\"y", "c": [1, 2] }`, ""},
		{"// c\n{a /* x */: 1}", " \n{\"a\"  : 1}", ""},
		{`{a: 0x1F, b: +1, c: .5, d: 5., e: -0x10, f: 1e3}`, `{"a": 31, "b": 1, "c": 0.5, "d": 5, "e": -16, "f": 1e3}`, ""},
		{`{$_x: 'a\'b\x41\u0042\
c'}`, `{"$_x": "a'bABc"}`, ""},
		{"'tab\there'", `"tab\there"`, ""},
		{`[true, false, null]`, `[true, false, null]`, ""},
		{`{a: Infinity}`, "", "Infinity is not a finite number"},
		{`{a: -NaN}`, "", "-NaN is not a finite number"},
		{`{a: 01}`, "", "leading zero"},
		{`{a: 10s}`, "", `"10s" is not a number`},
		{`{a: b}`, "", `unquoted text "b" is not a value`},
		{`{a: 1,, }`, "", `want an object key`},
		{`{a: 1`, "", `'{' not closed`},
		{`{a: 'x`, "", `string not closed`},
		{"{a: 'x\ny'}", "", `line break in a string`},
		{`[1] x`, "", `unexpected data after the value`},
		{``, "", `unexpected end of input`},
		{`{"a": "\1"}`, "", `\1 is not a valid escape`},
	} {
		got, m, err := JSON5([]byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("JSON5(%q): error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("JSON5(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			continue
		}
		if !json.Valid(got) {
			t.Errorf("JSON5(%q) = %q: not JSON", tc.in, got)
		}
		if m.Map(int64(len(got))) > int64(len(tc.in)) {
			t.Errorf("JSON5(%q): end maps past the input", tc.in)
		}
	}
}

// TestJSON5Positions: Decode's errors count lines and columns in the JSON5
// text, not in the JSON made from it.
func TestJSON5Positions(t *testing.T) {
	src := "{\n  // a comment\n  name: 'x',\n  port: 'eighty',\n}"
	data, m, err := JSON5([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Name string `json:"name"`
		Port int    `json:"port"`
	}
	_, err = Decode(data, "f.json5", &v, Options{Source: []byte(src), MapOffset: func(o int64) (int64, string) { return m.Map(o), "" }})
	if err == nil || err.Error() != "f.json5:4:9: port: want a number, got a string" {
		t.Errorf("error %v", err)
	}
}

func FuzzJSON5(f *testing.F) {
	for _, s := range []string{`{a: 1, 'b': [1,], /* c */ d: 0x10}`, `"\x41\u00e9"`, `[+.5, -Infinity]`, "{\"a\": \"\\\n\"}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		out, m, err := JSON5(src)
		if err != nil {
			if se, ok := err.(*SyntaxError); !ok || se.Offset < 0 || se.Offset > int64(len(src)) {
				t.Fatalf("bad error %v", err)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("JSON5(%q) = %q: not JSON", src, out)
		}
		for off := int64(0); off <= int64(len(out)); off++ {
			if o := m.Map(off); o < 0 || o > int64(len(src)) {
				t.Fatalf("offset %d maps to %d outside the input", off, o)
			}
		}
	})
}
