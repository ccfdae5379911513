// Package ctconfig reads consul-template's configuration: its HCL (or JSON)
// config files and its command-line flags, into one typed Config. It is
// what lets autopilot run as a drop-in `consul-template` (a symlink to the
// binary) and lets `autopilot render -config` take a consul-template file.
//
// Every option consul-template v0.42.1 documents is either honoured or
// refused by name with the reason (Vault, Nomad, dedup, syslog...): a config
// never silently means less than it says. Errors name file:line:col.
package ctconfig

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Config is a consul-template configuration: the merge of its config files
// (in the order given) and then its flags. A nil pointer field was not set,
// so a later layer can tell "unset" from a zero value.
type Config struct {
	Consul       Consul
	Templates    []*Template
	Wait         *Wait          // global wait, the default of every template's
	LogLevel     *string        // trace, debug, info, warn, err
	MaxStale     *time.Duration // > 0 allows stale reads (consul-template's default is 2s)
	KillSignal   *syscall.Signal
	ReloadSignal *syscall.Signal
	PidFile      *string
	Exec         *Exec
	// BlockQueryWait is block_query_wait: how long Consul may hold each
	// blocking query (consul-template's default is 1m; 0 means Consul's
	// own default, 5m).
	BlockQueryWait *time.Duration
	// TemplateErrorFatal is template_error_fatal or -template-error-fatal:
	// the default of every template's ErrorFatal (consul-template's is true).
	TemplateErrorFatal *bool
	// DefaultDelims are default_delimiters { left, right }, for templates
	// that set none.
	LeftDelim, RightDelim *string
	// Once, Dry and ParseOnly come from flags only (consul-template has no
	// config keys for them).
	Once, Dry bool
	// Warnings are notes about options accepted that do nothing (exec
	// settings without a command, the global exec's timeout, as in
	// consul-template): the CLI logs them, so nothing is ignored silently.
	Warnings []string
}

// Consul is the consul { } block.
type Consul struct {
	Address   *string
	Token     *string
	TokenFile *string
	SSL       SSL
	Retry     Retry
	Auth      Auth
	Transport Transport
}

// DefaultBlockQueryWait is consul-template's block_query_wait default
// (config/config.go DefaultBlockQueryWaitTime).
const DefaultBlockQueryWait = time.Minute

// BlockQueryWaitOrDefault is block_query_wait, or consul-template's default
// when it is not set.
func (c *Config) BlockQueryWaitOrDefault() time.Duration {
	if c.BlockQueryWait != nil {
		return *c.BlockQueryWait
	}
	return DefaultBlockQueryWait
}

// Auth is consul { auth { } } or -consul-auth: HTTP basic auth for every
// request to Consul. Its String never shows the password, so a Config can
// be printed.
type Auth struct {
	Enabled  *bool
	Username *string
	Password *string
}

// ErrAuthEmpty is -consul-auth given an empty value, refused as
// consul-template refuses it.
var ErrAuthEmpty = errors.New("auth: cannot be empty")

// ParseAuth parses -consul-auth's "username[:password]" as consul-template's
// ParseAuthConfig does: the first colon splits, so a password may hold
// colons; without one the password is left unset (an earlier layer's, or
// empty). Enabled is left unset too: a username or password turns it on.
func ParseAuth(s string) (Auth, error) {
	if s == "" {
		return Auth{}, ErrAuthEmpty
	}
	user, pass, ok := strings.Cut(s, ":")
	a := Auth{Username: &user}
	if ok {
		a.Password = &pass
	}
	return a, nil
}

// On reports whether basic auth is sent: enabled when set, else whether a
// non-empty username or password is given (consul-template's
// AuthConfig.Finalize). When it is off, CONSUL_HTTP_AUTH still applies, as
// it does there (consul/api reads it).
func (a Auth) On() bool {
	if a.Enabled != nil {
		return *a.Enabled
	}
	return a.Username != nil && *a.Username != "" || a.Password != nil && *a.Password != ""
}

// Credentials returns the username and password, empty when not set.
func (a Auth) Credentials() (username, password string) {
	if a.Username != nil {
		username = *a.Username
	}
	if a.Password != nil {
		password = *a.Password
	}
	return username, password
}

// String describes a without its password.
func (a Auth) String() string {
	user, pass := a.Credentials()
	if pass != "" {
		pass = "(hidden)"
	}
	return fmt.Sprintf("{on:%t username:%q password:%s}", a.On(), user, pass)
}

// Transport is consul { transport { } } or -consul-transport-*: the Consul
// client's connections. A nil field was not set.
type Transport struct {
	DialKeepAlive       *time.Duration
	DialTimeout         *time.Duration
	DisableKeepAlives   *bool
	IdleConnTimeout     *time.Duration
	MaxIdleConns        *int
	MaxIdleConnsPerHost *int
	MaxConnsPerHost     *int
	TLSHandshakeTimeout *time.Duration
}

// consul-template's connection-pool defaults (config/transport.go).
const (
	defaultIdleConnTimeout     = 5 * time.Second
	defaultMaxIdleConns        = 0 // no limit
	defaultMaxIdleConnsPerHost = 100
	defaultMaxConnsPerHost     = 0 // no limit
	defaultTLSHandshakeTimeout = 10 * time.Second
)

// ApplyPool sets t's connection-pool fields as consul-template's client
// does (dependency/client_set.go CreateConsulClient): the given options,
// and consul-template's defaults for the rest. The dial options are not
// here: the caller's dialer takes them.
func (tr Transport) ApplyPool(t *http.Transport) {
	t.DisableKeepAlives = tr.DisableKeepAlives != nil && *tr.DisableKeepAlives
	t.IdleConnTimeout = or(tr.IdleConnTimeout, defaultIdleConnTimeout)
	t.MaxIdleConns = or(tr.MaxIdleConns, defaultMaxIdleConns)
	t.MaxIdleConnsPerHost = or(tr.MaxIdleConnsPerHost, defaultMaxIdleConnsPerHost)
	t.MaxConnsPerHost = or(tr.MaxConnsPerHost, defaultMaxConnsPerHost)
	t.TLSHandshakeTimeout = or(tr.TLSHandshakeTimeout, defaultTLSHandshakeTimeout)
}

// or is *p, or def when p is nil.
func or[T any](p *T, def T) T {
	if p != nil {
		return *p
	}
	return def
}

// Retry is consul { retry { } } or the -consul-retry* flags: how a failed
// Consul request is retried before the run gives up (exit 14), with
// consul-template's defaults: 12 retries, backoff from 250ms doubling to 1m.
type Retry struct {
	Enabled    *bool
	Attempts   *int // retries after the first failure; 0 or less: no limit
	Backoff    *time.Duration
	MaxBackoff *time.Duration // 0: no limit
}

// Given reports whether any retry option was set.
func (r Retry) Given() bool {
	return r.Enabled != nil || r.Attempts != nil || r.Backoff != nil || r.MaxBackoff != nil
}

// consul-template's retry defaults (config/retry.go).
const (
	defaultRetryAttempts   = 12
	defaultRetryBackoff    = 250 * time.Millisecond
	defaultRetryMaxBackoff = time.Minute
)

// Policy is the retry settings with the defaults applied: give up after
// maxFailures failed requests in a row (0: never), backing off from
// backoff doubling up to maxBackoff (max_backoff = 0, no limit, is the
// largest Duration).
func (r Retry) Policy() (maxFailures int, backoff, maxBackoff time.Duration) {
	maxFailures, backoff, maxBackoff = defaultRetryAttempts+1, defaultRetryBackoff, defaultRetryMaxBackoff
	if r.Attempts != nil {
		maxFailures = 0
		if *r.Attempts > 0 {
			maxFailures = *r.Attempts + 1
		}
	}
	if r.Enabled != nil && !*r.Enabled {
		maxFailures = 1
	}
	if r.Backoff != nil {
		backoff = *r.Backoff
	}
	if r.MaxBackoff != nil {
		maxBackoff = *r.MaxBackoff
		if maxBackoff == 0 {
			maxBackoff = math.MaxInt64
		}
	}
	return maxFailures, backoff, maxBackoff
}

// SSL is consul { ssl { } }.
type SSL struct {
	Enabled    *bool
	Verify     *bool
	Cert       *string
	Key        *string
	CACert     *string
	CAPath     *string
	ServerName *string
}

// On reports whether the client talks HTTPS: enabled when set, else whether
// any other ssl option is given, as consul-template's SSLConfig.Finalize
// decides (so `-consul-ssl-ca-cert FILE` alone means HTTPS there).
func (s SSL) On() bool {
	if s.Enabled != nil {
		return *s.Enabled
	}
	given := func(p *string) bool { return p != nil && *p != "" }
	return given(s.Cert) || given(s.Key) || given(s.CACert) || given(s.CAPath) || given(s.ServerName) || s.Verify != nil
}

// Template is one template { } block or -template flag.
type Template struct {
	Source         string
	Destination    string
	Contents       string
	Command        []string // one string: run with sh -c when it has spaces, as consul-template does; several: argv
	CommandTimeout *time.Duration
	Perms          *fs.FileMode
	Backup         bool
	Wait           *Wait
	LeftDelim      string
	RightDelim     string
	// ErrorOnMissingKey is strict mode: a missing map key fails the render.
	ErrorOnMissingKey bool
	CreateDestDirs    *bool // default true, as in consul-template
	User, Group       string
	// ErrorFatal is error_fatal: whether a failure to execute the
	// template ends the run (see Config.ErrorFatal).
	ErrorFatal *bool
	// CommandEnv is the template's exec { env { } }: the command's
	// environment (the global exec's env is the child's only).
	CommandEnv Env
	// FunctionDenylist is function_denylist plus its old name
	// function_blacklist: glob patterns ("*" is the only wildcard) of
	// functions that still parse but fail the render when called.
	FunctionDenylist []string
	// SandboxPath is sandbox_path: when set, `file` reads only files whose
	// path, symlinks resolved, lies inside it.
	SandboxPath string

	// Where it was defined, for errors: "file:line:col" or "-template".
	At string
}

// Wait is a quiescence window: render Min after the last change, at most
// Max after the first.
type Wait struct {
	Min, Max time.Duration
	Disabled bool // wait { enabled = false }
}

// Exec is the exec { } block or the -exec flags: one child process run
// under autopilot, signalled when templates change.
type Exec struct {
	Command      []string
	KillSignal   *syscall.Signal
	KillTimeout  *time.Duration
	ReloadSignal *syscall.Signal // nil: restart the child on change
	Splay        *time.Duration
	Enabled      *bool
	Env          Env
	// Timeout is a template's exec { timeout }, its command's time limit;
	// on the global exec it does nothing, as in consul-template.
	Timeout *time.Duration
}

// Env is an env { } block (of exec, for the child, or of a template's exec,
// for its command) or the -exec-env-* flags: what the process gets of
// autopilot's environment, as consul-template's EnvConfig.
type Env struct {
	Pristine  *bool    // start from nothing instead of autopilot's environment
	Custom    []string // NAME=VALUE entries given whatever the rest says
	Allowlist []string // filepath.Match patterns: keep only the names that match one
	Denylist  []string // patterns: drop the names that match one (wins over Allowlist)
}

// merge layers o over e as consul-template does: lists add up, a set
// Pristine wins.
func (e *Env) merge(o Env) {
	set(&e.Pristine, o.Pristine)
	e.Custom = append(e.Custom, o.Custom...)
	e.Allowlist = append(e.Allowlist, o.Allowlist...)
	e.Denylist = append(e.Denylist, o.Denylist...)
}

// Environ is the environment a process started under e gets: base
// (autopilot's own, os.Environ()) unless Pristine, kept by Allowlist and
// Denylist, then extra (consul-template's CONSUL_HTTP_* settings for its
// children), then Custom. extra and Custom are never filtered; a later
// entry for a name wins over an earlier one, as os/exec resolves them.
func (e Env) Environ(base, extra []string) []string {
	var env []string
	if e.Pristine == nil || !*e.Pristine {
		for _, kv := range base {
			name, _, _ := strings.Cut(kv, "=")
			if len(e.Allowlist) > 0 && !matchAny(name, e.Allowlist) {
				continue
			}
			if matchAny(name, e.Denylist) {
				continue
			}
			env = append(env, kv)
		}
	}
	env = append(env, extra...)
	return append(env, e.Custom...)
}

// checkCustom refuses an env custom entry without "=": consul-template
// would hand the child a malformed environment entry.
func checkCustom(kv string) error {
	if !strings.Contains(kv, "=") {
		return fmt.Errorf("%q: want NAME=VALUE", kv)
	}
	return nil
}

// matchAny reports whether name matches one of the glob patterns (a
// malformed pattern matches nothing, as in consul-template).
func matchAny(name string, patterns []string) bool {
	for _, p := range patterns {
		if ok, _ := filepath.Match(p, name); ok {
			return true
		}
	}
	return false
}

// Merge layers o over c: set scalars of o win, templates are appended (as
// consul-template merges its config files and then the flags).
func (c *Config) Merge(o *Config) {
	set(&c.Consul.Address, o.Consul.Address)
	set(&c.Consul.Token, o.Consul.Token)
	set(&c.Consul.TokenFile, o.Consul.TokenFile)
	set(&c.Consul.SSL.Enabled, o.Consul.SSL.Enabled)
	set(&c.Consul.SSL.Verify, o.Consul.SSL.Verify)
	set(&c.Consul.SSL.Cert, o.Consul.SSL.Cert)
	set(&c.Consul.SSL.Key, o.Consul.SSL.Key)
	set(&c.Consul.SSL.CACert, o.Consul.SSL.CACert)
	set(&c.Consul.SSL.CAPath, o.Consul.SSL.CAPath)
	set(&c.Consul.SSL.ServerName, o.Consul.SSL.ServerName)
	set(&c.Consul.Retry.Enabled, o.Consul.Retry.Enabled)
	set(&c.Consul.Retry.Attempts, o.Consul.Retry.Attempts)
	set(&c.Consul.Retry.Backoff, o.Consul.Retry.Backoff)
	set(&c.Consul.Retry.MaxBackoff, o.Consul.Retry.MaxBackoff)
	set(&c.Consul.Auth.Enabled, o.Consul.Auth.Enabled)
	set(&c.Consul.Auth.Username, o.Consul.Auth.Username)
	set(&c.Consul.Auth.Password, o.Consul.Auth.Password)
	ct, ot := &c.Consul.Transport, o.Consul.Transport
	set(&ct.DialKeepAlive, ot.DialKeepAlive)
	set(&ct.DialTimeout, ot.DialTimeout)
	set(&ct.DisableKeepAlives, ot.DisableKeepAlives)
	set(&ct.IdleConnTimeout, ot.IdleConnTimeout)
	set(&ct.MaxIdleConns, ot.MaxIdleConns)
	set(&ct.MaxIdleConnsPerHost, ot.MaxIdleConnsPerHost)
	set(&ct.MaxConnsPerHost, ot.MaxConnsPerHost)
	set(&ct.TLSHandshakeTimeout, ot.TLSHandshakeTimeout)
	set(&c.BlockQueryWait, o.BlockQueryWait)
	c.Templates = append(c.Templates, o.Templates...)
	set(&c.Wait, o.Wait)
	set(&c.LogLevel, o.LogLevel)
	set(&c.MaxStale, o.MaxStale)
	set(&c.KillSignal, o.KillSignal)
	set(&c.ReloadSignal, o.ReloadSignal)
	set(&c.PidFile, o.PidFile)
	set(&c.TemplateErrorFatal, o.TemplateErrorFatal)
	if o.Exec != nil {
		if c.Exec == nil {
			c.Exec = &Exec{}
		}
		e, n := c.Exec, o.Exec
		if len(n.Command) > 0 {
			e.Command = n.Command
		}
		set(&e.KillSignal, n.KillSignal)
		set(&e.KillTimeout, n.KillTimeout)
		set(&e.ReloadSignal, n.ReloadSignal)
		set(&e.Splay, n.Splay)
		set(&e.Enabled, n.Enabled)
		set(&e.Timeout, n.Timeout)
		e.Env.merge(n.Env)
	}
	set(&c.LeftDelim, o.LeftDelim)
	set(&c.RightDelim, o.RightDelim)
	c.Once = c.Once || o.Once
	c.Dry = c.Dry || o.Dry
	c.Warnings = append(c.Warnings, o.Warnings...)
}

// set makes *dst v where v is set (not nil): the later layer wins.
func set[T any](dst **T, v *T) {
	if v != nil {
		*dst = v
	}
}

// Validate checks what only the merged config can tell. Exec settings
// without a command are accepted as consul-template accepts them (no child
// is run), with a warning.
func (c *Config) Validate() error {
	for _, t := range c.Templates {
		switch {
		case t.Source == "" && t.Contents == "":
			return fmt.Errorf("%s: template: one of source or contents is required", t.At)
		case t.Source != "" && t.Contents != "":
			return fmt.Errorf("%s: template: source and contents exclude each other", t.At)
		case t.Destination == "" && !c.Dry:
			return fmt.Errorf("%s: template: destination is required (only -dry can do without one)", t.At)
		}
	}
	if c.Exec != nil && len(c.Exec.Command) == 0 {
		c.Warnings = append(c.Warnings, "exec has no command: no child process is run")
	}
	return nil
}

// ErrorFatal reports whether t's execution errors end the run (exit 14),
// consul-template's default, or are logged while the last good file stays
// and the run waits for the next change: the template's error_fatal, else
// template_error_fatal, else true.
func (c *Config) ErrorFatal(t *Template) bool {
	switch {
	case t.ErrorFatal != nil:
		return *t.ErrorFatal
	case c.TemplateErrorFatal != nil:
		return *c.TemplateErrorFatal
	}
	return true
}

// ExecEnabled reports whether a child process is to be run.
func (c *Config) ExecEnabled() bool {
	return c.Exec != nil && len(c.Exec.Command) > 0 && (c.Exec.Enabled == nil || *c.Exec.Enabled)
}

// ChildEnv is what consul-template adds to the environment of its
// commands and exec child and what its templates' env functions see first
// (its runner's childEnv): its Consul settings as CONSUL_HTTP_* variables
// (basic auth as USER:PASSWORD, as there),
// so a command such as `consul kv put` talks to the same agent, and the
// Vault settings it reads from the environment (autopilot has no Vault
// options, so only those). getenv is os.Getenv outside tests.
func (c *Config) ChildEnv(getenv func(string) string) []string {
	fromEnv := func(names ...string) string {
		for _, n := range names {
			if v := getenv(n); v != "" {
				return strings.TrimSpace(v)
			}
		}
		return ""
	}
	setOrEnv := func(p *string, names ...string) string {
		if p != nil {
			return *p
		}
		return fromEnv(names...)
	}
	var env []string
	add := func(name, v string) {
		if v != "" {
			env = append(env, name+"="+v)
		}
	}
	add("CONSUL_HTTP_ADDR", setOrEnv(c.Consul.Address, "CONSUL_HTTP_ADDR"))
	if c.Consul.Auth.On() {
		user, pass := c.Consul.Auth.Credentials()
		add("CONSUL_HTTP_AUTH", user+":"+pass)
	}
	add("CONSUL_HTTP_TOKEN", setOrEnv(c.Consul.Token, "CONSUL_TOKEN", "CONSUL_HTTP_TOKEN"))
	add("CONSUL_HTTP_TOKEN_FILE", setOrEnv(c.Consul.TokenFile, "CONSUL_TOKEN_FILE", "CONSUL_HTTP_TOKEN_FILE"))
	add("CONSUL_HTTP_SSL", strconv.FormatBool(c.Consul.SSL.On()))
	add("CONSUL_HTTP_SSL_VERIFY", strconv.FormatBool(c.Consul.SSL.Verify == nil || *c.Consul.SSL.Verify))
	add("VAULT_ADDR", fromEnv("VAULT_ADDR"))
	if b, err := strconv.ParseBool(fromEnv("VAULT_SKIP_VERIFY")); err == nil && b {
		add("VAULT_SKIP_VERIFY", "true")
	}
	for _, n := range []string{"VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY", "VAULT_CAPATH", "VAULT_CACERT", "VAULT_CACERT_BYTES", "VAULT_TLS_SERVER_NAME"} {
		add(n, fromEnv(n))
	}
	return env
}
