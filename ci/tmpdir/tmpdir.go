// Package tmpdir makes the pipeline's private temporary directories (the
// secrets handed to the engine, the image export) so that a run that
// ends without its cleanup does not leave them for good: mage's -t
// timeout exits without waiting for the target, and a kill skips every
// defer. Each directory holds a lock its process keeps until it removes
// the directory; the kernel drops the lock when the process ends, however
// it ends, so Sweep removes only directories whose owner is gone, never a
// concurrent run's (a recorded process id could be reused or belong to
// another container sharing /tmp).
package tmpdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	matches, err := filepath.Glob(filepath.Join(dir, prefix+"*"))
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, dir := range matches {
		ok, err := sweepOne(dir)
		if ok {
			removed = append(removed, dir)
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
