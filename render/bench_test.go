package render

import (
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/autopilot/autopilot/internal/dep"
)

// benchSource is the smallest dep.Source: one fixed value per query, no
// subscriptions, so a benchmark measures the template engine alone.
type benchSource map[dep.Query]any

func (s benchSource) Subscribe(dep.Query, chan<- struct{})   {}
func (s benchSource) Unsubscribe(dep.Query, chan<- struct{}) {}
func (s benchSource) Get(q dep.Query) (any, bool)            { v, ok := s[q]; return v, ok }

// benchInstances builds n instances shaped like a real catalog answer.
func benchInstances(n int) []*dep.HealthService {
	out := make([]*dep.HealthService, n)
	for i := range out {
		out[i] = &dep.HealthService{
			Node: fmt.Sprintf("node-%05d", i), NodeAddress: fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff),
			ID: "web-" + strconv.Itoa(i), Name: "web", Address: fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff),
			Port: 8000 + i%1000, Status: "passing", Tags: dep.ServiceTags{"http", "v1"},
			NodeMeta: map[string]string{"zone": "a"}, ServiceMeta: map[string]string{"weight": "1"},
		}
	}
	return out
}

// benchUpstream is the nginx-style template the harness (bench/) renders.
const benchUpstream = `upstream web {
{{- range service "web"}}
  server {{.Address}}:{{.Port}}; # {{.ID}}{{if .Tags.Contains "v1"}} v1{{end}}
{{- end}}
}
`

// BenchmarkRenderService renders one service with 10, 1,000 and 10,000
// instances, alternating between two answers that differ in one instance:
// the per-change cost once the data has arrived, with the range remembered
// (memo.go) and as written, in the same run.
func BenchmarkRenderService(b *testing.B) {
	q, err := dep.ParseService("web")
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{10, 1000, 10000} {
		a := benchInstances(n)
		c := slices.Clone(a)
		changed := *c[n/2]
		changed.Port++
		c[n/2] = &changed
		for _, mode := range []struct {
			name string
			opts Options
		}{{"remembered", Options{}}, {"as-written", Options{noMemo: true}}} {
			b.Run(fmt.Sprintf("instances=%d/%s", n, mode.name), func(b *testing.B) {
				tmpl, err := Parse("bench.ctmpl", benchUpstream, mode.opts)
				if err != nil {
					b.Fatal(err)
				}
				src := benchSource{}
				b.ReportAllocs()
				var size, i int
				for b.Loop() {
					i++
					src[q] = a
					if i%2 == 0 {
						src[q] = c
					}
					res, err := tmpl.Execute(src, nil)
					if err != nil || !res.Complete() {
						b.Fatalf("render: %v %v", err, res.Missing)
					}
					size = len(res.Output)
				}
				b.ReportMetric(float64(size), "bytes/render")
			})
		}
	}
}

// benchRunner is a Runner over src with the bench template, and the one
// unit it renders.
func benchRunner(b *testing.B, src benchSource) (*Runner, *unit) {
	dir := b.TempDir()
	path := dir + "/bench.ctmpl"
	if err := writeFileBench(path, benchUpstream); err != nil {
		b.Fatal(err)
	}
	r, err := NewRunner(src, []Config{{Source: path, Destination: dir + "/out"}}, RunnerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return r, r.units[0]
}

// benchPass is one runner pass over u: execute, then write if the output changed.
func benchPass(b *testing.B, r *Runner, u *unit) {
	if res := r.pass(b.Context(), []*unit{u})[0]; res.err != nil || !res.applied {
		b.Fatalf("pass: %v (applied %v)", res.err, res.applied)
	}
}

// BenchmarkRunnerPass is one runner pass over an unchanged destination:
// execute, compare the dependencies, compare the output, skip the write.
// This is what every wake-up of an unchanged template costs.
func BenchmarkRunnerPass(b *testing.B) {
	q, err := dep.ParseService("web")
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			r, u := benchRunner(b, benchSource{q: benchInstances(n)})
			benchPass(b, r, u) // the first pass writes
			b.ReportAllocs()
			for b.Loop() {
				benchPass(b, r, u)
			}
		})
	}
}

// BenchmarkRunnerWrite is one runner pass for a change: the data alternates
// between two answers that differ in one instance, so every pass executes
// the template, finds a new output and writes it (stage, fsync, rename).
// Run with -cpuprofile to see where a change's CPU goes at 10,000 instances.
func BenchmarkRunnerWrite(b *testing.B) {
	q, err := dep.ParseService("web")
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			a := benchInstances(n)
			c := slices.Clone(a)
			changed := *c[n/2]
			changed.Port++
			c[n/2] = &changed
			src := benchSource{q: a}
			r, u := benchRunner(b, src)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if i%2 == 0 {
					src[q] = a
				} else {
					src[q] = c
				}
				benchPass(b, r, u)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/instance")
		})
	}
}

func writeFileBench(path, text string) error { return WriteFile(path, []byte(text), 0o644) }

// BenchmarkParse is the cost of one template at startup (or edit): the
// bytes it allocates are mostly the function maps text/template keeps per
// template, which is what a process with 100 templates holds 100 times.
func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("bench.ctmpl", benchUpstream, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
