package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// fileState identifies one version of a file: both tools replace files by
// rename, so a new inode (or size/mtime) means a new write.
type fileState struct {
	ino   uint64
	size  int64
	mtime int64
}

func statFile(path string) (fileState, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileState{}, false
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fileState{ino: st.Ino, size: fi.Size(), mtime: fi.ModTime().UnixNano()}, true
}

// waitFile polls path every millisecond (stat only; the content is read
// when the stat changes) until its content satisfies ok, and returns when
// that was first seen. The resolution is about 1 ms.
func waitFile(ctx context.Context, path string, timeout time.Duration, ok func([]byte) bool) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	var last fileState
	var seen bool
	for {
		if st, exists := statFile(path); exists && (!seen || st != last) {
			now := time.Now()
			b, err := os.ReadFile(path)
			if err == nil && ok(b) {
				return now, nil
			}
			last, seen = st, true
		}
		if ctx.Err() != nil {
			return time.Time{}, ctx.Err()
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s: %w after %s", path, errTimeout, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

var errTimeout = errors.New("expected content not seen")

// writeCounter counts distinct versions of a file (each atomic rename is one).
type writeCounter struct {
	path   string
	writes int
	last   fileState
	seen   bool
}

// poll notes a new version if the file changed since the last poll.
func (w *writeCounter) poll() {
	if st, ok := statFile(w.path); ok && (!w.seen || st != w.last) {
		if w.seen {
			w.writes++
		}
		w.last, w.seen = st, true
	}
}
