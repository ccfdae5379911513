package supervisor

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/proc"
	"github.com/autopilot/autopilot/internal/testenv"
	"github.com/autopilot/autopilot/supervisor/config"
)

// An inbox never blocks its poster: occurrences of one event coalesce
// while the subscriber is busy, and distinct events are all kept, oldest
// first.
func TestInboxCoalesces(t *testing.T) {
	b := newInbox()
	for i := range 10000 {
		b.post(eventKey{"a", config.Changed}, uint64(i+1))
	}
	b.post(eventKey{"b", config.Healthy}, 10001)
	got := b.take()
	if len(got) != 2 || got[0].seq != 10000 || got[1].seq != 10001 {
		t.Fatalf("took %+v", got)
	}
	if len(b.take()) != 0 {
		t.Fatal("take did not empty the inbox")
	}
}

// benchGeneration is a running generation with n jobs subscribed to one
// global event whose once trigger has already fired: an event reaches each
// job's goroutine and is handled there without starting a process.
func benchGeneration(b *testing.B, n int) (*generation, eventKey) {
	k := eventKey{"", config.EnterMaintenance}
	cfg := &config.Config{Name: "bench", StopTimeout: time.Second}
	for i := range n {
		cfg.Jobs = append(cfg.Jobs, config.Job{Name: fmt.Sprintf("j%d", i), Exec: proc.Command{Argv: []string{"true"}},
			When: config.When{Event: k.event}})
	}
	s, err := New(cfg, Options{Consul: noConsul, Log: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	g := s.current()
	for _, j := range g.jobs {
		j.run.fired = true
	}
	g.start()
	b.Cleanup(func() { g.stopLoops(); g.stopJobs(); s.stopW() })
	return g, k
}

// BenchmarkEventToJobs is the time from publishing an event to every
// subscribed job's goroutine having handled it, for one subscriber and for
// ten (issue 8: within a millisecond).
func BenchmarkEventToJobs(b *testing.B) {
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprintf("jobs=%d", n), func(b *testing.B) {
			g, k := benchGeneration(b, n)
			ctx := context.Background()
			for b.Loop() {
				seq := g.router.publish(k)
				for _, j := range g.jobs {
					j.waitHandled(ctx, seq)
				}
			}
		})
	}
}

// BenchmarkIdleSupervisor runs the autopilot binary with ten jobs, three
// watches and two templates against a real agent, lets it settle, then
// reports its RSS and CPU use over 10 s of idling (AUTOPILOT_BENCH_IDLE to
// change it; issue 8: under 20 MB and 1% of a core). One iteration is the
// whole measurement.
func BenchmarkIdleSupervisor(b *testing.B) {
	if os.Getenv("CONSUL_BIN") == "" {
		b.Skip("CONSUL_BIN not set")
	}
	c := testenv.StartConsul(b)
	dir := b.TempDir()
	bin := filepath.Join(dir, "autopilot")
	// Built as `make build` and the container image build it: static, stripped.
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "../cmd/autopilot")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	for i := range 2 {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("t%d.ctmpl", i)), []byte(`{{ range service "web" }}{{ .Address }}{{ end }}`), 0o644)
	}
	var jobs []string
	for i := range 4 {
		jobs = append(jobs, fmt.Sprintf(`{name: 'sleeper%d', exec: ['sleep', '1000'], restarts: 'unlimited'}`, i))
	}
	for i := range 3 {
		port := testenv.FreePort(b)
		jobs = append(jobs, fmt.Sprintf(`{name: 'svc%d', port: %d, interfaces: ['static:127.0.0.1'], health: {exec: 'true', interval: 5, ttl: 15}}`, i, port))
	}
	for i := range 3 {
		jobs = append(jobs, fmt.Sprintf(`{name: 'onchange%d', exec: 'true', when: {source: 'watch.w%d', each: 'changed'}}`, i, i))
	}
	cfgText := fmt.Sprintf(`{consul: '%s', logging: {level: 'warn'}, jobs: [%s],
  watches: [{name: 'w0', interval: 1}, {name: 'w1', interval: 1}, {name: 'w2', interval: 1}],
  templates: [{source: 't0.ctmpl', destination: '%s/t0'}, {source: 't1.ctmpl', destination: '%s/t1'}]}`,
		c.HTTPAddr, strings.Join(jobs, ",\n"), dir, dir)
	cfgPath := filepath.Join(dir, "c.json5")
	os.WriteFile(cfgPath, []byte(cfgText), 0o644)
	cmd := exec.Command(bin, "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	time.Sleep(5 * time.Second) // settle: first render, registrations, watches
	b.ResetTimer()
	for b.Loop() {
		cpu0 := cpuTicks(b, cmd.Process.Pid)
		start := time.Now()
		window := 10 * time.Second
		if d, err := time.ParseDuration(os.Getenv("AUTOPILOT_BENCH_IDLE")); err == nil {
			window = d // e.g. 2m: RSS grows with the heap between collections
		}
		time.Sleep(window)
		cpu := float64(cpuTicks(b, cmd.Process.Pid)-cpu0) / 100 // USER_HZ
		b.ReportMetric(100*cpu/time.Since(start).Seconds(), "cpu_%")
		b.ReportMetric(float64(rssKB(b, cmd.Process.Pid))/1024, "rss_MB")
	}
}

// cpuTicks is utime+stime of pid in clock ticks.
func cpuTicks(b *testing.B, pid int) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

func rssKB(b *testing.B, pid int) int64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return n
		}
	}
	return 0
}
