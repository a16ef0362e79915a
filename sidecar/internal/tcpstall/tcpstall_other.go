//go:build !(linux && (amd64 || arm64))

package tcpstall

import (
	"net"
	"time"
)

// Supported: see the Linux build.
const Supported = false

// Take returns 0: without TCP_INFO the kernel keeps its own timeout.
func Take(int) time.Duration { return 0 }

// Check finds nothing to judge.
func Check(int, time.Duration) (bool, error) { return false, nil }

// Watch does nothing.
func Watch(*net.TCPConn, func(error)) func() { return func() {} }
