package consul

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/dep"
	"github.com/autopilot/autopilot/internal/testenv"
)

// TestNewClientHonoursEnv checks the address forms and that the token from
// CONSUL_HTTP_TOKEN_FILE reaches Consul in the header, never in the URL or
// the logs. A fake server stands in for Consul: this is about what the
// client sends, which a real agent does not echo back.
func TestNewClientHonoursEnv(t *testing.T) {
	var mu sync.Mutex
	var gotToken, gotURL string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotToken, gotURL = r.Header.Get("X-Consul-Token"), r.URL.String()
		mu.Unlock()
		w.Header().Set("X-Consul-Index", "7")
		w.Write([]byte(`[]`))
	}))
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cr3t-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONSUL_HTTP_ADDR", "127.0.0.1:1")
	t.Setenv("CONSUL_HTTP_TOKEN", "")
	t.Setenv("CONSUL_HTTP_TOKEN_FILE", tokenFile)

	client, err := NewClient(srv.URL) // http://127.0.0.1:PORT overrides CONSUL_HTTP_ADDR
	if err != nil {
		t.Fatal(err)
	}
	var logs testenv.Buffer
	w := NewWatcher(context.Background(), client, WatchOptions{}, zerolog.New(&logs).Level(zerolog.DebugLevel))
	defer w.Close()
	q, _ := dep.ParseService("web")
	w.Subscribe(q, make(chan struct{}, 1))
	testenv.Eventually(t, 5*time.Second, func() (bool, string) {
		_, ok := w.Get(q)
		return ok, "no answer from the fake agent"
	})
	w.Close() // no more log writes after this
	mu.Lock()
	defer mu.Unlock()
	if gotToken != "s3cr3t-token" {
		t.Fatalf("X-Consul-Token = %q, want the token from CONSUL_HTTP_TOKEN_FILE", gotToken)
	}
	if strings.Contains(gotURL, "s3cr3t") || strings.Contains(logs.String(), "s3cr3t") {
		t.Fatalf("token leaked into the URL %q or the logs %q", gotURL, logs.String())
	}
	if !strings.Contains(gotURL, "passing=1") {
		t.Fatalf("URL %q: want Consul to filter passing instances", gotURL)
	}
}

// TestClientExplainsRefusedClientCert: an agent that requires client
// certificates refuses a client without one after the TLS 1.3 handshake,
// and the client reads one of several vague errors by timing. Every one of
// them, on agent calls and on watches, names the likely cause; an error
// with another cause (a wrong CA) does not get the hint.
func TestClientExplainsRefusedClientCert(t *testing.T) {
	files, other := testenv.NewTLSFiles(t), testenv.NewTLSFiles(t)
	agent := testenv.StartConsul(t, testenv.WithTLS(files))
	const hint = "no client certificate is configured"
	client := func(ca, cert, key string) *Client {
		c, err := NewClientWithOptions("https://"+agent.HTTPSAddr, ClientOptions{Configure: func(cfg *api.Config) {
			cfg.TLSConfig = api.TLSConfig{CAFile: ca, CertFile: cert, KeyFile: key, Address: testenv.TLSServerName}
		}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	nodeName := func(c *Client) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := NewAgent(c).NodeName(ctx)
		return err
	}

	if err := nodeName(client(files.CAFile, files.ClientCert, files.ClientKey)); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	for i := range 20 { // a new client (connection) each time: the error varies by timing
		err := nodeName(client(files.CAFile, "", ""))
		if err == nil || !strings.Contains(err.Error(), hint) {
			t.Fatalf("call %d without a client certificate: %v; want the hint", i, err)
		}
	}
	w := NewWatcher(context.Background(), client(files.CAFile, "", ""), WatchOptions{BackoffMin: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond}, zerolog.Nop())
	t.Cleanup(w.Close)
	q, _ := dep.ParseKey("a")
	w.Subscribe(q, make(chan struct{}, 1))
	testenv.Eventually(t, 10*time.Second, func() (bool, string) {
		err := w.LastError(q)
		return err != nil && strings.Contains(err.Error(), hint), fmt.Sprint(err)
	})
	if err := nodeName(client(other.CAFile, "", "")); err == nil || !strings.Contains(err.Error(), "unknown authority") || strings.Contains(err.Error(), hint) {
		t.Errorf("wrong CA: %v; want the x509 error without the hint", err)
	}
}

// TestClientOptionsTransport: Configure runs after this package's transport
// settings, so the consul-template personality's pool options win, and
// KeepAlive (dial_keep_alive) sets the keepalive probe timing.
func TestClientOptionsTransport(t *testing.T) {
	client, err := NewClientWithOptions("127.0.0.1:8500", ClientOptions{Configure: func(c *api.Config) {
		c.Transport.MaxIdleConnsPerHost = 3
		c.Transport.DisableKeepAlives = true
	}})
	if err != nil {
		t.Fatal(err)
	}
	tr, ok := client.cfg.HttpClient.Transport.(*http.Transport)
	if !ok || tr.MaxIdleConnsPerHost != 3 || !tr.DisableKeepAlives || tr.DialContext == nil {
		t.Fatalf("transport %T %+v: want Configure's pool settings over the defaults, and the dialer kept", client.cfg.HttpClient.Transport, tr)
	}
	tests := []struct {
		name           string
		o              ClientOptions
		idle, interval time.Duration
	}{
		{"derived from DeadConnTimeout", ClientOptions{DeadConnTimeout: 9 * time.Second}, 3 * time.Second, 1500 * time.Millisecond},
		{"dial_keep_alive", ClientOptions{DeadConnTimeout: 9 * time.Second, KeepAlive: 30 * time.Second}, 30 * time.Second, 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dialer(tt.o.withDefaults())
			if k := d.KeepAliveConfig; !k.Enable || k.Idle != tt.idle || k.Interval != tt.interval {
				t.Errorf("keepalive %+v, want idle %v interval %v", k, tt.idle, tt.interval)
			}
		})
	}
}
