// Package epollrelay is a Linux data path for the forwarder: it moves bytes
// between a client and its upstream with a few event-loop goroutines that
// each own an epoll instance and the raw socket fds, instead of two
// goroutines per connection on Go's netpoller.
//
// On small request/response traffic (MySQL point selects over pooled
// connections) this saves the netpoller's per-message goroutine wake-ups and
// cross-thread hand-offs: one message costs one read and one send, and many
// ready connections share one epoll_wait.
//
// Engine.Relay implements relay.Func. On other systems New returns an error
// so the caller keeps the portable path.
package epollrelay
