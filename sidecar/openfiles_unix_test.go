//go:build unix

package main

import (
	"syscall"
	"testing"
)

// The start-up warning's advice is a hard limit: the sidecar must then
// use all of it. Go raises the soft limit only to one below the hard one
// (syscall/rlimit.go), so a task definition with softLimit below
// hardLimit, set to the advised value, was still warned about.
func TestOpenFilesLimitIsTheHardLimit(t *testing.T) { // not parallel: the limit is the process's
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
			t.Error(err)
		}
	})
	low := syscall.Rlimit{Cur: old.Max - 1, Max: old.Max} // what Go leaves
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	got, ok := openFilesLimit()
	var now syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now); err != nil {
		t.Fatal(err)
	}
	if !ok || got != uint64(old.Max) || now.Cur != old.Max {
		t.Errorf("openFilesLimit() = %d, %v with soft limit now %d; want the hard limit %d, and the soft limit raised to it", got, ok, now.Cur, old.Max)
	}
}
