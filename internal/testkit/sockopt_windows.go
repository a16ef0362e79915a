package testkit

import "syscall"

// SetsockoptInt is syscall.SetsockoptInt on a RawConn's handle.
func SetsockoptInt(fd uintptr, level, opt, value int) error {
	return syscall.SetsockoptInt(syscall.Handle(fd), level, opt, value)
}
