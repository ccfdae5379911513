package render

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
)

// DefaultMaxOutput caps what one execution of a template may produce when
// Options.MaxOutput is zero. Real config files are kilobytes to a few
// megabytes; a template that writes more is looping by mistake, and
// without a cap it would take the process's memory with it.
const DefaultMaxOutput = 64 << 20 // 64 MiB

// ErrOutputLimit is wrapped by the error of an execution that exceeded its
// output cap.
var ErrOutputLimit = errors.New("output exceeds the cap")

// ErrCanceled is wrapped (with the context's own error) by the error of an
// execution stopped by its context: a timeout, SIGTERM or a reload.
var ErrCanceled = errors.New("execution canceled")

// bound is one execution's limits. text/template takes no context, so the
// execution is stopped from the inside: every write to the output, every
// `loop` and every Consul lookup checks stopped, an atomic flag that
// context.AfterFunc sets (a load costs a nanosecond; a select on ctx.Done
// per write would show in a 10,000-instance render).
type bound struct {
	ctx     context.Context
	stopped atomic.Bool
	max     int64
	n       int64
	buf     []byte
}

func newBound(ctx context.Context, max int64) (*bound, func() bool) {
	if max <= 0 {
		max = DefaultMaxOutput
	}
	b := &bound{ctx: ctx, max: max}
	stop := context.AfterFunc(ctx, func() { b.stopped.Store(true) })
	if ctx.Err() != nil {
		b.stopped.Store(true)
	}
	return b, stop
}

// check returns the cancellation error once the execution's context ended.
func (b *bound) check() error {
	if b == nil || !b.stopped.Load() {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrCanceled, context.Cause(b.ctx))
}

// Write collects the output; it fails (and text/template stops at once)
// when the context ended or the cap would be exceeded.
func (b *bound) Write(p []byte) (int, error) {
	if err := b.check(); err != nil {
		return 0, err
	}
	if b.n+int64(len(p)) > b.max {
		return 0, fmt.Errorf("%w of %s", ErrOutputLimit, byteSize(b.max))
	}
	b.n += int64(len(p))
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
