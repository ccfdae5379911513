package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/autopilot/autopilot/internal/telemetry"
)

// Client sends commands to a running autopilot's control socket.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	var d net.Dialer
	return &Client{socket: path, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}}}
}

// Reload asks autopilot to reload its config; the error says why a new
// config was refused.
func (c *Client) Reload(ctx context.Context) error { return c.post(ctx, "/v3/reload", nil) }

// SetMaintenance enables or disables maintenance mode.
func (c *Client) SetMaintenance(ctx context.Context, on bool) error {
	if on {
		return c.post(ctx, "/v3/maintenance/enable", nil)
	}
	return c.post(ctx, "/v3/maintenance/disable", nil)
}

// PutEnv sets variables for the jobs autopilot starts from now on.
func (c *Client) PutEnv(ctx context.Context, env map[string]string) error {
	return c.post(ctx, "/v3/environ", env)
}

// PutMetric records metric values (full metric name to number, as text).
func (c *Client) PutMetric(ctx context.Context, values map[string]string) error {
	return c.post(ctx, "/v3/metric", values)
}

// Ping checks that autopilot answers on the socket.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodGet, "/v3/ping", nil)
	return err
}

// Status fetches the status document.
func (c *Client) Status(ctx context.Context) (telemetry.Snapshot, error) {
	var s telemetry.Snapshot
	body, err := c.do(ctx, http.MethodGet, "/v3/status", nil)
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return s, fmt.Errorf("control socket %s: status: %w", c.socket, err)
	}
	return s, nil
}

func (c *Client) post(ctx context.Context, path string, body any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = strings.NewReader(string(b))
	}
	_, err := c.do(ctx, http.MethodPost, path, r)
	return err
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://control"+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.dialError(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", c.socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(out))
		if msg == "" {
			msg = resp.Status
		}
		return nil, errors.New(msg)
	}
	return out, nil
}

// dialError explains the usual reasons a command cannot reach autopilot.
func (c *Client) dialError(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("control socket %s does not exist: is autopilot running, with this control.socket? (%w)", c.socket, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("control socket %s: nobody is listening (autopilot stopped?): %w", c.socket, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("control socket %s: permission denied: the socket is 0600, run as the user autopilot runs as: %w", c.socket, err)
	}
	return fmt.Errorf("control socket %s: %w", c.socket, err)
}
