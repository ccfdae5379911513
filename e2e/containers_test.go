package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The container tests run against the stack of examples/docker-compose.yml,
// built and started with podman by scripts/containers.sh (make containers),
// which sets AUTOPILOT_CONTAINERS=1. They reach the containers on the stack's
// own bridge network (a private /24), never through published ports.
const containersEnv = "AUTOPILOT_CONTAINERS"

// ctrStack is the running compose project under test.
type ctrStack struct {
	project string // compose project name (podman-compose -p)
	network string // its network, PROJECT_default
}

func containerStack(t *testing.T) *ctrStack {
	t.Helper()
	if os.Getenv(containersEnv) != "1" {
		t.Skipf("%s=1 runs these against the compose stack (make containers)", containersEnv)
	}
	s := &ctrStack{project: envOrDefault("AUTOPILOT_CONTAINERS_PROJECT", "autopilot-demo")}
	s.network = envOrDefault("AUTOPILOT_CONTAINERS_NETWORK", s.project+"_default")
	return s
}

func envOrDefault(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// podman runs podman with args and returns its trimmed stdout.
func podman(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

func mustPodman(t *testing.T, args ...string) string {
	t.Helper()
	out, err := podman(context.Background(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// containers lists the names of the project's containers of service svc
// ("": every service), replicas started by the tests included.
func (s *ctrStack) containers(t *testing.T, svc string) []string {
	t.Helper()
	args := []string{"ps", "--format", "{{.Names}}", "--filter", "label=io.podman.compose.project=" + s.project}
	if svc != "" {
		args = append(args, "--filter", "label=com.docker.compose.service="+svc)
	}
	out := mustPodman(t, args...)
	if out == "" {
		return nil
	}
	return strings.Fields(out)
}

// one is the single container of service svc.
func (s *ctrStack) one(t *testing.T, svc string) string {
	t.Helper()
	names := s.containers(t, svc)
	if len(names) != 1 {
		t.Fatalf("service %s: want 1 running container, have %q", svc, names)
	}
	return names[0]
}

// ip is the address of container name on the stack's network.
func (s *ctrStack) ip(t *testing.T, name string) string {
	t.Helper()
	ip := mustPodman(t, "inspect", "-f", fmt.Sprintf("{{(index .NetworkSettings.Networks %q).IPAddress}}", s.network), name)
	if net.ParseIP(ip) == nil {
		t.Fatalf("container %s: no address on %s (%q)", name, s.network, ip)
	}
	return ip
}

func (s *ctrStack) consulURL(t *testing.T) string {
	return "http://" + net.JoinHostPort(s.ip(t, s.one(t, "consul")), "8500")
}

// instance is one passing instance of a service as Consul reports it.
type instance struct {
	ID      string
	Address string
	Port    int
	Tags    []string
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// passing lists the passing instances of service name.
func (s *ctrStack) passing(consul, name string) ([]instance, error) {
	resp, err := httpClient.Get(consul + "/v1/health/service/" + name + "?passing=1")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("consul: %s", resp.Status)
	}
	var entries []struct{ Service instance }
	if err := json.NewDecoder(resp.Body).Decode(&entries); err != nil {
		return nil, err
	}
	out := make([]instance, len(entries))
	for i, e := range entries {
		out[i] = e.Service
	}
	return out, nil
}

// waitFor polls cond every 100 ms until it returns nil or the deadline
// passes, then fails with cond's last error.
func waitFor(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v waiting for %s: %v", d, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// get fetches url and returns its body and X-Instance header.
func get(url string) (body []byte, instance string, err error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return body, "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return body, resp.Header.Get("X-Instance"), nil
}

// demoData is the answer of the example apps' /data.
type demoData struct {
	Service  string
	Instance string
	Records  []string
	Peer     *struct {
		Service  string
		Instance string
	}
	PeerError string
}

// ready waits until every service passes in Consul and both proxies answer
// for both apps.
func (s *ctrStack) ready(t *testing.T) string {
	t.Helper()
	var consul string
	waitFor(t, 60*time.Second, "the Consul container", func() error {
		names := s.containers(t, "consul")
		if len(names) != 1 {
			return fmt.Errorf("consul containers: %q", names)
		}
		consul = s.consulURL(t)
		_, _, err := get(consul + "/v1/status/leader")
		return err
	})
	for _, svc := range []string{"customers", "sales", "nginx", "haproxy"} {
		waitFor(t, 120*time.Second, svc+" passing in Consul", func() error {
			in, err := s.passing(consul, svc)
			if err == nil && len(in) == 0 {
				err = errors.New("no passing instance")
			}
			return err
		})
	}
	return consul
}

// TestContainers runs the checks that need the whole stack in one order:
// each leaves the stack as it found it.
func TestContainers(t *testing.T) {
	s := containerStack(t)
	consul := s.ready(t)
	t.Run("Proxies", func(t *testing.T) { s.testProxies(t) })
	t.Run("PID1", func(t *testing.T) { s.testPID1(t) })
	t.Run("Registered", func(t *testing.T) { s.testRegistered(t, consul) })
	t.Run("ScaleUnderLoad", func(t *testing.T) { s.testScale(t, consul) })
	t.Run("HUPReloads", func(t *testing.T) { s.testHUP(t, consul) })
}

// testProxies: /customers/data and /sales/data through nginx and HAProxy,
// each app also showing its peer's records (found through Consul).
func (s *ctrStack) testProxies(t *testing.T) {
	for _, proxy := range []string{"nginx", "haproxy"} {
		base := "http://" + s.ip(t, s.one(t, proxy))
		for _, app := range []struct{ name, peer string }{{"customers", "sales"}, {"sales", "customers"}} {
			url := base + "/" + app.name + "/data"
			waitFor(t, 60*time.Second, url+" with its peer's data", func() error {
				body, _, err := get(url)
				if err != nil {
					return err
				}
				var d demoData
				if err := json.Unmarshal(body, &d); err != nil {
					return fmt.Errorf("%s: %w: %s", url, err, body)
				}
				switch {
				case d.Service != app.name:
					return fmt.Errorf("%s answered by %q", url, d.Service)
				case d.Peer == nil:
					return fmt.Errorf("%s: no peer data yet (%s)", url, d.PeerError)
				case d.Peer.Service != app.peer:
					return fmt.Errorf("%s: peer %q, want %q", url, d.Peer.Service, app.peer)
				}
				return nil
			})
		}
	}
}

// testPID1: in every app container PID 1 is autopilot (sales runs it as
// `containerpilot`, the symlink of a migrated ContainerPilot image).
func (s *ctrStack) testPID1(t *testing.T) {
	for _, svc := range []string{"customers", "sales", "nginx", "haproxy"} {
		name := s.one(t, svc)
		exe := mustPodman(t, "exec", name, "readlink", "/proc/1/exe")
		if exe != "/usr/local/bin/autopilot" {
			t.Errorf("%s: PID 1 runs %s, want /usr/local/bin/autopilot", name, exe)
		}
		cmdline := strings.Split(strings.TrimRight(mustPodman(t, "exec", name, "cat", "/proc/1/cmdline"), "\x00"), "\x00")
		want := "/usr/local/bin/autopilot"
		if svc == "sales" {
			want = "/usr/local/bin/containerpilot"
		}
		if cmdline[0] != want {
			t.Errorf("%s: /proc/1/cmdline %q, want argv[0] %s", name, cmdline, want)
		}
	}
}

// testRegistered: each service has one passing instance, at its container's
// address on the stack network and its port, and the apps' instance field
// shows that advertised address.
func (s *ctrStack) testRegistered(t *testing.T, consul string) {
	ports := map[string]int{"customers": 4000, "sales": 3000, "nginx": 80, "haproxy": 80}
	for svc, port := range ports {
		ip := s.ip(t, s.one(t, svc))
		in, err := s.passing(consul, svc)
		if err != nil {
			t.Fatal(err)
		}
		if len(in) != 1 || in[0].Address != ip || in[0].Port != port {
			t.Errorf("%s in Consul: %+v, want one instance at %s:%d", svc, in, ip, port)
		}
	}
	for _, svc := range []string{"customers", "sales"} {
		ip := s.ip(t, s.one(t, svc))
		hostport := net.JoinHostPort(ip, strconv.Itoa(ports[svc]))
		body, hdr, err := get("http://" + hostport + "/data?own=1")
		if err != nil {
			t.Fatal(err)
		}
		var d demoData
		if err := json.Unmarshal(body, &d); err != nil {
			t.Fatal(err)
		}
		if want := svc + "@" + hostport; d.Instance != want || hdr != want {
			t.Errorf("%s: instance %q (X-Instance %q), want %q", svc, d.Instance, hdr, want)
		}
	}
}

// ctrLoad sends GET url in a loop from two clients until stop is closed,
// counting requests, failures and the instances that answered.
type ctrLoad struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	seen       map[string]int
	errs       []string
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startCtrLoad(url string) *ctrLoad {
	l := &ctrLoad{seen: map[string]int{}, stop: make(chan struct{})}
	for range 2 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				_, inst, err := get(url)
				l.mu.Lock()
				if err != nil {
					l.failed.Add(1)
					if len(l.errs) < 10 {
						l.errs = append(l.errs, err.Error())
					}
				} else {
					l.ok.Add(1)
					l.seen[inst]++
				}
				l.mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return l
}

func (l *ctrLoad) end() {
	close(l.stop)
	l.wg.Wait()
}

// seenSince is the set of instances that answered since the counts were last reset.
func (l *ctrLoad) reset() {
	l.mu.Lock()
	l.seen = map[string]int{}
	l.mu.Unlock()
}

func (l *ctrLoad) instances() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.seen))
	for k, v := range l.seen {
		out[k] = v
	}
	return out
}

// testScale: customers 1 -> 3 -> 1 while a load loop runs through nginx:
// the new replicas (same image, same network alias, as `--scale` starts
// them) get traffic once registered; `podman stop` of a replica deregisters
// it before its app stops and ends with exit code 0; not one request fails.
func (s *ctrStack) testScale(t *testing.T, consul string) {
	image := mustPodman(t, "inspect", "-f", "{{.ImageName}}", s.one(t, "customers"))
	nginx := "http://" + s.ip(t, s.one(t, "nginx"))
	l := startCtrLoad(nginx + "/customers/data")
	stopped := false
	defer func() {
		if !stopped {
			l.end()
		}
	}()

	var replicas []string
	for i := 2; i <= 3; i++ {
		name := fmt.Sprintf("%s_customers_%d", s.project, i)
		_, _ = podman(context.Background(), "rm", "-f", name)
		t.Cleanup(func() { _, _ = podman(context.Background(), "rm", "-f", "-t", "0", name) })
		mustPodman(t, "run", "-d", "--name", name, "--network", s.network, "--network-alias", "customers",
			"--label", "io.podman.compose.project="+s.project, "--label", "com.docker.compose.project="+s.project,
			"--label", "com.docker.compose.service=customers", "-e", "CONSUL_HTTP_ADDR=consul:8500", image)
		replicas = append(replicas, name)
	}
	waitFor(t, 90*time.Second, "3 passing customers", func() error {
		in, err := s.passing(consul, "customers")
		if err == nil && len(in) != 3 {
			err = fmt.Errorf("%d passing: %+v", len(in), in)
		}
		return err
	})
	l.reset()
	waitFor(t, 60*time.Second, "nginx sending to all 3 customers", func() error {
		if seen := l.instances(); len(seen) != 3 {
			return fmt.Errorf("answered by %v", seen)
		}
		return nil
	})

	// Stop both replicas at once; follow the first: it must leave Consul
	// while its app still answers (autopilot deregisters, then preStop
	// drains for a second, then it stops the app).
	ip := s.ip(t, replicas[0])
	health := "http://" + net.JoinHostPort(ip, "4000") + "/health"
	errc := make(chan error, len(replicas))
	for _, name := range replicas {
		go func() {
			_, err := podman(context.Background(), "stop", "-t", "15", name)
			errc <- err
		}()
	}
	// The order is shown by one observation: the replica is gone from Consul
	// and, right after, its app still answers /health.
	var gone, down time.Time
	healthClient := &http.Client{Timeout: 500 * time.Millisecond}
	deadline := time.Now().Add(30 * time.Second)
	for gone.IsZero() && time.Now().Before(deadline) {
		if in, err := s.passing(consul, "customers"); err == nil && !hasAddress(in, ip) {
			gone = time.Now()
			if err := answers(healthClient, health); err != nil {
				t.Errorf("%s: when first seen deregistered its app did not answer any more: %v", replicas[0], err)
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if gone.IsZero() {
		t.Errorf("%s: still in Consul 30s after podman stop", replicas[0])
	}
	for !gone.IsZero() && down.IsZero() && time.Now().Before(deadline) {
		if answers(healthClient, health) != nil {
			down = time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !down.IsZero() {
		t.Logf("%s: left Consul about %v before its app stopped answering", replicas[0], down.Sub(gone).Round(10*time.Millisecond))
	}
	for range replicas {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	for _, name := range replicas {
		if code := mustPodman(t, "inspect", "-f", "{{.State.ExitCode}}", name); code != "0" {
			t.Errorf("%s: exit code %s after podman stop, want 0", name, code)
		}
	}
	waitFor(t, 30*time.Second, "1 passing customers", func() error {
		in, err := s.passing(consul, "customers")
		if err == nil && len(in) != 1 {
			err = fmt.Errorf("%d passing", len(in))
		}
		return err
	})
	l.reset()
	waitFor(t, 30*time.Second, "nginx sending to the one customers left", func() error {
		seen := l.instances()
		total := 0
		for _, n := range seen {
			total += n
		}
		if len(seen) != 1 || total < 20 {
			return fmt.Errorf("answered by %v", seen)
		}
		return nil
	})
	l.end()
	stopped = true
	t.Logf("load through nginx: %d requests, %d failed", l.ok.Load(), l.failed.Load())
	if l.failed.Load() != 0 {
		t.Errorf("%d of %d requests failed while scaling 1->3->1: %q", l.failed.Load(), l.ok.Load()+l.failed.Load(), l.errs)
	}
	if l.ok.Load() < 100 {
		t.Errorf("only %d requests succeeded: the load loop did not run", l.ok.Load())
	}
	for _, name := range replicas {
		_, _ = podman(context.Background(), "rm", "-f", name)
	}
}

// answers is nil when GET url succeeds with 200.
func answers(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

func hasAddress(in []instance, ip string) bool {
	for _, i := range in {
		if i.Address == ip {
			return true
		}
	}
	return false
}

// testHUP: `podman kill -s HUP` makes autopilot re-read its config: a tag
// added to the sales container's /etc/containerpilot.json shows up on its
// registration in Consul.
func (s *ctrStack) testHUP(t *testing.T, consul string) {
	name := s.one(t, "sales")
	mustPodman(t, "exec", name, "sed", "-i", `s/"name": "sales",/"name": "sales", "tags": ["reloaded"],/`, "/etc/containerpilot.json")
	if out := mustPodman(t, "exec", name, "cat", "/etc/containerpilot.json"); !strings.Contains(out, `"reloaded"`) {
		t.Fatalf("config not edited:\n%s", out)
	}
	mustPodman(t, "kill", "-s", "HUP", name)
	ip := s.ip(t, name)
	waitFor(t, 30*time.Second, "the reloaded tag on sales", func() error {
		in, err := s.passing(consul, "sales")
		if err != nil {
			return err
		}
		for _, i := range in {
			if i.Address == ip && len(i.Tags) == 1 && i.Tags[0] == "reloaded" {
				return nil
			}
		}
		return fmt.Errorf("sales instances: %+v", in)
	})
	// The app kept running: HUP reloaded autopilot, it did not restart the container.
	if restarts := mustPodman(t, "inspect", "-f", "{{.RestartCount}}", name); restarts != "0" {
		t.Errorf("%s restarted %s times", name, restarts)
	}
}

// TestContainersNoZombies: an app that leaves 50 orphans behind, under
// autopilot as PID 1 in a container from the customers image: every orphan
// is reaped. The same app with a PID 1 that does not reap (tail) leaves
// zombies, which shows the count sees them.
func TestContainersNoZombies(t *testing.T) {
	s := containerStack(t)
	image := "autopilot-example-customers"
	// Each `sh -c "sleep 3 &"` exits at once; its sleep is reparented to PID 1.
	const orphans = `i=0; while [ $i -lt 50 ]; do sh -c "sleep 3 &"; i=$((i+1)); done; echo spawned; `
	cases := []struct {
		name       string
		entrypoint string
		args       []string
		want       func(zombies int) bool
	}{
		{"autopilot", "/usr/local/bin/autopilot", []string{"--", "sh", "-c", orphans + "exec tail -f /dev/null"},
			func(z int) bool { return z == 0 }},
		// The shell reaps some orphans while its loop waits for its own children;
		// those that exit after it became tail stay zombies.
		{"no-reaper", "/bin/sh", []string{"-c", orphans + "exec tail -f /dev/null"},
			func(z int) bool { return z > 0 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("%s_zombies_%s", s.project, tc.name)
			_, _ = podman(context.Background(), "rm", "-f", "-t", "0", name)
			t.Cleanup(func() { _, _ = podman(context.Background(), "rm", "-f", "-t", "0", name) })
			args := append([]string{"run", "-d", "--name", name, "--network", "none",
				"--label", "io.podman.compose.project=" + s.project, "--entrypoint", tc.entrypoint, image}, tc.args...)
			mustPodman(t, args...)
			// Done when all 50 orphans have exited (no `sleep 0.2` runs), then count zombies.
			var zombies int
			waitFor(t, 60*time.Second, "the orphans to exit", func() error {
				logs, _ := podman(context.Background(), "logs", name)
				if !strings.Contains(logs, "spawned") {
					return errors.New("app has not spawned its orphans yet")
				}
				states, err := podman(context.Background(), "exec", name, "sh", "-c",
					`for f in /proc/[0-9]*/stat; do cat "$f" 2>/dev/null; echo; done`)
				if err != nil {
					return err
				}
				running, z := 0, 0
				for _, line := range strings.Split(states, "\n") {
					// pid (comm) state ...
					i := strings.LastIndexByte(line, ')')
					if i < 0 || i+2 >= len(line) {
						continue
					}
					if line[i+2] == 'Z' {
						z++
					} else if strings.Contains(line, "(sleep)") {
						running++
					}
				}
				if running > 0 {
					return fmt.Errorf("%d orphans still running", running)
				}
				zombies = z
				if !tc.want(z) {
					return fmt.Errorf("%d zombies", z)
				}
				return nil
			})
			t.Logf("PID 1 %s: %d zombies after 50 orphans exited", tc.entrypoint, zombies)
		})
	}
}
