package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/autopilot/autopilot/internal/testenv"
)

func templateConfig(t *testing.T, dir, dest, extra string) string {
	os.WriteFile(filepath.Join(dir, "app.ctmpl"), []byte(`conf={{ key "app/conf" }}`), 0o644)
	return writeConfig(t, dir, fmt.Sprintf(`{"renderTimeout":"1s","templates":[{"source":"app.ctmpl","destination":%q%s}]%s}`,
		dest, `,"reloadSignal":"SIGHUP"`, extra))
}

// Issue 4: templates render before preStart, which runs before the app;
// reloadSignal reaches the app after a change.
func TestTemplatePreStartWaitsAndReloadSignal(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	client := c.Client(t)
	dir := t.TempDir()
	dest, rec := filepath.Join(dir, "app.conf"), filepath.Join(dir, "rec")
	cfg := templateConfig(t, dir, dest, fmt.Sprintf(`,"preStart":["sh","-c","cp %s %s.seen"]`, dest, dest))
	data, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(data), `"1s"`, `"60s"`, 1)), 0o644)
	s := startSup(t, cfg, c.HTTPAddr, nil, helper("app", rec)...)
	s.logHas("rendering templates", 20*time.Second)
	if _, err := client.KV().Put(&api.KVPair{Key: "app/conf", Value: []byte("v1")}, nil); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, rec, "start", 20*time.Second)
	if seen, _ := os.ReadFile(dest + ".seen"); string(seen) != "conf=v1" {
		t.Errorf("preStart saw %q", seen)
	}
	client.KV().Put(&api.KVPair{Key: "app/conf", Value: []byte("v2")}, nil)
	waitEvent(t, rec, syscall.SIGHUP.String(), 20*time.Second)
	if got, _ := os.ReadFile(dest); string(got) != "conf=v2" {
		t.Errorf("file %q", got)
	}
}

func TestTemplateRenderTimeout(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	t.Run("existing file", func(t *testing.T) {
		dir := t.TempDir()
		dest, rec := filepath.Join(dir, "app.conf"), filepath.Join(dir, "rec")
		os.WriteFile(dest, []byte("old"), 0o644)
		cfg := templateConfig(t, dir, dest, "")
		s := startSup(t, cfg, c.HTTPAddr, nil, helper("app", rec)...)
		waitEvent(t, rec, "start", 20*time.Second)
		s.logHas("starting with the existing files", time.Second)
		if got, _ := os.ReadFile(dest); string(got) != "old" {
			t.Errorf("file %q", got)
		}
	})
	t.Run("no file", func(t *testing.T) {
		dir := t.TempDir()
		dest, rec := filepath.Join(dir, "app.conf"), filepath.Join(dir, "rec")
		cfg := templateConfig(t, dir, dest, "")
		s := startSup(t, cfg, c.HTTPAddr, nil, helper("app", rec)...)
		if code := s.wait(20 * time.Second); code == 0 {
			t.Errorf("exit code 0")
		}
		if !strings.Contains(s.log.String(), "app/conf") {
			t.Errorf("error does not name the missing key:\n%s", s.log)
		}
		if _, err := os.Stat(rec); err == nil {
			t.Error("the app ran")
		}
	})
}

// The customers seed config, unchanged, runs a fake app end to end: the
// app serves its health endpoint on 4000, is registered, and a change of
// the sales backend sends it SIGHUP through (a fake) pkill.
func TestSeedCustomersEndToEnd(t *testing.T) {
	t.Parallel()
	c := testenv.StartConsul(t)
	client := c.Client(t)
	dir := t.TempDir()
	rec := filepath.Join(dir, "rec")
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "pkill"), []byte("#!/bin/sh\nexec kill -HUP \"$AUTOPILOT_APP_PID\"\n"), 0o755)
	path := "PATH=" + bin + ":" + os.Getenv("PATH")
	s := startSup(t, "testdata/customers.containerpilot.json", c.HTTPAddr, []string{path}, helper("app", rec, "4000")...)
	waitEvent(t, rec, "start", 20*time.Second)
	testenv.Eventually(t, 20*time.Second, func() (bool, string) {
		entries, _, err := client.Health().Service("customers", "", true, nil)
		return err == nil && len(entries) == 1 && entries[0].Service.Port == 4000, fmt.Sprintf("%d entries, %v", len(entries), err)
	})
	register(t, client, "sales-1", 7001)
	waitEvent(t, rec, syscall.SIGHUP.String(), 20*time.Second)
	s.signal(syscall.SIGTERM)
	if code := s.wait(20 * time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
}
