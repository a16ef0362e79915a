package relay_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/example/sidecar/sidecar/internal/relay"
)

// Only the peer's own departures are taken for one: the sidecar's failures
// stay errors, whatever the client sent.
func TestPeerLeft(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{syscall.ECONNRESET, true},
		{syscall.EPIPE, true},
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
		{fmt.Errorf("splice client: %w", syscall.EPIPE), true},
		{syscall.ENOMEM, false},
		{fmt.Errorf("epoll_ctl client: %w", syscall.EBADF), false},
		{syscall.ETIMEDOUT, false},
		{io.EOF, false},
		{nil, false},
	} {
		if got := relay.PeerLeft(tc.err); got != tc.want {
			t.Errorf("PeerLeft(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
