//go:build !unix

package admin

// maxFDs has no RLIMIT_NOFILE here: process_max_fds is left out.
func maxFDs() (uint64, bool) { return 0, false }
