//go:build unix

package testkit

import "syscall"

// SetsockoptInt is syscall.SetsockoptInt on a RawConn's descriptor,
// whose type differs on Windows.
func SetsockoptInt(fd uintptr, level, opt, value int) error {
	return syscall.SetsockoptInt(int(fd), level, opt, value)
}
