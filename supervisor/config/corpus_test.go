package config

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/explain")

// corpusEnv is the environment the corpus is rendered with.
var corpusEnv = map[string]string{
	"CONSUL": "consul.svc", "PORT": "8080", "CONSUL_AGENT": "1", "ACME_DOMAIN": "example.com",
	"BACKEND": "app", "ENV_VAR_NAME": "value", "TAGS": "a,b", "LOGS": "logs:514", "HOST_IP": "10.1.2.3",
	"SERVICE_NAME_0": "users", "SERVICE_NAME_2": "orders", "SERVICE_INTERVAL_2": "5",
	"CONSUL_HTTP_TOKEN": "secret-token", "HOSTNAME": "box",
}

// TestCorpus parses every config of testdata/corpus (written from the
// ContainerPilot 2 and 3 documentation, and autopilot's README) and
// compares what it became with the golden -explain output.
func TestCorpus(t *testing.T) {
	files, _ := filepath.Glob("testdata/corpus/*/*")
	if len(files) < 12 {
		t.Fatalf("corpus has %d files", len(files))
	}
	want := map[string]Dialect{"v2": ContainerPilot2, "v3": ContainerPilot3, "autopilot": Autopilot}
	for _, f := range files {
		dir := filepath.Base(filepath.Dir(f))
		t.Run(dir+"/"+filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			c, err := ParseDir(data, f, filepath.Dir(f), envOf(corpusEnv))
			if err != nil {
				t.Fatal(err)
			}
			if c.Dialect != want[dir] {
				t.Errorf("dialect %s, want %s", c.Dialect, want[dir])
			}
			var b bytes.Buffer
			if err := c.Explain(&b); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(b.String(), "secret-token") {
				t.Error("explain shows the Consul token")
			}
			golden := filepath.Join("testdata/explain", dir, strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))+".txt")
			if *update {
				os.MkdirAll(filepath.Dir(golden), 0o755)
				if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			g, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if !bytes.Equal(g, b.Bytes()) {
				t.Errorf("explain differs from %s:\n%s", golden, b.String())
			}
		})
	}
}
