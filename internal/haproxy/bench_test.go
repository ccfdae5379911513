package haproxy_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/autopilot/autopilot/internal/proc"
	"github.com/autopilot/autopilot/internal/testenv"
)

// BenchmarkScaleEvents runs the same 36 scale events (a backend 1 -> 19 -> 1)
// through HAProxy twice in one run: applied through the runtime API, and
// with every change reloaded (confirmed SIGUSR2, as without this package).
// Four keep-alive clients (a request every 10 ms each) and four long
// responses (3 s each, back to back) run throughout, with hard-stop-after
// 30s as in the stock templates. It
// reports HAProxy reloads, the most HAProxy workers alive at once, the peak
// RSS of the master and its workers, client reconnects and failed
// requests. One iteration is one whole scenario: run it with -benchtime 1x
// (make bench does).
func BenchmarkScaleEvents(b *testing.B) {
	for _, path := range []string{"runtime", "reload"} {
		b.Run(path, func(b *testing.B) {
			for range b.N {
				r := scaleEvents(b, path == "reload")
				b.ReportMetric(float64(r.reloads), "reloads")
				b.ReportMetric(float64(r.peakWorkers), "peak-workers")
				b.ReportMetric(r.peakRSS/(1<<20), "peak-RSS-MiB")
				b.ReportMetric(float64(r.reconnects), "reconnects")
				b.ReportMetric(float64(r.failures), "failed-requests")
				b.ReportMetric(float64(r.perEvent.Milliseconds()), "ms/event")
				b.Logf("| %s | %d | %d | %.1f MiB | %d | %d of %d | %d ms |", path, r.reloads, r.peakWorkers,
					r.peakRSS/(1<<20), r.reconnects, r.failures, r.requests, r.perEvent.Milliseconds())
			}
		})
	}
}

type scaleResult struct {
	reloads, peakWorkers, reconnects int
	failures, requests               int64
	peakRSS                          float64
	perEvent                         time.Duration
}

func scaleEvents(b *testing.B, reloadPath bool) scaleResult {
	b.StopTimer()
	agent := testenv.StartConsul(b)
	const n = 19
	fleet := make([]*instance, n)
	for i := range fleet {
		fleet[i] = newInstance(b, fmt.Sprintf("web-%d", i+1))
	}
	c := agent.Client(b)
	reg := func(i int) {
		if err := c.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: fleet[i].id, Name: "web", Address: "127.0.0.1", Port: fleet[i].port(),
			Check: &api.AgentServiceCheck{CheckID: fleet[i].id + ":ttl", TTL: "10m", Status: api.HealthPassing}}); err != nil {
			b.Fatal(err)
		}
	}
	reg(0)
	l := startLB(b, agent, lbOptions{noRuntime: reloadPath, hardStop: "30s", drain: 5 * time.Second})
	url := fmt.Sprintf("http://127.0.0.1:%d", l.port)
	testenv.Eventually(b, 15*time.Second, func() (bool, string) {
		code, _, err := testenv.HTTPGet(b, url+"/")
		return code == 200, fmt.Sprint(code, err)
	})
	before := l.procs()
	s := sampleHAProxy(l.h.PID())
	short := startLoad(url, 4, 10*time.Millisecond, "/")
	long := startLoad(url, 4, 10*time.Millisecond, "/?sleep=3s")
	b.StartTimer()
	began := time.Now()
	events := 0
	await := func() {
		events++
		testenv.Eventually(b, 30*time.Second, func() (bool, string) {
			st := l.stats()
			return st.Writes == events && st.RuntimeApplied+st.Reloads == events, fmt.Sprintf("event %d: %+v", events, st)
		})
	}
	for i := 1; i < n; i++ {
		reg(i)
		await()
	}
	for i := n - 1; i >= 1; i-- {
		l.deregister(fleet[i].id)
		await()
	}
	took := time.Since(began)
	b.StopTimer()
	short.Stop()
	long.Stop()
	peakWorkers, peakRSS := s.stop()
	after := l.procs()
	return scaleResult{
		reloads:     after.Reloads - before.Reloads,
		peakWorkers: peakWorkers,
		peakRSS:     peakRSS,
		reconnects:  int(short.dials.Load()+long.dials.Load()) - 8,
		failures:    short.failures.Load() + long.failures.Load(),
		requests:    short.requests.Load() + long.requests.Load(),
		perEvent:    took / time.Duration(events),
	}
}

// sampler polls an HAProxy master's process tree every 20 ms for the number
// of workers (its children) and the RSS of the master and workers.
type sampler struct {
	stopc chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	peakW int
	peakR float64
}

func sampleHAProxy(master int) *sampler {
	s := &sampler{stopc: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			kids := proc.Children(master)
			rss := rssBytes(master)
			for _, k := range kids {
				rss += rssBytes(k)
			}
			s.mu.Lock()
			s.peakW = max(s.peakW, len(kids))
			s.peakR = max(s.peakR, rss)
			s.mu.Unlock()
			select {
			case <-s.stopc:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *sampler) stop() (int, float64) {
	close(s.stopc)
	s.wg.Wait()
	return s.peakW, s.peakR
}

// rssBytes is a process's VmRSS, 0 if it is gone.
func rssBytes(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb * 1024
		}
	}
	return 0
}
