package jsonpos

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// duration is a JSON string like "1s", to test json.Unmarshaler fields.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	s := strings.Trim(string(b), `"`)
	v, err := time.ParseDuration(s)
	if err != nil || b[0] != '"' {
		return fmt.Errorf("%s is not a duration", b)
	}
	*d = duration(v)
	return nil
}

// upper is a JSON string read in upper case, to test an Unmarshaler whose
// own json.Unmarshal fails on the wrong kind of value.
type upper string

func (u *upper) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*u = upper(strings.ToUpper(s))
	return nil
}

type service struct {
	Name   string         `json:"name"`
	Port   int            `json:"port"`
	Poll   duration       `json:"poll"`
	Every  *duration      `json:"every"`
	Weight float32        `json:"weight"`
	Count  uint8          `json:"count"`
	Meta   map[string]int `json:"meta"`
	Extra  any            `json:"extra"`
	Next   *service       `json:"next"`
	Tags   []string       `json:"tags"`
	Signal upper          `json:"signal"`
	Hidden string         `json:"-"`
}

type config struct {
	Services []service `json:"services"`
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name          string
		in            string
		caseSensitive bool
		want          string
	}{
		{
			name: "syntax error line and column",
			in:   "{\n  \"services\": [\n    {\"name\": \"a\",}\n  ]\n}",
			want: `app.json:3:18: JSON syntax: invalid character '}' looking for beginning of object key string`,
		},
		{
			name: "syntax error column counts characters",
			in:   `{"services": [{"name": "é", x}]}`,
			want: `app.json:1:29: JSON syntax: invalid character 'x' looking for beginning of object key string`,
		},
		{
			name: "empty input",
			in:   "",
			want: `app.json:1:1: JSON syntax: unexpected end of input`,
		},
		{
			name: "truncated",
			in:   "{\"services\": [\n",
			want: `app.json:2:1: JSON syntax: unexpected end of input`,
		},
		{
			name: "unknown field",
			in:   "{\"services\": [\n  {\"name\": \"a\", \"helth\": \"x\"}\n]}",
			want: `app.json:2:17: services[0].helth: unknown field (want one of name, port, poll, every, weight, count, meta, extra, next, tags, signal)`,
		},
		{
			name: "field tagged - is unknown",
			in:   `{"services": [{"Hidden": "x"}]}`,
			want: `app.json:1:16: services[0].Hidden: unknown field ...`,
		},
		{
			name: "wrong type has indexed path",
			in:   "{\"services\": [\n  {\"name\": \"a\"},\n  {\"name\": \"b\", \"port\": \"80\"}\n]}",
			want: `app.json:3:25: services[1].port: want a number, got a string`,
		},
		{
			name: "wrong type at top level",
			in:   `[]`,
			want: `app.json:1:1: want an object, got a list`,
		},
		{
			name: "fraction for an int",
			in:   `{"services": [{"port": 80.5}]}`,
			want: `app.json:1:24: services[0].port: want a whole number that fits in 64 bits, got the number 80.5`,
		},
		{
			name: "negative for an unsigned",
			in:   `{"services": [{"count": -1}]}`,
			want: `app.json:1:25: services[0].count: want a whole number from 0 that fits in 8 bits, got the number -1`,
		},
		{
			name: "unsigned overflow",
			in:   `{"services": [{"count": 256}]}`,
			want: `app.json:1:25: services[0].count: want a whole number from 0 that fits in 8 bits, got the number 256`,
		},
		{
			name: "float overflow",
			in:   `{"services": [{"weight": 1e39}]}`,
			want: `app.json:1:26: services[0].weight: want a number that fits in a float32, got the number 1e39`,
		},
		{
			name: "string for a float",
			in:   `{"services": [{"weight": "1"}]}`,
			want: `app.json:1:26: services[0].weight: want a number, got a string`,
		},
		{
			name: "map value of the wrong type",
			in:   `{"services": [{"meta": {"a/b": true}}]}`,
			want: `app.json:1:32: services[0].meta["a/b"]: want a number, got true`,
		},
		{
			name: "wrong type through a pointer",
			in:   `{"services": [{"next": {"tags": "x"}}]}`,
			want: `app.json:1:33: services[0].next.tags: want a list, got a string`,
		},
		{
			name: "duplicate key",
			in:   `{"services": [{"name": "a", "name": "b"}]}`,
			want: `app.json:1:29: services[0].name: duplicate key`,
		},
		{
			name: "duplicate map key",
			in:   `{"services": [{"meta": {"a": 1, "a": 2}}]}`,
			want: `app.json:1:33: services[0].meta.a: duplicate key`,
		},
		{
			name: "duplicate key in any",
			in:   `{"services": [{"extra": {"x": [1, {"k": 1, "k": 2}]}}]}`,
			want: `app.json:1:44: services[0].extra.x[1].k: duplicate key`,
		},
		{
			name: "duplicate key differing in case",
			in:   `{"services": [{"name": "a", "Name": "b"}]}`,
			want: `app.json:1:29: services[0].name: duplicate key`,
		},
		{
			name:          "case sensitive",
			in:            `{"services": [{"Name": "a"}]}`,
			caseSensitive: true,
			want:          `app.json:1:16: services[0].Name: unknown field (want one of name, ...`,
		},
		{
			name: "unmarshaler error is placed",
			in:   "{\"services\": [\n  {\"name\": \"a\",\n   \"poll\": \"soon\"}\n]}",
			want: `app.json:3:12: services[0].poll: "soon" is not a duration`,
		},
		{
			name: "unmarshaler through a pointer",
			in:   `{"services": [{"every": 5}]}`,
			want: `app.json:1:25: services[0].every: 5 is not a duration`,
		},
		{
			name: "unmarshaler type error",
			in:   `{"services": [{"signal": 5}]}`,
			want: `app.json:1:26: services[0].signal: want a string, got the number 5`,
		},
		{
			name: "trailing data",
			in:   "{}\n  {}",
			want: `app.json:2:3: unexpected data after the JSON value`,
		},
		{
			name: "trailing garbage after a value",
			in:   `{"services": []}]`,
			want: `app.json:1:17: unexpected data after the JSON value`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c config
			_, err := Decode([]byte(tt.in), "app.json", &c, Options{CaseSensitive: tt.caseSensitive})
			if err == nil {
				t.Fatalf("Decode succeeded (%+v), want error %q", c, tt.want)
			}
			got := err.Error()
			if prefix, ok := strings.CutSuffix(tt.want, "..."); ok {
				if !strings.HasPrefix(got, prefix) {
					t.Fatalf("error\n got %s\nwant %s...", got, prefix)
				}
			} else if got != tt.want {
				t.Fatalf("error\n got %s\nwant %s", got, tt.want)
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.File != "app.json" || pe.Line < 1 || pe.Col < 1 {
				t.Fatalf("error %#v is not an *Error with a place", err)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	every := duration(2 * time.Second)
	tests := []struct {
		name          string
		in            string
		caseSensitive bool
		want          config
	}{
		{name: "null", in: ` null `, want: config{}},
		{name: "null members", in: `{"services": [{"name": null, "poll": null, "every": null, "next": null, "meta": null}]}`,
			want: config{Services: []service{{}}}},
		{name: "case-insensitive by default", in: `{"services": [{"NAME": "a"}]}`,
			want: config{Services: []service{{Name: "a"}}}},
		{name: "exact names when case-sensitive", in: `{"services": [{"name": "a"}]}`, caseSensitive: true,
			want: config{Services: []service{{Name: "a"}}}},
		{name: "every kind", in: `{"services": [{"name": "a", "port": -1, "poll": "1s", "every": "2s", "weight": 0.5,
			"count": 255, "meta": {"x": 1}, "extra": {"any": [1, "two", null, true]}, "next": {"name": "b"}, "tags": ["t"], "signal": "hup"}]}`,
			want: config{Services: []service{{Name: "a", Port: -1, Poll: duration(time.Second), Every: &every, Weight: 0.5,
				Count: 255, Meta: map[string]int{"x": 1}, Extra: map[string]any{"any": []any{1.0, "two", nil, true}},
				Next: &service{Name: "b"}, Tags: []string{"t"}, Signal: "HUP"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c config
			if _, err := Decode([]byte(tt.in), "app.json", &c, Options{CaseSensitive: tt.caseSensitive}); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c, tt.want) {
				t.Errorf("decoded\n got %+v\nwant %+v", c, tt.want)
			}
		})
	}
}

func TestPositionsErrorAt(t *testing.T) {
	in := "{\"services\": [\n  {\"name\": \"a\"},\n  {\"name\": \"b\"}\n]}"
	var c config
	pos, err := Decode([]byte(in), "app.json", &c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"services[1].name": `app.json:3:12: services[1].name: bad`,
		"services[1].port": `app.json:3:3: services[1].port: bad`, // left out: placed at its object
		"services[10]":     `app.json:1:14: services[10]: bad`,    // not inside services[1]
		"other":            `app.json:1:1: other: bad`,
	} {
		if got := pos.ErrorAt(path, "bad").Error(); got != want {
			t.Errorf("ErrorAt(%q)\n got %s\nwant %s", path, got, want)
		}
	}
}

func TestErrorString(t *testing.T) {
	for _, tt := range []struct {
		err  Error
		want string
	}{
		{Error{File: "a.json", Line: 1, Col: 2, Path: "x.y", Msg: "m"}, "a.json:1:2: x.y: m"},
		{Error{File: "a.json", Path: "x", Msg: "m"}, "a.json: x: m"},
		{Error{File: "a.json", Line: 3, Col: 1, Msg: "m"}, "a.json:3:1: m"},
		{Error{Msg: "m"}, "m"},
	} {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("%+v.Error() = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// TestDecodeMatchesUnmarshal: on random documents of the test types (every
// field kind, nulls, nested pointers and maps, case variants of the keys),
// Decode fills the same value as encoding/json's Unmarshal, from a zero
// value and from a value already filled.
func TestDecodeMatchesUnmarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 1))
	for i := range 3000 {
		doc := randomConfig(rng, 3)
		var want, got config
		if i%3 == 0 { // decode over a value already filled, the same in both
			seed := randomConfig(rng, 2)
			_ = json.Unmarshal([]byte(seed), &want)
			_ = json.Unmarshal([]byte(seed), &got)
		}
		if err := json.Unmarshal([]byte(doc), &want); err != nil {
			t.Fatalf("the generator made a document Unmarshal refuses: %v\n%s", err, doc)
		}
		if _, err := Decode([]byte(doc), "doc.json", &got, Options{}); err != nil {
			t.Fatalf("Decode: %v\n%s", err, doc)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("document %s\nDecode    %#v\nUnmarshal %#v", doc, got, want)
		}
	}
}

// randomConfig writes a document of type config with random members.
func randomConfig(rng *rand.Rand, depth int) string {
	if rng.IntN(12) == 0 {
		return "null"
	}
	var b strings.Builder
	b.WriteString(`{"services": [`)
	for i := range rng.IntN(4) {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(randomService(rng, depth))
	}
	b.WriteString("]}")
	return b.String()
}

func randomService(rng *rand.Rand, depth int) string {
	if rng.IntN(10) == 0 {
		return "null"
	}
	word := func() string { return []string{"a", "b c", `q\"x`, "é", ""}[rng.IntN(5)] }
	anyValue := func() string {
		return []string{`1`, `-2.5e3`, `"s"`, `true`, `null`, `[1, "two", null, {"k": [false]}]`, `{"a": {"b": 1}}`, `[]`, `{}`}[rng.IntN(9)]
	}
	members := map[string]func() string{
		"name":   func() string { return `"` + word() + `"` },
		"port":   func() string { return fmt.Sprint(rng.IntN(70000) - 100) },
		"poll":   func() string { return []string{`"1s"`, `"250ms"`, `null`}[rng.IntN(3)] },
		"every":  func() string { return []string{`"2s"`, `null`}[rng.IntN(2)] },
		"weight": func() string { return []string{`0.5`, `-1`, `3e2`, `null`}[rng.IntN(4)] },
		"count":  func() string { return fmt.Sprint(rng.IntN(256)) },
		"meta": func() string {
			if rng.IntN(4) == 0 {
				return "null"
			}
			return fmt.Sprintf(`{"x": %d, "y": null, "%s": 3}`, rng.IntN(9), word())
		},
		"extra": anyValue,
		"next": func() string {
			if depth == 0 {
				return "null"
			}
			return randomService(rng, depth-1)
		},
		"tags": func() string {
			return []string{`["t"]`, `[]`, `null`, `["a", "b", "c"]`}[rng.IntN(4)]
		},
		"signal": func() string { return []string{`"hup"`, `"term"`}[rng.IntN(2)] },
	}
	keys := []string{"name", "port", "poll", "every", "weight", "count", "meta", "extra", "next", "tags", "signal"}
	rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	var parts []string
	for _, k := range keys[:rng.IntN(len(keys)+1)] {
		key := k
		if rng.IntN(5) == 0 {
			key = strings.ToUpper(k[:1]) + k[1:] // encoding/json matches keys case-insensitively
		}
		parts = append(parts, fmt.Sprintf("%q: %s", key, members[k]()))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// FuzzDecode: whatever the input, Decode never panics, refuses what
// Unmarshal refuses, and when it accepts a document fills the value
// Unmarshal fills (it refuses more: unknown fields, duplicate keys).
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`null`, `{"services": [{"name": "a", "port": 1, "poll": "1s", "every": null, "meta": {"x": 1}, "extra": [1, {"a": null}], "next": {"tags": []}}]}`,
		`{"services": [null, {"weight": 1e400}]}`, `{"services": [{"count": 256}]}`, `[]`, `{"services": {}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got, want config
		_, derr := Decode(data, "fuzz.json", &got, Options{})
		uerr := json.Unmarshal(data, &want)
		if derr == nil && uerr != nil {
			t.Fatalf("Decode accepted what Unmarshal refuses (%v): %q", uerr, data)
		}
		if derr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("input %q\nDecode    %#v\nUnmarshal %#v", data, got, want)
		}
	})
}

func TestKeys(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{name: "object", in: `{"a": 1, "b": {"c": [2, {"d": 3}]}, "e": "}"}`, want: []string{"a", "b", "e"}},
		{name: "repeats kept", in: `{"a": 1, "a": 2}`, want: []string{"a", "a"}},
		{name: "escaped key", in: `{"a\u002fb": 1, "\"": null}`, want: []string{"a/b", `"`}},
		{name: "space around", in: " \n{ \"a\" : [ ] } \t", want: []string{"a"}},
		{name: "empty object", in: `{}`, want: nil},
		{name: "list", in: `[{"a": 1}]`, want: nil},
		{name: "null", in: `null`, want: nil},
		{name: "syntax error", in: `{"a": 1,}`, want: nil},
		{name: "data after the value", in: `{"a": 1} {"b": 2}`, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Keys([]byte(tt.in)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Keys(%s) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzKeys: Keys finds the keys json.Unmarshal puts in a map.
func FuzzKeys(f *testing.F) {
	for _, s := range []string{`{"a": 1, "b": [{"c": "]"}], "a": null}`, `{"\u00e9\n": true}`, `[]`, `{"a": }`, "{\"\xff\": 1}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m map[string]json.RawMessage
		_ = json.Unmarshal(data, &m)
		got := map[string]bool{}
		for _, k := range Keys(data) {
			got[k] = true
			if _, ok := m[k]; !ok {
				t.Fatalf("Keys(%q) has %q, Unmarshal's map %v has not", data, k, m)
			}
		}
		if len(got) != len(m) {
			t.Fatalf("Keys(%q) = %q, Unmarshal's map has %d keys", data, Keys(data), len(m))
		}
	})
}

// TestDecodeUnsupported: types Decode does not support are a plain error
// (a bug in the caller), and a tag's options are read one by one.
func TestDecodeUnsupported(t *testing.T) {
	type embedded struct{ A int }
	tests := []struct {
		name string
		v    any
		want string // "" for no error
	}{
		{name: "string option", v: &struct {
			N int `json:"n,string"`
		}{}, want: "jsonpos: the ,string option of struct { N int \"json:\\\"n,string\\\"\" }.N is not supported"},
		{name: "string option after another", v: &struct {
			N int `json:"n,omitempty,string"`
		}{}, want: "jsonpos: the ,string option of struct { N int \"json:\\\"n,omitempty,string\\\"\" }.N is not supported"},
		{name: "an option named like it", v: &struct {
			N int `json:"n,strings"`
		}{}},
		{name: "embedded struct", v: &struct{ embedded }{}, want: "jsonpos: embedded field embedded in struct { jsonpos.embedded } is not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(`{"n": 1}`), "t.json", tt.v, Options{})
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error %v, want %s", err, tt.want)
			}
		})
	}
}
