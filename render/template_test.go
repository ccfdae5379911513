package render

import (
	"errors"
	"strings"
	"testing"

	"github.com/autopilot/autopilot/internal/dep"
)

func TestParseErrorsNamePosition(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"unclosed action", "line one\nupstream {{ range service \"web\" }\n", "web.ctmpl:2:"},
		{"unknown function", "a\nb {{ servce \"web\" }}\n", `web.ctmpl:2:6: function "servce" not defined (did you mean service?)`},
		{"unknown function, case", "{{ tojson . }}", `function "tojson" not defined (did you mean toJSON?)`},
		{"unknown function, nothing near", "{{ frobnicate . }}", `function "frobnicate" not defined`},
		{"missing end", "{{ if true }}\n", "web.ctmpl:1:1: {{ if true }} opened here is never closed"},
		{"missing end names the inner block", "{{ if true }}\n{{ range loop 3 }}\n{{ with 1 }}{{ end }}\n{{ end }}\n{{ range loop 2 }}x", "web.ctmpl:5:1: {{ range loop 2 }} opened here"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("web.ctmpl", tt.text, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestExecuteErrorNamesPosition(t *testing.T) {
	tm, err := Parse("x.ctmpl", "ok\n  {{ service \"web|bogus\" }}", Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tm.Execute(newMapSource(), nil)
	var pe *PositionError
	if !errors.As(err, &pe) || pe.Line != 2 || pe.Col != 5 || !strings.Contains(err.Error(), "invalid health filter") {
		t.Fatalf("Execute error = %v (%#v), want x.ctmpl:2:5 invalid health filter", err, pe)
	}
}

func TestExecuteTracksMissingAndUsed(t *testing.T) {
	src := newMapSource()
	web := svcQuery(t, "web")
	src.set(web, instances("web", "127.0.0.1"))
	tm, err := Parse("t", `{{ range service "web" }}{{ .Address }}:{{ .Port }} {{ end }}{{ key "cfg/x" }}|{{ keyOrDefault "cfg/y" "dflt" }}`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{}, 1)
	res, err := tm.Execute(src, ch)
	if err != nil {
		t.Fatal(err)
	}
	if res.Complete() || len(res.Missing) != 2 || len(res.Used) != 3 {
		t.Fatalf("missing=%v used=%v, want 2 missing (both keys) of 3 used", res.Missing, res.Used)
	}
	if _, ok := src.subs[web][ch]; !ok {
		t.Fatalf("not subscribed to %s", web)
	}
	src.set(dep.Query{Kind: dep.KindKVGet, Name: "cfg/x"}, &dep.KeyPair{Key: "cfg/x", Value: "X"})
	src.set(dep.Query{Kind: dep.KindKVGet, Name: "cfg/y"}, &dep.KeyPair{Key: "cfg/y"})
	res, err = tm.Execute(src, ch)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(res.Output), "127.0.0.1:8000 X|dflt"; !res.Complete() || got != want {
		t.Fatalf("output %q complete=%v missing=%v, want %q", got, res.Complete(), res.Missing, want)
	}
}

func TestKeyBlocksUntilExists(t *testing.T) {
	src := newMapSource()
	src.set(dep.Query{Kind: dep.KindKVGet, Name: "k"}, (*dep.KeyPair)(nil))
	tm, _ := Parse("t", `{{ key "k" }}`, Options{})
	res, _ := tm.Execute(src, nil)
	if res.Complete() || res.Missing[0].Reason != "key does not exist" {
		t.Fatalf("missing = %v, want key does not exist", res.Missing)
	}
}

func TestSafeListsWaitForKeys(t *testing.T) {
	src := newMapSource()
	q := dep.Query{Kind: dep.KindKVList, Name: "cfg/"}
	src.set(q, []*dep.KeyPair{{Path: "cfg/", Key: ""}})
	for _, fn := range []string{"safeLs", "safeTree"} {
		tm, _ := Parse("t", `{{ range `+fn+` "cfg/" }}{{ .Key }}{{ end }}`, Options{})
		res, _ := tm.Execute(src, nil)
		if res.Complete() {
			t.Errorf("%s on an empty prefix completed; want it to wait", fn)
		}
	}
	src.set(q, []*dep.KeyPair{{Path: "cfg/", Key: ""}, {Path: "cfg/a", Key: "a"}, {Path: "cfg/d/b", Key: "d/b"}, {Path: "cfg/d/", Key: "d/"}})
	for fn, want := range map[string]string{"ls": "a", "tree": "ad/b", "safeLs": "a", "safeTree": "ad/b"} {
		tm, _ := Parse("t", `{{ range `+fn+` "cfg/" }}{{ .Key }}{{ end }}`, Options{})
		res, _ := tm.Execute(src, nil)
		if got := string(res.Output); !res.Complete() || got != want {
			t.Errorf("%s = %q (complete %v), want %q", fn, got, res.Complete(), want)
		}
	}
}

func TestMinInstances(t *testing.T) {
	src := newMapSource()
	src.set(svcQuery(t, "web"), instances("web", "127.0.0.1"))
	tm, _ := Parse("t", `{{ service "web" }}`, Options{MinInstances: 2})
	res, _ := tm.Execute(src, nil)
	if res.Complete() || !strings.Contains(res.Missing[0].Reason, "1 of at least 2") {
		t.Fatalf("missing = %v, want minInstances to hold the render", res.Missing)
	}
}

func TestStrictMissingKey(t *testing.T) {
	for _, strict := range []bool{false, true} {
		tm, _ := Parse("t", `{{ $m := parseJSON "{}" }}{{ $m.nope }}`, Options{Strict: strict})
		res, err := tm.Execute(newMapSource(), nil)
		if strict && err == nil {
			t.Errorf("strict: no error for a missing key (output %q)", res.Output)
		}
		if !strict && (err != nil || string(res.Output) != "<no value>") {
			t.Errorf("default: output %q, err %v; want <no value> like consul-template", res.Output, err)
		}
	}
}

// TestOptionsEnv: the env functions see Options.Env first, then the
// process environment (consul-template's CONSUL_HTTP_* for its templates).
func TestOptionsEnv(t *testing.T) {
	t.Setenv("AUTOPILOT_TEST_PROC", "proc")
	t.Setenv("AUTOPILOT_TEST_BOTH", "proc")
	opts := Options{Env: []string{"AUTOPILOT_TEST_BOTH=given", "AUTOPILOT_TEST_ONLY=only", "AUTOPILOT_TEST_EMPTY="}}
	tests := []struct{ text, want, wantErr string }{
		{text: `{{ env "AUTOPILOT_TEST_BOTH" }} {{ env "AUTOPILOT_TEST_ONLY" }} {{ env "AUTOPILOT_TEST_PROC" }}`, want: "given only proc"},
		{text: `{{ sprig_env "AUTOPILOT_TEST_BOTH" }}`, want: "proc"}, // Sprig's reads the process's, as in consul-template
		{text: `{{ envOrDefault "AUTOPILOT_TEST_ONLY" "d" }} {{ envOrDefault "AUTOPILOT_TEST_EMPTY" "d" }} {{ envOrDefault "AUTOPILOT_TEST_NONE" "d" }}`, want: "only  d"},
		{text: `{{ mustEnv "AUTOPILOT_TEST_ONLY" }}`, want: "only"},
		{text: `{{ mustEnv "AUTOPILOT_TEST_EMPTY" }}`, wantErr: "required environment variable AUTOPILOT_TEST_EMPTY is empty"},
	}
	for _, tt := range tests {
		tm, err := Parse("t", tt.text, opts)
		if err != nil {
			t.Fatal(err)
		}
		res, err := tm.Execute(newMapSource(), nil)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err = %v; want %q", tt.text, err, tt.wantErr)
			}
		case err != nil || string(res.Output) != tt.want:
			t.Errorf("%s = %q, %v; want %q", tt.text, res.Output, err, tt.want)
		}
	}
}
