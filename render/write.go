package render

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// DefaultPerms is the mode of a new destination file when none is configured.
const DefaultPerms fs.FileMode = 0o644

// Staged is a candidate file written in full next to its destination but
// not yet in place: a check command can read it, and Commit swaps it in
// with one rename, so a reader of the destination sees the old file or the
// new one, never part of either.
type Staged struct {
	dest string // the file replaced: the destination, or the file its symlink points to
	tmp  string
	done bool
}

// Stage writes data to a temporary file in dest's directory and fsyncs it.
// Its mode is perms if non-zero, else the existing destination's mode (and
// owner, when we may set it), else DefaultPerms.
//
// A destination that is a symlink (sites-enabled/x -> ../sites-available/x)
// keeps its link: the candidate is staged beside the link's final target
// and Commit renames it over the target, so the link still points where
// the administrator pointed it and the target is swapped atomically. A
// dangling link is followed too: its target is created.
func Stage(dest string, data []byte, perms fs.FileMode) (*Staged, error) {
	target, err := resolveLink(dest)
	if err != nil {
		return nil, fmt.Errorf("stage %s: %w", dest, err)
	}
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".autopilot-*")
	if err != nil {
		return nil, fmt.Errorf("stage %s: %w", dest, err)
	}
	s := &Staged{dest: target, tmp: f.Name()}
	fail := func(err error) (*Staged, error) {
		f.Close()
		os.Remove(s.tmp)
		return nil, fmt.Errorf("stage %s: %w", dest, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	mode := perms
	if info, err := os.Stat(target); err == nil {
		if mode == 0 {
			mode = info.Mode().Perm()
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
			if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
				return fail(err)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fail(err)
	}
	if mode == 0 {
		mode = DefaultPerms
	}
	if err := f.Chmod(mode); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(s.tmp)
		return nil, fmt.Errorf("stage %s: %w", dest, err)
	}
	return s, nil
}

// Path is the candidate's path, for check commands.
func (s *Staged) Path() string { return s.tmp }

// Commit renames the candidate over the destination and fsyncs the
// directory so the swap survives a crash.
func (s *Staged) Commit() error {
	if s.done {
		return fmt.Errorf("commit %s: already done", s.dest)
	}
	s.done = true
	if err := os.Rename(s.tmp, s.dest); err != nil {
		os.Remove(s.tmp)
		return fmt.Errorf("swap %s: %w", s.dest, err)
	}
	dir := filepath.Dir(s.dest)
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// Abort removes the candidate; the destination is untouched. Safe after Commit.
func (s *Staged) Abort() {
	if !s.done {
		s.done = true
		os.Remove(s.tmp)
	}
}

// WriteFile atomically replaces dest with data (Stage then Commit).
func WriteFile(dest string, data []byte, perms fs.FileMode) error {
	s, err := Stage(dest, data, perms)
	if err != nil {
		return err
	}
	return s.Commit()
}

// maxLinks bounds symlink chains, as the kernel's ELOOP does.
const maxLinks = 40

// resolveLink follows path while it is a symlink and returns the file at
// the end of the chain, which need not exist. Directories on the way are
// left as they are: rename resolves them itself.
func resolveLink(path string) (string, error) {
	for range maxLinks {
		info, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return path, nil
		}
		if err != nil {
			return "", err
		}
		if info.Mode()&fs.ModeSymlink == 0 {
			return path, nil
		}
		target, err := os.Readlink(path)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		path = target
	}
	return "", fmt.Errorf("%s: too many levels of symbolic links", path)
}

// canonicalDest is the file a write to dest really replaces: absolute,
// clean, symlinks resolved (in the directories and the final link). Two
// templates with one canonical destination would overwrite each other.
func canonicalDest(dest string) (string, error) {
	abs, err := filepath.Abs(dest)
	if err != nil {
		return "", err
	}
	target, err := resolveLink(abs)
	if err != nil {
		return "", err
	}
	dir, base := filepath.Split(target)
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	return filepath.Join(dir, base), nil
}

// CheckDestinations refuses two templates that write one file, after
// cleaning paths and resolving symlinks: they would overwrite each other
// on every change. Templates without a destination (dry-run) are skipped.
func CheckDestinations(cfgs []Config) error {
	seen := map[string]int{}
	for i, c := range cfgs {
		if c.Destination == "" {
			continue
		}
		canon, err := canonicalDest(c.Destination)
		if err != nil {
			return fmt.Errorf("template %s: destination %s: %w", c.Source, c.Destination, err)
		}
		if j, ok := seen[canon]; ok {
			prev := cfgs[j]
			same := ""
			if canon != filepath.Clean(c.Destination) || canon != filepath.Clean(prev.Destination) {
				same = " (both are " + canon + ")"
			}
			return fmt.Errorf("templates %s and %s have one destination, %s and %s%s: each file needs exactly one template",
				prev.Source, c.Source, prev.Destination, c.Destination, same)
		}
		seen[canon] = i
	}
	return nil
}

// WriteError is a render that could not be written to its destination
// (disk full, permission denied, read-only filesystem...). The destination
// keeps its previous content; a Runner retries with backoff.
type WriteError struct {
	Destination string
	Err         error
}

func (e *WriteError) Error() string { return e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }
