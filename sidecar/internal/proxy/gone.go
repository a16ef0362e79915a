package proxy

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/example/sidecar/sidecar/internal/relay"
)

// errClientGone cancels a dial whose client has left.
var errClientGone = errors.New("client left before the upstream connection was made")

// clientGone reports whether the client has closed or reset the connection
// without sending a byte, without consuming anything: MySQL is server-first,
// so a client that is still there has sent nothing, and one that has sent
// bytes (another protocol) is served.
func clientGone(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	_ = rc.Read(func(fd uintptr) bool {
		gone = peekGone(int(fd))
		return true // never wait here
	})
	return gone
}

// peekGone looks at the socket without consuming or waiting: EOF or a
// reset means the client is gone; data or nothing yet means it is there.
func peekGone(fd int) bool {
	if relay.PeerReset(fd) {
		return true // not peeked: see watchClient
	}
	gone, _ := peek(fd)
	return gone
}

type clientKey struct{}

// withClient returns a dial context that carries the client it dials for.
func withClient(ctx context.Context, c *net.TCPConn) context.Context {
	return context.WithValue(ctx, clientKey{}, c)
}

// refuseIfClientGone is the default dialer's last step before connect():
// it fails the dial with errClientGone if the dial context's client has
// left meanwhile. One non-blocking peek: a client that stays waits for
// nothing.
func refuseIfClientGone(ctx context.Context, _, _ string, _ syscall.RawConn) error {
	c, ok := ctx.Value(clientKey{}).(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	gone := false
	// Control, not Read: watchClient holds the client's read lock while
	// it waits, and a peek needs no lock.
	_ = rc.Control(func(fd uintptr) { gone = peekGone(int(fd)) })
	if gone {
		return errClientGone
	}
	return nil
}

// watchClient returns a context for dialing client's upstream that is
// canceled with errClientGone if the client leaves meanwhile, and a stop
// function that ends the watch; after stop returns nothing reads the client.
func watchClient(parent context.Context, c *net.TCPConn) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	rc, err := c.SyscallConn()
	if err != nil {
		return ctx, func() { cancel(nil) }
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = rc.Read(func(fd uintptr) bool {
			// A reset is seen without a peek, which would take its error:
			// a client that resets as its login succeeds would then read
			// as a clean EOF to the relay (eof, not client_error).
			if relay.PeerReset(int(fd)) {
				cancel(errClientGone)
				return true
			}
			gone, wait := peek(int(fd))
			if wait {
				return false // wait until the socket is readable: data, EOF or reset
			}
			if gone {
				cancel(errClientGone)
			}
			return true
		})
	}()
	return ctx, func() {
		_ = c.SetReadDeadline(time.Unix(1, 0)) // wakes the watch
		<-done
		_ = c.SetReadDeadline(time.Time{})
		cancel(nil)
	}
}
