package consul

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/autopilot/autopilot/internal/dep"
)

// answer is one blocking query's response: the raw body (nil when Consul
// said "not found" for a kind where that means "nothing there"), the
// X-Consul-Index, and when its last byte arrived.
type answer struct {
	body  []byte
	index uint64
	// lastContact is X-Consul-LastContact: how long ago the answering
	// server last heard from the leader (0 from the leader itself).
	lastContact time.Duration
}

// queryOptions are the generic parameters of a read.
type queryOptions struct {
	index  uint64
	wait   time.Duration
	stale  bool
	cached bool
}

// get runs q's read (its path and parameters come from dep's kind table)
// and returns the raw answer, reading the body into buf (reused between
// calls of one watch, so a large answer does not allocate every time).
// It sends what consul/api would: token, basic auth, namespace, partition,
// extra headers.
func (c *Client) get(ctx context.Context, q dep.Query, o queryOptions, buf *bytes.Buffer) (answer, error) {
	p := q.Params()
	if c.cfg.Namespace != "" {
		p.Set("ns", c.cfg.Namespace)
	}
	if c.cfg.Partition != "" {
		p.Set("partition", c.cfg.Partition)
	}
	if q.DC == "" && c.cfg.Datacenter != "" {
		p.Set("dc", c.cfg.Datacenter)
	}
	if o.stale {
		p.Set("stale", "")
	}
	if o.cached {
		p.Set("cached", "")
	}
	if o.index > 0 {
		p.Set("index", strconv.FormatUint(o.index, 10))
		p.Set("wait", strconv.FormatInt(o.wait.Milliseconds(), 10)+"ms")
	}
	host := c.cfg.Address
	if strings.HasPrefix(host, "/") { // a Unix socket: the transport dials it
		host = "localhost"
	}
	u := url.URL{Scheme: c.cfg.Scheme, Host: host, Path: c.cfg.PathPrefix + q.Path(), RawQuery: p.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return answer{}, err
	}
	req.Header = c.api.Headers()
	if c.cfg.Token != "" {
		req.Header.Set("X-Consul-Token", c.cfg.Token)
	}
	if c.cfg.HttpAuth != nil {
		req.SetBasicAuth(c.cfg.HttpAuth.Username, c.cfg.HttpAuth.Password)
	}
	resp, err := c.cfg.HttpClient.Do(req)
	if err != nil {
		return answer{}, c.explain(err)
	}
	defer resp.Body.Close()
	buf.Reset()
	if resp.ContentLength > 0 {
		buf.Grow(int(resp.ContentLength))
	}
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return answer{}, fmt.Errorf("read answer: %w", err)
	}
	var a answer
	if s := resp.Header.Get("X-Consul-Index"); s != "" {
		if a.index, err = strconv.ParseUint(s, 10, 64); err != nil {
			return answer{}, fmt.Errorf("bad X-Consul-Index %q: %w", s, err)
		}
	} else {
		return answer{}, fmt.Errorf("no X-Consul-Index in the answer (status %s)", resp.Status)
	}
	if s := resp.Header.Get("X-Consul-LastContact"); s != "" {
		if ms, err := strconv.ParseUint(s, 10, 32); err == nil {
			a.lastContact = time.Duration(ms) * time.Millisecond
		}
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		a.body = buf.Bytes()
	case resp.StatusCode == http.StatusNotFound && q.NotFoundIsEmpty():
		a.body = nil
	default:
		msg := strings.TrimSpace(buf.String())
		if len(msg) > 512 {
			msg = msg[:512] + "..."
		}
		return answer{}, fmt.Errorf("unexpected response code: %d (%s)", resp.StatusCode, msg)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return a, nil
}
