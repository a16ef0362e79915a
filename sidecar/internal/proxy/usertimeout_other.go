//go:build !linux

package proxy

import (
	"net"
	"time"
)

// setUserTimeout does nothing where TCP_USER_TIMEOUT is not offered;
// keepalive alone then notices a vanished peer only while nothing is in
// flight.
func setUserTimeout(*net.TCPConn, time.Duration) error { return nil }
