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
	dest string
	tmp  string
	done bool
}

// Stage writes data to a temporary file in dest's directory and fsyncs it.
// Its mode is perms if non-zero, else the existing destination's mode (and
// owner, when we may set it), else DefaultPerms.
func Stage(dest string, data []byte, perms fs.FileMode) (*Staged, error) {
	dir, base := filepath.Split(dest)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".autopilot-*")
	if err != nil {
		return nil, fmt.Errorf("stage %s: %w", dest, err)
	}
	s := &Staged{dest: dest, tmp: f.Name()}
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
	if info, err := os.Stat(dest); err == nil {
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
