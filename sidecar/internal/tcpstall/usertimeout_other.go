//go:build !linux

package tcpstall

import (
	"net"
	"time"
)

// Set does nothing where TCP_USER_TIMEOUT is not offered; keepalive alone
// then notices a vanished peer only while nothing is in flight.
func Set(*net.TCPConn, time.Duration) error { return nil }
