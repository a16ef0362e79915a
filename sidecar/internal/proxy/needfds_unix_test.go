//go:build unix

package proxy_test

import (
	"syscall"
	"testing"

	"github.com/example/sidecar/internal/testenv"
	"github.com/example/sidecar/internal/testkit"
)

// needFDs makes sure the process may open n file descriptors, raising the
// soft limit towards the hard one if needed.
func needFDs(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if uint64(lim.Cur) >= n { // int64s on FreeBSD
		return
	}
	if uint64(lim.Max) < n {
		testenv.Unavailable(t, "RLIMIT_NOFILE hard limit %d < %d (raise it with ulimit -Hn)", lim.Max, n)
	}
	testkit.SetLimit(&lim.Cur, n)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
}
