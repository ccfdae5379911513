package testenv

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// ConsulVersion is the Consul release the tests run against; scripts/consul-bin.sh builds it.
const ConsulVersion = "v1.14.11"

// consulReadyTimeout bounds how long an agent may take to answer, elect a leader and register
// itself. A -dev agent needs about a second; parallel packages on 2 cores need more.
const consulReadyTimeout = 30 * time.Second

// ConsulBin returns the path of the consul binary the tests use: $CONSUL_BIN, else consul on
// PATH, else the cache scripts/consul-bin.sh builds into. Without one the test fails and says to
// run `make consul`.
func ConsulBin(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CONSUL_BIN"); p != "" {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			t.Fatalf("CONSUL_BIN=%s: not a consul binary (%v)", p, err)
		}
		return p
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p
	}
	if p := consulCachePath(); p != "" {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	skipOrFail(t, "no consul binary: run `make consul` (scripts/consul-bin.sh) to build Consul %s, "+
		"or set CONSUL_BIN", ConsulVersion)
	return ""
}

// consulCachePath mirrors the default output path of scripts/consul-bin.sh.
func consulCachePath() string {
	if dir := os.Getenv("CONSUL_BIN_CACHE"); dir != "" {
		return filepath.Join(dir, "consul")
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "autopilot-test", "consul-"+ConsulVersion, "consul")
}

// Consul is one Consul agent run by a test. Its methods call t.Fatal on failure, so they belong
// on the test goroutine; they are safe to call in any order and more than once.
type Consul struct {
	// HTTPAddr is the agent's HTTP API, "127.0.0.1:PORT". It stays the same across Restart.
	HTTPAddr string
	// HTTPSAddr is the agent's HTTPS API, "127.0.0.1:PORT", with WithTLS; else empty.
	HTTPSAddr string
	// ServerAddr is the agent's server RPC address, "127.0.0.1:PORT": what /v1/status/leader
	// returns when this agent is the leader.
	ServerAddr string
	// NodeName is the agent's node name, unique on this machine.
	NodeName string
	// LogPath is the file that collects the agent's output (all of its runs).
	LogPath string

	t    testing.TB
	argv []string
	tls  *TLSFiles // WithTLS's, for the readiness probe of the HTTPS port

	mu sync.Mutex
	p  *proc
}

// Option changes how StartConsul runs the agent.
type Option func(*consulConfig)

type consulConfig struct {
	hcl  []string
	args []string
	tls  *TLSFiles
}

// WithHCL adds agent configuration, e.g. `acl { enabled = true default_policy = "deny" }`.
func WithHCL(hcl string) Option {
	return func(c *consulConfig) { c.hcl = append(c.hcl, hcl) }
}

// WithArgs adds command-line flags to `consul agent`, e.g. "-log-level=debug".
func WithArgs(args ...string) Option {
	return func(c *consulConfig) { c.args = append(c.args, args...) }
}

// WithTLS makes the agent serve its HTTP API over HTTPS too, at Consul.HTTPSAddr, with files'
// server certificate, and require there a client certificate signed by files' CA. The plain
// HTTP port stays open, so the test's own checks (Client) need no certificates.
func WithTLS(files TLSFiles) Option {
	return func(c *consulConfig) { c.tls = &files }
}

// consulPorts are one agent's listeners. DNS and gRPC are off: the tests don't use them, and
// gRPC TLS's fixed default (8503) would clash between agents running side by side. HTTPS is
// off unless https is set.
type consulPorts struct{ http, https, serfLAN, serfWAN, server int }

func newConsulPorts(t testing.TB) consulPorts {
	return consulPorts{http: FreePort(t), serfLAN: FreePort(t), serfWAN: FreePort(t), server: FreePort(t)}
}

func (p consulPorts) hcl() string {
	https := p.https
	if https == 0 {
		https = -1
	}
	return fmt.Sprintf("ports { http = %d https = %d serf_lan = %d serf_wan = %d server = %d "+
		"dns = -1 grpc = -1 grpc_tls = -1 }", p.http, https, p.serfLAN, p.serfWAN, p.server)
}

var nodeSeq atomic.Int64

// nodeName is unique across the machine's concurrent test binaries (pid) and within one.
func nodeName() string {
	return fmt.Sprintf("test-%d-%d", os.Getpid(), nodeSeq.Add(1))
}

// commonHCL is configuration every test agent gets: no calls home, and fast timing for a
// single-machine cluster.
const commonHCL = `disable_update_check = true
performance { raft_multiplier = 1 }`

// StartConsul runs a `consul agent -dev` on loopback with free ports and returns once its HTTP
// API answers, it is its own leader and its node is in the catalog. The agent keeps everything in
// memory, so every StartConsul (and every Restart) begins with an empty catalog and KV store.
// t.Cleanup stops it.
func StartConsul(t testing.TB, opts ...Option) *Consul {
	t.Helper()
	bin := ConsulBin(t)
	var cfg consulConfig
	for _, o := range opts {
		o(&cfg)
	}
	dir := t.TempDir()
	logPath := filepath.Join(dir, "consul.log")
	dumpLogOnFailure(t, "consul", logPath)
	// A port picked by FreePort can, rarely, be grabbed by another program before the agent binds
	// it; an agent that dies of that is retried on new ports.
	for attempt := 1; ; attempt++ {
		ports := newConsulPorts(t)
		hcl := cfg.hcl
		if cfg.tls != nil {
			ports.https = FreePort(t)
			hcl = append([]string{cfg.tls.hcl()}, hcl...)
		}
		name := nodeName()
		argv := []string{bin, "agent", "-dev",
			"-bind", "127.0.0.1", "-client", "127.0.0.1",
			"-node", name,
			"-hcl", ports.hcl(), "-hcl", commonHCL}
		for _, h := range hcl {
			argv = append(argv, "-hcl", h)
		}
		argv = append(argv, cfg.args...)
		c := &Consul{
			HTTPAddr:   fmt.Sprintf("127.0.0.1:%d", ports.http),
			ServerAddr: fmt.Sprintf("127.0.0.1:%d", ports.server),
			NodeName:   name,
			LogPath:    logPath,
			t:          t,
			argv:       argv,
			tls:        cfg.tls,
		}
		if ports.https != 0 {
			c.HTTPSAddr = fmt.Sprintf("127.0.0.1:%d", ports.https)
		}
		t.Cleanup(c.Stop)
		err := c.start()
		if err == nil {
			return c
		}
		if attempt < 3 && c.portTaken() {
			t.Logf("consul: port taken, retrying on new ports: %v", err)
			c.Stop()
			appendLog(logPath, "---- testenv: retrying on new ports ----")
			continue
		}
		t.Fatalf("start consul: %v", err)
	}
}

// StartCluster runs n Consul servers (not -dev: raft over loopback, data under t.TempDir) that
// join each other, and returns once they have elected a leader and every node is in the catalog.
// A leader takes about 10 s to appear here, and a new one as long after the old one is killed.
// Restart on a member brings the same server back with its data.
func StartCluster(t testing.TB, n int) []*Consul {
	t.Helper()
	if n < 1 {
		t.Fatalf("StartCluster: n = %d, want at least 1", n)
	}
	// As in StartConsul, a member that dies because a port was taken before it bound it is
	// retried, here with the whole cluster on new ports: the others' -retry-join name its ports.
	for attempt := 1; ; attempt++ {
		nodes := newCluster(t, n)
		err := startCluster(nodes)
		if err == nil {
			return nodes
		}
		if attempt < 3 && slices.ContainsFunc(nodes, (*Consul).portTaken) {
			t.Logf("consul cluster: port taken, retrying on new ports: %v", err)
			for _, c := range nodes {
				c.Stop()
				appendLog(c.LogPath, "---- testenv: the cluster is retried on new ports ----")
			}
			continue
		}
		t.Fatalf("start consul cluster: %v", err)
	}
}

// newCluster lays out n servers that retry-join each other, none of them started.
func newCluster(t testing.TB, n int) []*Consul {
	bin := ConsulBin(t)
	ports := make([]consulPorts, n)
	for i := range ports {
		ports[i] = newConsulPorts(t)
	}
	nodes := make([]*Consul, n)
	for i := range nodes {
		dir := t.TempDir()
		name := nodeName()
		argv := []string{bin, "agent", "-server",
			"-bootstrap-expect", strconv.Itoa(n),
			"-bind", "127.0.0.1", "-client", "127.0.0.1",
			"-node", name,
			"-data-dir", filepath.Join(dir, "data"),
			// The default retry interval is 30 s: a member that started before the others
			// would sit out most of the test.
			"-retry-interval", "500ms",
			"-hcl", ports[i].hcl(), "-hcl", commonHCL}
		for j := range ports {
			if j != i {
				argv = append(argv, "-retry-join", fmt.Sprintf("127.0.0.1:%d", ports[j].serfLAN))
			}
		}
		c := &Consul{
			HTTPAddr:   fmt.Sprintf("127.0.0.1:%d", ports[i].http),
			ServerAddr: fmt.Sprintf("127.0.0.1:%d", ports[i].server),
			NodeName:   name,
			LogPath:    filepath.Join(dir, "consul.log"),
			t:          t,
			argv:       argv,
		}
		dumpLogOnFailure(t, "consul "+name, c.LogPath)
		t.Cleanup(c.Stop)
		nodes[i] = c
	}
	return nodes
}

// startCluster starts every member, then waits for each to listen and for the cluster to be
// ready. Listening is awaited first so that a member that died at start is reported at once,
// not after the others have waited for a leader that cannot be elected without it.
func startCluster(nodes []*Consul) error {
	for _, c := range nodes {
		if err := c.spawn(); err != nil {
			return err
		}
	}
	for _, c := range nodes {
		if err := c.waitListening(consulReadyTimeout); err != nil {
			return err
		}
	}
	for _, c := range nodes {
		if err := c.waitReady(2 * consulReadyTimeout); err != nil {
			return err
		}
	}
	return nil
}

// portTaken reports whether the agent's log says it could not bind one of its ports.
func (c *Consul) portTaken() bool {
	return strings.Contains(logSince(c.LogPath, 0), "address already in use")
}

// spawn starts the agent process without waiting for it.
func (c *Consul) spawn() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p != nil {
		if done, _ := c.p.exited(); !done {
			return fmt.Errorf("consul %s is already running", c.NodeName)
		}
	}
	p, err := startProc(c.LogPath, false, c.argv...)
	if err != nil {
		return err
	}
	c.p = p
	return nil
}

func (c *Consul) start() error {
	if err := c.spawn(); err != nil {
		return err
	}
	return c.waitReady(consulReadyTimeout)
}

// waitListening polls until the agent's HTTP API answers, which it does only after it has bound
// its serf and server ports, or until the agent process has ended.
func (c *Consul) waitListening(timeout time.Duration) error {
	p := c.process()
	client := newProbeClient()
	defer client.CloseIdleConnections()
	seen, err := waitFor(timeout, 20*time.Millisecond, func() (bool, string, error) {
		if done, err := p.exited(); done {
			return false, "agent process ended", fmt.Errorf("consul agent %s: %v", c.NodeName, err)
		}
		if _, err := c.get(client, "/v1/agent/self"); err != nil {
			return false, "agent: " + err.Error(), nil
		}
		return true, "", nil
	})
	if err == errTimeout {
		return fmt.Errorf("consul agent %s at %s not listening after %v: %s", c.NodeName, c.HTTPAddr, timeout, seen)
	}
	return err
}

// waitReady polls until the HTTP API answers, a leader is known and this node is registered,
// which is when a client can read and write through it, and, with WithTLS, until the HTTPS API
// answers a client that presents the test's client certificate.
func (c *Consul) waitReady(timeout time.Duration) error {
	p := c.process()
	client := newProbeClient()
	defer client.CloseIdleConnections()
	var httpsClient *http.Client
	if c.tls != nil {
		cfg, err := c.tls.clientConfig()
		if err != nil {
			return fmt.Errorf("consul agent %s: https probe: %w", c.NodeName, err)
		}
		httpsClient = newProbeClient()
		httpsClient.Transport.(*http.Transport).TLSClientConfig = cfg
		defer httpsClient.CloseIdleConnections()
	}
	seen, err := waitFor(timeout, 20*time.Millisecond, func() (bool, string, error) {
		if done, err := p.exited(); done {
			return false, "agent process ended", fmt.Errorf("consul agent %s: %v", c.NodeName, err)
		}
		body, err := c.get(client, "/v1/status/leader")
		if err != nil {
			return false, "leader: " + err.Error(), nil
		}
		var leader string
		if err := json.Unmarshal([]byte(body), &leader); err != nil || leader == "" {
			return false, "no leader yet: " + strings.TrimSpace(body), nil
		}
		body, err = c.get(client, "/v1/catalog/node/"+c.NodeName)
		if err != nil {
			return false, "catalog: " + err.Error(), nil
		}
		var node struct{ Node *struct{ Node string } }
		if err := json.Unmarshal([]byte(body), &node); err != nil || node.Node == nil {
			return false, "node not in catalog yet: " + strings.TrimSpace(body), nil
		}
		if httpsClient != nil {
			if _, err := getURL(httpsClient, "https://"+c.HTTPSAddr+"/v1/status/leader"); err != nil {
				return false, "https: " + err.Error(), nil
			}
		}
		return true, "", nil
	})
	if err == errTimeout {
		return fmt.Errorf("consul agent %s at %s not ready after %v: %s", c.NodeName, c.HTTPAddr, timeout, seen)
	}
	return err
}

// process is the agent process of the last start.
func (c *Consul) process() *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.p
}

// newProbeClient is the HTTP client of the readiness polls: a short timeout, and a new
// connection per request so a restarted agent is asked afresh.
func newProbeClient() *http.Client {
	return &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

// get fetches path from the agent's HTTP API and returns the body of a 200 answer.
func (c *Consul) get(client *http.Client, path string) (string, error) {
	return getURL(client, "http://"+c.HTTPAddr+path)
}

// getURL fetches url and returns the body of a 200 answer.
func getURL(client *http.Client, url string) (string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

// Client returns an API client for this agent. Its idle connections are closed at cleanup.
func (c *Consul) Client(t testing.TB) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = c.HTTPAddr
	cfg.Scheme = "http"
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatalf("consul client for %s: %v", c.HTTPAddr, err)
	}
	t.Cleanup(cfg.Transport.CloseIdleConnections)
	return client
}

// Stop stops the agent (SIGTERM, SIGKILL after 5 s) and waits for it. Its ports stay reserved
// for Restart.
func (c *Consul) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p != nil {
		_ = c.p.signal(syscall.SIGCONT) // a stopped agent cannot act on SIGTERM
		c.p.stop(syscall.SIGTERM, 5*time.Second)
	}
}

// Signal sends sig to the agent process: SIGSTOP and SIGCONT simulate an agent that hangs
// (its sockets still accept and acknowledge, nothing answers) and recovers. Stop resumes a
// stopped agent first.
func (c *Consul) Signal(sig syscall.Signal) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p == nil {
		c.t.Fatalf("consul %s: signal %v: not started", c.NodeName, sig)
	}
	if err := c.p.signal(sig); err != nil {
		c.t.Fatalf("consul %s: signal %v: %v", c.NodeName, sig, err)
	}
	if sig == syscall.SIGSTOP {
		// kill(2) returns before every thread has stopped: a thread busy on
		// the other core can still answer a request. Return only once the
		// whole process is frozen.
		pid := c.p.pid()
		deadline := time.Now().Add(10 * time.Second)
		for !allThreadsStopped(pid) {
			if time.Now().After(deadline) {
				c.t.Fatalf("consul %s: pid %d not stopped 10s after SIGSTOP", c.NodeName, pid)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// allThreadsStopped reports whether every thread of pid is in state T
// (stopped) or t (traced), read from /proc.
func allThreadsStopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			return false
		}
		// The state follows the command name, which is in parentheses
		// and may itself contain spaces or parentheses.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 || i+2 >= len(stat) || (stat[i+2] != 'T' && stat[i+2] != 't') {
			return false
		}
	}
	return true
}

// Kill ends the agent with SIGKILL, like a crash or an OOM kill, and waits for it.
func (c *Consul) Kill() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p != nil {
		c.p.kill()
	}
}

// Restart stops the agent if it runs and starts it again with the same command line and ports,
// then waits until it is ready as StartConsul does. For a -dev agent that is a fresh, empty agent
// at the same HTTPAddr: what a client sees when Consul is killed and a new agent comes up. A
// cluster member keeps its data dir; it is ready once the cluster has a leader.
func (c *Consul) Restart() {
	c.t.Helper()
	c.Stop()
	appendLog(c.LogPath, "---- testenv: restart ----")
	if err := c.start(); err != nil {
		c.t.Fatalf("restart consul: %v", err)
	}
}

// appendLog writes a marker line into a process log, so the tail printed on failure shows which
// run a line came from.
func appendLog(path, line string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}
