package relay

import (
	"context"
	"net"
	"time"
)

// Codec is what the upstream socket carries when it is not the session's
// own bytes: TLS, opened by the sidecar. A data path that takes a Codec
// moves raw bytes between the socket and the codec and the session's bytes
// between the codec and the client. All methods are called from one
// goroutine.
type Codec interface {
	// Start is called once the data path owns the upstream socket; from
	// then on the codec never touches it.
	Start()
	// Seal takes session bytes bound for the upstream; the raw bytes to
	// send then wait in Outgoing.
	Seal(p []byte) error
	// Outgoing returns the raw bytes waiting to be sent; Sent drops the
	// first n of them once the socket took them.
	Outgoing() []byte
	Sent(n int)
	// Feed hands over raw bytes read from the upstream; nil means the
	// upstream sent EOF. The codec may refer to raw until Open next
	// returns (0, nil) or until Hold: the caller must not reuse the buffer
	// before either.
	Feed(raw []byte)
	// Hold copies fed bytes not opened yet, releasing the caller's buffer.
	Hold()
	// Open writes session bytes from the upstream into p. (0, nil) means
	// it needs more raw bytes; io.EOF means the upstream ended its stream.
	Open(p []byte) (int, error)
	// CloseWrite seals the end of the client's stream (TLS close_notify).
	CloseWrite() error
}

// CodecFunc is Func's form for an upstream spoken through a Codec: the
// same contract, with Result's counts in session bytes. The login (which
// created the codec) has already moved bytes, so ReasonClientGone does
// not apply.
type CodecFunc func(ctx context.Context, client, upstream *net.TCPConn, codec Codec, idle time.Duration) Result
