package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/autopilot/autopilot/internal/jsonpos"
	"github.com/autopilot/autopilot/internal/proc"
	"github.com/autopilot/autopilot/render"
)

// Defaults for fields left out of the config.
const (
	DefaultStopTimeout   = 5 * time.Second
	DefaultRenderTimeout = 30 * time.Second
)

// ErrConfig wraps every configuration error, for errors.Is: the CLI exits 2 on it.
var ErrConfig = errors.New("config")

// Config is a parsed and validated supervisor configuration, in the
// ContainerPilot (v2) JSON format plus autopilot's templates.
type Config struct {
	// Name is where the config came from (a file path, or "inline"), for logs.
	Name string `json:"-"`
	// Dir is the directory template sources are relative to: the config
	// file's directory, or the working directory for inline JSON.
	Dir string `json:"-"`

	Consul        string       `json:"consul"`
	Logging       Logging      `json:"logging"`
	PreStart      proc.Command `json:"preStart"`
	PreStop       proc.Command `json:"preStop"`
	PostStop      proc.Command `json:"postStop"`
	StopTimeout   Duration     `json:"stopTimeout"`
	RenderTimeout Duration     `json:"renderTimeout"`
	Services      []Service    `json:"services"`
	Backends      []Backend    `json:"backends"`
	Templates     []Template   `json:"templates"`
}

// Logging configures the supervisor's own log.
type Logging struct {
	Level  string `json:"level"`  // debug|info|warn|error (default info)
	Format string `json:"format"` // json|text (default json)
}

// Service is a service the app provides, registered in Consul with a TTL
// check fed by its health command.
type Service struct {
	Name       string       `json:"name"`
	ID         string       `json:"id"` // default NAME-HOSTNAME-PORT
	Port       int          `json:"port"`
	Health     proc.Command `json:"health"`
	Poll       Duration     `json:"poll"`
	TTL        Duration     `json:"ttl"`
	Timeout    Duration     `json:"timeout"` // default Poll
	Interfaces []string     `json:"interfaces"`
	Tags       []string     `json:"tags"`
	// DeregisterCriticalServiceAfter removes the service after its check
	// stayed critical that long.
	DeregisterCriticalServiceAfter Duration `json:"deregisterCriticalServiceAfter"`
}

// Backend is a service the app depends on: OnChange runs when its healthy
// set of instances changes.
type Backend struct {
	Name     string       `json:"name"`
	Poll     Duration     `json:"poll"` // least time between two OnChange runs
	OnChange proc.Command `json:"onChange"`
	Tag      string       `json:"tag"`
	DC       string       `json:"dc"`
}

// Template is a file rendered from Consul data and kept up to date.
type Template struct {
	Source       string       `json:"source"` // relative to the config's Dir
	Destination  string       `json:"destination"`
	Perms        Perms        `json:"perms"`
	Check        proc.Command `json:"check"`
	Reload       proc.Command `json:"reload"`
	ReloadSignal Signal       `json:"reloadSignal"`
	Wait         string       `json:"wait"`
	MinInstances int          `json:"minInstances"`
}

// Duration is a JSON duration: a number of seconds (ContainerPilot's form)
// or a Go duration string ("1.5s", "200ms"; a bare number string is seconds).
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	} else {
		s = string(b)
	}
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f < 0 {
			return 0, fmt.Errorf("negative duration %s", s)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want seconds or a duration like \"1.5s\", got %q", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("negative duration %s", s)
	}
	return v, nil
}

// Perms is a file mode: an octal string ("0644") or a number whose decimal
// digits are read as octal (644 means 0644), as people write modes.
type Perms fs.FileMode

// UnmarshalJSON implements json.Unmarshaler.
func (p *Perms) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	s := string(b)
	if b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o7777 {
		return fmt.Errorf("want an octal file mode like \"0644\", got %s", b)
	}
	*p = Perms(v)
	return nil
}

// Signal is a signal name in the config, e.g. "SIGHUP" or "HUP".
type Signal syscall.Signal

var signalNames = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2, "TERM": syscall.SIGTERM, "WINCH": syscall.SIGWINCH, "TTIN": syscall.SIGTTIN,
	"TTOU": syscall.SIGTTOU, "ALRM": syscall.SIGALRM, "CONT": syscall.SIGCONT,
}

// ParseSignal parses "SIGHUP", "HUP" or a signal number.
func ParseSignal(s string) (syscall.Signal, error) {
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if sig, ok := signalNames[name]; ok {
		return sig, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	return 0, fmt.Errorf("unknown signal %q (want e.g. \"SIGHUP\")", s)
}

// UnmarshalJSON implements json.Unmarshaler.
func (g *Signal) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if s == "" {
		*g = 0
		return nil
	}
	sig, err := ParseSignal(s)
	if err != nil {
		return err
	}
	*g = Signal(sig)
	return nil
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expandEnv replaces ${VAR} and ${VAR:-default}; an unset VAR without a
// default becomes "" (as in a shell). A bare $ is left alone.
func expandEnv(data []byte, env func(string) (string, bool)) []byte {
	return envRef.ReplaceAllFunc(data, func(m []byte) []byte {
		sub := envRef.FindSubmatch(m)
		v, ok := env(string(sub[1]))
		if (!ok || v == "") && sub[2] != nil {
			return sub[3]
		}
		return []byte(v)
	})
}

// Parse parses and validates a config. name is where data came from (for
// errors); env looks up ${VAR} references (os.LookupEnv in production).
// Errors wrap ErrConfig; JSON errors are a *jsonpos.Error naming the
// line:column (in the expanded text) and field path.
func Parse(data []byte, name string, env func(string) (string, bool)) (*Config, error) {
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	data = expandEnv(data, env)
	var c Config
	// encoding/json matches keys case-insensitively; we do not, so "Name"
	// for "name" is reported rather than half-accepted.
	pos, err := jsonpos.Decode(data, name, &c, jsonpos.Options{CaseSensitive: true})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	c.Name = name
	if err := c.validate(); err != nil {
		var fe *fieldError
		if errors.As(err, &fe) {
			return nil, fmt.Errorf("%w: %w", ErrConfig, pos.ErrorAt(fe.path, fe.msg))
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, name, err)
	}
	return &c, nil
}

func (c *Config) validate() error {
	switch c.Logging.Level {
	case "":
		c.Logging.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		return fieldErr("logging.level", "want debug, info, warn or error, got %q", c.Logging.Level)
	}
	switch c.Logging.Format {
	case "":
		c.Logging.Format = "json"
	case "json", "text":
	default:
		return fieldErr("logging.format", "want json or text, got %q", c.Logging.Format)
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = Duration(DefaultStopTimeout)
	}
	if c.RenderTimeout == 0 {
		c.RenderTimeout = Duration(DefaultRenderTimeout)
	}
	ids := map[string]bool{}
	for i := range c.Services {
		s := &c.Services[i]
		p := fmt.Sprintf("services[%d]", i)
		switch {
		case s.Name == "":
			return fieldErr(p+".name", "required")
		case s.Port < 0 || s.Port > 65535:
			return fieldErr(p+".port", "%d out of range", s.Port)
		case s.Health.IsZero():
			return fieldErr(p+".health", "required")
		case s.Poll <= 0:
			return fieldErr(p+".poll", "required, seconds between health checks")
		case s.TTL <= 0:
			return fieldErr(p+".ttl", "required, seconds the check stays passing")
		case s.TTL <= s.Poll:
			// A TTL not longer than poll expires between two passing
			// checks: the service would flap by construction.
			return fieldErr(p+".ttl", "%s must be longer than poll %s", s.TTL.D(), s.Poll.D())
		}
		if s.Timeout == 0 {
			s.Timeout = s.Poll
		}
		for j, spec := range s.Interfaces {
			if err := validInterface(spec); err != nil {
				return fieldErr(fmt.Sprintf("%s.interfaces[%d]", p, j), "%v", err)
			}
		}
		if s.ID != "" {
			if ids[s.ID] {
				return fieldErr(p+".id", "%q used twice", s.ID)
			}
			ids[s.ID] = true
		}
	}
	for i, b := range c.Backends {
		p := fmt.Sprintf("backends[%d]", i)
		if b.Name == "" {
			return fieldErr(p+".name", "required")
		}
		if b.OnChange.IsZero() {
			return fieldErr(p+".onChange", "required")
		}
	}
	for i, t := range c.Templates {
		p := fmt.Sprintf("templates[%d]", i)
		switch {
		case t.Source == "":
			return fieldErr(p+".source", "required")
		case t.Destination == "":
			return fieldErr(p+".destination", "required")
		case !t.Reload.IsZero() && t.ReloadSignal != 0:
			return fieldErr(p, "reload and reloadSignal are exclusive")
		case t.MinInstances < 0:
			return fieldErr(p+".minInstances", "must not be negative")
		}
		if t.Wait != "" {
			if _, err := render.ParseWait(t.Wait); err != nil {
				return fieldErr(p+".wait", "%v", err)
			}
		}
	}
	return nil
}

// fieldError is a config value that parsed but is not valid; Parse places
// it at the value's line and column.
type fieldError struct{ path, msg string }

func (e *fieldError) Error() string { return e.path + ": " + e.msg }

func fieldErr(path, format string, a ...any) error {
	return &fieldError{path: path, msg: fmt.Sprintf(format, a...)}
}

// TemplatePath is t's source resolved against the config's directory.
func (c *Config) TemplatePath(t Template) string {
	if filepath.IsAbs(t.Source) || c.Dir == "" {
		return t.Source
	}
	return filepath.Join(c.Dir, t.Source)
}

func validInterface(spec string) error {
	switch {
	case spec == "inet", spec == "inet6":
		return nil
	case strings.HasPrefix(spec, "static:"):
		if _, err := netip.ParseAddr(strings.TrimPrefix(spec, "static:")); err != nil {
			return fmt.Errorf("static address: %w", err)
		}
		return nil
	case strings.Contains(spec, "/"):
		if _, err := netip.ParsePrefix(spec); err != nil {
			return fmt.Errorf("CIDR: %w", err)
		}
		return nil
	}
	name, fam, ok := strings.Cut(spec, ":")
	if name == "" || ok && fam != "inet" && fam != "inet6" {
		return fmt.Errorf("%q: want an interface name, NAME:inet, NAME:inet6, inet, inet6, a CIDR or static:IP", spec)
	}
	return nil
}

// Load reads the config named by spec: a path, "file://PATH", or inline JSON
// (text starting with "{"). Relative template sources resolve against the
// file's directory (the working directory for inline JSON).
func Load(spec string, env func(string) (string, bool)) (*Config, error) {
	trimmed := strings.TrimSpace(spec)
	if strings.HasPrefix(trimmed, "{") {
		c, err := Parse([]byte(trimmed), "inline config", env)
		if err != nil {
			return nil, err
		}
		c.Dir, _ = os.Getwd()
		return c, nil
	}
	path := strings.TrimPrefix(trimmed, "file://")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	c, err := Parse(data, path, env)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err == nil {
		c.Dir = filepath.Dir(abs)
	}
	return c, nil
}

// ResolveAddress returns the address to register for a service from its
// interface specs: the first spec that matches an address of this host.
// With no specs it takes the first non-loopback IPv4 address, else loopback.
func ResolveAddress(specs []string) (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("list interfaces: %w", err)
	}
	type ifAddr struct {
		name string
		ip   netip.Addr
	}
	var all []ifAddr
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					all = append(all, ifAddr{i.Name, ip.Unmap()})
				}
			}
		}
	}
	pick := func(f func(ifAddr) bool) (string, bool) {
		for _, a := range all {
			if !a.ip.IsLinkLocalUnicast() && f(a) {
				return a.ip.String(), true
			}
		}
		return "", false
	}
	if len(specs) == 0 {
		if ip, ok := pick(func(a ifAddr) bool { return a.ip.Is4() && !a.ip.IsLoopback() }); ok {
			return ip, nil
		}
		return "127.0.0.1", nil
	}
	for _, spec := range specs {
		var ip string
		var ok bool
		switch {
		case spec == "inet":
			ip, ok = pick(func(a ifAddr) bool { return a.ip.Is4() && !a.ip.IsLoopback() })
		case spec == "inet6":
			ip, ok = pick(func(a ifAddr) bool { return a.ip.Is6() && !a.ip.IsLoopback() })
		case strings.HasPrefix(spec, "static:"):
			return strings.TrimPrefix(spec, "static:"), nil
		case strings.Contains(spec, "/"):
			pfx, err := netip.ParsePrefix(spec)
			if err == nil {
				ip, ok = pick(func(a ifAddr) bool { return pfx.Contains(a.ip) })
			}
		default:
			name, fam, _ := strings.Cut(spec, ":")
			ip, ok = pick(func(a ifAddr) bool {
				return a.name == name && (fam == "inet6" && a.ip.Is6() || fam != "inet6" && a.ip.Is4())
			})
		}
		if ok {
			return ip, nil
		}
	}
	return "", fmt.Errorf("no address matches interfaces %q", specs)
}
