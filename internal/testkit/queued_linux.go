package testkit

import (
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// WaitQueued waits until the socket fd has at least n bytes to read
// (TIOCINQ), failing t after 10 s.
func WaitQueued(t testing.TB, fd, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		var q int32
		_, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TIOCINQ, uintptr(unsafe.Pointer(&q)))
		if e != 0 {
			t.Fatalf("TIOCINQ: %v", e)
		}
		if int(q) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes queued, want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}
