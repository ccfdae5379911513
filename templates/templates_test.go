// Package templates holds the stock templates; this test renders them over
// fixtures and compares with golden files (refresh: go test ./templates -update).
package templates

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autopilot/autopilot/internal/fixture"
	"github.com/autopilot/autopilot/internal/haproxy"
	"github.com/autopilot/autopilot/render"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestGolden(t *testing.T) {
	t.Setenv("NGINX_PID", "/run/nginx.pid")
	t.Setenv("NGINX_LISTEN", "80")
	t.Setenv("HAPROXY_BIND", "*:80")
	fixtures, err := filepath.Glob("testdata/*.json")
	if err != nil || len(fixtures) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, tmpl := range []string{"nginx.conf.tmpl", "haproxy.cfg.tmpl", "haproxy-runtime.cfg.tmpl"} {
		for _, fx := range fixtures {
			name := strings.TrimSuffix(filepath.Base(fx), ".json")
			t.Run(tmpl+"/"+name, func(t *testing.T) {
				snap, err := fixture.Load(fx)
				if err != nil {
					t.Fatal(err)
				}
				tm, err := render.ParseFile(tmpl, render.Options{})
				if err != nil {
					t.Fatal(err)
				}
				res, err := tm.Execute(snap.Source(), nil)
				if err != nil {
					t.Fatal(err)
				}
				if !res.Complete() {
					t.Fatalf("incomplete render: %v", res.Missing)
				}
				golden := filepath.Join("testdata", name+"."+strings.TrimSuffix(tmpl, ".tmpl")+".golden")
				if *update {
					if err := os.WriteFile(golden, res.Output, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test ./templates -update)", err)
				}
				if string(res.Output) != string(want) {
					t.Fatalf("%s differs from %s:\n%s", tmpl, golden, render.UnifiedDiff(golden, "rendered", want, res.Output))
				}
			})
		}
	}
}

// TestRuntimeTemplateIsHitless: between two catalogs with the same services
// (missing: customers 1, sales 0 healthy; three: customers 3, sales 1), the
// stock runtime template changes only server lines, so autopilot applies it
// through HAProxy's runtime API; a new service (one -> three adds sales)
// needs a reload.
func TestRuntimeTemplateIsHitless(t *testing.T) {
	t.Setenv("HAPROXY_BIND", "*:80")
	read := func(name string) *haproxy.Config {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("testdata", name+".haproxy-runtime.cfg.golden"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := haproxy.ParseConfig(b)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ops, err := haproxy.Plan(read("missing"), read("three"))
	if err != nil {
		t.Fatalf("missing -> three needs a reload: %v", err)
	}
	var got []string
	for _, op := range ops {
		got = append(got, op.String())
	}
	want := "set customers/customers-a-4000 add customers/customers-b-4001 add customers/customers-c-4000 add sales/sales-a-3000"
	if strings.Join(got, " ") != want {
		t.Fatalf("plan %q, want %q", strings.Join(got, " "), want)
	}
	if _, err := haproxy.Plan(read("one"), read("three")); !errors.Is(err, haproxy.ErrNeedsReload) {
		t.Fatalf("a new service: err %v, want ErrNeedsReload", err)
	}
}
