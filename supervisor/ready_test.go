package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/autopilot/autopilot/internal/testenv"
)

// A backend that already has instances when the app starts does not get
// its onChange (typically a SIGHUP to the app) before the app's service
// has passed its first health check: a just-started app may not handle
// the signal yet.
func TestOnChangeWaitsForReadyApp(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	client := c.Client(t)
	register(t, client, "sales-1", 5001)
	dir := t.TempDir()
	rec, marker := filepath.Join(dir, "rec"), filepath.Join(dir, "ready")
	health := fmt.Sprintf(`["sh","-c","test -f %s"]`, marker)
	cfg := writeConfig(t, dir, fmt.Sprintf(`{"logging":{"level":"debug"},
		"services":[{"name":"app","id":"app-1","port":1,"health":%s,"poll":0.1,"ttl":30,"interfaces":["static:127.0.0.1"]}],
		"backends":[{"name":"sales","poll":0.1,"onChange":%q}]}`, health, strings.Join(helper("onchange", rec, "1ms"), " ")))
	s := startSup(t, cfg, c.HTTPAddr, nil, helper("sleep")...)
	s.logHas("holding onChange until the app's services pass their first health check", 20*time.Second)
	if evs := events(rec); len(evs) != 0 {
		t.Fatalf("onChange ran before the app was ready: %v", evs)
	}
	readyAt := time.Now()
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, rec, "start", 20*time.Second)
	if ev.at < readyAt.UnixNano() {
		t.Fatalf("onChange started at %v, before the app became ready at %v", time.Unix(0, ev.at), readyAt)
	}
}

// A template's reload command runs only while the app runs: not for the
// first render, which happens before the app starts.
func TestTemplateReloadCommandOnlyWithApp(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	client := c.Client(t)
	if _, err := client.KV().Put(&api.KVPair{Key: "app/conf", Value: []byte("v1")}, nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dest, reloads, rec := filepath.Join(dir, "app.conf"), filepath.Join(dir, "reloads"), filepath.Join(dir, "rec")
	os.WriteFile(filepath.Join(dir, "app.ctmpl"), []byte(`conf={{ key "app/conf" }}`), 0o644)
	cfg := writeConfig(t, dir, fmt.Sprintf(`{"templates":[{"source":"app.ctmpl","destination":%q,
		"reload":["sh","-c","echo pid=$AUTOPILOT_APP_PID >> %s"]}]}`, dest, reloads))
	startSup(t, cfg, c.HTTPAddr, nil, helper("app", rec)...)
	waitEvent(t, rec, "start", 20*time.Second)
	if got, _ := os.ReadFile(dest); string(got) != "conf=v1" {
		t.Fatalf("file %q", got)
	}
	if _, err := client.KV().Put(&api.KVPair{Key: "app/conf", Value: []byte("v2")}, nil); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		b, _ := os.ReadFile(reloads)
		return strings.Count(string(b), "pid=") == 1, string(b)
	})
	b, _ := os.ReadFile(reloads)
	if strings.Contains(string(b), "pid=\n") {
		t.Fatalf("the reload command ran before the app started: %q", b)
	}
}
