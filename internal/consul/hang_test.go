package consul

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/dep"
	"github.com/autopilot/autopilot/internal/testenv"
)

// TestAgentCallsEndOnTimeWhenAgentHangs stops the agent with SIGSTOP (its
// kernel still accepts connections and acknowledges requests, nothing
// answers: what a hung or overloaded agent looks like) and checks that every
// agent call returns a deadline error within the call timeout, that the
// failures are counted, and that calls succeed again soon after SIGCONT.
// Before this client, each of these calls hung until the agent came back.
func TestAgentCallsEndOnTimeWhenAgentHangs(t *testing.T) {
	c := testenv.StartConsul(t)
	const timeout = time.Second
	client, err := NewClientWithOptions(c.HTTPAddr, ClientOptions{CallTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	a := NewAgent(client)
	svc := Service{ID: "hang-1", Name: "hang", Address: "127.0.0.1", Port: 1, TTL: time.Minute, Status: api.HealthPassing}
	if err := a.Register(t.Context(), svc); err != nil {
		t.Fatal(err)
	}

	c.Signal(syscall.SIGSTOP)
	calls := []struct {
		name string
		call func() error
	}{
		{"UpdateTTL", func() error { return a.UpdateTTL(t.Context(), svc.ID, api.HealthPassing, "ok") }},
		{"Register", func() error { return a.Register(t.Context(), svc) }},
		{"EnableMaintenance", func() error { return a.EnableMaintenance(t.Context(), svc.ID, "r") }},
		{"DisableMaintenance", func() error { return a.DisableMaintenance(t.Context(), svc.ID) }},
		{"Deregister", func() error { return a.Deregister(t.Context(), svc.ID) }},
		{"NodeName", func() error { _, err := a.NodeName(t.Context()); return err }},
	}
	for _, tc := range calls {
		start := time.Now()
		err := tc.call()
		took := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s against a stopped agent: err = %v, want a deadline error", tc.name, err)
		}
		// Generous slack for a loaded machine; without a deadline this is forever.
		if took > timeout+3*time.Second {
			t.Errorf("%s took %v, want about the %v call timeout", tc.name, took, timeout)
		}
		if err != nil && !strings.Contains(err.Error(), "did not answer within 1s") {
			t.Errorf("%s: error %q does not say what happened", tc.name, err)
		}
	}
	st := client.Stats()
	if n := st.Total("", OutcomeTimeout); n < int64(len(calls)) {
		t.Errorf("timeouts counted = %d, want at least %d: %+v", n, len(calls), st.Requests)
	}
	if st.Errors < int64(len(calls)) {
		t.Errorf("errors counted = %d, want at least %d", st.Errors, len(calls))
	}

	// A caller leaving early is not held up either.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := a.UpdateTTL(ctx, svc.ID, api.HealthPassing, "ok"); !errors.Is(err, context.Canceled) {
		t.Errorf("UpdateTTL with a cancelled context: %v, want context.Canceled", err)
	}

	c.Signal(syscall.SIGCONT)
	resumed := time.Now()
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		err := a.Register(t.Context(), svc)
		return err == nil, fmt.Sprint(err)
	})
	t.Logf("agent calls succeed again %v after SIGCONT", time.Since(resumed).Round(time.Millisecond))
}

// TestWatcherSurvivesHungAgent: a blocking query to a stopped agent ends at
// its deadline (wait + jitter + call timeout) with an error that is logged
// once and counted; the watch keeps serving its last good data meanwhile, and
// after SIGCONT it recovers and sees a change within seconds.
func TestWatcherSurvivesHungAgent(t *testing.T) {
	agent := testenv.StartConsul(t)
	client, err := NewClientWithOptions(agent.HTTPAddr, ClientOptions{CallTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var logs testenv.Buffer
	w := NewWatcher(context.Background(), client, WatchOptions{
		WaitTime: time.Second, BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
	}, zerolog.New(&logs))
	t.Cleanup(w.Close)
	q, _ := dep.ParseService("web")
	w.Subscribe(q, make(chan struct{}, 1))
	register(t, agent.Client(t), "web-1", "web", 8001, api.HealthPassing)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) { n, s := instancesOf(w, q); return n == 1, s })

	agent.Signal(syscall.SIGSTOP)
	stopped := time.Now()
	// The request in flight ends by its deadline: 1s wait + 62ms jitter + 1s.
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		err := w.LastError(q)
		return errors.Is(err, context.DeadlineExceeded), fmt.Sprintf("last error %v", err)
	})
	t.Logf("watch reported the hang %v after SIGSTOP", time.Since(stopped).Round(time.Millisecond))
	if n, s := instancesOf(w, q); n != 1 {
		t.Fatalf("while the agent hangs: %s, want the last good answer", s)
	}
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		return strings.Contains(logs.String(), "consul query failed; keeping last good data"), logs.String()
	})
	if st := client.Stats(); st.Total(EndpointHealthService, OutcomeTimeout) < 1 {
		t.Errorf("no health.service timeout counted: %+v", st.Requests)
	}
	infos := w.Watches()
	if len(infos) != 1 || infos[0].Instances != 1 || infos[0].Err == nil || infos[0].LastChange.IsZero() {
		t.Errorf("Watches() during the hang = %+v, want one watch with 1 instance, its error and a last change", infos)
	}

	agent.Signal(syscall.SIGCONT)
	resumed := time.Now()
	register(t, agent.Client(t), "web-2", "web", 8002, api.HealthPassing)
	testenv.Eventually(t, 10*time.Second, func() (bool, string) { n, s := instancesOf(w, q); return n == 2, s })
	t.Logf("watch saw the change %v after SIGCONT", time.Since(resumed).Round(time.Millisecond))
	// The answer after the hang decoded only the new instance.
	if st := client.Stats(); st.ElementsReused < 1 || st.ElementsDecoded < 2 {
		t.Errorf("elements decoded %d, reused %d; want the first instance reused", st.ElementsDecoded, st.ElementsReused)
	}
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		return strings.Contains(logs.String(), "consul query recovered"), logs.String()
	})
}

// TestWatcherLogsFailuresRateLimited: an agent that stays down gives one log
// line when the failures start and then at most one per LogEvery, while
// every failed request is counted.
func TestWatcherLogsFailuresRateLimited(t *testing.T) {
	client, err := NewClient(fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))) // nothing listens
	if err != nil {
		t.Fatal(err)
	}
	var logs testenv.Buffer
	w := NewWatcher(context.Background(), client, WatchOptions{
		BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond, LogEvery: time.Hour,
	}, zerolog.New(&logs))
	t.Cleanup(w.Close)
	q, _ := dep.ParseService("web")
	w.Subscribe(q, make(chan struct{}, 1))
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		n := client.Stats().Total(EndpointHealthService, OutcomeError)
		return n >= 20, fmt.Sprintf("%d errors counted", n)
	})
	w.Close()
	if n := strings.Count(logs.String(), "consul query"); n != 1 {
		t.Errorf("%d log lines for %d failures, want 1:\n%s", n, client.Stats().Errors, logs.String())
	}
}

// TestDialerDetectsDeadConnections checks that the client's connections carry
// TCP keepalive and TCP_USER_TIMEOUT, which bound how long a partition can
// leave a request hanging on a dead connection (the kernel default is ~15
// minutes of retransmissions; reproducing a partition needs a network
// namespace, which the e2e suite has).
func TestDialerDetectsDeadConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			<-t.Context().Done()
		}
	}()
	opts := ClientOptions{DeadConnTimeout: 9 * time.Second}.withDefaults()
	conn, err := dialer(opts).DialContext(t.Context(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var userTimeout, keepalive, idle int
	raw.Control(func(fd uintptr) {
		userTimeout, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, 0x12)
		keepalive, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		idle, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
	})
	if userTimeout != 9000 {
		t.Errorf("TCP_USER_TIMEOUT = %d ms, want 9000", userTimeout)
	}
	if keepalive != 1 || idle != 3 {
		t.Errorf("SO_KEEPALIVE = %d, TCP_KEEPIDLE = %d s; want 1 and 3", keepalive, idle)
	}
}
