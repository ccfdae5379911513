// Package consul is the one place autopilot talks to Consul: it builds the
// client from flags and the standard CONSUL_HTTP_* environment, runs the
// shared blocking-query watches that serve templates and backends, and
// holds the agent calls the supervisor makes (registration, TTL, maintenance).
//
// No call here can hang: every request carries a deadline (agent calls
// CallTimeout, blocking queries their wait plus a margin), and the dialer
// turns on TCP keepalive with TCP_USER_TIMEOUT, so a connection whose peer
// vanished (a network partition) is closed within DeadConnTimeout instead of
// waiting out the kernel's retransmissions (15 minutes by default). Every
// request is counted in the client's Stats.
package consul

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
)

// Defaults of ClientOptions.
const (
	DefaultCallTimeout     = 5 * time.Second
	DefaultDialTimeout     = 3 * time.Second
	DefaultDeadConnTimeout = 10 * time.Second
)

// ClientOptions tune the client's deadlines. Zero values take the defaults.
type ClientOptions struct {
	// CallTimeout bounds every non-blocking call (agent registration, TTL
	// updates, maintenance, the node-name lookup). Default 5s.
	CallTimeout time.Duration
	// DialTimeout bounds opening a TCP connection. Default 3s.
	DialTimeout time.Duration
	// DeadConnTimeout is how long a connection may have data or keepalive
	// probes unacknowledged before the kernel closes it (TCP_USER_TIMEOUT;
	// keepalive probes start after a third of it). It bounds how long a
	// partition can leave a blocking query hanging on a dead connection, and
	// so how long after the partition heals recovery can take. Default 10s.
	DeadConnTimeout time.Duration
	// KeepAlive, when above 0, is the idle time before the first TCP
	// keepalive probe and between probes (consul-template's
	// dial_keep_alive); 0 derives both from DeadConnTimeout, which still
	// bounds how long probes may go unanswered.
	KeepAlive time.Duration
	// Configure, if set, edits consul/api's config after the environment,
	// addr and this package's transport settings are applied, so it may
	// override them: the consul-template personality sets its token, TLS,
	// basic auth and connection pool (consul-template's defaults, 100 idle
	// connections per host, unless its transport block says otherwise)
	// this way; the CONSUL_HTTP_* its children see come from ctconfig's ChildEnv.
	Configure func(*api.Config)
}

func (o ClientOptions) withDefaults() ClientOptions {
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.DeadConnTimeout <= 0 {
		o.DeadConnTimeout = DefaultDeadConnTimeout
	}
	return o
}

// Client is a Consul API client with autopilot's deadlines and counters.
// Agent and Watcher are built on one; it is safe for concurrent use.
type Client struct {
	api   *api.Client
	cfg   api.Config // as completed by api.NewClient (HttpClient, token, scheme)
	opts  ClientOptions
	stats *counters
	// noClientCert: HTTPS without a client certificate, so a refused
	// connection may be an agent that requires one (explain).
	noClientCert bool
}

// NewClient returns a Consul client with default ClientOptions. addr may be
// "host:port", "http://host:port" or "https://host:port"; empty keeps
// CONSUL_HTTP_ADDR (or the default 127.0.0.1:8500). Token, TLS and auth
// settings come from the CONSUL_HTTP_TOKEN(_FILE), CONSUL_CACERT,
// CONSUL_CLIENT_CERT/KEY, CONSUL_HTTP_SSL(_VERIFY) and CONSUL_HTTP_AUTH
// variables, as the consul CLI reads them.
func NewClient(addr string) (*Client, error) {
	return NewClientWithOptions(addr, ClientOptions{})
}

// NewClientWithOptions is NewClient with explicit deadlines.
func NewClientWithOptions(addr string, opts ClientOptions) (*Client, error) {
	opts = opts.withDefaults()
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
		cfg.Transport.DialContext = dialer(opts).DialContext
		// Go's transport asks for gzip, and Consul then compresses every
		// answer. To a local agent that is pure cost on both sides: a
		// service of 10,000 instances is 14.7 MB of JSON, and gzipping it
		// added 100-270 ms to each blocking-query answer (bench/, scale
		// scenario). Remote agents keep gzip for the bandwidth it saves.
		if isLocal(cfg.Address) {
			cfg.Transport.DisableCompression = true
		}
	}
	if opts.Configure != nil {
		opts.Configure(cfg)
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("consul client for %q: %w", cfg.Address, err)
	}
	return &Client{api: c, cfg: *cfg, opts: opts, stats: newStats(), noClientCert: withoutClientCert(cfg)}, nil
}

// withoutClientCert reports whether cfg (as api.NewClient completed it)
// talks HTTPS without a client certificate.
func withoutClientCert(cfg *api.Config) bool {
	if cfg.Scheme != "https" || cfg.HttpClient == nil {
		return false
	}
	t, ok := cfg.HttpClient.Transport.(*http.Transport)
	if !ok || t.TLSClientConfig == nil {
		return false
	}
	tc := t.TLSClientConfig
	return len(tc.Certificates) == 0 && tc.GetClientCertificate == nil
}

// explain adds the likely cause to an error that names none. Over TLS 1.3
// an agent that requires client certificates (verify_incoming) refuses a
// client without one after the handshake, and the client then reads, by
// timing, "tls: certificate required", "broken pipe", "connection reset by
// peer", an EOF or (HTTP/2) "client conn could not be established".
func (c *Client) explain(err error) error {
	if err == nil || !c.noClientCert {
		return err
	}
	msg := err.Error()
	if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(msg, "certificate required") ||
		strings.Contains(msg, "http2: client conn could not be established") {
		return fmt.Errorf("%w (no client certificate is configured; does the agent require one? verify_incoming)", err)
	}
	return err
}

// API returns the underlying consul/api client, for calls this package does
// not wrap (snapshots, tests). Calls made through it carry no deadline unless
// the caller gives one.
func (c *Client) API() *api.Client { return c.api }

// Stats returns a snapshot of the requests this client's Agent and Watchers
// made: counts by endpoint and outcome, index resets, empty answers held
// back and blocking-query latencies.
func (c *Client) Stats() ClientStats { return c.stats.snapshot() }

// dialer opens TCP connections that notice a vanished peer: keepalive probes
// start after a third of DeadConnTimeout, and TCP_USER_TIMEOUT (Linux) closes
// the connection once data or probes went unacknowledged for DeadConnTimeout.
func dialer(o ClientOptions) *net.Dialer {
	idle := max(o.DeadConnTimeout/3, time.Second)
	interval := max(idle/2, time.Second)
	if o.KeepAlive > 0 {
		idle, interval = o.KeepAlive, o.KeepAlive // as net.Dialer.KeepAlive sets both
	}
	return &net.Dialer{
		Timeout: o.DialTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable:   true,
			Idle:     idle,
			Interval: interval,
			Count:    3,
		},
		Control: userTimeoutControl(o.DeadConnTimeout),
	}
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
