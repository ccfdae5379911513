package ctconfig

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
	hclparser "github.com/hashicorp/hcl/hcl/parser"
	"github.com/hashicorp/hcl/hcl/token"
)

// refused are consul-template options autopilot does not provide, with the
// reason, by block path. Naming them is an error that says why.
var refused = map[string]string{
	"vault":                "Vault is not supported by autopilot: it only reads Consul",
	"nomad":                "Nomad is not supported by autopilot: it only reads Consul",
	"deduplicate":          "dedup mode is not supported: autopilot already makes one blocking query per unique dependency",
	"syslog":               "syslog is not supported: autopilot logs to stderr",
	"log_file":             "log_file is not supported: autopilot logs to stderr",
	"err_on_failed_lookup": "err_on_failed_lookup is not supported: a missing key holds its template until the key exists (keyOrDefault for an optional one), with or without -once",
	"consul.namespace":     "Consul Enterprise namespaces are not supported",
}

// FromPath reads a config file, or every file of a directory in name order
// (as consul-template does), merged left to right.
func FromPath(path string) (*Config, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if !info.IsDir() {
		return ParseFile(path)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	c := &Config{}
	for _, n := range names {
		sub, err := ParseFile(filepath.Join(path, n))
		if err != nil {
			return nil, err
		}
		c.Merge(sub)
	}
	return c, nil
}

// ParseFile reads and parses one HCL or JSON config file.
func ParseFile(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, b)
}

// Parse parses a consul-template config (HCL, or JSON) named file.
func Parse(file string, data []byte) (*Config, error) {
	if !utf8.Valid(data) {
		line, col := 1, 1
		for i := 0; i < len(data); {
			r, n := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			if r == '\n' {
				line, col = line+1, 1
			} else {
				col++
			}
			i += n
		}
		return nil, fmt.Errorf("%s:%d:%d: not valid UTF-8", file, line, col)
	}
	f, err := parseHCL(data)
	if err != nil {
		var pe *hclparser.PosError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s:%d:%d: %v", file, pe.Pos.Line, pe.Pos.Column, pe.Err)
		}
		// The JSON parser's errors start with "line:col: ".
		return nil, fmt.Errorf("%s:%v", file, err)
	}
	root, ok := f.Node.(*ast.ObjectList)
	if !ok {
		return nil, fmt.Errorf("%s: not a consul-template config", file)
	}
	p := &parser{file: file, json: isJSON(data)}
	c := &Config{}
	if err := p.top(c, root); err != nil {
		return nil, err
	}
	return c, nil
}

// parseHCL is hcl.ParseBytes made safe: HCL v1's scanners panic on some
// malformed input (found by FuzzParseHCL), which must be an error here.
func parseHCL(data []byte) (f *ast.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, err = nil, fmt.Errorf("cannot parse: %v", r)
		}
	}()
	return hcl.ParseBytes(data)
}

type parser struct {
	file string
	json bool // the file is JSON: see items
}

// isJSON tells JSON from HCL as HCL's own parser does: by a '{' first.
func isJSON(data []byte) bool {
	s := strings.TrimLeftFunc(string(data), unicode.IsSpace)
	return strings.HasPrefix(s, "{")
}

func (p *parser) at(n ast.Node) string {
	pos := n.Pos()
	return fmt.Sprintf("%s:%d:%d", p.file, pos.Line, pos.Column)
}

func (p *parser) errf(n ast.Node, path, format string, a ...any) error {
	return fmt.Errorf("%s: %s: %s", p.at(n), path, fmt.Sprintf(format, a...))
}

// items walks an object list, refusing labels, unknown and refused keys.
func (p *parser) items(list *ast.ObjectList, block string, known []string, each func(key, path string, it *ast.ObjectItem) error) error {
	for _, it := range list.Items {
		if len(it.Keys) == 0 {
			continue
		}
		if len(it.Keys) > 1 && p.json {
			// HCL's JSON parser folds an object that holds only objects,
			// {"consul": {"ssl": {...}}}, into one item keyed `consul ssl`:
			// unfold it to what the file says.
			it = &ast.ObjectItem{Keys: it.Keys[:1], Val: &ast.ObjectType{List: &ast.ObjectList{
				Items: []*ast.ObjectItem{{Keys: it.Keys[1:], Val: it.Val}}}}}
		}
		key := keyName(it.Keys[0])
		path := key
		if block != "" {
			path = block + "." + key
		}
		if len(it.Keys) > 1 {
			return p.errf(it.Keys[1], path, "unexpected label %s (consul-template blocks take none)", it.Keys[1].Token.Text)
		}
		if why, ok := refused[path]; ok {
			return p.errf(it, path, "%s", why)
		}
		if !contains(known, key) {
			return p.errf(it, path, "unknown option (want one of %s)", strings.Join(known, ", "))
		}
		if err := each(key, path, it); err != nil {
			return err
		}
	}
	return nil
}

func keyName(k *ast.ObjectKey) string {
	if s, ok := k.Token.Value().(string); ok {
		return s
	}
	return k.Token.Text
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (p *parser) top(c *Config, root *ast.ObjectList) error {
	known := []string{"consul", "template", "wait", "log_level", "max_stale", "kill_signal", "reload_signal",
		"pid_file", "exec", "default_delimiters", "template_error_fatal", "block_query_wait"}
	return p.items(root, "", known, func(key, path string, it *ast.ObjectItem) (err error) {
		switch key {
		case "consul":
			if s, ok := literal(it.Val, token.STRING); ok {
				// consul-template's old form: consul = "host:port".
				c.Consul.Address = &s
				return nil
			}
			return p.consul(c, it)
		case "template":
			t, err := p.template(it)
			if err != nil {
				return err
			}
			c.Templates = append(c.Templates, t)
		case "wait":
			c.Wait, err = p.wait(it, path)
		case "log_level":
			var s string
			if s, err = p.str(it, path); err == nil {
				if err = checkLogLevel(s); err != nil {
					err = p.errf(it.Val, path, "%v", err)
				}
				c.LogLevel = &s
			}
		case "max_stale":
			c.MaxStale, err = ptr(p.duration(it, path))
		case "kill_signal":
			c.KillSignal, err = p.signal(it, path)
		case "reload_signal":
			c.ReloadSignal, err = p.signal(it, path)
		case "pid_file":
			c.PidFile, err = ptr(p.str(it, path))
		case "exec":
			if c.Exec, err = p.exec(it, path); err == nil && c.Exec.Timeout != nil {
				c.Warnings = append(c.Warnings, fmt.Sprintf("%s: exec.timeout has no effect on the exec child (nor has it in consul-template): use kill_timeout", p.at(it)))
			}
		case "default_delimiters":
			obj, err := p.object(it, path)
			if err != nil {
				return err
			}
			return p.items(obj, path, []string{"left", "right"}, func(key, path string, it *ast.ObjectItem) error {
				s, err := p.str(it, path)
				if key == "left" {
					c.LeftDelim = &s
				} else {
					c.RightDelim = &s
				}
				return err
			})
		case "template_error_fatal":
			c.TemplateErrorFatal, err = ptr(p.boolean(it, path))
		case "block_query_wait":
			c.BlockQueryWait, err = ptr(p.duration(it, path))
		}
		return err
	})
}

func (p *parser) consul(cfg *Config, it *ast.ObjectItem) error {
	c := &cfg.Consul
	obj, err := p.object(it, "consul")
	if err != nil {
		return err
	}
	known := []string{"address", "token", "token_file", "ssl", "retry", "transport", "auth"}
	return p.items(obj, "consul", known, func(key, path string, it *ast.ObjectItem) (err error) {
		switch key {
		case "address":
			c.Address, err = ptr(p.str(it, path))
		case "token":
			c.Token, err = ptr(p.str(it, path))
		case "token_file":
			c.TokenFile, err = ptr(p.str(it, path))
		case "ssl":
			return p.ssl(&c.SSL, it)
		case "auth":
			return p.auth(&c.Auth, it)
		case "retry":
			return p.retry(&c.Retry, it)
		case "transport":
			return p.transport(&c.Transport, it)
		}
		return err
	})
}

// auth reads consul { auth { enabled, username, password } }. As in
// consul-template it is a block only: "user:pass" is -consul-auth's form.
func (p *parser) auth(a *Auth, it *ast.ObjectItem) error {
	obj, err := p.object(it, "consul.auth")
	if err != nil {
		return p.errf(it.Val, "consul.auth", "want a block { enabled, username, password } (\"user:pass\" is the -consul-auth flag's form)")
	}
	return p.items(obj, "consul.auth", []string{"enabled", "username", "password"}, func(key, path string, it *ast.ObjectItem) (err error) {
		switch key {
		case "enabled":
			a.Enabled, err = ptr(p.boolean(it, path))
		case "username":
			a.Username, err = ptr(p.str(it, path))
		case "password":
			a.Password, err = ptr(p.str(it, path))
		}
		return err
	})
}

// transport reads consul { transport { } }: durations, counts and one switch.
func (p *parser) transport(t *Transport, it *ast.ObjectItem) error {
	obj, err := p.object(it, "consul.transport")
	if err != nil {
		return err
	}
	known := []string{"dial_keep_alive", "dial_timeout", "disable_keep_alives", "idle_conn_timeout",
		"max_idle_conns", "max_idle_conns_per_host", "max_conns_per_host", "tls_handshake_timeout"}
	return p.items(obj, "consul.transport", known, func(key, path string, it *ast.ObjectItem) (err error) {
		switch key {
		case "dial_keep_alive":
			t.DialKeepAlive, err = ptr(p.duration(it, path))
		case "dial_timeout":
			t.DialTimeout, err = ptr(p.duration(it, path))
		case "disable_keep_alives":
			t.DisableKeepAlives, err = ptr(p.boolean(it, path))
		case "idle_conn_timeout":
			t.IdleConnTimeout, err = ptr(p.duration(it, path))
		case "max_idle_conns":
			t.MaxIdleConns, err = ptr(p.integer(it, path))
		case "max_idle_conns_per_host":
			t.MaxIdleConnsPerHost, err = ptr(p.integer(it, path))
		case "max_conns_per_host":
			t.MaxConnsPerHost, err = ptr(p.integer(it, path))
		case "tls_handshake_timeout":
			t.TLSHandshakeTimeout, err = ptr(p.duration(it, path))
		}
		return err
	})
}

func (p *parser) retry(r *Retry, it *ast.ObjectItem) error {
	obj, err := p.object(it, "consul.retry")
	if err != nil {
		return err
	}
	known := []string{"enabled", "attempts", "backoff", "max_backoff"}
	return p.items(obj, "consul.retry", known, func(key, path string, it *ast.ObjectItem) (err error) {
		switch key {
		case "enabled":
			r.Enabled, err = ptr(p.boolean(it, path))
		case "attempts":
			r.Attempts, err = ptr(p.integer(it, path))
		case "backoff":
			r.Backoff, err = ptr(p.duration(it, path))
		case "max_backoff":
			r.MaxBackoff, err = ptr(p.duration(it, path))
		}
		return err
	})
}

func (p *parser) ssl(s *SSL, it *ast.ObjectItem) error {
	obj, err := p.object(it, "consul.ssl")
	if err != nil {
		return err
	}
	known := []string{"enabled", "verify", "cert", "key", "ca_cert", "ca_path", "server_name"}
	return p.items(obj, "consul.ssl", known, func(key, path string, it *ast.ObjectItem) error {
		switch key {
		case "enabled", "verify":
			b, err := p.boolean(it, path)
			if key == "enabled" {
				s.Enabled = &b
			} else {
				s.Verify = &b
			}
			return err
		}
		v, err := p.str(it, path)
		switch key {
		case "cert":
			s.Cert = &v
		case "key":
			s.Key = &v
		case "ca_cert":
			s.CACert = &v
		case "ca_path":
			s.CAPath = &v
		case "server_name":
			s.ServerName = &v
		}
		return err
	})
}

func (p *parser) template(it *ast.ObjectItem) (*Template, error) {
	obj, err := p.object(it, "template")
	if err != nil {
		return nil, err
	}
	t := &Template{At: p.at(it)}
	known := []string{"source", "destination", "contents", "command", "command_timeout", "perms", "backup", "wait",
		"left_delimiter", "right_delimiter", "error_on_missing_key", "create_dest_dirs", "user", "group", "uid", "gid", "error_fatal",
		"function_denylist", "function_blacklist", "sandbox_path", "exec"}
	var ex *Exec // the template's exec { }: its command and timeout win over command and command_timeout
	err = p.items(obj, "template", known, func(key, path string, it *ast.ObjectItem) (err error) {
		switch key {
		case "source":
			t.Source, err = p.str(it, path)
		case "destination":
			t.Destination, err = p.str(it, path)
		case "contents":
			t.Contents, err = p.str(it, path)
		case "command":
			t.Command, err = p.command(it, path)
		case "command_timeout":
			t.CommandTimeout, err = ptr(p.duration(it, path))
		case "perms":
			t.Perms, err = ptr(p.perms(it, path))
		case "backup":
			t.Backup, err = p.boolean(it, path)
		case "wait":
			t.Wait, err = p.wait(it, path)
		case "left_delimiter":
			t.LeftDelim, err = p.str(it, path)
		case "right_delimiter":
			t.RightDelim, err = p.str(it, path)
		case "error_on_missing_key":
			t.ErrorOnMissingKey, err = p.boolean(it, path)
		case "create_dest_dirs":
			t.CreateDestDirs, err = ptr(p.boolean(it, path))
		case "user", "group", "uid", "gid":
			var s string
			if lit, ok := literal(it.Val, token.NUMBER); ok {
				s = lit
			} else if s, err = p.str(it, path); err != nil {
				return err
			}
			if key == "user" || key == "uid" {
				t.User = s
			} else {
				t.Group = s
			}
		case "error_fatal":
			t.ErrorFatal, err = ptr(p.boolean(it, path))
		case "exec":
			ex, err = p.exec(it, path)
		case "function_denylist", "function_blacklist":
			// consul-template combines the two (function_blacklist is the
			// name before v0.25); a key given twice in a block adds to it.
			var pats []string
			pats, err = p.stringList(it, path)
			t.FunctionDenylist = append(t.FunctionDenylist, pats...)
		case "sandbox_path":
			t.SandboxPath, err = p.str(it, path)
		}
		return err
	})
	if err == nil && ex != nil {
		if len(ex.Command) > 0 {
			t.Command = ex.Command
		}
		set(&t.CommandTimeout, ex.Timeout)
		t.CommandEnv = ex.Env
	}
	return t, err
}

// exec reads an exec { } block: the global one (block "exec") or a
// template's ("template.exec"), which consul-template parses alike.
func (p *parser) exec(it *ast.ObjectItem, block string) (*Exec, error) {
	obj, err := p.object(it, block)
	if err != nil {
		return nil, err
	}
	e := &Exec{}
	known := []string{"command", "enabled", "env", "kill_signal", "kill_timeout", "reload_signal", "splay", "timeout"}
	err = p.items(obj, block, known, func(key, path string, it *ast.ObjectItem) (err error) {
		switch key {
		case "command":
			e.Command, err = p.command(it, path)
		case "enabled":
			e.Enabled, err = ptr(p.boolean(it, path))
		case "kill_signal":
			e.KillSignal, err = p.signal(it, path)
		case "reload_signal":
			e.ReloadSignal, err = p.signal(it, path)
		case "kill_timeout":
			e.KillTimeout, err = ptr(p.duration(it, path))
		case "splay":
			e.Splay, err = ptr(p.duration(it, path))
		case "timeout":
			e.Timeout, err = ptr(p.duration(it, path))
		case "env":
			err = p.env(&e.Env, it, path)
		}
		return err
	})
	return e, err
}

// env reads an env { } block; blacklist and whitelist are consul-template's
// old names of denylist and allowlist.
func (p *parser) env(e *Env, it *ast.ObjectItem, block string) error {
	obj, err := p.object(it, block)
	if err != nil {
		return err
	}
	known := []string{"pristine", "custom", "allowlist", "denylist", "whitelist", "blacklist"}
	return p.items(obj, block, known, func(key, path string, it *ast.ObjectItem) (err error) {
		var list []string
		switch key {
		case "pristine":
			e.Pristine, err = ptr(p.boolean(it, path))
			return err
		case "custom":
			if list, err = p.stringList(it, path); err == nil {
				for _, kv := range list {
					if err := checkCustom(kv); err != nil {
						return p.errf(it.Val, path, "%v", err)
					}
				}
				e.Custom = append(e.Custom, list...)
			}
		case "allowlist", "whitelist":
			list, err = p.stringList(it, path)
			e.Allowlist = append(e.Allowlist, list...)
		case "denylist", "blacklist":
			list, err = p.stringList(it, path)
			e.Denylist = append(e.Denylist, list...)
		}
		return err
	})
}

// ptr points at v, for the optional fields of a Config (nil: not set), so a
// parse can be assigned in one statement: x.F, err = ptr(p.duration(it, path)).
func ptr[T any](v T, err error) (*T, error) { return &v, err }

// literal returns a literal's value as text when its token is of kind k.
func literal(n ast.Node, k token.Type) (string, bool) {
	lit, ok := n.(*ast.LiteralType)
	if !ok || lit.Token.Type != k {
		return "", false
	}
	if k == token.STRING || k == token.HEREDOC {
		s, ok := lit.Token.Value().(string)
		return s, ok
	}
	return lit.Token.Text, true
}

func (p *parser) str(it *ast.ObjectItem, path string) (string, error) {
	if s, ok := literal(it.Val, token.STRING); ok {
		return s, nil
	}
	if s, ok := literal(it.Val, token.HEREDOC); ok {
		return s, nil
	}
	return "", p.errf(it.Val, path, "want a string")
}

// boolean reads true or false; as in consul-template (its decoder is not
// weakly typed), a quoted one is refused.
func (p *parser) boolean(it *ast.ObjectItem, path string) (bool, error) {
	if s, ok := literal(it.Val, token.BOOL); ok {
		return s == "true", nil
	}
	if s, ok := literal(it.Val, token.STRING); ok {
		return false, p.errf(it.Val, path, "want true or false, unquoted (not %q)", s)
	}
	return false, p.errf(it.Val, path, "want true or false")
}

// integer reads a number; as in consul-template, a quoted one is refused.
func (p *parser) integer(it *ast.ObjectItem, path string) (int, error) {
	if s, ok := literal(it.Val, token.NUMBER); ok {
		if n, err := strconv.Atoi(s); err == nil {
			return n, nil
		}
	}
	return 0, p.errf(it.Val, path, "want a whole number")
}

func (p *parser) duration(it *ast.ObjectItem, path string) (time.Duration, error) {
	s, ok := literal(it.Val, token.STRING)
	if !ok {
		return 0, p.errf(it.Val, path, "want a duration string such as \"5s\"")
	}
	d, err := ParseDuration(s)
	if err != nil {
		return 0, p.errf(it.Val, path, "%v", err)
	}
	return d, nil
}

func (p *parser) perms(it *ast.ObjectItem, path string) (fs.FileMode, error) {
	s, ok := literal(it.Val, token.STRING)
	if !ok {
		s, ok = literal(it.Val, token.NUMBER)
	}
	if !ok {
		return 0, p.errf(it.Val, path, "want an octal mode such as \"0644\"")
	}
	m, err := strconv.ParseUint(s, 8, 12)
	if err != nil {
		return 0, p.errf(it.Val, path, "%q is not an octal mode such as \"0644\"", s)
	}
	return fs.FileMode(m), nil
}

func (p *parser) signal(it *ast.ObjectItem, path string) (*syscall.Signal, error) {
	s, err := p.str(it, path)
	if err != nil {
		return nil, err
	}
	sig, err := ParseSignal(s)
	if err != nil {
		return nil, p.errf(it.Val, path, "%v", err)
	}
	return &sig, nil
}

func (p *parser) command(it *ast.ObjectItem, path string) ([]string, error) {
	if s, ok := literal(it.Val, token.STRING); ok {
		if strings.TrimSpace(s) == "" {
			return nil, p.errf(it.Val, path, "empty command")
		}
		return []string{s}, nil
	}
	list, ok := it.Val.(*ast.ListType)
	if !ok {
		return nil, p.errf(it.Val, path, "want a string or a list of strings")
	}
	argv, err := p.strings(list, path)
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, p.errf(it.Val, path, "empty command")
	}
	return argv, nil
}

// stringList reads a list of strings or, as consul-template's decoder
// allows, one string of comma-separated items ("" is no items; items are
// not trimmed).
func (p *parser) stringList(it *ast.ObjectItem, path string) ([]string, error) {
	if s, ok := literal(it.Val, token.STRING); ok {
		if s == "" {
			return nil, nil
		}
		return strings.Split(s, ","), nil
	}
	list, ok := it.Val.(*ast.ListType)
	if !ok {
		return nil, p.errf(it.Val, path, "want a list of strings")
	}
	return p.strings(list, path)
}

// strings reads a list whose every element is a string.
func (p *parser) strings(list *ast.ListType, path string) ([]string, error) {
	var out []string
	for _, n := range list.List {
		s, ok := literal(n, token.STRING)
		if !ok {
			return nil, p.errf(n, path, "want a string")
		}
		out = append(out, s)
	}
	return out, nil
}

func (p *parser) object(it *ast.ObjectItem, path string) (*ast.ObjectList, error) {
	o, ok := it.Val.(*ast.ObjectType)
	if !ok {
		return nil, p.errf(it.Val, path, "want a block { ... }")
	}
	return o.List, nil
}

func (p *parser) wait(it *ast.ObjectItem, path string) (*Wait, error) {
	if s, ok := literal(it.Val, token.STRING); ok {
		w, err := ParseWait(s)
		if err != nil {
			return nil, p.errf(it.Val, path, "%v", err)
		}
		return w, nil
	}
	obj, err := p.object(it, path)
	if err != nil {
		return nil, p.errf(it.Val, path, "want \"MIN[:MAX]\" or { min = \"..\" max = \"..\" }")
	}
	w := &Wait{}
	var hasMax bool
	err = p.items(obj, path, []string{"min", "max", "enabled"}, func(key, sub string, it *ast.ObjectItem) (err error) {
		switch key {
		case "min":
			w.Min, err = p.duration(it, sub)
		case "max":
			w.Max, err = p.duration(it, sub)
			hasMax = true
		case "enabled":
			var b bool
			b, err = p.boolean(it, sub)
			w.Disabled = !b
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if !hasMax {
		w.Max = 4 * w.Min
	}
	if w.Max < w.Min {
		return nil, p.errf(it.Val, path, "max %s is less than min %s", w.Max, w.Min)
	}
	return w, nil
}
