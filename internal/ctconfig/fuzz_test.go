package ctconfig

import (
	"strings"
	"testing"
	"time"
)

// FuzzParseHCL: any input either parses or fails with an error that names
// the file; it never panics.
func FuzzParseHCL(f *testing.F) {
	f.Add(fullHCL)
	f.Add("template {\n  source = \n}\n")
	f.Add(`{"template": [{"source": "s", "destination": "d"}]}`)
	f.Add("wait = \"1s:2s\"\nconsul = \"a:1\"\n")
	f.Add("template { perms = 0644 user = 0 wait { min = \"1s\" } }")
	f.Add("template {\n  exec {\n    command = [\"c\"]\n    timeout = \"1s\"\n    env { allowlist = \"A*,B\" custom = [\"X=1\"] pristine = true }\n  }\n  function_denylist = [\"plugin\"]\n  sandbox_path = \"/s\"\n  error_fatal = false\n}\nexec { env { blacklist = [\"H\"] } }\n")
	f.Add("consul {\n  auth { username = \"u\" password = \"p\" }\n  transport { dial_timeout = \"1s\" max_idle_conns = 3 }\n}\nblock_query_wait = \"1m\"\ntemplate_error_fatal = true\n")
	f.Fuzz(func(t *testing.T, text string) {
		type res struct {
			c   *Config
			err error
		}
		done := make(chan res, 1)
		go func() {
			c, err := Parse("f.hcl", []byte(text))
			done <- res{c, err}
		}()
		var r res
		select {
		case r = <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("Parse hangs on %q", text)
		}
		c, err := r.c, r.err
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.hcl") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		_ = c.Validate()
	})
}

// FuzzParseFlags covers the -template and -wait grammars and the flag set.
func FuzzParseFlags(f *testing.F) {
	f.Add("a.ctmpl:b.conf:nginx -s reload", "2s:10s")
	f.Add(`C:\a:D:\b:cmd:with:colons`, "1s")
	f.Add(":::", "")
	f.Add("", "x")
	f.Fuzz(func(t *testing.T, spec, wait string) {
		if tm, err := ParseTemplateSpec(spec); err == nil {
			if tm.Source == "" {
				t.Fatalf("%q: parsed with an empty source", spec)
			}
			if strings.Contains(tm.Source, ":") && !(len(tm.Source) > 1 && tm.Source[1] == ':') {
				t.Fatalf("%q: source %q holds a colon", spec, tm.Source)
			}
		}
		if w, err := ParseWait(wait); err == nil && (w.Min < 0 || w.Max < w.Min) {
			t.Fatalf("%q: wait %+v", wait, w)
		}
		_, _ = ParseFlags([]string{"-template", spec, "-wait", wait})
	})
}
