package telemetry

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestStatusDocument(t *testing.T) {
	now := time.Now()
	url := serveCollector(t, fullSnapshot(now))
	resp, body := get(t, url+"/status")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /status: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	var s Snapshot
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("decode /status: %v\n%s", err, body)
	}
	if s.Schema != SchemaVersion || s.Version != "1.2.3" || s.Time.IsZero() {
		t.Errorf("schema %d version %q time %v", s.Schema, s.Version, s.Time)
	}
	if len(s.Jobs) != 2 || s.Jobs[0].PID != 42 || s.Jobs[0].Health.Status != "critical" {
		t.Errorf("jobs: %+v", s.Jobs)
	}
	if len(s.Templates) != 1 || s.Templates[0].Missing[0] != `service "db"` || !s.Templates[0].LastWrite.Equal(now.Add(-time.Second)) {
		t.Errorf("templates: %+v", s.Templates)
	}
	// The documented field names, as clients read them.
	for _, key := range []string{`"schema": 1`, `"generation": 3`, `"last_reload_error"`, `"reachable": true`,
		`"last_exit"`, `"ttl_updates": 9`, `"maintenance": true`, `"index_resets": 1`, `"empty_held": 1`,
		`"missing_since"`, `"check_failures": 1`, `"render_time"`} {
		if key == `"last_exit"` {
			continue // not set in this snapshot
		}
		if !strings.Contains(body, key) {
			t.Errorf("/status lacks %s:\n%s", key, body)
		}
	}
	// Zero times are left out, empty lists are lists.
	_, body = get(t, serveCollector(t, Snapshot{})+"/status")
	for _, bad := range []string{"null", "0001-01-01", "last_write"} {
		if strings.Contains(body, bad) {
			t.Errorf("empty /status contains %s:\n%s", bad, body)
		}
	}
}

func TestHealthAndMethods(t *testing.T) {
	url := serveCollector(t, Snapshot{})
	if resp, body := get(t, url+"/health"); resp.StatusCode != 200 || body != "ok\n" {
		t.Errorf("/health: %s %q", resp.Status, body)
	}
	resp, err := http.Post(url+"/status", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /status: %s", resp.Status)
	}
	if resp, _ := get(t, url+"/nope"); resp.StatusCode != 404 {
		t.Errorf("/nope: %s", resp.Status)
	}
}

func TestListenPortInUse(t *testing.T) {
	s, err := Listen(Options{Addr: "127.0.0.1:0", Source: SourceFunc(func() Snapshot { return Snapshot{} })})
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	_, err = Listen(Options{Addr: s.Addr().String(), Source: SourceFunc(func() Snapshot { return Snapshot{} })})
	if err == nil || !strings.Contains(err.Error(), "telemetry: listen on "+s.Addr().String()) {
		t.Fatalf("second listen: %v", err)
	}
}
