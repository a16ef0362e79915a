//go:build !unix

package tmpdir

import (
	"errors"
	"os"
)

// Without flock the owner holds nothing and a sweeper takes nothing: Sweep
// leaves every directory, so no run's is ever removed.
func hold(*os.File) error { return nil }

func take(*os.File) error { return errors.New("no file locks on this platform") }

func busy(error) bool { return false }

func openFile(path string) (*os.File, error) { return os.Open(path) }
