//go:build unix

package admin

import "syscall"

// maxFDs is RLIMIT_NOFILE's soft limit.
func maxFDs() (uint64, bool) {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil {
		return 0, false
	}
	return uint64(lim.Cur), true // an int64 on FreeBSD
}
