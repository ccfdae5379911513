package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/autopilot/autopilot/internal/haproxy"
	"github.com/autopilot/autopilot/internal/testenv"
)

// TestHAProxyRuntimeScaleUpAndDown is the scale scenario through HAProxy
// under the autopilot binary with the stock haproxy-runtime.cfg.tmpl and a
// template `haproxy` field: the same load sees no error, and HAProxy's
// master never reloads, as every change is a server change applied through
// the runtime API.
func TestHAProxyRuntimeScaleUpAndDown(t *testing.T) {
	consul := testenv.StartConsul(t)
	s := newStack(t)
	c1 := s.startCustomers(consul, 0)
	waitPassing(t, consul.Client(t), c1)
	p, master := s.startHAProxyRuntime(consul)
	before := showProc(t, master)
	scaleScenario(t, s, consul, p)
	if after := showProc(t, master); after.Reloads != before.Reloads {
		t.Errorf("HAProxy reloaded during the scale scenario: %+v -> %+v", before, after)
	}
	if _, ok := p.ap.find("file updated; change applied without a reload"); !ok {
		t.Errorf("no runtime-applied change in autopilot's log:\n%s", tail(p.ap.Log(), 30))
	}
}

// startHAProxyRuntime runs `haproxy -W -db -S MASTER` under autopilot with
// testdata/haproxy-runtime.json and returns the proxy and the master CLI socket.
func (s *stack) startHAProxyRuntime(consul *testenv.Consul) (*proxy, string) {
	t := s.t
	t.Helper()
	port := testenv.FreePort(t)
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	sockDir, err := os.MkdirTemp("", "e2e-hx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	master := filepath.Join(sockDir, "master.sock")
	env := append([]string{
		"CONSUL_HTTP_ADDR=" + consul.HTTPAddr,
		"HAPROXY_PORT=" + strconv.Itoa(port),
		"HAPROXY_BIND=127.0.0.1:" + strconv.Itoa(port),
		"HAPROXY_CFG=" + cfg,
		"HAPROXY_RUNTIME_SOCKET=" + filepath.Join(sockDir, "admin.sock"),
		"HAPROXY_MASTER_SOCKET=" + master,
	}, serviceEnv...)
	config, err := filepath.Abs("testdata/haproxy-runtime.json")
	if err != nil {
		t.Fatal(err)
	}
	ap := s.start("haproxy", config, env, "haproxy", "-W", "-db", "-S", master, "-f", cfg)
	p := &proxy{ap: ap, port: port, rendered: cfg, servers: haproxyBackend}
	p.waitServing(t, "/customers/health")
	return p, master
}

// showProc is the master's `show proc`, once it answers (not while it
// re-executes itself for a reload) and has no old worker left.
func showProc(t *testing.T, master string) haproxy.Procs {
	t.Helper()
	var p haproxy.Procs
	testenv.Eventually(t, 30*time.Second, func() (bool, string) {
		out, err := haproxy.Client{Addr: master}.Exec(context.Background(), "show proc")
		if err == nil {
			p, err = haproxy.ParseProcs(out)
		}
		return err == nil && len(p.Old) == 0, fmt.Sprint(out, err)
	})
	return p
}
