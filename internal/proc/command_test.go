package proc

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr string // substring of the error; "" means no error
	}{
		{"single", "nginx", []string{"nginx"}, ""},
		{"args", "nginx -t -c /etc/nginx.conf", []string{"nginx", "-t", "-c", "/etc/nginx.conf"}, ""},
		{"runs of blanks", "  a \t b\n\nc  ", []string{"a", "b", "c"}, ""},
		{"template kept whole", "nginx -c {{ .Path }} -g x", []string{"nginx", "-c", "{{ .Path }}", "-g", "x"}, ""},
		{"template glued to text", "--conf={{ .Dir }}/a.conf", []string{"--conf={{ .Dir }}/a.conf"}, ""},
		{"quotes inside template", `echo {{ printf "%s x" .A }}`, []string{"echo", `{{ printf "%s x" .A }}`}, ""},
		{"single brace is literal", "echo { }", []string{"echo", "{", "}"}, ""},
		{"empty", "", nil, "empty; expected a program"},
		{"blank", " \t\n", nil, "empty; expected a program"},
		{"double quotes", `sh -c "echo hi"`, nil, "quotes are not interpreted"},
		{"single quotes", `sh -c 'echo hi'`, nil, "quote at offset 6"},
		{"backquote", "echo `date`", nil, "quotes are not interpreted"},
		{"unclosed action", "echo {{ .X", nil, `unclosed "{{"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCommand(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseCommand(%q) error = %v; want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCommand(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got.Argv, tt.want) {
				t.Errorf("ParseCommand(%q) = %q; want %q", tt.in, got.Argv, tt.want)
			}
		})
	}
}

func TestCommandUnmarshalJSON(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr string
	}{
		{"string", `"consul-template -once"`, []string{"consul-template", "-once"}, ""},
		{"array", `["sh", "-c", "echo 'a b'"]`, []string{"sh", "-c", "echo 'a b'"}, ""},
		{"array keeps empty args", `["printf", ""]`, []string{"printf", ""}, ""},
		{"null leaves zero", `null`, nil, ""},
		{"empty string", `""`, nil, "empty; expected a program"},
		{"string with quotes", `"sh -c 'x y'"`, nil, "use the array form"},
		{"empty array", `[]`, nil, "empty array; expected at least the program name"},
		{"number", `3`, nil, "expected a string or an array of strings, got a number"},
		{"object", `{"cmd": "x"}`, nil, "expected a string or an array of strings, got an object"},
		{"boolean", `true`, nil, "got a boolean"},
		{"number element", `["sleep", 5]`, nil, "element 1: expected a string, got a number"},
		{"null element", `["x", null]`, nil, "element 1: expected a string, got null"},
		{"nested array", `[["x"]]`, nil, "element 0: expected a string, got an array"},
		{"empty program", `["", "x"]`, nil, "element 0: empty program name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Command
			err := json.Unmarshal([]byte(tt.in), &c)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Unmarshal(%s) error = %v; want one containing %q", tt.in, err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "invalid command") {
					t.Errorf("Unmarshal(%s) error = %q; want it to start with \"invalid command\"", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Unmarshal(%s): %v", tt.in, err)
			}
			if !reflect.DeepEqual(c.Argv, tt.want) {
				t.Errorf("Unmarshal(%s) = %q; want %q", tt.in, c.Argv, tt.want)
			}
		})
	}
}

// TestCommandInStruct checks the forms as config fields, where a missing
// field must leave the zero Command.
func TestCommandInStruct(t *testing.T) {
	var cfg struct {
		PreStart Command `json:"preStart"`
		PreStop  Command `json:"preStop"`
		Health   Command `json:"health"`
	}
	in := `{"preStart": "a b", "health": ["c", "d e"]}`
	if err := json.Unmarshal([]byte(in), &cfg); err != nil {
		t.Fatal(err)
	}
	if got := cfg.PreStart.String(); got != "a b" {
		t.Errorf("preStart = %q", got)
	}
	if !cfg.PreStop.IsZero() {
		t.Errorf("preStop = %q; want zero", cfg.PreStop.Argv)
	}
	if got := cfg.Health.String(); got != `c "d e"` {
		t.Errorf("health = %s", got)
	}
}

func TestCommandString(t *testing.T) {
	tests := []struct {
		argv []string
		want string
	}{
		{nil, ""},
		{[]string{"nginx", "-t"}, "nginx -t"},
		{[]string{"sh", "-c", "echo 'hi'"}, `sh -c "echo 'hi'"`},
		{[]string{"printf", ""}, `printf ""`},
		{[]string{"a\\b"}, `"a\\b"`},
	}
	for _, tt := range tests {
		if got := (Command{Argv: tt.argv}).String(); got != tt.want {
			t.Errorf("String(%q) = %s; want %s", tt.argv, got, tt.want)
		}
	}
}

func TestCommandIsZero(t *testing.T) {
	if !(Command{}).IsZero() || !(Command{Argv: []string{}}).IsZero() {
		t.Error("empty Command is not zero")
	}
	if (Command{Argv: []string{"x"}}).IsZero() {
		t.Error("non-empty Command is zero")
	}
}

func TestCommandExpand(t *testing.T) {
	type data struct{ Path, Name string }
	tests := []struct {
		name    string
		in      []string
		data    any
		want    []string
		wantErr string
	}{
		{"struct", []string{"nginx", "-t", "-c", "{{.Path}}"}, data{Path: "/etc/n.conf"}, []string{"nginx", "-t", "-c", "/etc/n.conf"}, ""},
		{"spaces stay one argument", []string{"touch", "{{ .Path }}"}, data{Path: "/tmp/a b; rm -rf /"}, []string{"touch", "/tmp/a b; rm -rf /"}, ""},
		{"map", []string{"echo", "{{.name}}-{{.name}}"}, map[string]string{"name": "x"}, []string{"echo", "x-x"}, ""},
		{"no templates", []string{"true"}, nil, []string{"true"}, ""},
		{"missing map key", []string{"echo", "{{.nope}}"}, map[string]string{}, nil, `argument 1 "{{.nope}}"`},
		{"missing field", []string{"echo", "{{.Nope}}"}, data{}, nil, "can't evaluate field Nope"},
		{"parse error", []string{"echo", "{{.Path"}, data{}, nil, "argument 1"},
		{"empty program", []string{"{{.Name}}", "x"}, data{}, nil, "program name expanded to an empty string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Command{Argv: tt.in}
			got, err := in.Expand(tt.data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Expand error = %v; want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Argv, tt.want) {
				t.Errorf("Expand = %q; want %q", got.Argv, tt.want)
			}
		})
	}

	// Expanding must not touch the template command, which is reused.
	c := Command{Argv: []string{"echo", "{{.Name}}"}}
	if _, err := c.Expand(data{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	if c.Argv[1] != "{{.Name}}" {
		t.Errorf("Expand modified its receiver: %q", c.Argv)
	}
}
