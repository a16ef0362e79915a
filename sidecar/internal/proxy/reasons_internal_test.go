package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestDialFailReason(t *testing.T) {
	op := func(err error) error { return &net.OpError{Op: "dial", Net: "tcp", Err: err} }
	for _, tt := range []struct {
		err  error
		want dialFailure
	}{
		{op(os.NewSyscallError("connect", syscall.ECONNREFUSED)), failRefused},
		{op(os.NewSyscallError("connect", syscall.EHOSTUNREACH)), failUnreachable},
		{op(os.NewSyscallError("socket", syscall.EMFILE)), failFDLimit},
		{op(os.NewSyscallError("socket", syscall.ENFILE)), failFDLimit},
		// Go's resolver keeps only the text of its socket's error.
		{&net.DNSError{Err: "dial udp 127.0.0.53:53: socket: " + syscall.EMFILE.Error(), Name: "db.example"}, failFDLimit},
		{&net.DNSError{Err: "server misbehaving", Name: "db.example"}, failOther},
		{fmt.Errorf("dial: %w", context.DeadlineExceeded), failTimeout},
		{fmt.Errorf("dial: %w", context.Canceled), failCanceled},
		{errors.New("something else"), failOther},
	} {
		if got := dialFailReason(tt.err); got != tt.want {
			t.Errorf("dialFailReason(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}
