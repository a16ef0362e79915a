//go:build !linux || !(amd64 || arm64)

package epollrelay

import (
	"context"
	"net"
	"time"

	"github.com/example/sidecar/sidecar/internal/relay"
)

// Engine is unavailable on this system; New always fails.
type Engine struct{}

// New reports ErrUnsupported so the caller falls back to the portable path.
func New(Options) (*Engine, error) { return nil, ErrUnsupported }

// Relay is never reached because New fails; it closes both connections.
func (e *Engine) Relay(_ context.Context, client, upstream *net.TCPConn, _ time.Duration) relay.Result {
	client.Close()
	upstream.Close()
	return relay.Result{Reason: relay.ReasonClientError, Err: ErrUnsupported}
}

// RelayCodec is never reached because New fails; it closes both connections.
func (e *Engine) RelayCodec(_ context.Context, client, upstream *net.TCPConn, _ relay.Codec, _ time.Duration) relay.Result {
	client.Close()
	upstream.Close()
	return relay.Result{Reason: relay.ReasonClientError, Err: ErrUnsupported}
}

// Close does nothing.
func (e *Engine) Close() error { return nil }
