package render

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchSources signals a unit's reload channel whenever its template file
// is written, created or renamed into place. Directories are watched, not
// files, because editors and config management replace files by rename.
func (r *Runner) watchSources(ctx context.Context) (stop func(), err error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch templates: %w", err)
	}
	byPath := map[string][]*unit{}
	for _, u := range r.units {
		abs, err := filepath.Abs(u.cfg.Source)
		if err != nil {
			fw.Close()
			return nil, fmt.Errorf("watch template %s: %w", u.cfg.Source, err)
		}
		if len(byPath[abs]) == 0 {
			if err := fw.Add(filepath.Dir(abs)); err != nil {
				fw.Close()
				return nil, fmt.Errorf("watch template %s: %w", u.cfg.Source, err)
			}
		}
		byPath[abs] = append(byPath[abs], u)
	}
	// An editor's save is several events (truncate, write, rename); reading
	// at the first one would parse a half-written file. Reparse once the
	// file has been quiet for settle.
	const settle = 100 * time.Millisecond
	timers := map[*unit]*time.Timer{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			for _, t := range timers {
				t.Stop()
			}
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-fw.Events:
				if !ok {
					return
				}
				if !ev.Has(fsnotify.Write) && !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Rename) {
					continue
				}
				for _, u := range byPath[filepath.Clean(ev.Name)] {
					if t, ok := timers[u]; ok {
						t.Reset(settle)
					} else {
						timers[u] = time.AfterFunc(settle, func() { signal(u.reload) })
					}
				}
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
