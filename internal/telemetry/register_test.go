package telemetry

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/consul"
	"github.com/autopilot/autopilot/internal/testenv"
)

// TestRegistrationFollowsAgent: the telemetry service is registered passing
// with its tags, registered again by a fresh agent on the same port, and
// deregistered at the end.
func TestRegistrationFollowsAgent(t *testing.T) {
	agent := testenv.StartConsul(t)
	api := agent.Client(t)
	client, err := consul.NewClient(agent.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	r := &Registration{Agent: consul.NewAgent(client), Log: zerolog.Nop(), Service: consul.Service{
		ID: "containerpilot-host1", Name: "containerpilot", Address: "127.0.0.1", Port: 9090, Tags: []string{"prod", "v1"}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	passing := func() (bool, string) {
		entries, _, err := api.Health().Service("containerpilot", "", true, nil)
		if err != nil {
			return false, err.Error()
		}
		if len(entries) != 1 {
			return false, "no passing instance"
		}
		s := entries[0].Service
		return s.ID == "containerpilot-host1" && s.Port == 9090 && len(s.Tags) == 2 && s.Tags[0] == "prod", s.ID
	}
	testenv.Eventually(t, 15*time.Second, passing)

	agent.Restart() // a fresh agent that knows nothing
	api = agent.Client(t)
	testenv.Eventually(t, 30*time.Second, passing)

	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	svcs, err := api.Agent().Services()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := svcs["containerpilot-host1"]; ok {
		t.Error("still registered after Run returned")
	}
}

// TestRegistrationWithoutConsul: with no agent, Run keeps retrying in the
// background and stops at once when asked.
func TestRegistrationWithoutConsul(t *testing.T) {
	client, err := consul.NewClient(fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	r := &Registration{Agent: consul.NewAgent(client), Log: zerolog.Nop(), Service: consul.Service{ID: "x", Name: "x", Port: 1}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		return client.Stats().Total(consul.EndpointAgentRegister, "") >= 2, "register attempts"
	})
	start := time.Now()
	cancel()
	<-done
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Run took %v to stop", d)
	}
}
