package consul_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/consul"
	"github.com/autopilot/autopilot/internal/dep"
	"github.com/autopilot/autopilot/internal/fixture"
	"github.com/autopilot/autopilot/internal/testenv"
)

// TestSnapshotAnswersLikeConsul captures a real agent into a fixture, loads
// it back through JSON and checks that the fixture's Source answers every
// kind of query with the values the live Watcher gets from the agent.
func TestSnapshotAnswersLikeConsul(t *testing.T) {
	agent := testenv.StartConsul(t)
	c := agent.Client(t)

	reg := func(r *api.AgentServiceRegistration) {
		t.Helper()
		if err := c.Agent().ServiceRegister(r); err != nil {
			t.Fatal(err)
		}
	}
	ttl := func(status string) *api.AgentServiceCheck {
		return &api.AgentServiceCheck{TTL: "10m", Status: status, Notes: "ttl"}
	}
	reg(&api.AgentServiceRegistration{ID: "web-1", Name: "web", Port: 8001, Tags: []string{"v1", "Prod"},
		Meta: map[string]string{"version": "1"}, Check: ttl(api.HealthPassing)})
	reg(&api.AgentServiceRegistration{ID: "web-2", Name: "web", Port: 8002, Address: "10.1.0.2", Tags: []string{"v2"},
		Check: ttl(api.HealthCritical)})
	reg(&api.AgentServiceRegistration{ID: "web-3", Name: "web", Port: 8003, Weights: &api.AgentWeights{Passing: 5, Warning: 2},
		Checks: api.AgentServiceChecks{ttl(api.HealthPassing), ttl(api.HealthWarning)}})
	reg(&api.AgentServiceRegistration{ID: "web-4", Name: "web", Port: 8004, Check: ttl(api.HealthPassing)})
	reg(&api.AgentServiceRegistration{ID: "db", Name: "db", Port: 5432})
	if err := c.Agent().EnableServiceMaintenance("web-4", "upgrade"); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"config/": "", "config/a": "1", "config/b/c": "2", "configs/x": "3", "top": "t"} {
		if _, err := c.KV().Put(&api.KVPair{Key: k, Value: []byte(v)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		entries, _, err := c.Health().Service("web", "", false, nil)
		return err == nil && len(entries) == 4, fmt.Sprintf("%d web instances, %v", len(entries), err)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	snap, err := consul.Snapshot(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Datacenter != "dc1" || snap.Node != agent.NodeName {
		t.Fatalf("snapshot of datacenter %q node %q, want dc1 and %q", snap.Datacenter, snap.Node, agent.NodeName)
	}
	if len(snap.Services["web"]) != 4 || snap.KV["config/b/c"] != "2" || len(snap.Nodes) != 1 {
		t.Fatalf("snapshot is missing data: %+v", snap)
	}
	data, err := json.MarshalIndent(snap, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := fixture.Parse(data, "captured.json")
	if err != nil {
		t.Fatalf("captured snapshot does not load: %v\n%s", err, data)
	}
	fix := loaded.Source()

	queries := []string{
		"service web", "service web|any", "service web|passing", "service web|warning",
		"service web|critical", "service web|maintenance", "service web|passing,warning",
		"service v1.web|any", "service Prod.web", "service prod.web", "service WEB",
		"service db", "service missing", "service web@dc1", "service consul",
		"services", "key config/a", "key config/", "key missing", "tree config", "tree config/",
		"tree ", "node ", "node " + agent.NodeName, "node " + strings.ToUpper(agent.NodeName), "node nx", "nodes",
	}
	wc, err := consul.NewClient(agent.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	w := consul.NewWatcher(context.Background(), wc, consul.WatchOptions{}, zerolog.Nop())
	defer w.Close()
	parsed := make([]dep.Query, len(queries))
	for i, s := range queries {
		parsed[i] = parseQuery(t, s)
		w.Subscribe(parsed[i], make(chan struct{}, 1))
	}
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		for _, q := range parsed {
			if _, ok := w.Get(q); !ok {
				return false, q.String() + " has no data yet"
			}
		}
		return true, ""
	})
	live := make([]any, len(parsed))
	for i, q := range parsed {
		live[i], _ = w.Get(q)
	}
	w.Close() // the values are normalised in place below: no loop may read them any more

	for i, q := range parsed {
		t.Run(queries[i], func(t *testing.T) {
			got, ok := fix.Get(q)
			if !ok {
				t.Fatalf("fixture has no data: %v", fix.(dep.ErrorReporter).LastError(q))
			}
			want := live[i]
			normalize(got)
			normalize(want)
			if !reflect.DeepEqual(got, want) {
				g, _ := json.MarshalIndent(got, "", "  ")
				l, _ := json.MarshalIndent(want, "", "  ")
				t.Fatalf("fixture answers\n%s\nConsul answers\n%s", g, l)
			}
		})
	}
}

func TestSnapshotCancelled(t *testing.T) {
	agent := testenv.StartConsul(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := consul.Snapshot(ctx, agent.Client(t)); err == nil {
		t.Fatal("Snapshot with a cancelled context succeeded")
	}
}

func parseQuery(t *testing.T, s string) dep.Query {
	t.Helper()
	var (
		q   dep.Query
		err error
	)
	var fn, arg string
	fmt.Sscan(s, &fn, &arg)
	switch fn {
	case "service":
		q, err = dep.ParseService(arg)
	case "services":
		q, err = dep.ParseDC(dep.KindCatalogServices, arg)
	case "key":
		q, err = dep.ParseKey(arg)
	case "tree":
		q, err = dep.ParsePrefix(arg)
	case "node":
		q, err = dep.ParseNode(arg)
	case "nodes":
		q, err = dep.ParseDC(dep.KindCatalogNodes, arg)
	default:
		t.Fatalf("bad query %q", s)
	}
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// normalize clears what a fixture cannot reproduce (Raft indexes, check
// definitions) and treats empty and nil maps alike, in place.
func normalize(v any) {
	emptyNil := func(m *map[string]string) {
		if len(*m) == 0 {
			*m = nil
		}
	}
	switch x := v.(type) {
	case []*dep.HealthService:
		for _, s := range x {
			emptyNil(&s.NodeMeta)
			emptyNil(&s.ServiceMeta)
			emptyNil(&s.NodeTaggedAddresses)
			for i, c := range s.Checks {
				s.Checks[i] = &api.HealthCheck{Node: c.Node, CheckID: c.CheckID, Name: c.Name, Status: c.Status,
					Notes: c.Notes, Output: c.Output, ServiceID: c.ServiceID, ServiceName: c.ServiceName}
			}
		}
	case *dep.KeyPair:
		if x != nil { // nil: the key does not exist
			x.CreateIndex, x.ModifyIndex = 0, 0
		}
	case []*dep.KeyPair:
		for _, p := range x {
			p.CreateIndex, p.ModifyIndex = 0, 0
		}
	case *dep.CatalogNode:
		if x != nil && x.Node != nil {
			normalize([]*dep.Node{x.Node})
			for _, s := range x.Services {
				emptyNil(&s.Meta)
			}
		}
	case []*dep.Node:
		for _, n := range x {
			emptyNil(&n.Meta)
			emptyNil(&n.TaggedAddresses)
		}
	}
}
