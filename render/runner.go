package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/autopilot/autopilot/internal/dep"
)

// Config is one template to keep rendered.
type Config struct {
	Source      string      // template path
	Destination string      // file to keep up to date
	Perms       fs.FileMode // 0 = keep the existing file's mode, else 0644
	// Check validates the candidate file at path before it replaces
	// Destination: an error leaves Destination and the service alone, and
	// output goes to the log. nil: no check. render knows nothing of
	// processes; autopilot passes a command (proc.Runner.CheckFunc, which
	// puts the path where the command says {{.Path}}).
	Check func(ctx context.Context, path string) (output []byte, err error)
	// CheckName names Check in logs and stats, e.g. "nginx -t -c {{.Path}}".
	CheckName string
	// CheckTimeout, if positive, bounds Check through its ctx (a command's
	// whole process group is then killed) and the render is not applied.
	CheckTimeout time.Duration
	// Command runs after each swap (consul-template's third field); an
	// error is a failed reload. nil: none. In ModeWrite, templates of one
	// Runner without Apply whose CommandName, ReloadName, Wait, Splay and
	// CommandTimeout agree render together and run it once per change
	// (groupUnits).
	Command func(ctx context.Context) (output []byte, err error)
	// CommandName names Command in logs, e.g. "nginx -s reload".
	CommandName string
	// Reload, if set, runs after Command: the supervisor's reloadSignal.
	Reload func(ctx context.Context) error
	// ReloadName names Reload; templates of one Runner whose CommandName
	// and ReloadName agree render together and reload once per change
	// (group). Empty: Reload is this template's own.
	ReloadName string
	// Apply, if set, is offered every change once the candidate passed
	// Check and replaced Destination, with the content that was in place
	// (old) and the new one. applied=true means the running service now
	// runs new without a reload (HAProxy's runtime API), so Command and
	// Reload do not run. applied=false with a nil error means the change
	// needs a reload; an error means applying failed part way. Either way
	// the runner goes on as without Apply: Command, Reload, and on failure
	// the previous file back. Not called for a first file (no old).
	Apply func(ctx context.Context, old, new []byte) (applied bool, err error)
	Wait  Wait // quiescence before a re-render; zero = render at once
	// Splay, if positive, delays Command and Reload by a random time in
	// [0, Splay) after the new file is in place (Nomad's splay), so that a
	// fleet of renderers watching the same service does not reload its
	// proxies in lockstep. Cancelling the run ends the delay (and skips the
	// reload). The delay holds this template's group, not the others.
	Splay time.Duration
	Options

	// Contents, if set, is the template text itself (consul-template's
	// `contents`); Source then only names it in errors and logs.
	Contents string
	// CommandTimeout bounds Command (0: no bound beyond the caller's ctx).
	CommandTimeout time.Duration
	// Backup keeps the replaced file as Destination+".bak" (consul-template's
	// `backup`).
	Backup bool
	// CreateDestDirs creates Destination's missing parent directories (0755).
	CreateDestDirs bool
	// UID and GID, when >= 0, own the written file; -1 keeps the default
	// (the existing file's owner, else ours). Zero values mean root, so
	// callers that do not set them must use -1: see Owner.
	UID, GID int
	// Owner is true when UID/GID are meaningful.
	Owner bool
	// ExecuteErrors says what a failed execution of the template does to
	// Once and Run (consul-template's error_fatal); ExitOnCommandError
	// makes Run end with the error when the render is not applied (its
	// Check, Command or Reload failed), as consul-template exits when a
	// command fails. Once returns those errors in any case.
	ExecuteErrors      ErrorPolicy
	ExitOnCommandError bool
}

// ErrorPolicy is what a template's failure does to a run.
type ErrorPolicy int

const (
	// ErrorsDefault: Once returns the error; Run logs it, keeps the last
	// good file and renders again on the next change.
	ErrorsDefault ErrorPolicy = iota
	// ErrorsExit: Once and Run both end with the error.
	ErrorsExit
	// ErrorsLogged: Once and Run both log it and render again on the next
	// change, so Once waits for data the template can execute with.
	ErrorsLogged
)

// Wait is a quiescence window: render Min after the last change, but no
// later than Max after the first one of a burst.
type Wait struct{ Min, Max time.Duration }

// ParseWait parses "MIN" or "MIN:MAX" (Go durations, or plain seconds).
// Without MAX it is 4×MIN, as in consul-template.
func ParseWait(s string) (Wait, error) {
	if s == "" {
		return Wait{}, nil
	}
	minS, maxS, hasMax := strings.Cut(s, ":")
	parse := func(v string) (time.Duration, error) {
		if d, err := time.ParseDuration(v); err == nil {
			return d, nil
		}
		var n float64
		if _, err := fmt.Sscanf(v, "%g", &n); err == nil && fmt.Sprint(n) == strings.TrimSpace(v) {
			return time.Duration(n * float64(time.Second)), nil
		}
		return 0, fmt.Errorf("wait %q: %q is not a duration like 200ms or 2s", s, v)
	}
	w := Wait{}
	var err error
	if w.Min, err = parse(minS); err != nil {
		return Wait{}, err
	}
	if hasMax {
		if w.Max, err = parse(maxS); err != nil {
			return Wait{}, err
		}
	} else {
		w.Max = 4 * w.Min
	}
	if w.Min < 0 || w.Max < w.Min {
		return Wait{}, fmt.Errorf("wait %q: want 0 <= MIN <= MAX", s)
	}
	return w, nil
}

// Mode says what a Runner does with a complete render.
type Mode int

const (
	ModeWrite  Mode = iota // swap the file in and run the commands
	ModeDryRun             // print the output; write and run nothing
	ModeDiff               // print a unified diff against the destination
)

// RunnerOptions configure a Runner.
type RunnerOptions struct {
	Mode Mode
	Out  io.Writer // dry-run and diff output (default os.Stdout)
	// DryRunHeaders precedes every dry-run output with "> DEST" (as
	// consul-template -dry does), not only when there are several templates.
	DryRunHeaders bool
	// WatchTemplates re-parses and re-renders a template when its source file changes.
	WatchTemplates bool
	Log            zerolog.Logger
}

// Runner keeps a set of templates rendered from a Source. Once renders each
// template a first time (for preStart and -once); Run keeps them up to date.
type Runner struct {
	src    dep.Source
	opts   RunnerOptions
	units  []*unit    // every template, in configuration order
	groups []*group   // the templates that render together: most alone
	outMu  sync.Mutex // serialises dry-run/diff printing
}

// Stats counts what a template's runner did. It is a plain copy so that
// telemetry can read it at scrape time without render knowing about metrics.
type Stats struct {
	Source      string
	Destination string

	Renders        int // executions with complete data
	Writes         int // files swapped in
	Unchanged      int // complete renders whose output equalled the file: no write
	CheckFailures  int
	Commands       int // reload commands and signals run
	ReloadFailures int
	Rollbacks      int // previous file put back after a failed reload
	// WriteErrors counts renders that could not be written (disk full,
	// permission denied, read-only filesystem); each is retried with
	// backoff until the destination holds the current render.
	WriteErrors int
	// Reloads counts writes that went down the reload path (Command or
	// Reload ran), RuntimeApplied those that Apply made live without a
	// reload, RuntimeFallbacks the Apply errors that fell back to a reload.
	Reloads          int
	RuntimeApplied   int
	RuntimeFallbacks int

	// RenderTime is the total time spent executing complete renders
	// (Renders of them), for an average render duration.
	RenderTime time.Duration
	// LastWrite is when the destination was last swapped in (zero: never).
	LastWrite time.Time
	// MissingSince is when the data the template needs stopped being
	// complete (zero: it is complete, or no pass ran yet); Missing names it.
	MissingSince time.Time
	Missing      []string
	// LastCheck and LastReload are the outcomes of the most recent check
	// and reload (nil: none ran yet).
	LastCheck, LastReload *Outcome
}

// Outcome is the result of one check or reload run, for status pages.
type Outcome struct {
	At     time.Time
	OK     bool
	Output string // the tail of the output, or the error
}

// outcomeTail bounds Outcome.Output: enough for nginx -t's message.
const outcomeTail = 2048

func newOutcome(err error, output []byte) *Outcome {
	o := &Outcome{At: time.Now(), OK: err == nil, Output: string(bytes.TrimSpace(output))}
	if err != nil {
		o.Output = err.Error()
	}
	if len(o.Output) > outcomeTail {
		o.Output = o.Output[len(o.Output)-outcomeTail:]
	}
	return o
}

// unit is one template's state; only its group's goroutine touches it
// after NewRunner, except stats (guarded by mu) and tmpl (tmplMu).
type unit struct {
	cfg    Config
	log    zerolog.Logger
	notify chan struct{} // its group's wake
	group  *group

	tmplMu sync.Mutex
	tmpl   *Template
	text   []byte // the source as parsed by NewRunner: -watch-templates' baseline

	used    map[dep.Query]any // queries of the last pass and the values they had
	changed []string          // queries whose value changed before the last pass
	last    []byte            // destination content we know is in place (nil: none)
	have    bool              // last is meaningful
	// rejected is a render the reload failed with and that was put back
	// (attribute); commit leaves the same render out until the data changes.
	rejected []byte

	mu    sync.Mutex
	stats Stats
}

// NewRunner parses every template; an error names the file and position.
func NewRunner(src dep.Source, cfgs []Config, opts RunnerOptions) (*Runner, error) {
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	if err := CheckDestinations(cfgs); err != nil {
		return nil, err
	}
	r := &Runner{src: src, opts: opts}
	for _, c := range cfgs {
		text := []byte(c.Contents)
		if c.Contents == "" {
			var err error
			if text, err = os.ReadFile(c.Source); err != nil {
				return nil, fmt.Errorf("template %s: %w", c.Source, err)
			}
		}
		t, err := Parse(c.Source, string(text), c.Options)
		if err != nil {
			return nil, err
		}
		u := &unit{cfg: c, tmpl: t, text: text, notify: make(chan struct{}, 1),
			log: opts.Log.With().Str("template", c.Source).Str("destination", c.Destination).Logger()}
		if b, err := os.ReadFile(c.Destination); err == nil {
			u.last, u.have = b, true
		}
		r.units = append(r.units, u)
	}
	r.groups = groupUnits(r.units, opts.Mode)
	return r, nil
}

// Stats returns the counters of each template, in configuration order.
func (r *Runner) Stats() []Stats {
	out := make([]Stats, len(r.units))
	for i, u := range r.units {
		u.mu.Lock()
		out[i] = u.stats
		out[i].Missing = append([]string(nil), u.stats.Missing...)
		out[i].Source, out[i].Destination = u.cfg.Source, u.cfg.Destination
		u.mu.Unlock()
	}
	return out
}

// MissingError says which data a render was still waiting for.
type MissingError struct {
	Template string
	Missing  []Missing
	Errs     []error // last errors from the source, if it reported any
}

func (e *MissingError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: timed out waiting for data:", e.Template)
	for i, m := range e.Missing {
		fmt.Fprintf(&b, "\n  %s", m)
		if i < len(e.Errs) && e.Errs[i] != nil {
			fmt.Fprintf(&b, " (last error: %v)", e.Errs[i])
		}
	}
	return b.String()
}

// ErrIncomplete wraps every MissingError, for errors.Is.
var ErrIncomplete = errors.New("render incomplete")

func (e *MissingError) Unwrap() error { return ErrIncomplete }

// Once renders every template once its data is complete, and handles the
// output per the mode. It returns when all are done, or with an error when
// ctx ends first (a *MissingError per template still waiting, joined) or a
// template fails to execute or check.
func (r *Runner) Once(ctx context.Context) error {
	errs := make([]error, len(r.groups))
	var wg sync.WaitGroup
	for i, g := range r.groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.once(ctx, g)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// once is Once for one group: passes over the members not yet in place
// until all are, or each that is not failed for good.
func (r *Runner) once(ctx context.Context, g *group) error {
	pending := append([]*unit(nil), g.units...)
	last := map[*unit]memberResult{}
	var errs []error
	var backoff writeBackoff
	retry := time.NewTimer(0)
	retry.Stop()
	defer retry.Stop()
	for {
		results := r.pass(ctx, pending)
		var next, failedWrites []*unit
		for i, u := range pending {
			res := results[i]
			last[u] = res
			switch {
			case res.writeErr:
				failedWrites = append(failedWrites, u)
				next = append(next, u)
			case res.executing && u.cfg.ExecuteErrors == ErrorsLogged:
				u.log.Error().Err(res.err).Msg("template failed to execute; waiting for the next change")
				next = append(next, u)
			case res.err != nil:
				errs = append(errs, res.err)
			case !res.applied:
				next = append(next, u) // data incomplete
			}
		}
		pending = next
		if len(pending) == 0 {
			return errors.Join(errs...)
		}
		if len(failedWrites) > 0 {
			d := backoff.next()
			for _, u := range failedWrites {
				u.log.Warn().Err(last[u].err).Dur("retry_in", d).Msg("write failed; the previous file stays, retrying")
			}
			retry.Reset(d)
		}
		select {
		case <-ctx.Done():
			for _, u := range pending {
				switch res := last[u]; {
				case res.writeErr:
					errs = append(errs, fmt.Errorf("%w (still failing when stopped: %w)", res.err, context.Cause(ctx)))
				case res.res != nil:
					errs = append(errs, r.missingError(u, res.res))
				default:
					errs = append(errs, context.Cause(ctx))
				}
			}
			return errors.Join(errs...)
		case <-g.wake:
		case <-retry.C:
		}
		retry.Stop()
	}
}

func (r *Runner) missingError(u *unit, res *Result) error {
	e := &MissingError{Template: u.cfg.Source, Missing: res.Missing}
	if er, ok := r.src.(dep.ErrorReporter); ok {
		for _, m := range res.Missing {
			e.Errs = append(e.Errs, er.LastError(m.Query))
		}
	}
	return e
}

// Run keeps every template rendered until ctx ends. Errors are logged and
// the last good file stays, unless the template's ExecuteErrors or
// ExitOnCommandError say to end the run: Run then stops every template and
// returns that error. It returns nil when ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if r.opts.WatchTemplates {
		stop, err := r.watchSources(ctx)
		if err != nil {
			return err
		}
		defer stop()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var once sync.Once
	var fatal error
	for _, g := range r.groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.run(ctx, g); err != nil {
				once.Do(func() { fatal = err; cancel() })
			}
		}()
	}
	wg.Wait()
	return fatal
}

// run is Run for one group: a pass over every member on each change,
// errors logged, the last good files kept; it returns an error that ends
// the run (see Config.ExecuteErrors), or nil when ctx ends.
func (r *Runner) run(ctx context.Context, g *group) error {
	defer func() {
		for _, u := range g.units {
			r.unsubscribeAll(u)
		}
	}()
	var backoff writeBackoff
	for {
		retry := time.Duration(0)
		results := r.pass(ctx, g.units)
		if ctx.Err() != nil {
			return nil
		}
		for i, u := range g.units {
			res := results[i]
			switch {
			case res.writeErr:
				if retry == 0 {
					retry = backoff.next()
				}
				u.log.Warn().Err(res.err).Dur("retry_in", retry).Msg("write failed; the previous file stays, retrying")
			case res.executing && u.cfg.ExecuteErrors == ErrorsExit:
				return res.err
			case res.executing:
				u.log.Error().Err(res.err).Msg("template failed to execute; keeping the last good file")
			case res.err != nil && u.cfg.ExitOnCommandError:
				return res.err
			case res.err != nil:
				u.log.Error().Err(res.err).Msg("render not applied")
			case res.res != nil && !res.res.Complete():
				u.log.Info().Strs("waiting_for", missingStrings(res.res.Missing)).Msg("not rendering: data incomplete; keeping the last good file")
			}
		}
		if retry == 0 {
			backoff.reset()
		}
		if !waitFor(ctx, g.wake, g.units[0].cfg.Wait, retry) {
			return nil
		}
	}
}

// writeBackoff spaces the retries of a failed write: exponential from
// 250 ms to 10 s, each delay drawn in [d/2, d] so that a fleet whose disks
// filled at once does not retry in lockstep. A retry is one render and one
// stage attempt, so even the floor costs little.
type writeBackoff struct{ n int }

const (
	writeRetryMin = 250 * time.Millisecond
	writeRetryMax = 10 * time.Second
)

func (b *writeBackoff) next() time.Duration {
	d := writeRetryMax
	if b.n < 6 && writeRetryMin<<b.n < writeRetryMax {
		d = writeRetryMin << b.n
	}
	b.n++
	return d/2 + rand.N(d/2+1)
}

func (b *writeBackoff) reset() { b.n = 0 }

// waitFor blocks until notify (a dependency, or with -watch-templates the
// template, changed), then lets the change settle for the Wait window; or,
// when retry is non-zero, until retry has passed (a failed write is retried
// without waiting for a change). It reports false when ctx ends.
func waitFor(ctx context.Context, notify <-chan struct{}, w Wait, retry time.Duration) bool {
	var retryC <-chan time.Time
	if retry > 0 {
		t := time.NewTimer(retry)
		defer t.Stop()
		retryC = t.C
	}
	select {
	case <-ctx.Done():
		return false
	case <-retryC:
		return true
	case <-notify:
	}
	if w.Min <= 0 {
		return true
	}
	deadline := time.NewTimer(w.Max)
	defer deadline.Stop()
	quiet := time.NewTimer(w.Min)
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return true
		case <-quiet.C:
			return true
		case <-notify:
		}
		if !quiet.Stop() {
			select {
			case <-quiet.C:
			default:
			}
		}
		quiet.Reset(w.Min)
	}
}

// execute runs the template, moves the subscriptions to what this pass
// used and logs which data changed since the last pass.
func (r *Runner) execute(ctx context.Context, u *unit) (*Result, error) {
	u.tmplMu.Lock()
	t := u.tmpl
	u.tmplMu.Unlock()
	start := time.Now()
	res, err := t.ExecuteContext(ctx, r.src, u.notify)
	took := time.Since(start)
	if res == nil {
		return nil, err
	}
	now := make(map[dep.Query]any, len(res.Used))
	var changed []string
	for _, q := range res.Used {
		v, _ := r.src.Get(q)
		now[q] = v
		if old, ok := u.used[q]; ok && !sameValue(old, v) {
			changed = append(changed, q.String())
		}
	}
	for q := range u.used {
		if _, ok := now[q]; !ok && !u.group.uses(q, u) {
			r.src.Unsubscribe(q, u.notify)
		}
	}
	u.used = now
	u.changed = changed
	if len(changed) > 0 {
		u.log.Debug().Strs("changed", changed).Msg("data changed")
	}
	u.mu.Lock()
	switch {
	case err == nil && res.Complete():
		u.stats.Renders++
		u.stats.RenderTime += took
		u.stats.MissingSince, u.stats.Missing = time.Time{}, nil
	case err == nil:
		if u.stats.MissingSince.IsZero() {
			u.stats.MissingSince = start
		}
		u.stats.Missing = missingStrings(res.Missing)
	}
	u.mu.Unlock()
	return res, err
}

func (r *Runner) unsubscribeAll(u *unit) {
	for q := range u.used {
		r.src.Unsubscribe(q, u.notify)
	}
	u.used = nil
}

// sameValue reports whether a source returned the very same value: sources
// publish a new value on every change, so identity is enough and cheap.
func sameValue(a, b any) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	if !va.IsValid() || !vb.IsValid() {
		return va.IsValid() == vb.IsValid()
	}
	if va.Type() != vb.Type() {
		return false
	}
	switch va.Kind() {
	case reflect.Slice:
		return va.Len() == vb.Len() && (va.Len() == 0 || va.Pointer() == vb.Pointer())
	case reflect.Pointer, reflect.Map:
		return va.Pointer() == vb.Pointer()
	}
	return reflect.DeepEqual(a, b)
}

func missingStrings(ms []Missing) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.String()
	}
	return out
}

// show prints a complete render in the dry-run and diff modes.
func (r *Runner) show(u *unit, out []byte) error {
	r.outMu.Lock()
	defer r.outMu.Unlock()
	if r.opts.Mode == ModeDiff {
		cur, _ := os.ReadFile(u.cfg.Destination)
		_, err := io.WriteString(r.opts.Out, UnifiedDiff(u.cfg.Destination, u.cfg.Destination+" (rendered)", cur, out))
		return err
	}
	if len(r.units) > 1 || r.opts.DryRunHeaders {
		fmt.Fprintf(r.opts.Out, "> %s\n", u.cfg.Destination)
	}
	_, err := r.opts.Out.Write(out)
	return err
}

// memberResult is what one pass did with one template.
type memberResult struct {
	res       *Result // the execution's result (nil: it failed early)
	err       error   // execution, check, write or reload error
	executing bool    // err came from executing the template
	writeErr  bool    // err is a WriteError: retry
	applied   bool    // complete, and in place (written or unchanged) or shown
}

// swapped is a file a pass put in place: its unit, its index in the pass,
// what it replaced and what it is.
type swapped struct {
	u        *unit
	i        int
	prev     []byte
	hadPrev  bool
	out      []byte
	restored bool
}

// pass executes each of units (one group's) and handles every complete
// render per the mode. In ModeWrite each changed file is staged, checked
// and swapped in (or applied live through Apply), then the group's command
// and reload run once for all that changed; if they fail, every file they
// ran for goes back to its previous content and they run once more, and
// then each file is tried alone to find the ones they reject (attribute).
func (r *Runner) pass(ctx context.Context, units []*unit) []memberResult {
	out := make([]memberResult, len(units))
	var changed []*swapped
	for i, u := range units {
		if ctx.Err() != nil {
			return out
		}
		res, err := r.execute(ctx, u)
		out[i].res = res
		switch {
		case err != nil:
			out[i].err, out[i].executing = err, true
			continue
		case !res.Complete():
			continue
		case r.opts.Mode != ModeWrite:
			out[i].err = r.show(u, res.Output)
			out[i].applied = out[i].err == nil
			continue
		}
		prev, hadPrev, wrote, err := r.commit(ctx, u, res.Output)
		var we *WriteError
		out[i].err, out[i].writeErr, out[i].applied = err, errors.As(err, &we), err == nil
		if !wrote || hadPrev && u.cfg.Apply != nil && r.applyLive(ctx, u, prev, res.Output) {
			continue
		}
		u.log.Info().Int("bytes", len(res.Output)).Strs("changed", u.changed).Msg("file updated")
		changed = append(changed, &swapped{u: u, i: i, prev: prev, hadPrev: hadPrev, out: res.Output})
	}
	if len(changed) == 0 {
		return out
	}
	lead := changed[0].u
	if !r.splay(ctx, lead) {
		for _, c := range changed {
			out[c.i].err, out[c.i].applied = ctx.Err(), false
		}
		return out
	}
	reloaded, dests := make([]*unit, len(changed)), make([]string, len(changed))
	for i, c := range changed {
		reloaded[i], dests[i] = c.u, c.u.cfg.Destination
	}
	reload := func() error { return runReload(ctx, lead.cfg, strings.Join(dests, ", "), reloaded) }
	err := reload()
	for _, c := range changed {
		c.u.countReload(err)
	}
	if err == nil {
		return out
	}
	restored := false
	for _, c := range changed {
		out[c.i].err, out[c.i].applied = err, false
		if !c.hadPrev {
			continue
		}
		c.u.log.Error().Err(err).Msg("reload failed; restoring the previous file")
		if werr := r.restore(c.u, c.prev); werr != nil {
			out[c.i].err = fmt.Errorf("%w; restoring previous file: %v", err, werr)
			continue
		}
		c.restored, restored = true, true
	}
	if !restored {
		return out
	}
	rerr := reload()
	for _, c := range changed {
		switch {
		case !c.restored:
		case rerr != nil:
			out[c.i].err = fmt.Errorf("%w; reload after restoring previous file: %v", err, rerr)
		default:
			out[c.i].err = fmt.Errorf("%w (previous file restored and reloaded)", err)
		}
	}
	if rerr == nil && !lead.cfg.ExitOnCommandError {
		r.attribute(ctx, lead.cfg, changed, out)
	}
	return out
}

// attribute runs after the group's reload failed for several changed
// files and succeeded again once they were all put back: it puts each one
// in place alone and reloads, keeps those the reload accepts and puts back
// the others. A file the reload rejected alone (or the only one changed)
// is marked rejected, so that the same render does not go back in, and take
// the other templates' changes down with it at every pass, until its own
// data changes (commit). In consul-template's mode a failed command ends
// the run, so nothing is tried.
func (r *Runner) attribute(ctx context.Context, cfg Config, changed []*swapped, out []memberResult) {
	var tries []*swapped
	for _, c := range changed {
		if c.restored {
			tries = append(tries, c)
		}
	}
	if len(tries) == 1 {
		tries[0].u.rejected = tries[0].out
		return
	}
	for _, c := range tries {
		if ctx.Err() != nil {
			return
		}
		if err := WriteFile(c.u.cfg.Destination, c.out, c.u.cfg.Perms); err != nil {
			continue // it stays as it was put back
		}
		alone := []*unit{c.u}
		err := runReload(ctx, cfg, c.u.cfg.Destination, alone)
		c.u.countReload(err)
		if err == nil {
			c.u.last = c.out
			out[c.i].err, out[c.i].applied = nil, true
			c.u.log.Info().Msg("applied alone: the failed reload rejected another template's change")
			continue
		}
		c.u.rejected = c.out
		c.u.log.Error().Err(err).Msg("the reload rejects this template's change alone; restoring the previous file")
		if r.restore(c.u, c.prev) == nil {
			runReload(ctx, cfg, c.u.cfg.Destination, alone) //nolint:errcheck // back to what it accepted a moment ago
		}
	}
}

// commit stages out, checks it and swaps it in, unless it equals what is in
// place (wrote false). prev and hadPrev are what was in place before.
func (r *Runner) commit(ctx context.Context, u *unit, out []byte) (prev []byte, hadPrev, wrote bool, err error) {
	if u.have && bytes.Equal(out, u.last) {
		if len(u.changed) > 0 {
			u.log.Info().Strs("changed", u.changed).Msg("data changed but the rendered output did not; no write, no reload")
		}
		u.mu.Lock()
		u.stats.Unchanged++
		u.mu.Unlock()
		return nil, false, false, nil
	}
	if u.rejected != nil && len(u.changed) == 0 && bytes.Equal(out, u.rejected) {
		u.log.Debug().Msg("the same render the reload rejected, none of its data changed: left out")
		return nil, false, false, nil
	}
	writeErr := func(err error) error {
		u.mu.Lock()
		u.stats.WriteErrors++
		u.mu.Unlock()
		return &WriteError{Destination: u.cfg.Destination, Err: err}
	}
	if u.cfg.CreateDestDirs {
		if err := os.MkdirAll(filepath.Dir(u.cfg.Destination), 0o755); err != nil {
			return nil, false, false, writeErr(fmt.Errorf("create directories: %w", err))
		}
	}
	staged, err := Stage(u.cfg.Destination, out, u.cfg.Perms)
	if err != nil {
		return nil, false, false, writeErr(err)
	}
	if u.cfg.Owner {
		if err := os.Chown(staged.Path(), u.cfg.UID, u.cfg.GID); err != nil {
			staged.Abort()
			return nil, false, false, writeErr(fmt.Errorf("owner %d:%d: %w", u.cfg.UID, u.cfg.GID, err))
		}
	}
	cmd, output, err := r.check(ctx, u, staged.Path())
	if u.cfg.Check != nil {
		u.mu.Lock()
		u.stats.LastCheck = newOutcome(err, output)
		u.mu.Unlock()
	}
	if err != nil {
		staged.Abort() // before the log line: whoever reads it finds no candidate left
		u.mu.Lock()
		u.stats.CheckFailures++
		u.mu.Unlock()
		u.log.Error().Err(err).Str("command", cmd).Str("output", string(output)).Msg("check failed; destination and service left alone")
		return nil, false, false, err
	}
	if u.cfg.Backup {
		if err := backup(u.cfg.Destination); err != nil {
			staged.Abort()
			return nil, false, false, writeErr(err)
		}
	}
	if err := staged.Commit(); err != nil {
		return nil, false, false, writeErr(err)
	}
	prev, hadPrev = u.last, u.have
	u.last, u.have, u.rejected = out, true, nil
	u.mu.Lock()
	u.stats.Writes++
	u.stats.LastWrite = time.Now()
	u.mu.Unlock()
	return prev, hadPrev, true, nil
}

// splay waits the template's random reload delay, if it has one and
// something to reload; false when ctx ended first.
func (r *Runner) splay(ctx context.Context, u *unit) bool {
	d := splay(u.cfg.Splay)
	if d <= 0 || (u.cfg.Command == nil && u.cfg.Reload == nil) {
		return true
	}
	u.log.Debug().Dur("splay", d).Msg("delaying the reload")
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// countReload records the outcome of a write's reload in the stats.
func (u *unit) countReload(err error) {
	if u.cfg.Command == nil && u.cfg.Reload == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.stats.Reloads++
	u.stats.LastReload = newOutcome(err, nil)
	if err != nil {
		u.stats.ReloadFailures++
	}
}

// restore puts prev back in place after a failed reload.
func (r *Runner) restore(u *unit, prev []byte) error {
	if err := WriteFile(u.cfg.Destination, prev, u.cfg.Perms); err != nil {
		return err
	}
	u.last = prev
	u.mu.Lock()
	u.stats.Rollbacks++
	u.mu.Unlock()
	return nil
}

// applyLive offers a swapped-in change to the template's Apply hook and
// reports whether it made the change live, so that no reload is needed.
func (r *Runner) applyLive(ctx context.Context, u *unit, prev, out []byte) bool {
	applied, err := u.cfg.Apply(ctx, prev, out)
	u.mu.Lock()
	switch {
	case err != nil:
		u.stats.RuntimeFallbacks++
	case applied:
		u.stats.RuntimeApplied++
	}
	u.mu.Unlock()
	switch {
	case err != nil:
		u.log.Warn().Err(err).Msg("applying the change without a reload failed; reloading from the file")
	case applied:
		u.log.Info().Int("bytes", len(out)).Strs("changed", u.changed).Str("path", "runtime").Msg("file updated; change applied without a reload")
	}
	return err == nil && applied
}

// check runs the template's check command on the candidate at path and
// returns the command as run and its output, for the log.
func (r *Runner) check(ctx context.Context, u *unit, path string) (string, []byte, error) {
	if u.cfg.Check == nil {
		return "", nil, nil
	}
	if u.cfg.CheckTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, u.cfg.CheckTimeout)
		defer cancel()
	}
	output, err := u.cfg.Check(ctx, path)
	if err != nil {
		return u.cfg.CheckName, output, fmt.Errorf("check %s: %w: %s", u.cfg.Destination, err, bytes.TrimSpace(output))
	}
	return u.cfg.CheckName, output, nil
}

// splay draws a delay in [0, max).
func splay(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return rand.N(max)
}

// runReload runs cfg's Command, then its Reload hook, after the files named
// by dests changed; each step counts in the Commands of every unit of
// forUnits.
func runReload(ctx context.Context, cfg Config, dests string, forUnits []*unit) error {
	count := func() {
		for _, u := range forUnits {
			u.mu.Lock()
			u.stats.Commands++
			u.mu.Unlock()
		}
	}
	if cfg.Command != nil {
		count()
		ctx := ctx
		if cfg.CommandTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, cfg.CommandTimeout)
			defer cancel()
		}
		if output, err := cfg.Command(ctx); err != nil {
			return fmt.Errorf("command %q for %s: %w: %s", cfg.CommandName, dests, err, bytes.TrimSpace(output))
		}
		forUnits[0].log.Info().Str("command", cfg.CommandName).Int("templates", len(forUnits)).Msg("command ran")
	}
	if cfg.Reload != nil {
		count()
		if err := cfg.Reload(ctx); err != nil {
			return fmt.Errorf("reload for %s: %w", dests, err)
		}
	}
	return nil
}

// backup copies dest (when it exists) to dest.bak atomically, with its mode,
// before dest is replaced.
func backup(dest string) error {
	b, err := os.ReadFile(dest)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("backup %s: %w", dest, err)
	}
	mode := DefaultPerms
	if info, err := os.Stat(dest); err == nil {
		mode = info.Mode().Perm()
	}
	if err := WriteFile(dest+".bak", b, mode); err != nil {
		return fmt.Errorf("backup %s: %w", dest, err)
	}
	return nil
}
