//go:build unix

package testkit

import (
	"sync"
	"syscall"
	"testing"
)

// NoNewFDs lowers the process's open-files limit so that no new
// descriptor can be made (every one below the lowest free one is open),
// and returns what puts the limit back; the test's end puts it back too,
// should the test fail first. The limit is the process's: a test that
// calls it must not run in parallel.
func NoNewFDs(t testing.TB) (restore func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	probe, err := syscall.Dup(0)
	if err != nil {
		t.Fatal(err)
	}
	_ = syscall.Close(probe)
	low := old
	SetLimit(&low.Cur, uint64(probe))
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Cleanup(restore) // a t.Fatal before restore must not leave later tests without descriptors
	return restore
}

// SetLimit sets a syscall.Rlimit field, a uint64 on Linux and macOS but
// an int64 on FreeBSD.
func SetLimit[T ~int64 | ~uint64](field *T, n uint64) { *field = T(n) }
