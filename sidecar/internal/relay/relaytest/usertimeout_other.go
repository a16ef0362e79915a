//go:build !linux

package relaytest

import (
	"net"
	"testing"
	"time"
)

// setUserTimeout is never called here: testStalledUpstream skips first,
// and viaTLS moves only a timeout it read, which is 0 here.
func setUserTimeout(testing.TB, *net.TCPConn, time.Duration) {}

// userTimeoutOf is 0 where there is no TCP_USER_TIMEOUT.
func userTimeoutOf(*net.TCPConn) time.Duration { return 0 }
