//go:build !linux

package relaytest

import (
	"net"
	"testing"
	"time"
)

// setUserTimeout is never called here: the test that would skips first.
func setUserTimeout(t testing.TB, _ *net.TCPConn, _ time.Duration) {
	t.Error("TCP_USER_TIMEOUT is Linux's")
}

// userTimeoutOf is 0 where there is no TCP_USER_TIMEOUT.
func userTimeoutOf(*net.TCPConn) time.Duration { return 0 }
