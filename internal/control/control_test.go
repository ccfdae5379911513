package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/telemetry"
	"github.com/autopilot/autopilot/supervisor/config"
)

// fakeController records what it was asked; metrics go to real UserMetrics.
type fakeController struct {
	metrics *telemetry.UserMetrics

	mu        sync.Mutex
	reloads   int
	reloadErr error
	maint     []bool
	env       map[string]string
}

func (f *fakeController) Reload(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads++
	return f.reloadErr
}

func (f *fakeController) SetMaintenance(_ context.Context, on bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.maint = append(f.maint, on)
	return nil
}

func (f *fakeController) PutEnv(k, v string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.env == nil {
		f.env = map[string]string{}
	}
	f.env[k] = v
}

// seen returns copies of what the fake was asked so far.
func (f *fakeController) seen() (reloads int, maint []bool, env map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	env = map[string]string{}
	for k, v := range f.env {
		env[k] = v
	}
	return f.reloads, append([]bool(nil), f.maint...), env
}

func (f *fakeController) PutMetric(n string, v float64) error { return f.metrics.Put(n, v) }

func (f *fakeController) Status() telemetry.Snapshot {
	return telemetry.Snapshot{Version: "test", Jobs: []telemetry.JobStatus{{Name: "app", State: "running"}}}
}

// shortDir is a temp dir with a short path: Unix socket paths are limited
// to 108 bytes and t.TempDir's can be longer.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("/tmp", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// serveFake serves a fake controller on a fresh socket until the test ends.
func serveFake(t *testing.T) (*fakeController, string) {
	t.Helper()
	um, err := telemetry.NewUserMetrics([]config.Metric{
		{Namespace: "app", Name: "hits", Type: config.Counter},
		{Namespace: "app", Name: "temp", Type: config.Gauge},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeController{metrics: um}
	path := filepath.Join(shortDir(t), "cp.socket")
	s, err := Listen(path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, f) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket left behind after Serve returned: %v", err)
		}
	})
	return f, path
}

func TestCommands(t *testing.T) {
	f, path := serveFake(t)
	c := NewClient(path)
	ctx := context.Background()

	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	// Serving, only the socket is left: Listen's directory is gone.
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 || ents[0].Name() != filepath.Base(path) {
		t.Errorf("the socket's directory holds %v, want only the socket", ents)
	}
	if err := c.Reload(ctx); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if n, _, _ := f.seen(); n != 1 {
		t.Fatalf("reloads %d, want 1", n)
	}
	f.mu.Lock()
	f.reloadErr = errors.New("app.json:3:5: jobs[0].when: unknown event \"sometime\"")
	f.mu.Unlock()
	if err := c.Reload(ctx); err == nil || !strings.Contains(err.Error(), "reload: app.json:3:5") {
		t.Fatalf("reload of a bad config: %v", err)
	}
	if err := c.SetMaintenance(ctx, true); err != nil {
		t.Fatal(err)
	}
	if err := c.SetMaintenance(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, maint, _ := f.seen(); len(maint) != 2 || !maint[0] || maint[1] {
		t.Errorf("maintenance calls %v", maint)
	}
	if err := c.PutEnv(ctx, map[string]string{"A": "1", "B": "x=y"}); err != nil {
		t.Fatal(err)
	}
	if _, _, env := f.seen(); env["A"] != "1" || env["B"] != "x=y" {
		t.Errorf("env %v", env)
	}
	if err := c.PutMetric(ctx, map[string]string{"app_hits": "2", "app_temp": "-4.5"}); err != nil {
		t.Fatal(err)
	}
	s, err := c.Status(ctx)
	if err != nil || s.Schema != telemetry.SchemaVersion || len(s.Jobs) != 1 {
		t.Fatalf("status: %+v %v", s, err)
	}
}

func TestBadInput(t *testing.T) {
	f, path := serveFake(t)
	c := NewClient(path)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		do   func() error
		want string
	}{
		{"unknown metric", func() error { return c.PutMetric(ctx, map[string]string{"nope": "1"}) }, `unknown metric "nope" (declared: app_hits, app_temp)`},
		{"non-numeric", func() error { return c.PutMetric(ctx, map[string]string{"app_temp": "warm"}) }, `metric "app_temp": value "warm" is not a number`},
		{"NaN", func() error { return c.PutMetric(ctx, map[string]string{"app_temp": "NaN"}) }, "want a finite number"},
		{"negative counter", func() error { return c.PutMetric(ctx, map[string]string{"app_hits": "-1"}) }, "a counter only goes up"},
		// One bad value refuses the whole request: app_temp is not set.
		{"mixed", func() error { return c.PutMetric(ctx, map[string]string{"app_temp": "9", "app_hits": "x"}) }, `metric "app_hits": value "x" is not a number`},
		{"env name", func() error { return c.PutEnv(ctx, map[string]string{"A=B": "1"}) }, `variable name "A=B"`},
		{"env empty", func() error { return c.PutEnv(ctx, map[string]string{"": "1"}) }, "empty variable name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if _, _, env := f.seen(); len(env) != 0 {
		t.Errorf("env changed by refused requests: %v", env)
	}
	// The server still works after all that.
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestContainerPilotWire sends what ContainerPilot 3's own client sends.
func TestContainerPilotWire(t *testing.T) {
	f, path := serveFake(t)
	hc := &http.Client{Transport: &http.Transport{Dial: func(_, _ string) (net.Conn, error) { return net.Dial("unix", path) }}}
	post := func(p, body string) (int, string) {
		t.Helper()
		resp, err := hc.Post("http://control"+p, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b := make([]byte, 512)
		n, _ := resp.Body.Read(b)
		return resp.StatusCode, string(b[:n])
	}
	if code, body := post("/v3/metric", `{"app_hits":"3"}`); code != 200 || body != "\n" {
		t.Errorf("metric: %d %q", code, body)
	}
	if code, _ := post("/v3/metric", `{"app_temp":21.5}`); code != 200 {
		t.Errorf("numeric metric: %d", code)
	}
	if code, _ := post("/v3/environ", `{"K":"V"}`); code != 200 {
		t.Errorf("environ: %d", code)
	}
	if _, _, env := f.seen(); env["K"] != "V" {
		t.Errorf("environ: env %v", env)
	}
	if code, _ := post("/v3/environ", `not json`); code != http.StatusUnprocessableEntity {
		t.Errorf("bad JSON: %d, want 422", code)
	}
	if code, _ := post("/v3/reload", ""); code != 200 {
		t.Errorf("reload: %d", code)
	}
	resp, err := hc.Get("http://control/v3/reload")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /v3/reload: %d, want 405", resp.StatusCode)
	}
}

func TestListenSocketFile(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "cp.socket")
	s, err := Listen(path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	// Listen leaves its private directory, empty, for Serve or Close to
	// remove (off the path to the app's fork).
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("dir holds %d entries, want the socket and Listen's directory", len(ents))
	}

	// A second autopilot on the same socket is refused while the first
	// one still listens.
	_, err = Listen(path, zerolog.Nop())
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), path) {
		t.Fatalf("second Listen: %v", err)
	}
	s.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left the socket: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("Close left %d entries in the directory, want none", len(ents))
	}

	// A socket left behind by a dead process is replaced.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	s, err = Listen(path, zerolog.Nop())
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	s.Close()
}

func TestListenErrors(t *testing.T) {
	dir := shortDir(t)
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing dir", filepath.Join(dir, "nope", "cp.socket"), "directory " + filepath.Join(dir, "nope") + " does not exist"},
		{"not a socket", file, "exists and is not a socket"},
		{"parent is a file", filepath.Join(file, "cp.socket"), "is not a directory"},
		{"empty", "", "empty path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Listen(tc.path, zerolog.Nop())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if b, _ := os.ReadFile(file); string(b) != "x" {
		t.Error("a regular file at the socket path was touched")
	}
}

func TestClientErrors(t *testing.T) {
	dir := shortDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := NewClient(filepath.Join(dir, "none.socket")).Ping(ctx)
	if err == nil || !strings.Contains(err.Error(), "does not exist: is autopilot running") {
		t.Errorf("no socket: %v", err)
	}
	stale := filepath.Join(dir, "stale.socket")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if err := NewClient(stale).Ping(ctx); err == nil || !strings.Contains(err.Error(), "nobody is listening") {
		t.Errorf("stale socket: %v", err)
	}
}

// TestRequestCounts: requests are counted by endpoint path and status code,
// unknown paths under "other" so that the counters stay bounded.
func TestRequestCounts(t *testing.T) {
	um, _ := telemetry.NewUserMetrics([]config.Metric{{Namespace: "app", Name: "hits", Type: config.Counter}})
	path := filepath.Join(shortDir(t), "cp.socket")
	s, err := Listen(path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx, &fakeController{metrics: um}); close(done) }()
	defer func() { cancel(); <-done }()
	c := NewClient(path)
	c.Ping(context.Background())
	c.PutMetric(context.Background(), map[string]string{"app_hits": "1"})
	c.PutMetric(context.Background(), map[string]string{"nope": "1"})
	hc := &http.Client{Transport: &http.Transport{Dial: func(_, _ string) (net.Conn, error) { return net.Dial("unix", path) }}}
	for _, p := range []string{"/x", "/y/z"} {
		if resp, err := hc.Get("http://control" + p); err == nil {
			resp.Body.Close()
		}
	}
	got := fmt.Sprint(s.Requests())
	want := "[{/v3/metric 200 1} {/v3/metric 422 1} {/v3/ping 200 1} {other 404 2}]"
	if got != want {
		t.Errorf("requests %s, want %s", got, want)
	}
}
