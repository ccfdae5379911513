package consul

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/autopilot/autopilot/internal/dep"
	"github.com/autopilot/autopilot/internal/testenv"
)

// TestWatcherSurvivesLeaderFailover runs a 3-server cluster on loopback,
// watches through a follower, kills the leader and checks that the watch
// keeps its data through the election and then sees changes made under
// the new leader.
func TestWatcherSurvivesLeaderFailover(t *testing.T) {
	nodes := testenv.StartCluster(t, 3)
	leaderAddr, err := nodes[0].Client(t).Status().Leader()
	if err != nil {
		t.Fatal(err)
	}
	var leader, follower *testenv.Consul
	for _, n := range nodes {
		if n.ServerAddr == leaderAddr {
			leader = n
		} else if follower == nil {
			follower = n
		}
	}
	if leader == nil || follower == nil {
		t.Fatalf("leader %q not among the nodes", leaderAddr)
	}
	c := follower.Client(t)
	reg := func(id string) {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, func() (bool, string) {
			_, err := c.Catalog().Register(&api.CatalogRegistration{Node: "app-node", Address: "127.0.0.5",
				Service: &api.AgentService{ID: id, Service: "web", Port: 80}}, nil)
			return err == nil, fmt.Sprint(err)
		})
	}
	reg("web-1")
	w := newTestWatcher(t, follower.HTTPAddr, WatchOptions{BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond})
	q, _ := dep.ParseService("web")
	w.Subscribe(q, make(chan struct{}, 1))
	testenv.Eventually(t, 10*time.Second, func() (bool, string) { n, s := instancesOf(w, q); return n == 1, s })

	leader.Kill()
	if n, s := instancesOf(w, q); n != 1 {
		t.Fatalf("right after the leader died: %s, want the last good answer", s)
	}
	reg("web-2") // retried until a new leader accepts the write
	testenv.Eventually(t, 30*time.Second, func() (bool, string) { n, s := instancesOf(w, q); return n == 2, s })
}
