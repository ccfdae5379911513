package render

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchSources re-parses a unit's template and wakes its group whenever
// the content of its template file changes, however it changed:
//   - in-place writes (echo >>, editors that rewrite the file);
//   - rename-over (vim, emacs, config management writing a temp file and
//     renaming it onto the template);
//   - directory-level swaps, as Kubernetes does for a mounted ConfigMap:
//     the template is a symlink dir/t -> ..data/t, and an update points
//     ..data at a new timestamped directory with one rename; the template's
//     own name sees no event at all.
//
// So it watches directories, not names: the template's directory and the
// directory its symlinks resolve to (re-resolved after every burst, since a
// swap moves it). Any event there, once the directory has been quiet for
// settle, makes it re-read each template and compare the bytes with what
// was last parsed: events for unrelated files (the destination written
// next to its template, editors' swap files) cost one read and no reload.
func (r *Runner) watchSources(ctx context.Context) (stop func(), err error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch templates: %w", err)
	}
	type source struct {
		u      *unit
		abs    string
		last   []byte // content of the last parse
		warned bool   // unreadable, already said so
	}
	var sources []*source
	for _, u := range r.units {
		abs, err := filepath.Abs(u.cfg.Source)
		if err != nil {
			fw.Close()
			return nil, fmt.Errorf("watch template %s: %w", u.cfg.Source, err)
		}
		sources = append(sources, &source{u: u, abs: abs, last: u.text})
	}
	watched := map[string]bool{}
	// rewatch makes the watched set the directories the templates live in now.
	rewatch := func(first bool) error {
		want := map[string]bool{}
		for _, s := range sources {
			want[filepath.Dir(s.abs)] = true
			if real, err := filepath.EvalSymlinks(s.abs); err == nil {
				want[filepath.Dir(real)] = true
			}
		}
		for d := range want {
			if watched[d] {
				continue
			}
			if err := fw.Add(d); err != nil {
				if first {
					return fmt.Errorf("watch template directory %s: %w", d, err)
				}
				r.opts.Log.Warn().Err(err).Str("directory", d).Msg("cannot watch template directory")
				continue
			}
			watched[d] = true
		}
		for d := range watched {
			if !want[d] {
				fw.Remove(d) // may be gone already (a ConfigMap's old timestamped directory)
				delete(watched, d)
			}
		}
		return nil
	}
	if err := rewatch(true); err != nil {
		fw.Close()
		return nil, err
	}
	// An editor's save is several events (truncate, write, rename); reading
	// at the first one could see a half-written file. Compare once the
	// directories have been quiet for settle.
	const settle = 100 * time.Millisecond
	settled := make(chan struct{}, 1)
	timer := time.AfterFunc(time.Hour, func() { signal(settled) })
	timer.Stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-fw.Events:
				if !ok {
					return
				}
				timer.Reset(settle)
			case <-settled:
				for _, s := range sources {
					b, err := os.ReadFile(s.abs)
					if err != nil {
						if !s.warned {
							s.u.log.Warn().Err(err).Msg("template file unreadable; keeping the previous template")
						}
						s.warned = true
						continue
					}
					s.warned = false
					if bytes.Equal(b, s.last) {
						continue
					}
					s.last = b
					r.reparse(s.u)
					signal(s.u.notify) // its group's wake
				}
				rewatch(false)
			case err, ok := <-fw.Errors:
				if !ok {
					return
				}
				r.opts.Log.Warn().Err(err).Msg("template file watch error")
			}
		}
	}()
	return func() { fw.Close(); <-done }, nil
}

// reparse loads a unit's edited template; a broken edit is logged and the
// previous template stays in use, so the file keeps its last good content.
func (r *Runner) reparse(u *unit) {
	t, err := ParseFile(u.cfg.Source, u.cfg.Options)
	if err != nil {
		u.log.Error().Err(err).Msg("template edit does not parse; keeping the previous template")
		return
	}
	u.tmplMu.Lock()
	u.tmpl = t
	u.tmplMu.Unlock()
	u.log.Info().Msg("template reloaded from disk")
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
