// Package tmpdir makes the pipeline's private temporary directories (the
// secrets handed to the engine, the image export), and its temporary
// files beside a target (the copy to OCI_TARBALL), so that a run that
// ends without its cleanup does not leave them for good: mage's -t
// timeout exits without waiting for the target, and a kill skips every
// defer. Each directory or file holds a lock its process keeps until it
// removes the directory or renames the file; the kernel drops the lock
// when the process ends, however it ends, so Sweep and SweepFiles remove
// only those whose owner is gone, never a concurrent run's (a recorded
// process id could be reused or belong to another container sharing
// /tmp).
package tmpdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ownerFile is the lock file in each directory. It appears, by rename,
// only once locked: a directory without it is being made (or not ours).
const ownerFile = ".owner"

// Dir is a private temporary directory held by this process.
type Dir struct {
	Path string
	lock *os.File
}

// New makes a private directory os.TempDir()/prefix* and holds it.
func New(prefix string) (*Dir, error) {
	path, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(path, ownerFile+".new"), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err == nil {
		if err = hold(lock); err == nil {
			err = os.Rename(lock.Name(), filepath.Join(path, ownerFile))
		}
	}
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		os.RemoveAll(path)
		return nil, fmt.Errorf("lock temporary directory %s: %w", path, err)
	}
	return &Dir{Path: path, lock: lock}, nil
}

// Remove removes the directory, then lets it go.
func (d *Dir) Remove() error {
	err := os.RemoveAll(d.Path)
	d.lock.Close()
	return err
}

// Sweep removes the directories dir/prefix* (os.TempDir() when dir is "",
// where New makes them) whose owner has ended without removing them, and
// returns them. A directory it cannot open (another user's) or that is
// still held is left alone; one it holds but cannot remove is an error.
func Sweep(dir, prefix string) ([]string, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	removed, err := sweepEach(dir, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), prefix) }, sweepOne)
	if errors.Is(err, os.ErrNotExist) && len(removed) == 0 {
		return nil, nil // no directory: nothing left in it (as Glob said)
	}
	return removed, err
}

// sweepEach applies sweep to the entries of dir that match, and returns
// those it removed. dir is read as a name, not a pattern (filepath.Glob):
// a TMPDIR of /tmp/run[1] must not sweep /tmp/run1.
func sweepEach(dir string, match func(os.DirEntry) bool, sweep func(path string) (bool, error)) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		if !match(e) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		ok, err := sweep(path)
		if ok {
			removed = append(removed, path)
		}
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}

func sweepOne(dir string) (bool, error) {
	lock, err := os.Open(filepath.Join(dir, ownerFile))
	if err != nil {
		return false, nil // being made, not ours, or not a directory
	}
	defer lock.Close()
	if take(lock) != nil {
		return false, nil // its owner runs
	}
	if err := os.RemoveAll(dir); err != nil {
		return false, fmt.Errorf("remove %s, left by a run that has ended: %w", dir, err)
	}
	return true, nil
}

// CreateHeld creates a new file in dir as os.CreateTemp does (pattern's
// last "*" becomes a random string) and holds it as New holds its
// directories: SweepFiles removes it only once this process has ended.
// The holder must keep the file open while the file has that name (rename
// it before closing it). A file it cannot lock (no file locks there) is
// named so that no sweep removes it.
func CreateHeld(dir, pattern string) (*os.File, error) { return createHeld(dir, pattern, hold) }

func createHeld(dir, pattern string, hold func(*os.File) error) (*os.File, error) {
	for range 100 { // a sweep runs once a run: more than one retry is rare
		f, err := os.CreateTemp(dir, pattern)
		if err != nil {
			return nil, err
		}
		err = hold(f)
		if err != nil && !busy(err) {
			// Held by nothing, though a later sweep may lock it (ENOLCK
			// from an NFS lock daemon that is back then): named so that
			// no sweep takes it, as a kill leaves it for good.
			f.Close()
			os.Remove(f.Name())
			return os.CreateTemp(dir, unlockedPattern(pattern))
		}
		if err == nil && stillNamed(f) {
			return f, nil
		}
		// A sweep took it between its creation and the lock, and removes
		// it: make another.
		f.Close()
	}
	return nil, fmt.Errorf("lock a new file %s in %s: taken by a sweep each time", pattern, dir)
}

// unlockedPattern is pattern for a file CreateHeld could not lock: its *
// becomes unlocked-*, which is no run of digits (SweepFiles).
func unlockedPattern(pattern string) string {
	i := strings.LastIndex(pattern, "*")
	if i < 0 {
		return pattern + "unlocked-"
	}
	return pattern[:i] + "unlocked-" + pattern[i:]
}

// stillNamed reports whether f is still the file at its name.
func stillNamed(f *os.File) bool {
	at, err := os.Stat(f.Name())
	if err != nil {
		return false
	}
	held, err := f.Stat()
	return err == nil && os.SameFile(at, held)
}

// SweepFiles removes the files CreateHeld(dir, pattern) made whose holder
// has ended (a kill, mage -t) without renaming or removing them, and
// returns them. A file still held, or one it cannot open, is left alone,
// and so is one whose * is not os.CreateTemp's digits: a user's file, or
// another pattern's (the copy of a target named x.partial-1.tar).
func SweepFiles(dir, pattern string) ([]string, error) {
	prefix, suffix := pattern, ""
	if i := strings.LastIndex(pattern, "*"); i >= 0 {
		prefix, suffix = pattern[:i], pattern[i+1:]
	}
	return sweepEach(dir, func(e os.DirEntry) bool {
		random, ok := strings.CutPrefix(e.Name(), prefix)
		random, ok2 := strings.CutSuffix(random, suffix)
		return e.Type().IsRegular() && ok && ok2 && digits(random)
	}, sweepFile)
}

// digits reports whether s is a non-empty run of decimal digits.
func digits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func sweepFile(path string) (bool, error) {
	f, err := openFile(path)
	if err != nil {
		return false, nil // gone meanwhile, not ours, or a symlink
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return false, nil // no longer the file ReadDir listed
	}
	if take(f) != nil || !stillNamed(f) {
		return false, nil // its holder runs, or renamed it meanwhile
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("remove %s, left by a run that has ended: %w", path, err)
	}
	return true, nil
}
