//go:build !unix

package proxy_test

import "testing"

// needFDs has no RLIMIT_NOFILE to raise here.
func needFDs(*testing.T, uint64) {}
