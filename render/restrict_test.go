package render

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"text/template"

	"github.com/autopilot/autopilot/internal/dep"
)

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"", "", true},
		{"", "env", false},
		{"*", "anything", true},
		{"**", "x", true},
		{"env", "env", true},
		{"env", "envOrDefault", false},
		{"env*", "envOrDefault", true},
		{"*Env", "mustEnv", true},
		{"*Env", "mustEnvX", false},
		{"sprig_*", "sprig_upper", true},
		{"sprig_*", "upper", false},
		{"to*JSON", "toUnescapedJSON", true},
		{"to*JSON", "toJSONPretty", false},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "acb", false},
		{"a*a", "a", false},
		{"ab*ba", "aba", false},
		{"?nv", "env", false}, // only * is special
		{"[e]nv", "env", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.name, func(t *testing.T) {
			if got := globMatch(tt.pattern, tt.name); got != tt.want {
				t.Fatalf("globMatch(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
			}
		})
	}
}

// TestFunctionDenylist: as in consul-template, a denied function still
// parses; calling it fails the execution with "function is disabled", and a
// template that does not reach the call renders.
func TestFunctionDenylist(t *testing.T) {
	t.Setenv("DENY_TEST", "v")
	tests := []struct {
		name, text string
		denylist   []string
		want       string // the output, or with wantErr the error's text
		wantErr    bool
	}{
		{"denied and called", `a{{ env "DENY_TEST" }}`, []string{"env"}, "t.ctmpl:1:4: at <env \"DENY_TEST\">: error calling env: function is disabled", true},
		{"denied, not called", `{{ toUpper "a" }}{{ if false }}{{ env "X" }}{{ end }}`, []string{"env"}, "A", false},
		{"denied, not named", `{{ toUpper "a" }}`, []string{"env", "file"}, "A", false},
		{"no denylist", `{{ env "DENY_TEST" }}`, nil, "v", false},
		{"exact names only", `{{ envOrDefault "DENY_TEST" "d" }}`, []string{"env"}, "v", false},
		{"glob", `{{ envOrDefault "DENY_TEST" "d" }}`, []string{"env*"}, "function is disabled", true},
		{"sprig glob", `{{ sprig_upper "a" }}`, []string{"sprig_*"}, "function is disabled", true},
		{"sprig glob spares helpers", `{{ toUpper "a" }}`, []string{"sprig_*"}, "A", false},
		{"star keeps builtins", `{{ len "abc" }}{{ printf "%d" 1 }}{{ if and true (eq 1 1) }}y{{ end }}`, []string{"*"}, "31y", false},
		{"piped", `{{ "a" | toUpper }}`, []string{"toUpper"}, "function is disabled", true},
		{"Sprig's plain names too", `{{ upper "a" }}`, []string{"*"}, "function is disabled", true},
		{"Consul lookup", `{{ key "app/port" }}`, []string{"key"}, "function is disabled", true},
		{"executeTemplate", `{{ define "d" }}x{{ end }}{{ executeTemplate "d" }}`, []string{"executeTemplate"}, "function is disabled", true},
		{"scratch", `{{ scratch.Set "a" 1 }}`, []string{"scratch"}, "function is disabled", true},
		{"loop", `{{ range loop "2" }}x{{ end }}`, []string{"loop"}, "function is disabled", true},
		// consul-template's stand-in takes strings, so other arguments fail
		// text/template's type check before the call.
		{"non-string arguments", `{{ add 1 2 }}`, []string{"add"}, "expected string; found 1", true},
		// A left-out function named by the denylist parses, as in
		// consul-template, which defines it.
		{"left-out, denied, not called", `{{ if false }}{{ secret "x" }}{{ end }}ok`, []string{"secret"}, "ok", false},
		{"left-out, denied, called", `{{ plugin "x" }}`, []string{"plugin"}, "error calling plugin: function is disabled", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tm, err := Parse("t.ctmpl", tt.text, Options{FunctionDenylist: tt.denylist})
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			res, err := tm.Execute(newMapSource(), nil)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Execute error = %v, want it to contain %q", err, tt.want)
				}
				if strings.Contains(tt.want, "disabled") && !errors.Is(err, errDisabled) {
					t.Errorf("error %v does not wrap errDisabled", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			if string(res.Output) != tt.want {
				t.Fatalf("output %q, want %q", res.Output, tt.want)
			}
		})
	}
}

// A denied Consul lookup fails before it makes a query: nothing is
// subscribed, so the run does not wait for data it may not read.
func TestFunctionDenylistMakesNoQuery(t *testing.T) {
	tm, err := Parse("t", `{{ key "app/port" }}`, Options{FunctionDenylist: []string{"key"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := tm.Execute(newMapSource(), nil)
	if !errors.Is(err, errDisabled) {
		t.Fatalf("Execute error = %v, want function is disabled", err)
	}
	if len(res.Used) != 0 {
		t.Fatalf("used %v, want no query", res.Used)
	}
	// Without the denylist the template parses and waits for its key.
	tm, err = Parse("t", `{{ key "app/port" }}`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res, err = tm.Execute(newMapSource(), nil); err != nil || len(res.Used) != 1 || res.Used[0].Kind != dep.KindKVGet {
		t.Fatalf("without denylist: used %v, err %v", res.Used, err)
	}
}

// TestSandboxPath follows consul-template's resolveSandboxedPath: both the
// sandbox and the file are resolved (symlinks followed) and the file must
// be inside; relative paths are relative to the working directory.
func TestSandboxPath(t *testing.T) {
	root := t.TempDir()
	mk := func(rel, content string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, rel string) {
		if err := os.Symlink(target, filepath.Join(root, rel)); err != nil {
			t.Fatal(err)
		}
	}
	mk("sandbox/in.txt", "inside")
	mk("sandbox/sub/deep.txt", "deep")
	mk("secret.txt", "secret")
	mk("sandbox2/sibling.txt", "sibling")
	link("../secret.txt", "sandbox/escape")    // inside, pointing out
	link("sub/deep.txt", "sandbox/alias")      // inside, pointing in
	link("sandbox", "sandlink")                // the sandbox itself through a link
	link("sandbox/in.txt", "in-link.txt")      // outside, pointing in
	link(root+"/sandbox/in.txt", "abs-in.txt") // the same, absolute
	t.Chdir(root)
	abs := func(rel string) string { return filepath.Join(root, rel) }

	tests := []struct {
		name, sandbox, path string
		want                string // the content, or with wantErr the error's text
		wantErr             bool
	}{
		{"no sandbox", "", "secret.txt", "secret", false},
		{"no sandbox, trimmed", "", " secret.txt\n", "secret", false},
		{"inside", abs("sandbox"), abs("sandbox/in.txt"), "inside", false},
		{"inside, relative", "sandbox", "sandbox/in.txt", "inside", false},
		{"inside, trimmed", "sandbox", "  sandbox/in.txt ", "inside", false},
		{"inside, a subdirectory", "./sandbox/", "sandbox/sub/deep.txt", "deep", false},
		{"inside through .. ", "sandbox", "sandbox/sub/../in.txt", "inside", false},
		{"link inside to inside", "sandbox", "sandbox/alias", "deep", false},
		{"link outside to inside", "sandbox", "in-link.txt", "inside", false},
		{"absolute link, absolute sandbox", abs("sandbox"), "abs-in.txt", "inside", false},
		{"sandbox through a link", abs("sandlink"), abs("sandbox/in.txt"), "inside", false},
		{"empty path", "sandbox", "", "", false},
		{"outside", "sandbox", "secret.txt", "'secret.txt' is outside of sandbox", true},
		{"outside by ..", "sandbox", "sandbox/../secret.txt", "'sandbox/../secret.txt' is outside of sandbox", true},
		{"link escaping", "sandbox", "sandbox/escape", "'sandbox/escape' is outside of sandbox", true},
		{"link escaping, absolute", abs("sandbox"), abs("sandbox/escape"), "is outside of sandbox", true},
		{"sibling sharing a prefix", abs("sandbox"), abs("sandbox2/sibling.txt"), "is outside of sandbox", true},
		{"the sandbox itself", "sandbox", "sandbox", "is a directory", true},
		{"missing file inside", "sandbox", "sandbox/nosuch", "failed to resolve target path: lstat sandbox/nosuch: no such file or directory", true},
		{"missing sandbox", "nosuch", "sandbox/in.txt", "failed to resolve sandbox path: lstat nosuch: no such file or directory", true},
		{"absolute file, relative sandbox", "sandbox", abs("sandbox/in.txt"), "failed to get relative path: Rel: can't make", true},
		{"absolute link, relative sandbox", "sandbox", "abs-in.txt", "failed to get relative path: Rel: can't make", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tm, err := Parse("t.ctmpl", `{{ file "`+strings.ReplaceAll(tt.path, "\n", `\n`)+`" }}`, Options{SandboxPath: tt.sandbox})
			if err != nil {
				t.Fatal(err)
			}
			res, err := tm.Execute(newMapSource(), nil)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Execute error = %v, want it to contain %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			if string(res.Output) != tt.want {
				t.Fatalf("output %q, want %q", res.Output, tt.want)
			}
		})
	}
}

// consul-template's denylist reaches only its FuncMap, never text/template's
// builtins; here Sprig's slice shadows the builtin and is spared with them.
func TestDenySparesBuiltins(t *testing.T) {
	funcs := template.FuncMap{"slice": strings.ToUpper, "upper": strings.ToUpper}
	deny(funcs, "", []string{"*"})
	if reflect.ValueOf(funcs["slice"]).Pointer() == reflect.ValueOf(denied).Pointer() {
		t.Error("slice denied")
	}
	if reflect.ValueOf(funcs["upper"]).Pointer() != reflect.ValueOf(denied).Pointer() {
		t.Error("upper not denied")
	}
}

// The sandbox and the denylist work together: file denied is denied
// whatever the sandbox says.
func TestSandboxedFileDenied(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "in.txt")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tm, err := Parse("t", `{{ file "`+p+`" }}`, Options{SandboxPath: dir, FunctionDenylist: []string{"file"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tm.Execute(newMapSource(), nil); !errors.Is(err, errDisabled) {
		t.Fatalf("Execute error = %v, want function is disabled", err)
	}
}
