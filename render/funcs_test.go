package render

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/Masterminds/sprig/v3"

	"github.com/autopilot/autopilot/internal/dep"
)

// execHelpers parses and runs text with the helper functions only.
func execHelpers(t *testing.T, text string, data any) (string, error) {
	t.Helper()
	tm, err := template.New("t").Funcs(helperFuncs()).Parse(text)
	if err != nil {
		t.Fatalf("parse %q: %v", text, err)
	}
	bindTemplateFuncs(tm, nil, nil)
	var b strings.Builder
	err = tm.Execute(&b, data)
	return b.String(), err
}

type funcsData struct {
	Services    []*dep.HealthService
	NilServices []*dep.HealthService
	Snippets    []*dep.CatalogSnippet
	Pairs       []*dep.KeyPair
	Conflict    []*dep.KeyPair
	Tags        dep.ServiceTags
	Needles     []string
	Nil         []string
	Ints        []int
	U           uint64
	U8          uint8
	I8          int8
	F32         float32
}

func testData() funcsData {
	return funcsData{
		Services: []*dep.HealthService{
			{ID: "web-1", Node: "n1", Tags: dep.ServiceTags{"a", "b"}, ServiceMeta: map[string]string{"environment": "dev", "shard_number": "1"}},
			{ID: "web-2", Node: "n2", Tags: dep.ServiceTags{"b"}, ServiceMeta: map[string]string{"environment": "prod", "shard_number": "1"}},
			{ID: "web-3", Node: "n3", Tags: dep.ServiceTags{}, ServiceMeta: map[string]string{"environment": "prod", "shard_number": "2"}},
			{ID: "web-4", Node: "n4", ServiceMeta: map[string]string{"environment": "x.y"}},
		},
		Snippets: []*dep.CatalogSnippet{{Name: "db", Tags: dep.ServiceTags{"primary"}}, {Name: "web", Tags: dep.ServiceTags{"edge", "primary"}}},
		Pairs: []*dep.KeyPair{
			{Path: "groups/elasticsearch/es1", Key: "elasticsearch/es1", Value: "1"},
			{Path: "groups/elasticsearch/es2", Key: "elasticsearch/es2", Value: "2"},
			{Path: "groups/folder/", Key: "folder/"},
			{Path: "groups/redis/a/b", Key: "redis/a/b", Value: "3"},
			{Path: "groups/top", Key: "top", Value: "t"},
		},
		Conflict: []*dep.KeyPair{{Key: "a", Value: "x"}, {Key: "a/b", Value: "y"}},
		Tags:     dep.ServiceTags{"a", "b", "c"},
		Needles:  []string{"a", "z"},
		Ints:     []int{1, 2},
		U:        3,
		U8:       2,
		I8:       -1,
		F32:      0.5,
	}
}

func TestHelperFuncs(t *testing.T) {
	t.Setenv("AUTOPILOT_TEST_SET", "v")
	t.Setenv("AUTOPILOT_TEST_EMPTY", "")
	os.Unsetenv("AUTOPILOT_TEST_UNSET")

	tests := []struct {
		name    string
		text    string
		want    string
		wantErr string
	}{
		// Math: consul-template's order, the piped value is the left operand.
		{name: "add", text: `{{ add 1 2 }}`, want: "3"},
		{name: "add pipe", text: `{{ 1 | add 2 }}`, want: "3"},
		{name: "add int float", text: `{{ add 1 2.5 }}`, want: "3.5"},
		{name: "add uint int", text: `{{ add .U -5 }}`, want: "-2"},
		{name: "add uint uint", text: `{{ add .U .U8 }}`, want: "5"},
		{name: "add float32", text: `{{ add .F32 1 }}`, want: "1.5"},
		{name: "subtract", text: `{{ subtract 2 5 }}`, want: "3"},
		{name: "subtract pipe", text: `{{ 5 | subtract 2 }}`, want: "3"},
		{name: "subtract pipe reversed", text: `{{ 2 | subtract 5 }}`, want: "-3"},
		{name: "subtract float", text: `{{ subtract 0.5 2 }}`, want: "1.5"},
		{name: "multiply", text: `{{ 2 | multiply 3 }}`, want: "6"},
		{name: "divide", text: `{{ divide 2 10 }}`, want: "5"},
		{name: "divide pipe int", text: `{{ 10 | divide 4 }}`, want: "2"},
		{name: "divide pipe float", text: `{{ 10.0 | divide 4 }}`, want: "2.5"},
		{name: "divide by zero", text: `{{ divide 0 10 }}`, wantErr: "divide: division by zero"},
		{name: "divide float by zero", text: `{{ divide 0.0 1 }}`, want: "+Inf"},
		{name: "modulo", text: `{{ 5 | modulo 2 }}`, want: "1"},
		{name: "modulo by zero", text: `{{ modulo 0 5 }}`, wantErr: "modulo: division by zero"},
		{name: "modulo float", text: `{{ modulo 2 5.0 }}`, wantErr: "modulo: unsupported type float64"},
		{name: "minimum", text: `{{ minimum 2 5 }}`, want: "2"},
		{name: "minimum pipe", text: `{{ 5 | minimum 2 }}`, want: "2"},
		{name: "maximum", text: `{{ maximum 2 5 }}`, want: "5"},
		{name: "maximum mixed", text: `{{ maximum 2.5 .I8 }}`, want: "2.5"},
		{name: "math on string", text: `{{ add "a" 1 }}`, wantErr: "add: unsupported type string"},
		{name: "math on nil", text: `{{ add nil 1 }}`, wantErr: "add: unsupported type <nil>"},
		{name: "sprig sub keeps its order", text: `{{ sub 5 2 }}`, want: "3"},
		{name: "sprig add as sprig_add", text: `{{ sprig_add 1 2 3 }}`, want: "6"},

		// Strings.
		{name: "split join", text: `{{ "a,b" | split "," | join ";" }}`, want: "a;b"},
		{name: "split trims", text: `{{ "\na\nb\n" | split "\n" | len }}`, want: "2"},
		{name: "split empty", text: `{{ "  " | split "," | len }}`, want: "0"},
		{name: "join tags", text: `{{ .Tags | join "," }}`, want: "a,b,c"},
		{name: "join any list", text: `{{ list 1 "a" | join "-" }}`, want: "1-a"},
		{name: "join nil", text: `{{ .Nil | join "," }}`, want: ""},
		{name: "join not a list", text: `{{ 3 | join "," }}`, wantErr: "join: want a list, not int"},
		{name: "sprig split as sprig_split", text: `{{ sprig_split "," "a,b" }}`, want: "map[_0:a _1:b]"},
		{name: "splitToMap", text: `{{ "a:1\nb:2:3\nc\n" | splitToMap "\n" ":" }}`, want: "map[a:1 b:2:3]"},
		{name: "trim", text: `{{ "!!hello!!" | trim "!" }}`, want: "hello"},
		{name: "trimPrefix", text: `{{ "hello world" | trimPrefix "hello " }}`, want: "world"},
		{name: "trimSuffix", text: `{{ "hello world!!" | trimSuffix "world!!" }}`, want: "hello "},
		{name: "trimSpace", text: `{{ " \t x \n" | trimSpace }}`, want: "x"},
		{name: "replaceAll", text: `{{ "foo.bar.baz" | replaceAll "." "_" }}`, want: "foo_bar_baz"},
		{name: "regexReplaceAll", text: `{{ "foo.bar" | regexReplaceAll "foo([.a-z]+)" "$1" }}`, want: ".bar"},
		{name: "regexReplaceAll bad", text: `{{ "x" | regexReplaceAll "(" "" }}`, wantErr: "regexReplaceAll: error parsing regexp"},
		{name: "regexMatch", text: `{{ "foo.bar" | regexMatch "foo([.a-z]+)" }}`, want: "true"},
		{name: "regexMatch no", text: `{{ "bar" | regexMatch "^foo" }}`, want: "false"},
		{name: "toLower", text: `{{ "HeLLo" | toLower }}`, want: "hello"},
		{name: "toUpper", text: `{{ "HeLLo" | toUpper }}`, want: "HELLO"},
		{name: "toTitle", text: `{{ "hello wORLD it's a.b" | toTitle }}`, want: "Hello WORLD It's A.b"},
		{name: "indent", text: `{{ "a\n\nb\n" | indent 2 }}`, want: "  a\n\n  b\n"},
		{name: "indent empty", text: `{{ "" | indent 4 }}`, want: ""},
		{name: "indent negative", text: `{{ "a" | indent -1 }}`, wantErr: "indent value must be a positive integer"},
		{name: "sprig upper", text: `{{ upper "x" }}`, want: "X"},

		// Encoding and hashing.
		{name: "base64Encode", text: `{{ "hello" | base64Encode }}`, want: "aGVsbG8="},
		{name: "base64Decode", text: `{{ "aGVsbG8=" | base64Decode }}`, want: "hello"},
		{name: "base64Decode bad", text: `{{ "!!" | base64Decode }}`, wantErr: "base64Decode: illegal base64"},
		{name: "base64URLEncode", text: `{{ "<<???>>" | base64URLEncode }}`, want: "PDw_Pz8-Pg=="},
		{name: "base64URLDecode", text: `{{ "PDw_Pz8-Pg==" | base64URLDecode }}`, want: "<<???>>"},
		{name: "sha256Hex", text: `{{ "bladibla" | sha256Hex }}`, want: "54cf4c66bcabb5c20e25331c01dd600b73369e97a947861bd8d3a0e0b8b3d70b"},
		{name: "md5sum", text: `{{ "myString" | md5sum }}`, want: "91c65b6feeb5a6ad66b30e2ebd9405e1"},
		{name: "hmacSHA256Hex", text: `{{ hmacSHA256Hex "somemessage" "somekey" }}`, want: "6116e95f2827172aa6ef8b22b883f6a77e966aefc129c6b8228ebd0aac74e98d"},
		{name: "hmacSHA256Hex pipe", text: `{{ "somekey" | hmacSHA256Hex "somemessage" }}`, want: "6116e95f2827172aa6ef8b22b883f6a77e966aefc129c6b8228ebd0aac74e98d"},

		// Parsing.
		{name: "parseBool", text: `{{ "true" | parseBool }}`, want: "true"},
		{name: "parseBool empty", text: `{{ "" | parseBool }}`, want: "false"},
		{name: "parseBool bad", text: `{{ "yes" | parseBool }}`, wantErr: `parseBool: strconv.ParseBool: parsing "yes"`},
		{name: "parseInt", text: `{{ "-42" | parseInt }}`, want: "-42"},
		{name: "parseInt empty", text: `{{ "" | parseInt }}`, want: "0"},
		{name: "parseInt bad", text: `{{ "1.5" | parseInt }}`, wantErr: "parseInt: "},
		{name: "parseUint", text: `{{ "42" | parseUint }}`, want: "42"},
		{name: "parseUint negative", text: `{{ "-1" | parseUint }}`, wantErr: "parseUint: "},
		{name: "parseFloat", text: `{{ "1.25" | parseFloat }}`, want: "1.25"},
		{name: "parseFloat empty", text: `{{ "" | parseFloat }}`, want: "0"},
		{name: "parseInt then math", text: `{{ "7" | parseInt | add 1 }}`, want: "8"},
		{name: "parseJSON", text: `{{ with $d := "{\"name\":\"x\",\"n\":1}" | parseJSON }}{{ $d.name }} {{ $d.n }}{{ end }}`, want: "x 1"},
		{name: "parseJSON empty", text: `{{ "" | parseJSON | len }}`, want: "0"},
		{name: "parseJSON bad", text: `{{ "{" | parseJSON }}`, wantErr: "parseJSON: unexpected end of JSON input"},
		{name: "parseYAML", text: "{{ with $d := \"name: x\\nnum: 1\\nlist: [a, b]\" | parseYAML }}{{ $d.name }} {{ $d.num }} {{ index $d.list 1 }}{{ end }}", want: "x 1 b"},
		{name: "parseYAML toJSON", text: "{{ \"b:\\n  c: true\\na: 1\" | parseYAML | toJSON }}", want: `{"a":1,"b":{"c":true}}`},
		{name: "parseYAML int keys", text: "{{ index (\"1: one\" | parseYAML) 1 }}", want: "one"},
		{name: "parseYAML 1.1 booleans", text: "{{ \"n: 1\\non: yes\" | parseYAML }}", want: "map[false:1 true:true]"},
		{name: "parseYAML empty", text: `{{ "" | parseYAML | len }}`, want: "0"},
		{name: "parseYAML bad", text: `{{ "a: [" | parseYAML }}`, wantErr: "parseYAML: yaml: "},
		{name: "toJSON escapes HTML", text: `{{ dict "q" "a?b=c&d=<e>" | toJSON }}`, want: `{"q":"a?b=c\u0026d=\u003ce\u003e"}`},
		{name: "toUnescapedJSON", text: `{{ dict "q" "a?b=c&d=<e>" | toUnescapedJSON }}`, want: `{"q":"a?b=c&d=<e>"}`},
		{name: "toJSONPretty", text: `{{ .Pairs | explode | toJSONPretty }}`, want: "{\n  \"elasticsearch\": {\n    \"es1\": \"1\",\n    \"es2\": \"2\"\n  },\n  \"folder\": {},\n  \"redis\": {\n    \"a\": {\n      \"b\": \"3\"\n    }\n  },\n  \"top\": \"t\"\n}"},
		{name: "toUnescapedJSONPretty", text: `{{ dict "a" (dict "q" "&") | toUnescapedJSONPretty }}`, want: "{\n  \"a\": {\n    \"q\": \"&\"\n  }\n}"},
		{name: "toJSON nil", text: `{{ .NilServices | toJSON }}`, want: "null"},
		{name: "toYAML", text: `{{ .Pairs | explode | toYAML }}`, want: "elasticsearch:\n  es1: \"1\"\n  es2: \"2\"\nfolder: {}\nredis:\n  a:\n    b: \"3\"\ntop: t"},

		// Membership.
		{name: "contains", text: `{{ .Tags | contains "b" }}`, want: "true"},
		{name: "contains no", text: `{{ .Tags | contains "z" }}`, want: "false"},
		{name: "contains substring", text: `{{ "foobar" | contains "oba" }}`, want: "true"},
		{name: "in", text: `{{ in .Tags "c" }}`, want: "true"},
		{name: "in ints", text: `{{ in .Ints 2 }}`, want: "true"},
		{name: "in int kinds mix", text: `{{ in .Ints .I8 }}`, want: "false"},
		{name: "in interface list", text: `{{ in (list 1 "a" 2.5) 2.5 }}`, want: "true"},
		{name: "in string vs int", text: `{{ in (list "1") 1 }}`, want: "false"},
		{name: "in nil list", text: `{{ in .Nil "a" }}`, want: "false"},
		{name: "in nil needle", text: `{{ in .Tags nil }}`, want: "false"},
		{name: "containsAll", text: `{{ containsAll (list "a" "b") .Tags }}`, want: "true"},
		{name: "containsAll no", text: `{{ containsAll .Needles .Tags }}`, want: "false"},
		{name: "containsAll empty", text: `{{ containsAll .Nil .Tags }}`, want: "true"},
		{name: "containsAny", text: `{{ containsAny .Needles .Tags }}`, want: "true"},
		{name: "containsAny empty", text: `{{ containsAny (list) .Tags }}`, want: "false"},
		{name: "containsNone", text: `{{ containsNone (list "x" "y") .Tags }}`, want: "true"},
		{name: "containsNone no", text: `{{ containsNone .Needles .Tags }}`, want: "false"},
		{name: "containsNone empty", text: `{{ containsNone .Nil .Tags }}`, want: "true"},
		{name: "containsNotAll", text: `{{ containsNotAll .Needles .Tags }}`, want: "true"},
		{name: "containsNotAll no", text: `{{ containsNotAll (list "a" "c") .Tags }}`, want: "false"},
		{name: "containsNotAll empty", text: `{{ containsNotAll .Nil .Tags }}`, want: "false"},
		{name: "containsAll nil needles", text: `{{ containsAll nil .Tags }}`, want: "true"},
		{name: "containsAny not a list", text: `{{ containsAny "a" .Tags }}`, wantErr: "containsAny: needles must be a list, not string"},

		// loop.
		{name: "loop", text: `{{ range loop 3 }}{{ . }}{{ end }}`, want: "012"},
		{name: "loop from to", text: `{{ range $i := loop 5 8 }}stanza-{{ $i }} {{ end }}`, want: "stanza-5 stanza-6 stanza-7 "},
		{name: "loop string", text: `{{ range loop "2" }}{{ . }}{{ end }}`, want: "01"},
		{name: "loop uint8", text: `{{ range loop .U8 }}{{ . }}{{ end }}`, want: "01"},
		{name: "loop parseInt", text: `{{ range loop ("2" | parseInt) }}x{{ end }}`, want: "xx"},
		{name: "loop empty", text: `{{ range loop 3 1 }}x{{ else }}none{{ end }}`, want: "none"},
		{name: "loop index and value", text: `{{ range $i, $e := loop 5 7 }}{{ $i }}:{{ $e }} {{ end }}`, want: "0:5 1:6 "},
		{name: "loop arity", text: `{{ loop 1 2 3 }}`, wantErr: "loop: wrong number of arguments, expected 1 or 2, but got 3"},
		{name: "loop float", text: `{{ loop 1.5 }}`, wantErr: "loop: bad argument type: float64"},
		{name: "loop bad string", text: `{{ loop "x" }}`, wantErr: "parseInt: "},
		{name: "loop too long", text: `{{ loop 0 100000000 }}`, wantErr: "more than 10000000 iterations"},

		// Grouping Consul answers.
		{name: "byTag services", text: `{{ range $tag, $s := .Services | byTag }}{{ $tag }}={{ range $s }}{{ .ID }} {{ end }};{{ end }}`, want: "a=web-1 ;b=web-1 web-2 ;"},
		{name: "byTag snippets", text: `{{ range $tag, $s := .Snippets | byTag }}{{ $tag }}={{ range $s }}{{ .Name }} {{ end }};{{ end }}`, want: "edge=web ;primary=db web ;"},
		{name: "byTag nil slice", text: `{{ .NilServices | byTag | len }}`, want: "0"},
		{name: "byTag nil", text: `{{ byTag nil | len }}`, want: "0"},
		{name: "byTag wrong type", text: `{{ .Tags | byTag }}`, wantErr: "byTag: wrong argument type dep.ServiceTags"},
		{name: "byKey", text: `{{ range $k, $p := .Pairs | byKey }}{{ $k }}:{{ range $p }}{{ .Key }}={{ .Value }},{{ end }};{{ end }}`, want: "elasticsearch:es1=1,es2=2,;redis:a/b=3,;"},
		{name: "byKey lookup", text: `{{ with index (.Pairs | byKey) "redis" }}{{ (index . "a/b").Path }}{{ end }}`, want: "groups/redis/a/b"},
		{name: "byKey keeps input", text: `{{ $g := .Pairs | byKey }}{{ (index .Pairs 0).Key }}`, want: "elasticsearch/es1"},
		{name: "byMeta", text: `{{ range $k, $s := .Services | byMeta "environment,shard_number|int" }}{{ $k }}={{ range $s }}{{ .ID }} {{ end }};{{ end }}`, want: "dev_00001=web-1 ;prod_00001=web-2 ;prod_00002=web-3 ;x_y_00000=web-4 ;"},
		{name: "byMeta missing", text: `{{ range $k, $s := .Services | byMeta "rack" }}{{ $k }}:{{ len $s }} {{ end }}`, want: "_no_rack_:4 "},
		{name: "byMeta not a number", text: `{{ .Services | byMeta "environment|int" }}`, wantErr: `byMeta: service web-1: meta environment="dev" is not a number`},

		// explode and friends.
		{name: "explode", text: `{{ with .Pairs | explode }}{{ .elasticsearch.es2 }} {{ .redis.a.b }} {{ .top }}{{ end }}`, want: "2 3 t"},
		{name: "explode conflict", text: `{{ .Conflict | explode }}`, wantErr: `explode: not a map: "a/b": "a" already has value "x"`},
		{name: "explode prints", text: `{{ .Pairs | explode }}`, want: "map[elasticsearch:map[es1:1 es2:2] folder:map[] redis:map[a:map[b:3]] top:t]"},
		{name: "explodeMap", text: `{{ scratch.MapSet "example" "foo/bar" "a" }}{{ scratch.MapSet "example" "foo/baz" "b" }}{{ scratch.Get "example" | explodeMap | toYAML }}`, want: "foo:\n  bar: a\n  baz: b"},
		{name: "explodeMap conflict", text: `{{ dict "a" "x" "a/b" "y" | explodeMap }}`, wantErr: `explodeMap: not a map: "a/b": "a" already has value "x"`},
		{name: "mergeMap keeps base", text: `{{ $base := dict "a" "1" "n" (dict "x" "base") }}{{ dict "a" "2" "b" "3" "n" (dict "x" "over" "y" "new") | mergeMap $base | toJSON }}`, want: `{"a":"1","b":"3","n":{"x":"base","y":"new"}}`},
		{name: "mergeMapWithOverride", text: `{{ $base := dict "a" "1" "c" "4" }}{{ dict "a" "2" "b" "3" | mergeMapWithOverride $base | toJSON }}`, want: `{"a":"2","b":"3","c":"4"}`},

		// Environment.
		{name: "env", text: `{{ env "AUTOPILOT_TEST_SET" }}`, want: "v"},
		{name: "env unset", text: `{{ env "AUTOPILOT_TEST_UNSET" }}`, want: ""},
		{name: "envOrDefault set", text: `{{ envOrDefault "AUTOPILOT_TEST_SET" "d" }}`, want: "v"},
		{name: "envOrDefault empty", text: `{{ envOrDefault "AUTOPILOT_TEST_EMPTY" "d" }}`, want: ""},
		{name: "envOrDefault unset", text: `{{ envOrDefault "AUTOPILOT_TEST_UNSET" "d" }}`, want: "d"},
		{name: "mustEnv", text: `{{ mustEnv "AUTOPILOT_TEST_SET" }}`, want: "v"},
		{name: "mustEnv empty", text: `{{ mustEnv "AUTOPILOT_TEST_EMPTY" }}`, wantErr: "required environment variable AUTOPILOT_TEST_EMPTY is empty"},

		// Templates and scratch.
		{name: "executeTemplate", text: `{{ define "x" }}[{{ . }}]{{ end }}{{ executeTemplate "x" }}{{ executeTemplate "x" 42 }}{{ $v := executeTemplate "x" "s" }}{{ $v }}`, want: "[<no value>][42][s]"},
		{name: "executeTemplate arity", text: `{{ define "x" }}{{ end }}{{ executeTemplate "x" 1 2 }}`, wantErr: "expected 1 or 2, but got 3"},
		{name: "executeTemplate missing", text: `{{ executeTemplate "nope" }}`, wantErr: `no template "nope"`},
		{name: "scratch", text: `{{ scratch.Set "a" 1 }}{{ scratch.SetX "a" 2 }}{{ scratch.Get "a" }} {{ scratch.Key "a" }} {{ scratch.Key "b" }} {{ scratch.Get "b" }}`, want: "1 true false <no value>"},
		{name: "scratch map", text: `{{ scratch.MapSet "m" "z" 1 }}{{ scratch.MapSet "m" "y" 2 }}{{ scratch.MapSetX "m" "y" 3 }}{{ scratch.MapSetX "m" "x" 4 }}{{ scratch.MapValues "m" }} {{ scratch.MapValues "none" }}`, want: "[4 2 1] []"},
		{name: "scratch map on value", text: `{{ scratch.Set "s" "str" }}{{ scratch.MapSet "s" "k" 1 }}`, wantErr: `"s" is not a map`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := execHelpers(t, tt.text, testData())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("%s\n got (%q, %v)\nwant error containing %q", tt.text, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s: %v", tt.text, err)
			}
			if got != tt.want {
				t.Fatalf("%s\n got %q\nwant %q", tt.text, got, tt.want)
			}
		})
	}
}

// TestHelperMathTypes checks result types, which show in printf and in
// further math: integers stay integers, two unsigned stay unsigned.
func TestHelperMathTypes(t *testing.T) {
	fm := helperFuncs()
	call := func(name string, b, a any) any {
		t.Helper()
		out, err := fm[name].(func(any, any) (any, error))(b, a)
		if err != nil {
			t.Fatalf("%s(%v, %v): %v", name, b, a, err)
		}
		return out
	}
	tests := []struct {
		name string
		b, a any
		want any
	}{
		{"add", 2, 1, int64(3)},
		{"add", int8(2), int32(1), int64(3)},
		{"add", uint(2), 1, int64(3)},
		{"add", 2, uint16(1), int64(3)},
		{"add", uint(2), uint64(1), uint64(3)},
		{"add", 2, 1.5, 3.5},
		{"add", float32(0.5), uint(1), 1.5},
		{"subtract", 2, 5, int64(3)},
		{"subtract", 5, 2, int64(-3)},
		{"subtract", uint(2), uint(5), uint64(3)},
		{"multiply", 2, 2.5, 5.0},
		{"divide", 2, 10, int64(5)},
		{"divide", 4, 10, int64(2)},
		{"divide", 4, 10.0, 2.5},
		{"modulo", 2, 5, int64(1)},
		{"modulo", uint(2), uint(5), uint64(1)},
		{"minimum", 2, 5, int64(2)},
		{"minimum", 2.5, 1, int64(1)},      // a wins: its own type
		{"minimum", 2, 2.0, int64(2)},      // tie: b
		{"minimum", uint(3), 7, uint64(3)}, // b wins: its own type
		{"maximum", 2, 5, int64(5)},
		{"maximum", 2.5, 1, 2.5},
		{"maximum", uint(1), uint(9), uint64(9)},
	}
	for _, tt := range tests {
		got := call(tt.name, tt.b, tt.a)
		if got != tt.want {
			t.Errorf("%s(%#v, %#v) = %#v (%T), want %#v (%T)", tt.name, tt.b, tt.a, got, got, tt.want, tt.want)
		}
	}
}

func TestHelperTimestamp(t *testing.T) {
	old := now
	now = func() time.Time { return time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC) }
	defer func() { now = old }()
	tests := []struct{ text, want string }{
		{`{{ timestamp }}`, "2024-05-06T07:08:09Z"},
		{`{{ timestamp "2006-01-02" }}`, "2024-05-06"},
		{`{{ timestamp "unix" }}`, "1714979289"},
	}
	for _, tt := range tests {
		got, err := execHelpers(t, tt.text, nil)
		if err != nil || got != tt.want {
			t.Errorf("%s = %q, %v; want %q", tt.text, got, err, tt.want)
		}
	}
	if _, err := execHelpers(t, `{{ timestamp "a" "b" }}`, nil); err == nil || !strings.Contains(err.Error(), "expected 0 or 1") {
		t.Errorf("timestamp with two arguments: err = %v", err)
	}
	// The default clock is UTC.
	now = old
	if ts := now(); ts.Location() != time.UTC {
		t.Errorf("now() location = %v, want UTC", ts.Location())
	}
}

func TestHelperFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.txt")
	if err := os.WriteFile(path, []byte("contents\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := execHelpers(t, `{{ file .Path }}`, map[string]string{"Path": path})
	if err != nil || got != "contents\n" {
		t.Fatalf("file = %q, %v", got, err)
	}
	got, err = execHelpers(t, `{{ file "" }}`, nil)
	if err != nil || got != "" {
		t.Fatalf(`file "" = %q, %v`, got, err)
	}
	missing := filepath.Join(dir, "missing.txt")
	_, err = execHelpers(t, `{{ file .Path }}`, map[string]string{"Path": missing})
	if err == nil || !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("file on a missing path: err = %v, want one naming %s", err, missing)
	}
}

// TestHelperScratchPerExecution: consul-template starts every execution
// with an empty scratchpad; bindTemplateFuncs gives that.
func TestHelperScratchPerExecution(t *testing.T) {
	tm := template.Must(template.New("t").Funcs(helperFuncs()).Parse(`{{ scratch.SetX "n" .N }}{{ scratch.Get "n" }}`))
	for _, n := range []int{1, 2} {
		bindTemplateFuncs(tm, nil, nil)
		var b strings.Builder
		if err := tm.Execute(&b, map[string]int{"N": n}); err != nil {
			t.Fatal(err)
		}
		if want := map[int]string{1: "1", 2: "2"}[n]; b.String() != want {
			t.Fatalf("execution %d printed %q, want %q (scratch leaked between executions)", n, b.String(), want)
		}
	}
	// Without binding, executeTemplate says why it cannot run.
	tm = template.Must(template.New("t").Funcs(helperFuncs()).Parse(`{{ executeTemplate "t" }}`))
	if err := tm.Execute(&strings.Builder{}, nil); err == nil || !strings.Contains(err.Error(), "not bound") {
		t.Fatalf("unbound executeTemplate: err = %v", err)
	}
}

func TestHelperByKeyCopies(t *testing.T) {
	in := []*dep.KeyPair{{Key: "a/b", Value: "1"}}
	m, _ := byKey(in)
	if m["a"]["b"] == in[0] || in[0].Key != "a/b" || m["a"]["b"].Key != "b" {
		t.Fatalf("byKey must return stripped copies and leave its input alone: in=%+v out=%+v", in[0], m["a"]["b"])
	}
}

// TestSprigClashes keeps sprigClashes (and the docs that copy it) equal to
// the names both Sprig and consul-template define, and checks that the
// consul-template version wins while Sprig's stays reachable as sprig_NAME.
func TestSprigClashes(t *testing.T) {
	sp := sprig.TxtFuncMap()
	var clashes []string
	for name := range consulTemplateHelpers() {
		if _, ok := sp[name]; ok {
			clashes = append(clashes, name)
		}
	}
	sort.Strings(clashes)
	want := slices.Clone(sprigClashes)
	sort.Strings(want)
	if !slices.Equal(clashes, want) {
		t.Fatalf("Sprig clashes = %v, sprigClashes says %v", clashes, want)
	}
	fm := helperFuncs()
	ours := consulTemplateHelpers()
	for _, name := range clashes {
		if reflect.ValueOf(fm[name]).Pointer() != reflect.ValueOf(ours[name]).Pointer() {
			t.Errorf("%s: Sprig's version won, want consul-template's", name)
		}
		if reflect.ValueOf(fm["sprig_"+name]).Pointer() != reflect.ValueOf(sp[name]).Pointer() {
			t.Errorf("sprig_%s is not Sprig's %s", name, name)
		}
	}
	for name := range sp {
		if _, ok := fm[name]; !ok {
			t.Errorf("Sprig's %s is missing", name)
		}
		if _, ok := fm["sprig_"+name]; !ok {
			t.Errorf("sprig_%s is missing", name)
		}
	}
}

// documentedFunctions is every function consul-template's
// docs/templating-language.md lists (scratch's methods count as scratch).
var documentedFunctions = []string{
	// API functions.
	"caLeaf", "caRoots", "connect", "datacenters", "file", "key", "keyExists", "keyOrDefault",
	"ls", "safeLs", "node", "nodes", "partitions", "peerings", "secret", "secrets", "pkiCert",
	"service", "services", "tree", "safeTree",
	// Scratch.
	"scratch",
	// Helper functions.
	"base64Decode", "base64Encode", "base64URLDecode", "base64URLEncode", "byKey", "byTag", "byMeta",
	"contains", "containsAll", "containsAny", "containsNone", "containsNotAll", "env", "mustEnv",
	"envOrDefault", "executeTemplate", "explode", "explodeMap", "indent", "in", "loop", "join",
	"mergeMap", "mergeMapWithOverride", "trimSpace", "trim", "trimPrefix", "trimSuffix",
	"parseBool", "parseFloat", "parseInt", "parseJSON", "parseUint", "parseYAML", "plugin",
	"regexMatch", "regexReplaceAll", "replaceAll", "sha256Hex", "md5sum", "hmacSHA256Hex",
	"split", "splitToMap", "timestamp", "toJSON", "toJSONPretty", "toUnescapedJSON",
	"toUnescapedJSONPretty", "toLower", "toTitle", "toTOML", "toUpper", "toYAML", "sockaddr",
	"writeToFile",
	// Math functions.
	"add", "subtract", "multiply", "divide", "modulo", "minimum", "maximum",
	// Nomad functions and variables.
	"nomadServices", "nomadService", "nomadVarList", "nomadVarListSafe", "nomadVar", "nomadVarExists",
	// Debugging functions.
	"spew_dump", "spew_sdump", "spew_printf", "spew_sprintf",
}

func TestDocumentedFunctions(t *testing.T) {
	fm := helperFuncs()
	consul := map[string]bool{}
	for _, n := range consulNames {
		consul[n] = true
	}
	for _, name := range documentedFunctions {
		_, helper := fm[name]
		reason, out := leftOut[name]
		n := 0
		for _, b := range []bool{helper, consul[name], out} {
			if b {
				n++
			}
		}
		switch {
		case n == 0:
			t.Errorf("%s: documented by consul-template but neither a helper, a Consul function nor in leftOut", name)
		case out && n > 1:
			t.Errorf("%s: in leftOut (%q) but provided", name, reason)
		case out && reason == "":
			t.Errorf("%s: in leftOut without a reason", name)
		}
	}
	for name := range leftOut {
		if _, ok := fm[name]; ok {
			t.Errorf("%s: in leftOut but helperFuncs provides it", name)
		}
	}
	// Every Sprig-free helper is documented upstream, so nothing here is invented.
	documented := map[string]bool{}
	for _, n := range documentedFunctions {
		documented[n] = true
	}
	for name := range consulTemplateHelpers() {
		if !documented[name] {
			t.Errorf("%s: a helper consul-template does not document", name)
		}
	}
}

// TestFunctionsDoc keeps docs/functions.md complete: it must name every
// helper, every Consul function, every left-out function and every Sprig
// clash, each in backquotes.
func TestFunctionsDoc(t *testing.T) {
	b, err := os.ReadFile("../docs/functions.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	var names []string
	for name := range consulTemplateHelpers() {
		names = append(names, name)
	}
	names = append(names, consulNames...)
	for name := range leftOut {
		names = append(names, name)
	}
	names = append(names, sprigClashes...)
	for _, name := range names {
		if !strings.Contains(doc, "`"+name+" ") && !strings.Contains(doc, "`"+name+"`") && !strings.Contains(doc, "`"+name+"\n") {
			t.Errorf("docs/functions.md does not mention `%s`", name)
		}
	}
}
