// Package consul is the one place autopilot talks to Consul: it builds the
// client from flags and the standard CONSUL_HTTP_* environment, runs the
// shared blocking-query watches that serve templates and backends, and
// holds the agent calls the supervisor makes (registration, TTL, maintenance).
package consul

import (
	"fmt"
	"net"
	"strings"

	"github.com/hashicorp/consul/api"
)

// NewClient returns a Consul client. addr may be "host:port",
// "http://host:port" or "https://host:port"; empty keeps CONSUL_HTTP_ADDR
// (or the default 127.0.0.1:8500). Token, TLS and auth settings come from
// the CONSUL_HTTP_TOKEN(_FILE), CONSUL_CACERT, CONSUL_CLIENT_CERT/KEY,
// CONSUL_HTTP_SSL(_VERIFY) and CONSUL_HTTP_AUTH variables, as the consul CLI reads them.
func NewClient(addr string) (*api.Client, error) {
	cfg := api.DefaultConfig()
	if addr != "" {
		switch {
		case strings.HasPrefix(addr, "https://"):
			cfg.Scheme = "https"
			cfg.Address = strings.TrimPrefix(addr, "https://")
		case strings.HasPrefix(addr, "http://"):
			cfg.Scheme = "http"
			cfg.Address = strings.TrimPrefix(addr, "http://")
		default:
			cfg.Address = addr
		}
	}
	// Blocking queries hold connections for minutes; keep idle ones per host
	// high enough that many unique queries don't churn TCP connections.
	if cfg.Transport != nil {
		cfg.Transport.MaxIdleConnsPerHost = 256
		// Go's transport asks for gzip, and Consul then compresses every
		// answer. To a local agent that is pure cost on both sides: a
		// service of 10,000 instances is 14.7 MB of JSON, and gzipping it
		// added 100-270 ms to each blocking-query answer (bench/, scale
		// scenario). Remote agents keep gzip for the bandwidth it saves.
		if isLocal(cfg.Address) {
			cfg.Transport.DisableCompression = true
		}
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client for %q: %w", cfg.Address, err)
	}
	return c, nil
}

// isLocal reports whether addr (host:port, host or unix://path) is this
// machine: a loopback address, localhost or a Unix socket.
func isLocal(addr string) bool {
	if strings.HasPrefix(addr, "unix://") {
		return true
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
