//go:build unix

package main

import "syscall"

// openFilesLimit raises RLIMIT_NOFILE's soft limit to the hard one and
// returns it. Go's start-up raise stops one short (syscall/rlimit.go), so
// a hard limit set to the warning's advice would still be warned about.
func openFilesLimit() (uint64, bool) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, false
	}
	if r.Cur < r.Max {
		raised := syscall.Rlimit{Cur: r.Max, Max: r.Max}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			r = raised
		}
	}
	return uint64(r.Cur), true
}
