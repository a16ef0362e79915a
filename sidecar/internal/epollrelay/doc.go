// Package epollrelay is a Linux data path for the forwarder: it moves bytes
// between a client and its upstream with a few event-loop goroutines that
// each own an epoll instance and the raw socket fds, instead of two
// goroutines per connection on Go's netpoller.
//
// On small request/response traffic (MySQL point selects over pooled
// connections) this saves the netpoller's per-message goroutine wake-ups and
// cross-thread hand-offs: one message costs one read and one send, and many
// ready connections share one epoll_wait. A direction that starts carrying
// bulk data switches to splice(2) through a pipe so its bytes are not copied
// through user space.
//
// Use one Engine per process:
//
//	e, err := epollrelay.New(epollrelay.Options{Fallback: relay.Copy})
//	if err != nil {
//		// not Linux, or no epoll/eventfd: use relay.Copy
//	}
//	defer e.Close() // after the last Relay call has returned
//	cfg.Relay = e.Relay
//
// Relay takes ownership of both connections: it duplicates their fds into
// the engine and closes the *net.TCPConns at once, so callers must not use
// them afterwards (closing them again is harmless). Keepalive and other
// socket options set before the call stay in force, except the upstream's
// TCP_USER_TIMEOUT, which the engine takes over (package tcpstall): a peer
// that answers zero-window probes (alive, just not reading) is not cut.
//
// On other systems New returns ErrUnsupported so the caller keeps the
// portable path.
package epollrelay
