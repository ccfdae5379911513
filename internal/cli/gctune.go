package cli

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// The supervisor's garbage collector target (issue 8's cost, issue 13).
//
// An idle supervisor keeps about 1 MiB of live heap, but Go lets the heap
// grow to its minimum goal of 4 MiB × GOGC/100 before it collects, and the
// pages it grew into stay resident: that minimum was most of the idle RSS
// beyond the mapped binary. While the live heap is small, GOGC is lowered
// (so the minimum goal is 2 MiB); once the live heap is large (a template
// over thousands of instances) the default comes back, so that the render
// path collects no more often than before. An idle supervisor collects a
// few times a minute more, at a cost well under 0.1 % of a core.
const (
	gcPercentSmall = 50
	gcPercentLarge = 100
	// gcSmallHeap is the live heap below which gcPercentSmall applies.
	gcSmallHeap = 8 << 20
	// startupGrace is when the tuning starts.
	startupGrace = 2 * time.Second
)

// gcTuning starts tuneGC's work at most once: GOGC is process-wide, and
// the supervisor's entry point may run more than once in a test binary.
var gcTuning sync.Once

// tuneGC adjusts GOGC after every collection, unless the user set GOGC.
// It runs for the life of the process (the supervisor's entry point only;
// the other commands keep Go's defaults).
func tuneGC() {
	if os.Getenv("GOGC") != "" {
		return
	}
	gcTuning.Do(startGCTuning)
}

func startGCTuning() {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var current atomic.Int64
	current.Store(gcPercentLarge)
	set := func(p int) {
		if current.Swap(int64(p)) != int64(p) {
			debug.SetGCPercent(p)
		}
	}
	// A finalizer runs once after each collection that finds its object
	// unreachable; re-arming it from the finalizer makes it run after
	// every collection, on the finalizer goroutine.
	type sentinel struct{ _ [16]byte } // not a tiny allocation: finalizers on those may never run
	var arm func()
	arm = func() {
		s := &sentinel{}
		runtime.SetFinalizer(s, func(*sentinel) {
			metrics.Read(sample)
			if sample[0].Value.Kind() == metrics.KindUint64 {
				set(gcPercentFor(sample[0].Value.Uint64()))
			}
			arm()
		})
	}
	// Not before the app runs: the start-up allocates a couple of MiB
	// (config, clients) and a collection then would delay the app's start.
	time.AfterFunc(startupGrace, func() {
		set(gcPercentSmall)
		arm()
	})
}

// gcPercentFor is the GOGC for a live heap of live bytes.
func gcPercentFor(live uint64) int {
	if live < gcSmallHeap {
		return gcPercentSmall
	}
	return gcPercentLarge
}
