// Package relay defines the contract between the forwarder, which accepts and
// dials connections, and a data path, which moves bytes between a client and
// its upstream. The portable data path (a goroutine per direction, splice) and
// the Linux epoll data path both implement Func, and both must pass the same
// test suite.
package relay

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// Func relays bytes both ways between client and upstream until both
// directions have ended, then closes both connections. It takes ownership
// of both connections.
//
//   - When the client ends (EOF, or a reset or broken pipe on its socket)
//     without having sent a byte, before the upstream ended its side (FIN
//     or reset arrived, read yet or not), both connections are closed at
//     once and Result.Reason is ReasonClientGone, whether or not the
//     upstream's greeting reached it. An upstream that ended first (a
//     refusal in place of the greeting, then close) ended the session.
//   - When one side stops sending (EOF), the other side's write half is
//     closed (CloseWrite), so half-closed protocols keep working; the relay
//     ends once both directions have ended.
//   - If idle > 0 and no byte moves in either direction for idle, both
//     connections are closed and Result.Reason is ReasonIdle.
//   - When ctx is done (drain deadline, stale upstream), both connections are
//     closed promptly and Result.Reason is ReasonCanceled, unless both
//     directions had already ended cleanly: that session is ReasonDone.
//   - A read or write error on either side closes both connections.
//   - If ctx carries Counters (WithCounters), bytes are added to them as
//     they are delivered, not only when the relay ends.
type Func func(ctx context.Context, client, upstream *net.TCPConn, idle time.Duration) Result

// Result reports what a relay moved and why it ended.
type Result struct {
	ToUpstream int64  // bytes read from the client and written to the upstream
	ToClient   int64  // bytes read from the upstream and written to the client
	Reason     Reason // why the relay ended
	Err        error  // the first error, if Reason is ReasonClientError or ReasonUpstreamError; or what refused a command that ended the session (ReasonDone)
}

// Reason says why a relay ended. Values are stable: they appear in logs.
type Reason string

const (
	ReasonDone          Reason = "eof"            // both sides closed cleanly
	ReasonClientError   Reason = "client_error"   // read/write error on the client side (e.g. reset)
	ReasonUpstreamError Reason = "upstream_error" // read/write error on the upstream side (e.g. reset)
	ReasonIdle          Reason = "idle_timeout"
	ReasonCanceled      Reason = "canceled" // ctx done: drain deadline passed or upstream went stale
	// The client closed or reset without sending a byte, the upstream not
	// having ended first. MySQL is server-first, so such a client has left
	// (a pool giving up, `nc -z`, a probe that reads the greeting), not
	// half-closed a request: the relay ends at once rather than hold a slot
	// until a slow upstream greets or closes. Whether the greeting reached
	// it first is a race the client does not decide, so it does not count.
	ReasonClientGone Reason = "client_gone"
)

// Counters are live byte counts: a data path adds to them as it delivers
// bytes, so a connection that lives for hours (a pooled database
// connection) shows in metrics long before it ends. When the relay returns
// they have grown by exactly its Result's counts. Many relays may share one
// Counters (a forward's totals).
type Counters struct {
	ToUpstream atomic.Int64 // bytes written to the upstream
	ToClient   atomic.Int64 // bytes written to the client
}

type countersKey struct{}

// WithCounters returns a context that asks a Func to add to c as it moves
// bytes. A Func that predates Counters ignores it; so does a nil c.
func WithCounters(ctx context.Context, c *Counters) context.Context {
	return context.WithValue(ctx, countersKey{}, c)
}

// CountersFrom returns the Counters ctx carries, or nil.
func CountersFrom(ctx context.Context) *Counters {
	c, _ := ctx.Value(countersKey{}).(*Counters)
	return c
}

// Settle is how a relay ends: after the client's EOF has been passed on
// or has arrived with nothing unread before it (the app is done;
// PeerDone), an upstream reset or broken pipe is ReasonDone. The
// database closed first and reset what followed: MariaDB and MySQL close
// on COM_QUIT, and a TLS close_notify arriving after that is answered with
// a reset. Every pooled connection in TLS mode ends so.
func Settle(reason Reason, err error, clientDone bool) (Reason, error) {
	if reason == ReasonUpstreamError && clientDone && PeerLeft(err) {
		return ReasonDone, nil
	}
	return reason, err
}

// socketDead reports whether the kernel has torn the connection down, which
// tells a reset socket from a healthy one after splice failed.
func socketDead(c *net.TCPConn) bool { return onFD(c, PeerReset) }

// ConnDone is PeerDone for c's descriptor, for a data path that holds the
// connection rather than its descriptor.
func ConnDone(c *net.TCPConn) bool { return onFD(c, PeerDone) }

// ConnEnded is PeerEnded for c's descriptor: c's peer sent its FIN or
// reset, read or not.
func ConnEnded(c *net.TCPConn) bool { return onFD(c, PeerEnded) }

// PeerLeft reports whether err is the peer's doing (a reset, or a send
// the reset broke), not the sidecar's own failure (ENOMEM from a splice, a
// failed epoll_ctl), which must stay an error.
func PeerLeft(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
