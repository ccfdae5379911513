// Package haproxy applies everyday changes to a running HAProxy without a
// reload, and confirms the reloads it cannot avoid.
//
// A reload starts a new worker and keeps the old one until its long-lived
// connections end, and it resets per-server state (health, slow-start,
// stick tables). Most changes a Consul-driven template makes are not
// worth that: a backend gains, loses or moves a server. This package
// recognises such changes by comparing two rendered configs (ParseConfig,
// Plan), turns them into runtime API commands (`add server`, `set server`,
// `del server` after a drain), runs them over the stats socket and checks
// the result against the new file with `show servers state` (Runtime).
// Anything else is left to a reload, which Reloader confirms through the
// master CLI and retries when HAProxy missed the signal.
//
// The render runner sees none of this: it gets plain functions
// (Runtime.Apply, Reloader.Reload) through render.Config.
package haproxy

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Config is what Plan needs of one haproxy.cfg: every line that is not a
// backend's `server` line, and the servers of each backend.
type Config struct {
	// Skeleton holds every meaningful line except backends' server lines,
	// trimmed, in order. Two configs whose skeletons are equal differ at
	// most in backend servers.
	Skeleton []string
	Backends []*Backend
}

// Backend is one `backend` section.
type Backend struct {
	Name    string
	Line    int // 1-based line of the `backend` keyword
	Servers []*ServerLine
	// Defaults are the `default-server` arguments that apply to servers
	// of this backend: those of the defaults section in force, then the
	// backend's own. HAProxy 2.6 does not apply them to a server added at
	// runtime, so Plan passes them explicitly. DefaultsKnown is false when
	// the backend names its defaults section (`from NAME`), which this
	// parser does not resolve.
	Defaults      []string
	DefaultsKnown bool
}

// ServerLine is one `server` line of a backend, as written.
type ServerLine struct {
	Name string
	Line int    // 1-based
	Text string // the trimmed line: two lines with the same Text are the same server
}

// Backend returns the backend called name, or nil.
func (c *Config) Backend(name string) *Backend {
	for _, b := range c.Backends {
		if b.Name == name {
			return b
		}
	}
	return nil
}

// sectionKeywords start a section in haproxy.cfg: those of HAProxy 2.6,
// and later ones (crt-store, traces, acme), so that the `server` lines of a
// peers or ring section, say, are never taken for a backend's.
var sectionKeywords = map[string]bool{
	"global": true, "defaults": true, "frontend": true, "backend": true, "listen": true,
	"peers": true, "resolvers": true, "userlist": true, "mailers": true, "program": true,
	"http-errors": true, "ring": true, "cache": true, "log-forward": true, "fcgi-app": true,
	"crt-store": true, "traces": true, "acme": true,
}

// ParseConfig splits an haproxy.cfg into its skeleton and its backends'
// server lines. It only looks at the first word of each line, so it
// accepts anything HAProxy does (and more: `haproxy -c` stays the judge).
// An error means the text is not something Plan can reason about, such as a
// server line without a name or a backend defined twice.
func ParseConfig(cfg []byte) (*Config, error) {
	c := &Config{}
	var (
		section         string
		cur             *Backend
		defaults        []string // default-server args of the defaults section in force
		pendingDefaults []string // of the defaults section being read
	)
	for i, raw := range bytes.Split(cfg, []byte("\n")) {
		n := i + 1
		line := strings.TrimSpace(string(raw))
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		kw := fields[0]
		if sectionKeywords[kw] {
			if section == "defaults" {
				defaults = pendingDefaults
			}
			section, cur = kw, nil
			switch kw {
			case "defaults":
				pendingDefaults = nil
			case "backend":
				if len(fields) < 2 {
					return nil, fmt.Errorf("line %d: backend without a name", n)
				}
				if c.Backend(fields[1]) != nil {
					return nil, fmt.Errorf("line %d: backend %q defined twice", n, fields[1])
				}
				cur = &Backend{Name: fields[1], Line: n, DefaultsKnown: len(fields) == 2}
				cur.Defaults = append([]string(nil), defaults...)
				c.Backends = append(c.Backends, cur)
			}
			c.Skeleton = append(c.Skeleton, line)
			continue
		}
		switch {
		case section == "defaults" && kw == "default-server":
			pendingDefaults = append(pendingDefaults, fields[1:]...)
		case cur != nil && kw == "default-server":
			cur.Defaults = append(cur.Defaults, fields[1:]...)
		case cur != nil && kw == "server":
			if len(fields) < 3 {
				return nil, fmt.Errorf("line %d: server line without a name and an address", n)
			}
			for _, s := range cur.Servers {
				if s.Name == fields[1] {
					return nil, fmt.Errorf("line %d: server %s/%s defined twice (first on line %d)", n, cur.Name, s.Name, s.Line)
				}
			}
			cur.Servers = append(cur.Servers, &ServerLine{Name: fields[1], Line: n, Text: line})
			continue
		}
		c.Skeleton = append(c.Skeleton, line)
	}
	return c, nil
}

// Server is a server line understood well enough to be created or changed
// through the runtime API.
type Server struct {
	Name     string
	Addr     netip.Addr
	Port     uint16
	Weight   int  // 1 unless set
	Disabled bool // `disabled`: starts in maintenance
	Check    bool // health checks, which `add server` leaves off until `enable health`
	// Args are the keywords and values for `add server`, default-server
	// ones first, without enabled/disabled (the state is set on its own).
	Args []string
	// Options are Args without weight: what must be equal for a changed
	// line to be applied with `set server`.
	Options string
}

// runtimeKeywords are the server keywords Plan passes to `add server`, with
// the number of values each takes. HAProxy 2.6 accepts more, but these are
// the ones checked against it here; any other keyword makes the change a
// reload.
var runtimeKeywords = map[string]int{
	"check": 0, "backup": 0, "enabled": 0, "disabled": 0,
	"weight": 1, "maxconn": 1, "maxqueue": 1, "minconn": 1,
	"inter": 1, "fastinter": 1, "downinter": 1, "rise": 1, "fall": 1, "slowstart": 1,
}

// ParseServer reads a server line with the backend's default-server
// arguments in front of its own. It fails, with the reason, on anything the
// runtime API path does not handle: an address that is not a literal IP
// and port, quoting, comments, or a keyword outside runtimeKeywords.
func ParseServer(defaults []string, line string) (*Server, error) {
	if strings.ContainsAny(line, "\"'\\#$") {
		return nil, fmt.Errorf("server line has quotes, escapes, comments or variables: %q", line)
	}
	f := strings.Fields(line)
	if len(f) < 3 || f[0] != "server" {
		return nil, fmt.Errorf("not a server line: %q", line)
	}
	s := &Server{Name: f[1], Weight: 1}
	if !validName(s.Name) {
		return nil, fmt.Errorf("server name %q: want letters, digits, '-', '_', '.' or ':'", s.Name)
	}
	addr, err := parseAddr(f[2])
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", s.Name, err)
	}
	s.Addr, s.Port = addr.Addr(), addr.Port()
	args := append(append([]string(nil), defaults...), f[3:]...)
	var opts []string
	for i := 0; i < len(args); i++ {
		kw := args[i]
		n, ok := runtimeKeywords[kw]
		if !ok {
			return nil, fmt.Errorf("server %s: keyword %q is not applied through the runtime API", s.Name, kw)
		}
		if i+n >= len(args) {
			return nil, fmt.Errorf("server %s: %s needs a value", s.Name, kw)
		}
		switch kw {
		case "enabled":
			s.Disabled = false
			continue
		case "disabled":
			s.Disabled = true
			continue
		case "check":
			s.Check = true
		case "weight":
			w, err := strconv.Atoi(args[i+1])
			if err != nil || w < 0 || w > 256 {
				return nil, fmt.Errorf("server %s: weight %q: want 0 to 256", s.Name, args[i+1])
			}
			s.Weight = w
		}
		s.Args = append(s.Args, args[i:i+n+1]...)
		if kw != "weight" {
			opts = append(opts, args[i:i+n+1]...)
		}
		i += n
	}
	s.Options = strings.Join(opts, " ")
	return s, nil
}

// parseAddr reads a server address the runtime API can set: IPv4 `a.b.c.d:port`
// or IPv6 `ipv6@addr:port` / `[addr]:port`, with a port from 1 to 65535.
func parseAddr(s string) (netip.AddrPort, error) {
	v := strings.TrimPrefix(strings.TrimPrefix(s, "ipv4@"), "ipv6@")
	i := strings.LastIndexByte(v, ':')
	if i < 0 {
		return netip.AddrPort{}, fmt.Errorf("address %q has no port", s)
	}
	host, port := strings.TrimSuffix(strings.TrimPrefix(v[:i], "["), "]"), v[i+1:]
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("address %q: want a literal IP and a port", s)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, fmt.Errorf("address %q: port %q: want 1 to 65535", s, port)
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

// validName reports whether s is a name HAProxy accepts for a server (and
// that needs no quoting on the CLI).
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.', r == ':':
		default:
			return false
		}
	}
	return true
}
