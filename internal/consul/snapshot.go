package consul

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/hashicorp/consul/api"

	"github.com/autopilot/autopilot/internal/fixture"
)

// Snapshot captures what templates can read from Consul into a fixture:
// every service with all its instances and checks (whatever their health),
// the whole KV store, every node, and the local agent's node name and
// datacenter. Loaded back with fixture.Parse, its Source answers as this
// agent did at capture time (indexes aside). KV values are stored as JSON
// strings, so binary values do not survive.
//
// The reads are separate requests, not one consistent view: a change
// during the capture can show in one part and not another.
func Snapshot(ctx context.Context, client *api.Client) (*fixture.Snapshot, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)

	var self struct {
		Config struct{ Datacenter, NodeName string }
	}
	if _, err := client.Raw().Query("/v1/agent/self", &self, q); err != nil {
		return nil, fmt.Errorf("snapshot: agent self: %w", err)
	}
	s := &fixture.Snapshot{
		Datacenter: self.Config.Datacenter,
		Node:       self.Config.NodeName,
		Services:   map[string][]fixture.Instance{},
		KV:         map[string]string{},
	}

	nodes, _, err := client.Catalog().Nodes(q)
	if err != nil {
		return nil, fmt.Errorf("snapshot: catalog nodes: %w", err)
	}
	listed := map[string]bool{}
	for _, n := range nodes {
		listed[n.Node] = true
		s.Nodes = append(s.Nodes, fixture.Node{ID: n.ID, Node: n.Node, Address: n.Address,
			TaggedAddresses: n.TaggedAddresses, Meta: n.Meta})
	}

	names, _, err := client.Catalog().Services(q)
	if err != nil {
		return nil, fmt.Errorf("snapshot: catalog services: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		entries, _, err := client.Health().Service(name, "", false, q)
		if err != nil {
			return nil, fmt.Errorf("snapshot: health of service %q: %w", name, err)
		}
		for _, e := range entries {
			if e.Node == nil || e.Service == nil {
				continue
			}
			in := instance(e)
			if !listed[e.Node.Node] {
				// Registered after the node list was read: carry the node here.
				in.NodeMeta = e.Node.Meta
			}
			s.Services[name] = append(s.Services[name], in)
		}
	}

	pairs, _, err := client.KV().List("", q)
	if err != nil {
		return nil, fmt.Errorf("snapshot: kv: %w", err)
	}
	for _, p := range pairs {
		s.KV[p.Key] = string(p.Value)
	}
	return s, nil
}

// instance converts one health entry; the node's meta lives in Nodes.
func instance(e *api.ServiceEntry) fixture.Instance {
	in := fixture.Instance{
		ID:          e.Service.ID,
		Node:        e.Node.Node,
		NodeAddress: e.Node.Address,
		Address:     e.Service.Address,
		Port:        e.Service.Port,
		Tags:        e.Service.Tags,
		Meta:        e.Service.Meta,
		Status:      e.Checks.AggregatedStatus(),
	}
	for k, a := range e.Service.TaggedAddresses {
		if in.TaggedAddresses == nil {
			in.TaggedAddresses = map[string]fixture.TaggedAddress{}
		}
		in.TaggedAddresses[k] = fixture.TaggedAddress{Address: a.Address, Port: a.Port}
	}
	if w := e.Service.Weights; w != (api.AgentWeights{Passing: 1, Warning: 1}) {
		in.Weights = &fixture.Weights{Passing: w.Passing, Warning: w.Warning}
	}
	for _, c := range e.Checks {
		in.Checks = append(in.Checks, fixture.Check{
			CheckID:   c.CheckID,
			Name:      c.Name,
			Status:    c.Status,
			Notes:     c.Notes,
			Output:    c.Output,
			NodeCheck: c.ServiceID == "",
		})
	}
	return in
}
