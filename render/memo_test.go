package render

import (
	"context"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/autopilot/autopilot/internal/dep"
)

// memoSteps are successive answers for service "web" (and `services`)
// shaped like dep.Decoder's: unchanged instances keep their pointers.
func memoSteps(t testing.TB) []benchSource {
	web := svcQuery(t, "web")
	cat, err := dep.ParseDC(dep.KindCatalogServices, "")
	if err != nil {
		t.Fatal(err)
	}
	a := benchInstances(5)
	a[1].Tags = dep.ServiceTags{"a", "http", "v1"}
	a[3].Tags = dep.ServiceTags{}
	modified := slices.Clone(a)
	m := *a[2]
	m.Port = 9999
	modified[2] = &m
	grown := append(slices.Clone(modified[1:]), benchInstances(7)[6])
	reordered := slices.Clone(grown)
	slices.Reverse(reordered)
	dup := append(slices.Clone(reordered), reordered[0], reordered[2])
	snippets := []*dep.CatalogSnippet{{Name: "web", Tags: dep.ServiceTags{"http"}}, {Name: "db"}}
	var steps []benchSource
	for _, s := range [][]*dep.HealthService{a, modified, grown, reordered, {}, dup, nil, a} {
		src := benchSource{cat: snippets}
		if s != nil {
			src[web] = s
		}
		steps = append(steps, src)
	}
	return steps
}

// memoCases are templates whose ranges are, or must not be, remembered.
var memoCases = []struct {
	name, text string
	remembered int // ranges remembered after parsing, and still after the steps
	opts       Options
}{
	{name: "upstream", text: benchUpstream, remembered: 1},
	{name: "else", text: `{{range service "web"}}server {{.Address}}:{{.Port}};{{else}}server 127.0.0.1:65535;{{end}}`, remembered: 1},
	{name: "nested", text: `{{range service "web"}}{{.Name}}:{{range .Tags}}[{{.}}]{{end}}{{if .Tags}} tagged{{end}}
{{end}}`, remembered: 1},
	{name: "inner only", text: `{{range $s := service "web"}}{{$s.ID}}{{range $s.Tags}}<{{.}}>{{end}}{{end}}`, remembered: 1},
	{name: "local variables", text: `{{range service "web"}}{{$a := .Address}}{{$p := .Port}}{{$a}}:{{$p}}{{with .Tags}}{{$a}}{{end}};{{end}}`, remembered: 1},
	{name: "local assignment", text: `{{range service "web"}}{{$s := "x"}}{{if .Tags}}{{$s = "t"}}{{end}}{{$s}}{{end}}`, remembered: 1},
	{name: "with declares for else", text: `{{range service "web"}}{{with $t := .Tags}}{{$t}}{{else}}[{{$t}}]{{end}}{{end}}`, remembered: 1},
	{name: "nested range declares", text: `{{range service "web"}}{{range $i, $t := .Tags}}{{$i}}={{$t}} {{end}}{{end}}`, remembered: 1},
	{name: "outer variable", text: `{{$x := "o"}}{{range service "web"}}{{$x}}{{.ID}}{{end}}`},
	{name: "assigns outer variable", text: `{{$n := 0}}{{range service "web"}}{{$n = .Port}}{{end}}{{$n}}`},
	{name: "outer before shadowed", text: `{{$a := "outer"}}{{range service "web"}}{{$a}}{{$a := .ID}}{{$a}}{{end}}`},
	{name: "outer after block", text: `{{$a := "outer"}}{{range service "web"}}{{if .Tags}}{{$a := .ID}}{{$a}}{{end}}{{$a}}{{end}}`},
	{name: "declared from outer", text: `{{$a := "outer"}}{{range service "web"}}{{$a := $a}}{{$a}}{{end}}`},
	{name: "root variable", text: `{{range service "web"}}{{$}}{{end}}`},
	{name: "impure function", text: `{{range service "web"}}{{env "HOME"}}{{.ID}}{{end}}`},
	{name: "break", text: `{{range service "web"}}{{if eq .Port 8001}}{{break}}{{end}}{{.ID}}{{end}}`},
	{name: "error in every body", text: `{{range service "web"}}{{index .Tags 5}}{{end}}`, remembered: 1},
	{name: "error in one body", text: `{{range service "web"}}{{if eq .Port 9999}}{{index .Tags 9}}{{end}}{{.ID}} {{end}}`, remembered: 1},
	{name: "map", text: `{{range byTag (service "web")}}{{len .}}{{end}}|{{range service "web"}}{{.ID}}{{end}}`, remembered: 2},
	{name: "number", text: `{{range 3}}<{{.}}>{{end}}`, remembered: 1},
	{name: "nothing", text: `{{range (parseJSON "{}").items}}x{{.}}{{else}}none{{end}}`, remembered: 1},
	{name: "interfaces", text: `{{range parseJSON "[\"\", \"a\", 0, null, {}]"}}[{{if .}}t{{else}}f{{end}}{{printf "%T" .}}]{{end}}`, remembered: 1},
	{name: "printf struct", text: `{{range service "web"}}{{printf "%v" .}}{{end}}`, remembered: 1},
	{name: "defined twice", text: `{{define "x"}}{{range service "web"}}{{.ID}},{{end}}{{end}}{{template "x"}}|{{template "x"}}`, remembered: 1},
	{name: "services", text: `{{range services}}{{.Name}}{{.Tags}};{{end}}`, remembered: 1},
	{name: "sorting anywhere", text: `{{range service "web"}}{{.ID}}{{end}}{{sortAlpha (splitList "," "b,a")}}`},
	{name: "strict missing key", text: `{{range service "web"}}{{.NodeMeta.zone}}{{.NodeMeta.missing}}{{end}}`, remembered: 1, opts: Options{Strict: true}},
	{name: "output cap", text: `{{range service "web"}}{{.ID}} {{.Address}}:{{.Port}}{{end}}`, remembered: 1, opts: Options{MaxOutput: 60}},
	{name: "text only body", text: `{{range service "web"}}-{{end}}`},
}

// TestMemoMatchesPlain executes each template with its ranges remembered
// and as written over the same answers, and compares outputs and errors.
func TestMemoMatchesPlain(t *testing.T) {
	steps := memoSteps(t)
	for _, tc := range memoCases {
		t.Run(tc.name, func(t *testing.T) {
			plainOpts := tc.opts
			plainOpts.noMemo = true
			plain, err := Parse("memo.ctmpl", tc.text, plainOpts)
			if err != nil {
				t.Fatal(err)
			}
			tm, err := Parse("memo.ctmpl", tc.text, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := 0
			if tm.memo != nil {
				got = len(tm.memo.ranges)
			}
			if got != tc.remembered {
				t.Fatalf("%d ranges remembered, want %d", got, tc.remembered)
			}
			for i, src := range steps {
				want, wantErr := plain.Execute(src, nil)
				res, err := tm.Execute(src, nil)
				if errString(err) != errString(wantErr) {
					t.Fatalf("step %d: error %q, as written %q", i, errString(err), errString(wantErr))
				}
				if string(res.Output) != string(want.Output) {
					t.Fatalf("step %d: output\n%q\nas written\n%q", i, res.Output, want.Output)
				}
				if !slices.Equal(res.Used, want.Used) || !slices.Equal(res.Missing, want.Missing) {
					t.Fatalf("step %d: used %v missing %v, as written %v %v", i, res.Used, res.Missing, want.Used, want.Missing)
				}
			}
			if tc.remembered > 0 && tm.memo == nil {
				t.Fatal("the memo gave way during the steps")
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestMemoRunsChangedOnly: after the first execution, a change of one
// instance among 1,000 runs the body for that instance alone, and an
// unchanged answer runs it for none.
func TestMemoRunsChangedOnly(t *testing.T) {
	q := svcQuery(t, "web")
	tm, err := Parse("memo.ctmpl", benchUpstream, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if tm.memo == nil || len(tm.memo.ranges) != 1 {
		t.Fatalf("memo %+v, want one range", tm.memo)
	}
	r := tm.memo.ranges[0]
	a := benchInstances(1000)
	b := slices.Clone(a)
	changed := *b[500]
	changed.Port = 1
	b[500] = &changed
	for i, step := range []struct {
		data []*dep.HealthService
		runs int
	}{{a, 1000}, {a, 0}, {b, 1}, {b, 0}, {a[:999], 1}} {
		before := r.runs.Load()
		res, err := tm.Execute(benchSource{q: step.data}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n := r.runs.Load() - before; n != int64(step.runs) {
			t.Fatalf("step %d: body ran %d times, want %d", i, n, step.runs)
		}
		if want := ":1; # web-500"; (i == 2 || i == 3) != strings.Contains(string(res.Output), want) {
			t.Fatalf("step %d: output has %q: %v", i, want, !(i == 2 || i == 3))
		}
	}
}

// TestMemoForgets: outputs of instances gone from the answer are dropped
// and their bytes reclaimed, however many answers replace every instance.
func TestMemoForgets(t *testing.T) {
	q := svcQuery(t, "web")
	tm, err := Parse("memo.ctmpl", benchUpstream, Options{})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := Parse("memo.ctmpl", benchUpstream, Options{noMemo: true})
	if err != nil {
		t.Fatal(err)
	}
	r := tm.memo.ranges[0]
	for i := range 12 {
		data := benchInstances(2000) // new pointers: nothing to reuse
		for _, s := range data {
			s.Port += i
		}
		src := benchSource{q: data}
		res, err := tm.Execute(src, nil)
		want, _ := plain.Execute(src, nil)
		if err != nil || string(res.Output) != string(want.Output) {
			t.Fatalf("answer %d: %v, output differs: %v", i, err, string(res.Output) != string(want.Output))
		}
		if len(r.seen) != 2000 || len(r.arena) > 2*r.live+64<<10 {
			t.Fatalf("answer %d: %d kept, arena %d bytes for %d live", i, len(r.seen), len(r.arena), r.live)
		}
	}
}

// TestMemoGivesWay: when an execution fails with its ranges remembered
// and succeeds as written, the result is the one as written and the
// template runs as written from then on.
func TestMemoGivesWay(t *testing.T) {
	q := svcQuery(t, "web")
	tm, err := Parse("memo.ctmpl", `{{range service "web"}}{{.ID}};{{end}}`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	broken, err := template.New("memo.ctmpl").Parse(`{{index .Tags 99}}`)
	if err != nil {
		t.Fatal(err)
	}
	tm.memo.ranges[0].sub = broken // a memo that fails where the text does not
	res, err := tm.Execute(benchSource{q: benchInstances(2)}, nil)
	if err != nil || string(res.Output) != "web-0;web-1;" {
		t.Fatalf("got %q %v, want the output as written", res.Output, err)
	}
	if tm.memo != nil {
		t.Fatal("the memo is still in use")
	}
	res, err = tm.Execute(benchSource{q: benchInstances(3)}, nil)
	if err != nil || string(res.Output) != "web-0;web-1;web-2;" {
		t.Fatalf("next execution: %q %v", res.Output, err)
	}
}

// TestMemoCancel: a remembered body stops when the execution's context
// ends, as a body as written does.
func TestMemoCancel(t *testing.T) {
	q := svcQuery(t, "web")
	tm, err := Parse("memo.ctmpl", `{{range service "web"}}{{.ID}}{{end}}`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = tm.ExecuteContext(ctx, benchSource{q: benchInstances(10)}, nil)
	if err == nil || !strings.Contains(err.Error(), ErrCanceled.Error()) {
		t.Fatalf("err %v, want %v", err, ErrCanceled)
	}
	res, err := tm.Execute(benchSource{q: benchInstances(2)}, nil)
	if err != nil || string(res.Output) != "web-0web-1" {
		t.Fatalf("after a cancelled execution: %q %v", res.Output, err)
	}
}

var bigNumber = regexp.MustCompile(`[0-9]{4}`)

// FuzzMemo executes random templates over random answers with their ranges
// remembered and as written, and requires the same outputs and errors.
func FuzzMemo(f *testing.F) {
	for _, tc := range memoCases {
		f.Add(tc.text, uint64(1))
	}
	f.Add(`{{range service "web"}}{{with .Tags}}{{join "," .}}{{else}}-{{end}}{{end}}`, uint64(2))
	f.Add(`{{range service "web"}}{{range service "web"}}{{.Port}}{{end}}{{end}}`, uint64(3))
	q := svcQuery(f, "web")
	f.Fuzz(func(t *testing.T, text string, seed uint64) {
		if len(text) > 300 || bigNumber.MatchString(text) || strings.Contains(text, "loop") {
			return // keep every execution short
		}
		plain, err := Parse("fuzz.ctmpl", text, Options{noMemo: true, MaxOutput: 1 << 16})
		if err != nil {
			return
		}
		tm, err := Parse("fuzz.ctmpl", text, Options{MaxOutput: 1 << 16})
		if err != nil {
			t.Fatalf("parses as written but not remembered: %v", err)
		}
		r := rand.New(rand.NewPCG(seed, seed>>7))
		pool := benchInstances(8)
		for _, s := range pool {
			s.Tags = dep.ServiceTags([]string{"a", "b", "c"}[:r.IntN(4)])
		}
		for i := range 4 {
			var data []*dep.HealthService
			for range r.IntN(6) {
				data = append(data, pool[r.IntN(len(pool))])
			}
			if r.IntN(3) == 0 && len(pool) > 0 {
				c := *pool[0]
				c.Port = r.IntN(3)
				pool[0] = &c
			}
			src := benchSource{q: data}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			want, wantErr := plain.ExecuteContext(ctx, src, nil)
			res, err := tm.ExecuteContext(ctx, src, nil)
			cancel()
			if errors := [2]string{errString(err), errString(wantErr)}; errors[0] != errors[1] {
				t.Fatalf("step %d: error %q, as written %q", i, errors[0], errors[1])
			}
			if err == nil && string(res.Output) != string(want.Output) {
				t.Fatalf("step %d: output %q, as written %q", i, res.Output, want.Output)
			}
		}
	})
}
