package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// catalog writes instances into Consul through the catalog API: many
// distinct nodes with 127.x.y.z addresses, each with a passing check so
// health queries return them. The addresses are only data.
type catalog struct {
	addr   string
	client *http.Client
}

func newCatalog(addr string) *catalog {
	return &catalog{addr: addr, client: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
}

// instance i of service svc lives on its own node.
type instance struct {
	Service string
	N       int
}

func (in instance) node() string { return fmt.Sprintf("%s-node-%d", in.Service, in.N) }
func (in instance) id() string   { return fmt.Sprintf("%s-%d", in.Service, in.N) }
func (in instance) address() string {
	return fmt.Sprintf("127.%d.%d.%d", 1+(in.N>>16)&0xff, (in.N>>8)&0xff, in.N&0xff)
}
func (in instance) port() int { return 10000 + in.N%50000 }

func (c *catalog) put(ctx context.Context, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+c.addr+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("PUT %s: %w", path, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("PUT %s: %s: %s", path, resp.Status, rb)
	}
	return nil
}

// register adds one instance (node, service and passing check).
func (c *catalog) register(ctx context.Context, in instance) error {
	return c.put(ctx, "/v1/catalog/register", map[string]any{
		"Node":    in.node(),
		"Address": in.address(),
		"Service": map[string]any{"ID": in.id(), "Service": in.Service, "Address": in.address(), "Port": in.port(), "Tags": []string{"bench"}},
		"Check": map[string]any{"Node": in.node(), "CheckID": "service:" + in.id(), "Name": "bench",
			"Status": "passing", "ServiceID": in.id()},
	})
}

// deregister removes the instance's node, and with it the service and check.
func (c *catalog) deregister(ctx context.Context, in instance) error {
	return c.put(ctx, "/v1/catalog/deregister", map[string]any{"Node": in.node()})
}

// registerMany registers instances from..to-1 of svc with a few writers in parallel.
func (c *catalog) registerMany(ctx context.Context, svc string, from, to int) error {
	const workers = 8
	ch := make(chan int)
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range ch {
				if err := c.register(ctx, instance{svc, n}); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	var err error
feed:
	for n := from; n < to; n++ {
		select {
		case ch <- n:
		case err = <-errc:
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	return err
}
