//go:build unix

package tmpdir

import (
	"errors"
	"os"
	"syscall"
)

// hold takes f's exclusive lock for its owner. The lock belongs to the
// open file, which Go opens close-on-exec: child processes (docker, the
// dagger CLI) do not keep it once this process ends.
func hold(f *os.File) error { return take(f) }

// take takes f's exclusive lock without waiting; it fails while another
// open file (another run, or this one) holds it.
func take(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

// busy reports whether take failed because another open file holds the
// lock.
func busy(err error) bool { return errors.Is(err, syscall.EWOULDBLOCK) }

// openFile opens path to take its lock, if it is a file: not through a
// symlink, nor waiting for a FIFO's writer.
func openFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
}
