package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/example/sidecar/sidecar/internal/relay"
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

// closeReasonOf refines only the forwarder's own cuts: who left is the
// relay's to say (relay.Func), which alone saw whether the database had
// ended first. A reset after the database closed without a byte is the
// client's error, not a client gone before a byte moved.
func TestCloseReasonOf(t *testing.T) {
	canceled := func(cause error) context.Context {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(cause)
		return ctx
	}
	reset := errors.New("read: connection reset by peer")
	for _, tt := range []struct {
		name string
		res  relay.Result
		ctx  context.Context
		want closeReason
	}{
		{"client gone", relay.Result{Reason: relay.ReasonClientGone}, context.Background(), closeClientGone},
		{"reset after the database closed first", relay.Result{Reason: relay.ReasonClientError, Err: reset}, context.Background(), closeClientError},
		{"reset mid-session", relay.Result{Reason: relay.ReasonClientError, Err: reset, ToUpstream: 5, ToClient: 90}, context.Background(), closeClientError},
		{"drain deadline", relay.Result{Reason: relay.ReasonCanceled}, canceled(errDrainDeadline), closeDrainDeadline},
		{"stale upstream", relay.Result{Reason: relay.ReasonCanceled}, canceled(errStale), closeStale},
		{"canceled otherwise", relay.Result{Reason: relay.ReasonCanceled}, canceled(context.Canceled), closeCanceled},
		{"done", relay.Result{Reason: relay.ReasonDone, ToUpstream: 5}, context.Background(), closeDone},
	} {
		if got := closeReasonOf(tt.res, tt.ctx); got != tt.want {
			t.Errorf("%s: closeReasonOf(%+v) = %s, want %s", tt.name, tt.res, got, tt.want)
		}
	}
}
