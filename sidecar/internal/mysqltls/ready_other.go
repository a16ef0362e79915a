//go:build !unix

package mysqltls

import "net"

// tcpReady is nil where a socket cannot be read without waiting: a burst's
// first read then goes out alone.
func tcpReady(*net.TCPConn) readyFunc { return nil }
