package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// freePorts returns n distinct free TCP ports on loopback. The listeners
// are held until all are picked so no port is returned twice.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// agent is a `consul agent` (-dev, or a single server) on loopback.
type agent struct {
	proc       *proc
	addr       string // host:port of the HTTP API
	serfLAN    int    // gossip port, for a client agent to join
	serverPort int    // server RPC port (what a client agent's queries reach)
}

// consulBin finds the Consul binary: $CONSUL_BIN, else scripts/consul-bin.sh.
func consulBin() (string, error) {
	if b := os.Getenv("CONSUL_BIN"); b != "" {
		return b, nil
	}
	fmt.Fprintln(os.Stderr, "bench: $CONSUL_BIN unset; running scripts/consul-bin.sh")
	out, err := exec.Command("scripts/consul-bin.sh").Output()
	if err != nil {
		return "", fmt.Errorf("scripts/consul-bin.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// startAgent starts a dev agent on free loopback ports and waits for a leader.
func startAgent(ctx context.Context, bin, dataDir string) (*agent, error) {
	return startAgentMode(ctx, bin, dataDir, false)
}

// startAgentMode starts a dev agent, or with server a single non-dev server
// (data under dataDir, raft on loopback) as production runs it: a dev agent
// pretty-prints every JSON answer, which makes a large service's answer
// 1.5-2x larger than a server's compact JSON.
func startAgentMode(ctx context.Context, bin, dataDir string, server bool) (*agent, error) {
	mode := agentDev
	if server {
		mode = agentServer
	}
	return startAgentKind(ctx, bin, dataDir, mode, 0, "")
}

type agentMode int

const (
	agentDev agentMode = iota
	agentServer
	agentClient // a client agent joining a server's serf_lan port
)

// startAgentKind starts an agent of mode; join is the serf_lan port a
// client agent joins, extraHCL more configuration.
func startAgentKind(ctx context.Context, bin, dataDir string, mode agentMode, join int, extraHCL string) (*agent, error) {
	p, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	hcl := fmt.Sprintf(`ports { http = %d dns = -1 grpc = -1 grpc_tls = -1 serf_lan = %d serf_wan = %d server = %d }`, p[0], p[1], p[2], p[3])
	args := []string{"agent", "-dev"}
	switch mode {
	case agentServer:
		// Prometheus retention makes /v1/agent/metrics?format=prometheus
		// report cumulative counters (the fleet scenario reads them).
		args = []string{"agent", "-server", "-bootstrap-expect", "1", "-data-dir", filepath.Join(dataDir, fmt.Sprintf("consul-data-%d", p[0])),
			"-node", fmt.Sprintf("bench-%d", p[0]), "-hcl", "performance { raft_multiplier = 1 }", "-hcl", "disable_update_check = true",
			"-hcl", `telemetry { prometheus_retention_time = "1h" disable_hostname = true }`}
	case agentClient:
		args = []string{"agent", "-data-dir", filepath.Join(dataDir, fmt.Sprintf("consul-data-%d", p[0])),
			"-node", fmt.Sprintf("bench-client-%d", p[0]), "-hcl", "disable_update_check = true",
			"-retry-join", fmt.Sprintf("127.0.0.1:%d", join), "-retry-interval", "500ms"}
	}
	args = append(args, "-bind", "127.0.0.1", "-client", "127.0.0.1", "-log-level", "warn", "-hcl", hcl)
	if extraHCL != "" {
		args = append(args, "-hcl", extraHCL)
	}
	pr, err := start("consul", nil, nil, bin, args...)
	if err != nil {
		return nil, err
	}
	a := &agent{proc: pr, addr: fmt.Sprintf("127.0.0.1:%d", p[0]), serfLAN: p[1], serverPort: p[3]}
	err = waitUntil(ctx, 30*time.Second, "consul leader", func() (bool, error) {
		if done, err := pr.exited(); done {
			return false, fmt.Errorf("consul exited: %v\n%s", err, pr.tail())
		}
		resp, err := http.Get("http://" + a.addr + "/v1/status/leader")
		if err != nil {
			return false, nil
		}
		defer resp.Body.Close()
		var b [64]byte
		n, _ := resp.Body.Read(b[:])
		return resp.StatusCode == 200 && n > 4, nil
	})
	if err != nil {
		pr.stop(2 * time.Second)
		return nil, err
	}
	return a, nil
}
