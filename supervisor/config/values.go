package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/autopilot/autopilot/internal/lazyre"
	"github.com/autopilot/autopilot/internal/proc"
)

// Every value with a grammar has one parser here, used by every dialect.
// The raw types below (duration, restarts, ifaces, signal, perms) are what
// the dialect structs decode into: their UnmarshalJSON runs the parser, so
// jsonpos places a bad value at its line and column.

// Range limits, documented in the README.
const (
	// MinInterval is the shortest health interval, periodic job interval,
	// task frequency or sensor poll: below it a failing check becomes a
	// busy loop of process starts.
	MinInterval = 100 * time.Millisecond
	// MaxDuration is the longest duration any field accepts.
	MaxDuration = 365 * 24 * time.Hour
)

// ParseDuration parses a duration as every dialect writes it: a JSON
// number is seconds (ContainerPilot's form, fractions allowed); a string is
// a Go duration ("1.5s", "200ms") or a number of seconds ("10"). Negative
// values, Inf, NaN and durations over MaxDuration are refused.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(s, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		switch {
		case math.IsNaN(f) || math.IsInf(f, 0) || errors.Is(err, strconv.ErrRange):
			return 0, fmt.Errorf("%s is not a finite number of seconds", s)
		case f < 0:
			return 0, fmt.Errorf("negative duration %s", s)
		case f > MaxDuration.Seconds():
			return 0, fmt.Errorf("%s seconds is longer than the maximum %s", s, MaxDuration)
		}
		return time.Duration(math.Round(f * float64(time.Second))), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want seconds or a duration like \"1.5s\", got %q", s)
	}
	switch {
	case d < 0:
		return 0, fmt.Errorf("negative duration %s", s)
	case d > MaxDuration:
		return 0, fmt.Errorf("%s is longer than the maximum %s", s, MaxDuration)
	}
	return d, nil
}

// duration is a config duration (see ParseDuration); set tells an explicit
// 0 from a missing field.
type duration struct {
	d   time.Duration
	set bool
}

func (d *duration) UnmarshalJSON(b []byte) error {
	s, ok, err := scalar(b)
	if !ok {
		return err
	}
	if b[0] != '"' && b[0] != '-' && (b[0] < '0' || b[0] > '9') {
		return fmt.Errorf("want seconds or a duration like \"1.5s\", got %s", kindOf(b))
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration{d: v, set: true}
	return nil
}

// stopDuration is ContainerPilot 2's stopTimeout: a duration, or -1 for
// "kill at once".
type stopDuration struct {
	duration
	neg bool
}

func (d *stopDuration) UnmarshalJSON(b []byte) error {
	if string(b) == "-1" {
		*d = stopDuration{duration: duration{set: true}, neg: true}
		return nil
	}
	return d.duration.UnmarshalJSON(b)
}

// ParseRestarts parses a restart policy: "never", "unlimited", or a whole
// number of restarts from 0 (also as a string, as ContainerPilot allows).
func ParseRestarts(s string) (Restarts, error) {
	switch s {
	case "never":
		return Restarts{}, nil
	case "unlimited":
		return Restarts{Unlimited: true}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return Restarts{}, fmt.Errorf(`want "never", "unlimited" or a whole number from 0, got %s`, s)
	}
	return Restarts{Max: n}, nil
}

// UnmarshalJSON reads a restart policy (see ParseRestarts).
func (r *Restarts) UnmarshalJSON(b []byte) error {
	s, ok, err := scalar(b)
	if !ok {
		return err
	}
	v, err := ParseRestarts(s)
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// String is the policy as the config writes it.
func (r Restarts) String() string {
	switch {
	case r.Unlimited:
		return "unlimited"
	case r.Max == 0:
		return "never"
	}
	return strconv.Itoa(r.Max)
}

// catchable are the signals a config may name: every one a process can
// catch. SIGKILL and SIGSTOP cannot be caught, and numbers are refused
// because they differ between platforms and hide mistakes ("9").
var catchable = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2, "TERM": syscall.SIGTERM, "WINCH": syscall.SIGWINCH, "TTIN": syscall.SIGTTIN,
	"TTOU": syscall.SIGTTOU, "ALRM": syscall.SIGALRM, "CONT": syscall.SIGCONT, "PIPE": syscall.SIGPIPE,
	"URG": syscall.SIGURG, "PWR": syscall.SIGPWR,
}

// ParseSignal parses a catchable signal by name: "SIGHUP" or "HUP", any
// case.
func ParseSignal(s string) (syscall.Signal, error) {
	name := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), "SIG")
	if sig, ok := catchable[name]; ok {
		return sig, nil
	}
	switch name {
	case "KILL", "STOP":
		return 0, fmt.Errorf("SIG%s cannot be caught; name a catchable signal such as SIGHUP", name)
	}
	if _, err := strconv.Atoi(s); err == nil {
		return 0, fmt.Errorf("signal %s: name the signal (\"SIGHUP\"), numbers are not accepted", s)
	}
	return 0, fmt.Errorf("unknown signal %q (want e.g. \"SIGHUP\")", s)
}

// SignalName is the conventional name of a signal ("SIGHUP").
func SignalName(sig syscall.Signal) string {
	for name, s := range catchable {
		if s == sig {
			return "SIG" + name
		}
	}
	return fmt.Sprintf("signal %d", int(sig))
}

type signal syscall.Signal

func (g *signal) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a signal name like \"SIGHUP\", got %s", b)
	}
	if s == "" {
		*g = 0
		return nil
	}
	sig, err := ParseSignal(s)
	if err != nil {
		return err
	}
	*g = signal(sig)
	return nil
}

// perms is a file mode: an octal string ("0644") or a number whose decimal
// digits are read as octal (644 means 0644), as people write modes.
type perms fs.FileMode

func (p *perms) UnmarshalJSON(b []byte) error {
	s, ok, err := scalar(b)
	if !ok {
		return err
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o7777 {
		return fmt.Errorf("want an octal file mode like \"0644\", got %s", b)
	}
	*p = perms(v)
	return nil
}

var ifaceName = lazyre.New(`^([A-Za-z0-9_.@-]+)(?:\[(\d+)\]|:(inet6?))?$`)

// ParseInterface parses one interface spec, in ContainerPilot's forms:
// "eth0" (its first IPv4 address, as "eth0:inet"), "eth0:inet6", "eth0[1]"
// (its second address of any family, counting from 0), "inet" and "inet6"
// (the first non-loopback address of that family on any interface), a CIDR
// ("10.0.0.0/16", "fdc6::/48") or "static:IP".
func ParseInterface(spec string) (Interface, error) {
	switch {
	case spec == "inet":
		return Interface{Kind: KindFamily, Family: 4, Index: -1}, nil
	case spec == "inet6":
		return Interface{Kind: KindFamily, Family: 6, Index: -1}, nil
	case strings.HasPrefix(spec, "static:"):
		a, err := netip.ParseAddr(strings.TrimPrefix(spec, "static:"))
		if err != nil {
			return Interface{}, fmt.Errorf("%q: static address: %w", spec, err)
		}
		return Interface{Kind: KindStatic, Addr: a.Unmap(), Index: -1}, nil
	case strings.Contains(spec, "/"):
		p, err := netip.ParsePrefix(spec)
		if err != nil {
			return Interface{}, fmt.Errorf("%q: CIDR: %w", spec, err)
		}
		return Interface{Kind: KindCIDR, Prefix: p.Masked(), Index: -1}, nil
	}
	m := ifaceName().FindStringSubmatch(spec)
	if m == nil {
		return Interface{}, fmt.Errorf("%q: want an interface name (eth0, eth0:inet6, eth0[1]), inet, inet6, a CIDR or static:IP", spec)
	}
	i := Interface{Kind: KindName, Name: m[1], Index: -1, Family: 4}
	switch {
	case m[2] != "":
		n, err := strconv.Atoi(m[2])
		if err != nil || n > 1<<16 {
			return Interface{}, fmt.Errorf("%q: index out of range", spec)
		}
		i.Index, i.Family = n, 0
	case m[3] == "inet6":
		i.Family = 6
	}
	return i, nil
}

// String is the spec as ContainerPilot writes it.
func (i Interface) String() string {
	switch i.Kind {
	case KindFamily:
		if i.Family == 6 {
			return "inet6"
		}
		return "inet"
	case KindStatic:
		return "static:" + i.Addr.String()
	case KindCIDR:
		return i.Prefix.String()
	}
	switch {
	case i.Index >= 0:
		return fmt.Sprintf("%s[%d]", i.Name, i.Index)
	case i.Family == 6:
		return i.Name + ":inet6"
	}
	return i.Name
}

// ifaces is ContainerPilot's "single or array" of interface specs.
type ifaces []Interface

func (l *ifaces) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	var specs []string
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		specs = []string{s}
	} else if err := json.Unmarshal(b, &specs); err != nil {
		return fmt.Errorf("want an interface spec or a list of them, got %s", kindOf(b))
	}
	out := make(ifaces, 0, len(specs))
	for k, s := range specs {
		i, err := ParseInterface(s)
		if err != nil {
			if len(specs) > 1 || b[0] == '[' {
				return fmt.Errorf("[%d]: %w", k, err)
			}
			return err
		}
		out = append(out, i)
	}
	*l = out
	return nil
}

// command is a proc.Command that must not be empty when present.
type command = proc.Command

// consulField is ContainerPilot's consul: a "host:port" string, or (v3) an
// object with the address and client options.
type consulField struct {
	Address string
	Client  ConsulClient
}

type consulObject struct {
	Address string `json:"address"`
	Scheme  string `json:"scheme"`
	Token   string `json:"token"`
	TLS     *struct {
		CAFile     string `json:"cafile"`
		CAPath     string `json:"capath"`
		ClientCert string `json:"clientcert"`
		ClientKey  string `json:"clientkey"`
		ServerName string `json:"servername"`
		Verify     *bool  `json:"verify"`
	} `json:"tls"`
}

func (c *consulField) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		return nil
	case b[0] == '"':
		return json.Unmarshal(b, &c.Address)
	case b[0] != '{':
		return fmt.Errorf("want \"host:port\" or an object, got %s", kindOf(b))
	}
	var o consulObject
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return fmt.Errorf("%s (want address, scheme, token, tls{cafile, capath, clientcert, clientkey, servername, verify})", strings.TrimPrefix(err.Error(), "json: "))
	}
	if o.Address == "" {
		return errors.New("address: required")
	}
	switch o.Scheme {
	case "", "http", "https":
	default:
		return fmt.Errorf("scheme: want http or https, got %q", o.Scheme)
	}
	c.Address = o.Address
	if o.Scheme != "" && !strings.Contains(o.Address, "://") {
		c.Address = o.Scheme + "://" + o.Address
	}
	c.Client.Token = o.Token
	if o.TLS != nil {
		c.Client.TLS = ConsulTLS{CAFile: o.TLS.CAFile, CAPath: o.TLS.CAPath, ClientCert: o.TLS.ClientCert,
			ClientKey: o.TLS.ClientKey, ServerName: o.TLS.ServerName, Verify: o.TLS.Verify}
	}
	return nil
}

// scalar is the text a value parser reads from a JSON value: a string's
// contents, or a number's (any other literal's) own text, since the
// dialects write "5s", 5 and "5" alike. ok is false for null, which leaves
// the field unset, and for a string that does not decode (err says why).
func scalar(b []byte) (s string, ok bool, err error) {
	if string(b) == "null" {
		return "", false, nil
	}
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return "", false, err
		}
		return s, true, nil
	}
	return string(b), true, nil
}

func kindOf(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '"':
		return "a string"
	case '[':
		return "a list"
	case '{':
		return "an object"
	case 't', 'f':
		return "true or false"
	case 'n':
		return "null"
	}
	return "the number " + string(b)
}

// cpName is ContainerPilot's rule for names registered in Consul.
var cpName = lazyre.New(`^[a-z][a-zA-Z0-9\-]+$`)

// apName is autopilot's rule: a DNS label, as Consul recommends, with
// underscores and dots allowed as Consul does.
var apName = lazyre.New(`^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$`)

// checkServiceName validates a name that is registered or watched in
// Consul, by the dialect's rule.
func checkServiceName(d Dialect, name string) error {
	if err := checkText(name); err != nil {
		return err
	}
	if d == Autopilot {
		if !apName().MatchString(name) || len(name) > 255 {
			return fmt.Errorf("%q is not a valid Consul service name: use letters, digits, '-', '_' and '.', starting and ending with a letter or digit", name)
		}
		return nil
	}
	if !cpName().MatchString(name) {
		return fmt.Errorf("%q is not a valid service name: ContainerPilot names start with a lower-case letter and hold only letters, digits and '-' (^[a-z][a-zA-Z0-9-]+$)", name)
	}
	return nil
}

// checkText refuses text that cannot go into Consul or logs unmangled:
// invalid UTF-8 (already U+FFFD once decoded) and control characters.
func checkText(s string) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	if !utf8.ValidString(s) || strings.ContainsRune(s, utf8.RuneError) {
		return fmt.Errorf("%+q is not valid UTF-8", s)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%q has a control character", s)
		}
	}
	return nil
}
