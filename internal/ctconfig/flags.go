package ctconfig

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/autopilot/autopilot/internal/lazyre"
)

// Flags is the outcome of parsing consul-template's command line.
type Flags struct {
	Config      *Config  // the flags' own layer, merged over the config files
	ConfigPaths []string // -config, in order
	Version     bool
	ParseOnly   bool
}

// refusedFlags are consul-template flags autopilot does not provide, by
// prefix or name, with the reason.
var refusedFlags = []struct{ prefix, why string }{
	{"vault-", "Vault is not supported by autopilot: it only reads Consul"},
	{"nomad-", "Nomad is not supported by autopilot: it only reads Consul"},
	{"dedup", "dedup mode is not supported: autopilot already makes one blocking query per unique dependency"},
	{"syslog", "syslog is not supported: autopilot logs to stderr"},
	{"log-file", "log files are not supported: autopilot logs to stderr"},
	{"log-rotate-", "log files are not supported: autopilot logs to stderr"},
}

// refusedNames lists every refused flag consul-template v0.42.1 has, so that
// each is recognised (and refused with its reason) rather than reported as
// unknown. Boolean ones take no value.
var refusedNames = map[string]bool{ // name -> boolean
	"vault-addr": false, "vault-renew-token": true, "vault-retry": true, "vault-retry-attempts": false,
	"vault-retry-backoff": false, "vault-retry-max-backoff": false, "vault-client-user-agent": false,
	"vault-ssl": true, "vault-ssl-ca-cert": false, "vault-ssl-ca-path": false, "vault-ssl-cert": false,
	"vault-ssl-key": false, "vault-ssl-server-name": false, "vault-ssl-verify": true,
	"vault-transport-dial-keep-alive": false, "vault-transport-dial-timeout": false,
	"vault-transport-disable-keep-alives": true, "vault-transport-max-idle-conns-per-host": false,
	"vault-transport-max-conns-per-host": false, "vault-transport-tls-handshake-timeout": false,
	"vault-token": false, "vault-agent-token-file": false, "vault-unwrap-token": true,
	"vault-default-lease-duration": false,
	"dedup":                        true, "syslog": true, "syslog-facility": false, "syslog-name": false,
	"log-file": false, "log-rotate-bytes": false, "log-rotate-duration": false, "log-rotate-max-files": false,
}

type funcValue struct {
	set    func(string) error
	isBool bool
}

func (f funcValue) String() string     { return "" }
func (f funcValue) Set(s string) error { return f.set(s) }
func (f funcValue) IsBoolFlag() bool   { return f.isBool }

// ParseFlags parses consul-template's command line (without the program
// name). Errors name the flag; a refused flag says why.
func ParseFlags(args []string) (*Flags, error) {
	out := &Flags{Config: &Config{}}
	c := out.Config
	fs := flag.NewFlagSet("consul-template", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var refusals []string
	str := func(name string, set func(string) error) { fs.Var(funcValue{set: set}, name, "") }
	boolean := func(name string, set func(bool) error) {
		fs.Var(funcValue{isBool: true, set: func(s string) error {
			b, err := strconv.ParseBool(s)
			if err != nil {
				return fmt.Errorf("want true or false")
			}
			return set(b)
		}}, name, "")
	}
	ptr := func(s string) *string { return &s }
	bptr := func(b bool) *bool { return &b }

	str("config", func(s string) error { out.ConfigPaths = append(out.ConfigPaths, s); return nil })
	str("consul-addr", func(s string) error { c.Consul.Address = ptr(s); return nil })
	// -consul is consul-template's old spelling (before 0.19), still in
	// published ContainerPilot configs such as the autopilot article's.
	str("consul", func(s string) error { c.Consul.Address = ptr(s); return nil })
	str("consul-auth", func(s string) error {
		a, err := ParseAuth(s)
		if err != nil {
			return err
		}
		c.Consul.Auth = a // as consul-template: replaces any earlier -consul-auth whole
		return nil
	})
	str("consul-token", func(s string) error { c.Consul.Token = ptr(s); return nil })
	str("consul-token-file", func(s string) error { c.Consul.TokenFile = ptr(s); return nil })
	boolean("consul-ssl", func(b bool) error { c.Consul.SSL.Enabled = bptr(b); return nil })
	boolean("consul-ssl-verify", func(b bool) error { c.Consul.SSL.Verify = bptr(b); return nil })
	str("consul-ssl-ca-cert", func(s string) error { c.Consul.SSL.CACert = ptr(s); return nil })
	str("consul-ssl-ca-path", func(s string) error { c.Consul.SSL.CAPath = ptr(s); return nil })
	str("consul-ssl-cert", func(s string) error { c.Consul.SSL.Cert = ptr(s); return nil })
	str("consul-ssl-key", func(s string) error { c.Consul.SSL.Key = ptr(s); return nil })
	str("consul-ssl-server-name", func(s string) error { c.Consul.SSL.ServerName = ptr(s); return nil })
	str("default-left-delimiter", func(s string) error { c.LeftDelim = ptr(s); return nil })
	str("default-right-delimiter", func(s string) error { c.RightDelim = ptr(s); return nil })
	execCfg := func() *Exec {
		if c.Exec == nil {
			c.Exec = &Exec{}
		}
		return c.Exec
	}
	str("exec", func(s string) error {
		if strings.TrimSpace(s) == "" {
			return errors.New("empty command")
		}
		execCfg().Command = []string{s}
		return nil
	})
	sigFlag := func(name string, dst func(*syscall.Signal)) {
		str(name, func(s string) error {
			sig, err := ParseSignal(s)
			if err != nil {
				return err
			}
			dst(&sig)
			return nil
		})
	}
	durFlag := func(name string, dst func(time.Duration)) {
		str(name, func(s string) error {
			d, err := ParseDuration(s)
			if err != nil {
				return err
			}
			dst(d)
			return nil
		})
	}
	boolean("consul-retry", func(b bool) error { c.Consul.Retry.Enabled = bptr(b); return nil })
	str("consul-retry-attempts", func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil {
			return errors.New("want a whole number")
		}
		c.Consul.Retry.Attempts = &n
		return nil
	})
	durFlag("consul-retry-backoff", func(d time.Duration) { c.Consul.Retry.Backoff = &d })
	durFlag("consul-retry-max-backoff", func(d time.Duration) { c.Consul.Retry.MaxBackoff = &d })
	durFlag("retry", func(d time.Duration) { c.Consul.Retry.Backoff = &d }) // consul-template's old spelling of -consul-retry-backoff
	// consul-template has these five -consul-transport-* flags; the
	// other transport options are config-file only.
	tr := &c.Consul.Transport
	durFlag("consul-transport-dial-keep-alive", func(d time.Duration) { tr.DialKeepAlive = &d })
	durFlag("consul-transport-dial-timeout", func(d time.Duration) { tr.DialTimeout = &d })
	boolean("consul-transport-disable-keep-alives", func(b bool) error { tr.DisableKeepAlives = bptr(b); return nil })
	str("consul-transport-max-idle-conns-per-host", func(s string) error {
		n, err := strconv.ParseInt(s, 10, 32) // consul-template's funcIntVar
		if err != nil {
			return errors.New("want a whole number")
		}
		v := int(n)
		tr.MaxIdleConnsPerHost = &v
		return nil
	})
	durFlag("consul-transport-tls-handshake-timeout", func(d time.Duration) { tr.TLSHandshakeTimeout = &d })
	sigFlag("exec-kill-signal", func(s *syscall.Signal) { execCfg().KillSignal = s })
	sigFlag("exec-reload-signal", func(s *syscall.Signal) { execCfg().ReloadSignal = s })
	durFlag("exec-kill-timeout", func(d time.Duration) { execCfg().KillTimeout = &d })
	durFlag("exec-splay", func(d time.Duration) { execCfg().Splay = &d })
	boolean("exec-env-pristine", func(b bool) error { execCfg().Env.Pristine = bptr(b); return nil })
	str("exec-env-custom", func(s string) error {
		if err := checkCustom(s); err != nil {
			return err
		}
		execCfg().Env.Custom = append(execCfg().Env.Custom, s)
		return nil
	})
	str("exec-env-allowlist", func(s string) error { execCfg().Env.Allowlist = append(execCfg().Env.Allowlist, s); return nil })
	str("exec-env-denylist", func(s string) error { execCfg().Env.Denylist = append(execCfg().Env.Denylist, s); return nil })
	sigFlag("kill-signal", func(s *syscall.Signal) { c.KillSignal = s })
	sigFlag("reload-signal", func(s *syscall.Signal) { c.ReloadSignal = s })
	str("log-level", func(s string) error {
		if err := checkLogLevel(s); err != nil {
			return err
		}
		c.LogLevel = ptr(s)
		return nil
	})
	durFlag("max-stale", func(d time.Duration) { c.MaxStale = &d })
	boolean("once", func(b bool) error { c.Once = b; return nil })
	boolean("dry", func(b bool) error { c.Dry = b; return nil })
	boolean("parse-only", func(b bool) error { out.ParseOnly = b; return nil })
	str("pid-file", func(s string) error { c.PidFile = ptr(s); return nil })
	str("template", func(s string) error {
		t, err := ParseTemplateSpec(s)
		if err != nil {
			return err
		}
		c.Templates = append(c.Templates, t)
		return nil
	})
	boolean("template-error-fatal", func(b bool) error { c.TemplateErrorFatal = bptr(b); return nil })
	str("wait", func(s string) error {
		w, err := ParseWait(s)
		if err != nil {
			return err
		}
		c.Wait = w
		return nil
	})
	boolean("v", func(b bool) error { out.Version = b; return nil })
	boolean("version", func(b bool) error { out.Version = b; return nil })
	for name, isBool := range refusedNames {
		name := name
		fs.Var(funcValue{isBool: isBool, set: func(string) error {
			refusals = append(refusals, fmt.Sprintf("-%s: %s", name, refusalReason(name)))
			return nil
		}}, name, "")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, err
	}
	if len(refusals) > 0 {
		sort.Strings(refusals)
		return nil, errors.New(strings.Join(refusals, "; "))
	}
	if rest := fs.Args(); len(rest) > 0 {
		return nil, fmt.Errorf("cli: extra args: %q", rest)
	}
	return out, nil
}

func refusalReason(name string) string {
	for _, r := range refusedFlags {
		if strings.HasPrefix(name, r.prefix) {
			return r.why
		}
	}
	return "not supported by autopilot"
}

// configTemplateRe is consul-template's own split of SRC:DEST:COMMAND (it
// keeps a Windows drive letter with its path).
var configTemplateRe = lazyre.New("([a-zA-Z]:)?([^:]+)")

// ParseTemplateSpec parses -template "SRC[:DEST[:COMMAND]]" exactly as
// consul-template does: empty fields vanish, and everything after the
// second colon is the command (so it may itself contain colons).
func ParseTemplateSpec(s string) (*Template, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("template: empty specification (want SRC[:DEST[:COMMAND]])")
	}
	parts := configTemplateRe().FindAllString(s, -1)
	t := &Template{At: fmt.Sprintf("-template %q", s)}
	switch len(parts) {
	case 0:
		return nil, fmt.Errorf("template %q: want SRC[:DEST[:COMMAND]]", s)
	case 1:
		t.Source = parts[0]
	case 2:
		t.Source, t.Destination = parts[0], parts[1]
	default:
		t.Source, t.Destination = parts[0], parts[1]
		t.Command = []string{strings.Join(parts[2:], ":")}
	}
	if strings.TrimSpace(t.Source) == "" {
		return nil, fmt.Errorf("template %q: empty source", s)
	}
	if len(t.Command) == 1 && strings.TrimSpace(t.Command[0]) == "" {
		t.Command = nil
	}
	return t, nil
}

// ParseWait parses "MIN" or "MIN:MAX" (Go durations); MAX defaults to 4×MIN.
func ParseWait(s string) (*Wait, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("wait: empty (want MIN or MIN:MAX, e.g. 2s:10s)")
	}
	parts := strings.Split(s, ":")
	if len(parts) > 2 {
		return nil, fmt.Errorf("wait %q: want MIN or MIN:MAX, e.g. 2s:10s", s)
	}
	minD, err := ParseDuration(strings.TrimSpace(parts[0]))
	if err != nil {
		return nil, fmt.Errorf("wait %q: %v", s, err)
	}
	maxD := 4 * minD
	if len(parts) == 2 {
		if maxD, err = ParseDuration(strings.TrimSpace(parts[1])); err != nil {
			return nil, fmt.Errorf("wait %q: %v", s, err)
		}
	}
	if maxD < minD {
		return nil, fmt.Errorf("wait %q: max is less than min", s)
	}
	return &Wait{Min: minD, Max: maxD}, nil
}

// ParseDuration is time.ParseDuration that refuses negative durations and
// overflow (values beyond ~292 years).
func ParseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration such as 500ms, 5s or 1m", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q: a duration must not be negative", s)
	}
	return d, nil
}

var signals = map[string]syscall.Signal{
	"SIGABRT": syscall.SIGABRT, "SIGALRM": syscall.SIGALRM, "SIGBUS": syscall.SIGBUS, "SIGCHLD": syscall.SIGCHLD,
	"SIGCONT": syscall.SIGCONT, "SIGFPE": syscall.SIGFPE, "SIGHUP": syscall.SIGHUP, "SIGILL": syscall.SIGILL,
	"SIGINT": syscall.SIGINT, "SIGIO": syscall.SIGIO, "SIGIOT": syscall.SIGIOT, "SIGKILL": syscall.SIGKILL,
	"SIGPIPE": syscall.SIGPIPE, "SIGPROF": syscall.SIGPROF, "SIGQUIT": syscall.SIGQUIT, "SIGSEGV": syscall.SIGSEGV,
	"SIGSTOP": syscall.SIGSTOP, "SIGSYS": syscall.SIGSYS, "SIGTERM": syscall.SIGTERM, "SIGTRAP": syscall.SIGTRAP,
	"SIGTSTP": syscall.SIGTSTP, "SIGTTIN": syscall.SIGTTIN, "SIGTTOU": syscall.SIGTTOU, "SIGURG": syscall.SIGURG,
	"SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2, "SIGVTALRM": syscall.SIGVTALRM, "SIGWINCH": syscall.SIGWINCH,
	"SIGXCPU": syscall.SIGXCPU, "SIGXFSZ": syscall.SIGXFSZ,
}

// ParseSignal parses a signal name such as "SIGHUP" (any case), as
// consul-template does.
func ParseSignal(s string) (syscall.Signal, error) {
	if sig, ok := signals[strings.ToUpper(strings.TrimSpace(s))]; ok {
		return sig, nil
	}
	return 0, fmt.Errorf("invalid signal %q (want a name such as SIGHUP, SIGTERM, SIGUSR1)", s)
}

// levels maps consul-template's log levels to zerolog's names.
var levels = map[string]string{"trace": "trace", "debug": "debug", "info": "info", "warn": "warn", "err": "error", "error": "error"}

func checkLogLevel(s string) error {
	if _, ok := levels[strings.ToLower(s)]; !ok {
		return fmt.Errorf("invalid log level %q (want trace, debug, info, warn or err)", s)
	}
	return nil
}

// ZerologLevel is the zerolog name of a consul-template log level.
func ZerologLevel(s string) string { return levels[strings.ToLower(s)] }
