package render

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// nestedLoops would run for hours: 10^12 iterations of the innermost body.
const nestedLoops = `{{ range loop 10000 }}{{ range loop 10000 }}{{ range loop 10000 }}{{ end }}{{ end }}{{ end }}`

// TestExecuteStopsAtCancellation: nested loops (with and without output)
// stop when the execution's context ends, by deadline or by cancel (what
// SIGTERM and a reload do). Before loop and the writer checked the
// context, only SIGKILL stopped them.
func TestExecuteStopsAtCancellation(t *testing.T) {
	for _, tc := range []struct{ name, text string }{
		{"nested loops, no output", nestedLoops},
		{"nested loops with output", `{{ range loop 10000 }}{{ range loop 10000 }}{{ range loop 10000 }}x{{ end }}{{ end }}{{ end }}`},
		{"consul lookups in a loop", `{{ range loop 10000 }}{{ range loop 10000 }}{{ range loop 100 }}{{ service "web" }}{{ end }}{{ end }}{{ end }}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newMapSource()
			src.set(svcQuery(t, "web"), instances("web", "127.0.0.1"))
			tm, err := Parse("nested.ctmpl", tc.text, Options{MaxOutput: 1 << 40})
			if err != nil {
				t.Fatal(err)
			}
			for _, stop := range []string{"deadline", "cancel"} {
				var ctx context.Context
				var cancel context.CancelFunc
				if stop == "deadline" {
					ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
				} else {
					ctx, cancel = context.WithCancel(context.Background())
					time.AfterFunc(200*time.Millisecond, cancel)
				}
				start := time.Now()
				_, err := tm.ExecuteContext(ctx, src, nil)
				took := time.Since(start)
				cancel()
				if !errors.Is(err, ErrCanceled) || !strings.Contains(err.Error(), "nested.ctmpl") {
					t.Fatalf("%s: err = %v, want ErrCanceled naming the template", stop, err)
				}
				if took > 3*time.Second {
					t.Fatalf("%s: returned after %v, want about 200ms", stop, took)
				}
				// The next execution is not stuck behind the stopped one.
				ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
				tiny, _ := Parse("tiny.ctmpl", `ok`, Options{})
				if res, err := tiny.ExecuteContext(ctx2, src, nil); err != nil || string(res.Output) != "ok" {
					t.Fatalf("a later execution: %v", err)
				}
				cancel2()
			}
		})
	}
}

// TestExecuteOutputCap: output past MaxOutput fails the execution with an
// error naming the template; nothing of it is returned as a render.
func TestExecuteOutputCap(t *testing.T) {
	tm, err := Parse("big.ctmpl", `{{ range loop 100000 }}0123456789{{ end }}`, Options{MaxOutput: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tm.Execute(newMapSource(), nil)
	if !errors.Is(err, ErrOutputLimit) || !strings.Contains(err.Error(), "big.ctmpl") || !strings.Contains(err.Error(), "64 KiB") {
		t.Fatalf("err = %v, want ErrOutputLimit naming big.ctmpl and the 64 KiB cap", err)
	}
	// Under the cap is fine; the default cap is 64 MiB.
	tm, _ = Parse("small.ctmpl", `{{ range loop 1000 }}0123456789{{ end }}`, Options{})
	res, err := tm.Execute(newMapSource(), nil)
	if err != nil || len(res.Output) != 10000 {
		t.Fatalf("small render: %v", err)
	}
	if DefaultMaxOutput != 64<<20 {
		t.Fatalf("DefaultMaxOutput = %d, README documents 64 MiB", DefaultMaxOutput)
	}
}

// TestRunnerOnceStopsInNestedLoops: the supervisor's first render (Once)
// returns at its deadline, with the template named, even when the template
// loops forever; nothing is written.
func TestRunnerOnceStopsInNestedLoops(t *testing.T) {
	dest := t.TempDir() + "/out"
	r, err := NewRunner(newMapSource(), []Config{{Source: writeTemp(t, "nested.ctmpl", nestedLoops), Destination: dest}}, RunnerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = r.Once(ctx)
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("Once returned after %v", took)
	}
	if !errors.Is(err, ErrCanceled) || !strings.Contains(err.Error(), "nested.ctmpl") {
		t.Fatalf("err = %v", err)
	}
	if got := readFile(t, dest); !strings.HasPrefix(got, "<") {
		t.Fatalf("destination written: %q", got)
	}
}
