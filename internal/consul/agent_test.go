package consul

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/autopilot/autopilot/internal/testenv"
)

// agentCheck is a check as /v1/agent/checks shows it. (The agent shows
// neither a check's TTL nor its DeregisterCriticalServiceAfter: those are
// asserted on the registration request and, for the TTL, by letting it
// expire.)
type agentCheck struct {
	CheckID, Name, Status, Notes, Output, ServiceID, ServiceName, Type string
}

// agentChecks reads /v1/agent/checks.
func agentChecks(t *testing.T, addr string) map[string]agentCheck {
	t.Helper()
	status, body, err := testenv.HTTPGet(t, "http://"+addr+"/v1/agent/checks")
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET /v1/agent/checks: %d %v %s", status, err, body)
	}
	var checks map[string]agentCheck
	if err := json.Unmarshal([]byte(body), &checks); err != nil {
		t.Fatalf("decode /v1/agent/checks: %v\n%s", err, body)
	}
	return checks
}

// recorder is a loopback reverse proxy in front of an agent that records the
// requests it forwards, to see how many calls a method makes and what they
// carry.
type recorder struct {
	mu   sync.Mutex
	reqs []string // "METHOD PATH BODY"
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.reqs
	r.reqs = nil
	return out
}

func newRecorder(t *testing.T, agentAddr string) (*recorder, *Client) {
	t.Helper()
	target, _ := url.Parse("http://" + agentAddr)
	proxy := httputil.NewSingleHostReverseProxy(target)
	rec := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(strings.NewReader(string(body)))
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, req.Method+" "+req.URL.Path+" "+string(body))
		rec.mu.Unlock()
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	client, err := NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return rec, client
}

// TestAgentRegister checks that Register sends the service and its TTL check
// in one call, and that both are there, as asked for, as soon as it returns;
// a short TTL then expires on time.
func TestAgentRegister(t *testing.T) {
	c := testenv.StartConsul(t)
	rec, client := newRecorder(t, c.HTTPAddr)
	a := NewAgent(client)
	tests := []struct {
		name      string
		svc       Service
		wantDCSA  string
		wantCalls int // Output is set by a TTL update after the registration
	}{
		{"passing with tags and deregister", Service{
			ID: "web-1", Name: "web", Address: "127.0.0.1", Port: 8080, Tags: []string{"v1", "blue"},
			TTL: 1500 * time.Millisecond, DeregisterCriticalAfter: 90 * time.Second,
			Status: api.HealthPassing,
		}, "1m30s", 1},
		{"critical without deregister", Service{
			ID: "web-2", Name: "web", Address: "127.0.0.2", Port: 8081,
			TTL: 30 * time.Second, Status: api.HealthCritical,
		}, "", 1},
		{"with output", Service{
			ID: "db-1", Name: "db", Address: "127.0.0.1", Port: 5432, Tags: []string{"primary"},
			TTL: 10 * time.Second, Status: api.HealthPassing, Output: "all good",
		}, "", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.svc
			rec.take()
			start := time.Now()
			if err := a.Register(t.Context(), s); err != nil {
				t.Fatal(err)
			}
			calls := rec.take()
			if len(calls) != tt.wantCalls || !strings.HasPrefix(calls[0], "PUT /v1/agent/service/register ") {
				t.Fatalf("calls %q, want the registration first and %d calls", calls, tt.wantCalls)
			}
			var sent struct {
				Check struct{ CheckID, TTL, Status, DeregisterCriticalServiceAfter string }
			}
			if err := json.Unmarshal([]byte(strings.SplitN(calls[0], " ", 3)[2]), &sent); err != nil {
				t.Fatalf("registration body: %v: %s", err, calls[0])
			}
			if ch := sent.Check; ch.CheckID != CheckID(s.ID) || ch.Status != s.Status ||
				ch.TTL != s.TTL.String() || ch.DeregisterCriticalServiceAfter != tt.wantDCSA {
				t.Errorf("check sent with the registration %+v, want ID %s, status %s, TTL %s, DeregisterCriticalServiceAfter %q",
					ch, CheckID(s.ID), s.Status, s.TTL, tt.wantDCSA)
			}

			svcs, err := c.Client(t).Agent().Services()
			if err != nil {
				t.Fatal(err)
			}
			got := svcs[s.ID]
			if got == nil {
				t.Fatalf("service %s not registered: %v", s.ID, svcs)
			}
			if got.Service != s.Name || got.Address != s.Address || got.Port != s.Port ||
				!slices.Equal(got.Tags, s.Tags) && len(got.Tags)+len(s.Tags) > 0 {
				t.Errorf("service %+v, want %+v", got, s)
			}
			ch, ok := agentChecks(t, c.HTTPAddr)[CheckID(s.ID)]
			if !ok {
				t.Fatalf("check %s not registered with the service", CheckID(s.ID))
			}
			if ch.ServiceID != s.ID || ch.Type != "ttl" || ch.Status != s.Status || ch.Output != s.Output {
				t.Errorf("check %+v: want a %s ttl check of %s with output %q", ch, s.Status, s.ID, s.Output)
			}

			if s.TTL > 5*time.Second || s.Status != api.HealthPassing {
				return
			}
			testenv.Eventually(t, s.TTL+10*time.Second, func() (bool, string) {
				ch := agentChecks(t, c.HTTPAddr)[CheckID(s.ID)]
				return ch.Status == api.HealthCritical, fmt.Sprintf("%s %q", ch.Status, ch.Output)
			})
			if d := time.Since(start); d < s.TTL {
				t.Errorf("the check expired after %s, before its TTL %s", d, s.TTL)
			}
			if ch := agentChecks(t, c.HTTPAddr)[CheckID(s.ID)]; !strings.Contains(ch.Output, "TTL expired") {
				t.Errorf("expired check output %q", ch.Output)
			}
		})
	}
}

// TestAgentUpdateTTL checks that passing and failing heartbeats and their
// output show in /v1/agent/checks.
func TestAgentUpdateTTL(t *testing.T) {
	c := testenv.StartConsul(t)
	client, err := NewClient(c.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAgent(client)
	if err := a.Register(t.Context(), Service{ID: "ttl-1", Name: "ttl", Address: "127.0.0.1", Port: 1, TTL: time.Minute, Status: api.HealthCritical}); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 10<<10) + "END"
	tests := []struct {
		name, status, output, wantOutput string
	}{
		{"pass", api.HealthPassing, "HTTP 200 ok", "HTTP 200 ok"},
		{"fail", api.HealthCritical, "health check timed out after 1s", "health check timed out after 1s"},
		{"warn", api.HealthWarning, "slow", "slow"},
		{"pass again", api.HealthPassing, "", ""},
		{"long output keeps the end", api.HealthCritical, long, long[len(long)-4<<10:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := a.UpdateTTL(t.Context(), "ttl-1", tt.status, tt.output); err != nil {
				t.Fatal(err)
			}
			ch := agentChecks(t, c.HTTPAddr)[CheckID("ttl-1")]
			if ch.Status != tt.status || ch.Output != tt.wantOutput {
				t.Errorf("check %s %q, want %s %q", ch.Status, trim(ch.Output), tt.status, trim(tt.wantOutput))
			}
		})
	}
}

func trim(s string) string {
	if len(s) > 40 {
		return s[:20] + "..." + s[len(s)-20:]
	}
	return s
}

// TestAgentMaintenanceAndDeregister checks maintenance on and off (Consul's
// _service_maintenance:ID check) and deregistration of the service and its
// check.
func TestAgentMaintenanceAndDeregister(t *testing.T) {
	c := testenv.StartConsul(t)
	client, err := NewClient(c.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAgent(client)
	if err := a.Register(t.Context(), Service{ID: "m-1", Name: "m", Address: "127.0.0.1", Port: 1, TTL: time.Minute, Status: api.HealthPassing}); err != nil {
		t.Fatal(err)
	}
	const maintID = "_service_maintenance:m-1"
	if err := a.EnableMaintenance(t.Context(), "m-1", "draining for a deploy"); err != nil {
		t.Fatal(err)
	}
	checks := agentChecks(t, c.HTTPAddr)
	if ch, ok := checks[maintID]; !ok || ch.Status != api.HealthCritical || ch.Notes != "draining for a deploy" || ch.ServiceID != "m-1" {
		t.Errorf("maintenance check %+v (present %v): want critical with the reason", ch, ok)
	}
	if checks[CheckID("m-1")].Status != api.HealthPassing {
		t.Errorf("the TTL check changed with maintenance: %+v", checks[CheckID("m-1")])
	}
	if err := a.DisableMaintenance(t.Context(), "m-1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := agentChecks(t, c.HTTPAddr)[maintID]; ok {
		t.Error("maintenance check still there after DisableMaintenance")
	}

	if err := a.Deregister(t.Context(), "m-1"); err != nil {
		t.Fatal(err)
	}
	svcs, err := c.Client(t).Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := svcs["m-1"]; ok {
		t.Error("service still registered after Deregister")
	}
	if ch, ok := agentChecks(t, c.HTTPAddr)[CheckID("m-1")]; ok {
		t.Errorf("check still registered after Deregister: %+v", ch)
	}
}

// TestAgentErrNotRegistered checks that every call naming a service or check
// the agent lost (a fresh agent after a restart) fails with ErrNotRegistered,
// and that registering again makes heartbeats work.
func TestAgentErrNotRegistered(t *testing.T) {
	c := testenv.StartConsul(t)
	client, err := NewClient(c.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAgent(client)
	svc := Service{ID: "lost-1", Name: "lost", Address: "127.0.0.1", Port: 1, TTL: time.Minute, Status: api.HealthPassing}
	if err := a.Register(t.Context(), svc); err != nil {
		t.Fatal(err)
	}
	if err := a.UpdateTTL(t.Context(), svc.ID, api.HealthPassing, "ok"); err != nil {
		t.Fatal(err)
	}
	c.Restart()
	calls := []struct {
		name string
		call func() error
	}{
		{"UpdateTTL passing", func() error { return a.UpdateTTL(t.Context(), svc.ID, api.HealthPassing, "ok") }},
		{"UpdateTTL critical", func() error { return a.UpdateTTL(t.Context(), svc.ID, api.HealthCritical, "down") }},
		{"EnableMaintenance", func() error { return a.EnableMaintenance(t.Context(), svc.ID, "r") }},
		{"DisableMaintenance", func() error { return a.DisableMaintenance(t.Context(), svc.ID) }},
		{"Deregister", func() error { return a.Deregister(t.Context(), svc.ID) }},
	}
	for _, tt := range calls {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, ErrNotRegistered) {
				t.Fatalf("error %v, want ErrNotRegistered", err)
			}
			if !strings.Contains(err.Error(), svc.ID) {
				t.Errorf("error %q does not name the service", err)
			}
		})
	}
	// What the supervisor does on ErrNotRegistered: register again.
	if err := a.Register(t.Context(), svc); err != nil {
		t.Fatal(err)
	}
	if err := a.UpdateTTL(t.Context(), svc.ID, api.HealthCritical, "after re-registration"); err != nil {
		t.Fatalf("heartbeat after re-registering: %v", err)
	}
	if ch := agentChecks(t, c.HTTPAddr)[CheckID(svc.ID)]; ch.Status != api.HealthCritical || ch.Output != "after re-registration" {
		t.Errorf("check %+v after re-registering", ch)
	}
}

// TestAgentErrorsHideToken runs every Agent call with an ACL token against an
// agent that refuses it and against an address where nothing listens: the
// errors must say what failed without ever carrying the token. (Agent logs
// nothing itself; its errors are what reaches the supervisor's log.)
func TestAgentErrorsHideToken(t *testing.T) {
	const secret = "0b6d2e8c-5c1e-4b7a-9d7e-s3cr3t70k3n"
	c := testenv.StartConsul(t, testenv.WithHCL(`acl { enabled = true default_policy = "allow" }`))
	t.Setenv("CONSUL_HTTP_TOKEN", secret)
	t.Setenv("CONSUL_HTTP_TOKEN_FILE", "")
	refused, err := NewClient(c.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	down, err := NewClient(fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		client *Client
		want   string // in every error
	}{
		{"token refused", refused, "ACL not found"},
		{"agent down", down, "connection refused"},
	} {
		a := NewAgent(tc.client)
		svc := Service{ID: "acl-1", Name: "acl", Address: "127.0.0.1", Port: 1, TTL: time.Minute, Status: api.HealthPassing, Output: "ok"}
		calls := map[string]func() error{
			"Register":           func() error { return a.Register(t.Context(), svc) },
			"UpdateTTL":          func() error { return a.UpdateTTL(t.Context(), svc.ID, api.HealthPassing, "ok") },
			"EnableMaintenance":  func() error { return a.EnableMaintenance(t.Context(), svc.ID, "r") },
			"DisableMaintenance": func() error { return a.DisableMaintenance(t.Context(), svc.ID) },
			"Deregister":         func() error { return a.Deregister(t.Context(), svc.ID) },
		}
		for _, name := range slices.Sorted(maps.Keys(calls)) {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				err := calls[name]()
				if err == nil {
					t.Fatal("no error")
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %q, want it to say %q", err, tc.want)
				}
				if errors.Is(err, ErrNotRegistered) {
					t.Errorf("error %q taken for a lost registration", err)
				}
				if strings.Contains(fmt.Sprintf("%v %+v %#v", err, err, err), secret) {
					t.Errorf("token in the error: %v", err)
				}
			})
		}
	}
}
