package epollrelay

import (
	"errors"

	"github.com/example/sidecar/sidecar/internal/relay"
)

// Options tune an Engine. The zero value is a good default.
type Options struct {
	// Loops is the number of event-loop goroutines, each with its own epoll
	// instance; connections are spread over them. 0 means 1, which is best
	// for small messages on few cores: one thread, no hand-offs.
	Loops int
	// BufferSize is the largest read per event. 0 means 64 KiB. Each loop
	// has one such scratch buffer; a connection holds its own only while its
	// peer cannot take what was read (backpressure).
	BufferSize int
	// Fallback relays a pair the engine cannot take, e.g. when duplicating
	// a socket fails because the process is out of file descriptors. Nil
	// means such a pair is closed and reported as a client error.
	Fallback relay.Func
	// CodecFallback is Fallback for RelayCodec's pairs. Nil means such a
	// pair is closed and reported as a client error.
	CodecFallback relay.CodecFunc
	// NoSplice keeps bulk transfers on read and send. By default a
	// direction whose read fills the whole buffer switches to splice(2)
	// through its own pipe (two more fds while the pair lives), which saves
	// copying every byte through user space.
	NoSplice bool
	// NoLockThread leaves the loop goroutines unpinned from their OS threads.
	NoLockThread bool
}

// ErrUnsupported is returned by New where the engine is not built: it
// needs Linux epoll, on amd64 or arm64 (the platforms the image ships for).
var ErrUnsupported = errors.New("epollrelay: needs Linux on amd64 or arm64; use the portable data path")

func (o Options) loops() int {
	if o.Loops <= 0 {
		return 1
	}
	return o.Loops
}

func (o Options) bufferSize() int {
	if o.BufferSize <= 0 {
		return 64 << 10
	}
	return o.BufferSize
}
