package testenv

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func TestStartConsul(t *testing.T) {
	c := StartConsul(t)
	if !strings.HasPrefix(c.HTTPAddr, "127.0.0.1:") {
		t.Fatalf("HTTPAddr = %q, want loopback", c.HTTPAddr)
	}
	client := c.Client(t)
	if _, err := client.KV().Put(&api.KVPair{Key: "app/config", Value: []byte("v1")}, nil); err != nil {
		t.Fatalf("kv put: %v", err)
	}
	kv, _, err := client.KV().Get("app/config", nil)
	if err != nil || kv == nil || string(kv.Value) != "v1" {
		t.Fatalf("kv get = %v, %v; want v1", kv, err)
	}
	node, _, err := client.Catalog().Node(c.NodeName, nil)
	if err != nil || node == nil {
		t.Fatalf("catalog node %s = %v, %v", c.NodeName, node, err)
	}
}

func TestConsulRestartIsFreshAgentOnSamePort(t *testing.T) {
	c := StartConsul(t)
	addr := c.HTTPAddr
	client := c.Client(t)
	if _, err := client.KV().Put(&api.KVPair{Key: "k", Value: []byte("before")}, nil); err != nil {
		t.Fatalf("kv put: %v", err)
	}

	c.Kill()
	if _, err := http.Get("http://" + addr + "/v1/status/leader"); err == nil {
		t.Fatalf("agent still answers after Kill")
	}

	c.Restart()
	if c.HTTPAddr != addr {
		t.Fatalf("HTTPAddr after Restart = %s, want %s", c.HTTPAddr, addr)
	}
	// A new client: the old one's kept-alive connections belong to the killed agent.
	kv, _, err := c.Client(t).KV().Get("k", nil)
	if err != nil {
		t.Fatalf("kv get after restart: %v", err)
	}
	if kv != nil {
		t.Fatalf("key survived Restart (%q): want a fresh agent", kv.Value)
	}

	c.Stop()
	if _, err := http.Get("http://" + addr + "/v1/status/leader"); err == nil {
		t.Fatalf("agent still answers after Stop")
	}
	c.Restart() // after Stop too
}

func TestStartConsulSideBySide(t *testing.T) {
	a, b := StartConsul(t), StartConsul(t)
	if a.HTTPAddr == b.HTTPAddr || a.NodeName == b.NodeName {
		t.Fatalf("two agents share %s / %s", a.HTTPAddr, a.NodeName)
	}
	// Separate agents, separate data.
	if _, err := a.Client(t).KV().Put(&api.KVPair{Key: "only-a", Value: []byte("x")}, nil); err != nil {
		t.Fatalf("kv put: %v", err)
	}
	if kv, _, err := b.Client(t).KV().Get("only-a", nil); err != nil || kv != nil {
		t.Fatalf("b sees a's key: %v, %v", kv, err)
	}
}

// A member that cannot bind a port is reported as soon as it dies, not after the others have
// waited for a leader, and is recognised as the port-taken case StartCluster retries.
func TestClusterMemberWithTakenPort(t *testing.T) {
	nodes := newCluster(t, 2)
	l, err := net.Listen("tcp", nodes[1].ServerAddr)
	if err != nil {
		t.Fatalf("hold %s: %v", nodes[1].ServerAddr, err)
	}
	defer l.Close()
	start := time.Now()
	err = startCluster(nodes)
	if err == nil {
		t.Fatalf("cluster started although %s is held", nodes[1].ServerAddr)
	}
	if took := time.Since(start); took > consulReadyTimeout/2 {
		t.Errorf("startCluster took %v to report %v", took, err)
	}
	if !nodes[1].portTaken() || nodes[0].portTaken() {
		t.Errorf("portTaken = %v, %v; want false, true (error %v)", nodes[0].portTaken(), nodes[1].portTaken(), err)
	}
}

func TestStartCluster(t *testing.T) {
	start := time.Now()
	nodes := StartCluster(t, 3)
	t.Logf("3-server cluster ready in %v", time.Since(start).Round(time.Millisecond))

	// One client per server: each Client has its own connection pool, and Consul answers 429
	// to a client address holding more than 200 connections.
	clients := map[*Consul]*api.Client{}
	for _, c := range nodes {
		clients[c] = c.Client(t)
	}
	leaderOf := func(c *Consul) string {
		l, err := clients[c].Status().Leader()
		if err != nil {
			return "error: " + err.Error()
		}
		return l
	}
	first := leaderOf(nodes[0])
	for _, c := range nodes {
		if l := leaderOf(c); l != first || l == "" {
			t.Fatalf("%s sees leader %q, %s sees %q", nodes[0].NodeName, first, c.NodeName, l)
		}
	}
	if _, err := clients[nodes[0]].KV().Put(&api.KVPair{Key: "replicated", Value: []byte("yes")}, nil); err != nil {
		t.Fatalf("kv put: %v", err)
	}
	kv, _, err := clients[nodes[2]].KV().Get("replicated", &api.QueryOptions{RequireConsistent: true})
	if err != nil || kv == nil || string(kv.Value) != "yes" {
		t.Fatalf("kv get on another server = %v, %v", kv, err)
	}

	if testing.Short() {
		return
	}
	// Failover: kill the leader, the other two elect a new one.
	var leader *Consul
	var rest []*Consul
	for _, c := range nodes {
		if c.ServerAddr == first {
			leader = c
		} else {
			rest = append(rest, c)
		}
	}
	if leader == nil {
		t.Fatalf("leader %s is none of the servers", first)
	}
	killed := time.Now()
	leader.Kill()
	Eventually(t, 60*time.Second, func() (bool, string) {
		l := leaderOf(rest[0])
		return l != "" && l != first && !strings.HasPrefix(l, "error"), "leader " + l
	})
	t.Logf("new leader %s after %v", leaderOf(rest[0]), time.Since(killed).Round(time.Millisecond))
}

// An agent WithTLS answers on HTTPS only a client that trusts its CA and presents a client
// certificate, under any of the server certificate's names, and keeps its plain HTTP port.
func TestStartConsulTLS(t *testing.T) {
	files, other := NewTLSFiles(t), NewTLSFiles(t)
	c := StartConsul(t, WithTLS(files))
	if !strings.HasPrefix(c.HTTPSAddr, "127.0.0.1:") || c.HTTPSAddr == c.HTTPAddr {
		t.Fatalf("HTTPSAddr = %q (HTTPAddr %q), want another loopback port", c.HTTPSAddr, c.HTTPAddr)
	}
	if _, err := c.Client(t).KV().Put(&api.KVPair{Key: "k", Value: []byte("over http")}, nil); err != nil {
		t.Fatalf("kv put over plain HTTP: %v", err)
	}
	// A blocking health query goes through the agent's streaming subscription to its own server
	// RPC port, which must stay reachable in plaintext.
	_, meta, err := c.Client(t).Health().Service("consul", "", true, nil)
	if err != nil {
		t.Fatalf("health query: %v", err)
	}
	if _, _, err := c.Client(t).Health().Service("consul", "", true, &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 50 * time.Millisecond}); err != nil {
		t.Fatalf("blocking health query: %v", err)
	}
	_, port, _ := net.SplitHostPort(c.HTTPSAddr)
	good := api.TLSConfig{CAFile: files.CAFile, CertFile: files.ClientCert, KeyFile: files.ClientKey}
	with := func(edit func(*api.TLSConfig)) api.TLSConfig { c := good; edit(&c); return c }
	// Where the server refuses the client's certificate, TLS 1.3 tells the client only after
	// the handshake, and Go's HTTP/2 client may then report just that the connection failed: those
	// cases require an error, not its text.
	cases := []struct {
		name   string
		addr   string
		tls    api.TLSConfig
		ok     bool
		errHas string
	}{
		{"CA and client cert", c.HTTPSAddr, good, true, ""},
		{"localhost", "localhost:" + port, good, true, ""},
		{"server name", c.HTTPSAddr, with(func(c *api.TLSConfig) { c.Address = TLSServerName }), true, ""},
		{"wrong server name", c.HTTPSAddr, with(func(c *api.TLSConfig) { c.Address = "wrong.example" }), false, "certificate is valid for"},
		{"wrong CA", c.HTTPSAddr, with(func(c *api.TLSConfig) { c.CAFile = other.CAFile }), false, "certificate signed by unknown authority"},
		{"no client cert", c.HTTPSAddr, with(func(c *api.TLSConfig) { c.CertFile, c.KeyFile = "", "" }), false, ""},
		{"client cert of another CA", c.HTTPSAddr, with(func(c *api.TLSConfig) { c.CertFile, c.KeyFile = other.ClientCert, other.ClientKey }), false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := api.DefaultNonPooledConfig()
			cfg.Address, cfg.Scheme, cfg.TLSConfig = tc.addr, "https", tc.tls
			client, err := api.NewClient(cfg)
			if err != nil {
				t.Fatalf("client: %v", err)
			}
			kv, _, err := client.KV().Get("k", nil)
			switch {
			case tc.ok && (err != nil || kv == nil || string(kv.Value) != "over http"):
				t.Fatalf("kv get over HTTPS = %v, %v; want the value put over HTTP", kv, err)
			case !tc.ok && (err == nil || !strings.Contains(err.Error(), tc.errHas)):
				t.Fatalf("kv get over HTTPS: err = %v, want one containing %q", err, tc.errHas)
			}
		})
	}
}
