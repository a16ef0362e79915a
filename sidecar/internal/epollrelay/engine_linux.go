//go:build linux && (amd64 || arm64)

package epollrelay

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/example/sidecar/sidecar/internal/relay"
	"github.com/example/sidecar/sidecar/internal/tcpstall"
)

// Engine runs the event loops. Create one per process with New, pass
// e.Relay as the relay.Func, and Close it after the last relay returned.
type Engine struct {
	opts      Options
	loops     []*loop
	next      atomic.Uint32
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New starts opts.Loops event loops. It fails only if the kernel refuses an
// epoll instance or eventfd (e.g. out of file descriptors); the caller then
// uses the portable data path.
func New(opts Options) (*Engine, error) {
	e := &Engine{opts: opts}
	for i := 0; i < opts.loops(); i++ {
		l, err := newLoop(opts)
		if err != nil {
			for _, l := range e.loops {
				l.closeFDs()
			}
			return nil, fmt.Errorf("epollrelay: start event loop %d: %w", i, err)
		}
		e.loops = append(e.loops, l)
	}
	for _, l := range e.loops {
		e.wg.Add(1)
		go e.runLoop(l)
	}
	return e, nil
}

func (e *Engine) runLoop(l *loop) {
	defer e.wg.Done()
	l.run()
}

// Close stops the loops. Relays still running end with ReasonCanceled;
// later calls to Relay close both connections and return the same. Close waits
// until every loop has closed its sockets.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		for _, l := range e.loops {
			l.mu.Lock()
			l.closed = true
			l.queue = append(l.queue, op{kind: opStop})
			l.signalLocked()
			l.mu.Unlock()
		}
	})
	e.wg.Wait()
	return nil
}

// Relay implements relay.Func. It moves both sockets into an event loop
// (duplicating their fds, then closing the Go connections) and blocks until
// the pair has finished; the calling goroutine costs nothing meanwhile.
func (e *Engine) Relay(ctx context.Context, client, upstream *net.TCPConn, idle time.Duration) relay.Result {
	cfd, ufd, err := take(client, upstream)
	if err != nil {
		return e.cannot(ctx, client, upstream, idle, err)
	}
	return e.run(ctx, newPair(cfd, ufd, idle, relay.CountersFrom(ctx), nil))
}

// RelayCodec implements relay.CodecFunc: the same, with the upstream's
// bytes sealed and opened by codec (TLS) inside the loop.
func (e *Engine) RelayCodec(ctx context.Context, client, upstream *net.TCPConn, codec relay.Codec, idle time.Duration) relay.Result {
	cfd, ufd, err := take(client, upstream)
	if err != nil {
		if e.opts.CodecFallback != nil {
			return e.opts.CodecFallback(ctx, client, upstream, codec, idle)
		}
		client.Close()
		upstream.Close()
		return relay.Result{Reason: relay.ReasonClientError, Err: err}
	}
	codec.Start()
	return e.run(ctx, newPair(cfd, ufd, idle, relay.CountersFrom(ctx), codec))
}

// take duplicates both sockets for the engine and closes the Go side,
// which removes them from the runtime's netpoller so it gets no events.
// On failure nothing is closed.
func take(client, upstream *net.TCPConn) (cfd, ufd int, err error) {
	cfd, err = dupConn(client)
	if err != nil {
		return -1, -1, fmt.Errorf("epollrelay: take client socket: %w", err)
	}
	ufd, err = dupConn(upstream)
	if err != nil {
		syscall.Close(cfd)
		return -1, -1, fmt.Errorf("epollrelay: take upstream socket: %w", err)
	}
	client.Close()
	upstream.Close()
	return cfd, ufd, nil
}

// run hands p to a loop and waits for its result.
func (e *Engine) run(ctx context.Context, p *pair) relay.Result {
	cfd, ufd := p.c.fd, p.u.fd
	l := e.loops[e.next.Add(1)%uint32(len(e.loops))]
	if !l.submit(op{kind: opAdd, p: p}) {
		syscall.Close(cfd)
		syscall.Close(ufd)
		return relay.Result{Reason: relay.ReasonCanceled}
	}
	if done := ctx.Done(); done != nil {
		select {
		case r := <-p.done:
			return r
		case <-done:
			l.submit(op{kind: opCancel, p: p}) // refused only if stopping, which finishes p too
		}
	}
	return <-p.done
}

// cannot handles a pair the engine could not take: the fallback relays it,
// or both connections are closed.
func (e *Engine) cannot(ctx context.Context, client, upstream *net.TCPConn, idle time.Duration, err error) relay.Result {
	if e.opts.Fallback != nil {
		return e.opts.Fallback(ctx, client, upstream, idle)
	}
	client.Close()
	upstream.Close()
	return relay.Result{Reason: relay.ReasonClientError, Err: err}
}

// endpoint is one socket of a pair, as the loop sees it.
type endpoint struct {
	fd       int
	gen      uint32 // tags epoll events so a stale event for a reused fd is ignored
	interest uint32 // events currently registered
	inSet    bool   // in the epoll set, perhaps with no interest (watched for a reset: sync)
	p        *pair
	rd       *direction   // bytes read from this socket
	wr       *direction   // bytes written to this socket
	side     relay.Reason // the Reason for an error on this socket
	name     string
	heard    int64 // loop clock of the last byte read from this socket
}

// pair is one relayed connection: its two sockets and both directions.
type pair struct {
	c, u     endpoint
	toU, toC direction
	codec    relay.Codec // nil: the upstream carries the session's bytes as they are
	idle     int64       // ns; 0 = no idle timeout
	stall    int64       // ns: the upstream's TCP_USER_TIMEOUT, enforced by the loop; 0 = none
	last     int64       // loop clock of the last byte moved
	calmAt   int64       // last when the upstream was last found with nothing waiting; -1 = never
	calmEOF  bool        // toU.eof then (its FIN is sent without moving last)
	idx      int         // position in loop.pairs
	finished bool
	done     chan relay.Result
}

func newPair(cfd, ufd int, idle time.Duration, live *relay.Counters, codec relay.Codec) *pair {
	p := &pair{idle: int64(idle), stall: int64(tcpstall.Take(ufd)), calmAt: -1, done: make(chan relay.Result, 1), codec: codec}
	p.c = endpoint{fd: cfd, p: p, rd: &p.toU, wr: &p.toC, side: relay.ReasonClientError, name: "client"}
	p.u = endpoint{fd: ufd, p: p, rd: &p.toC, wr: &p.toU, side: relay.ReasonUpstreamError, name: "upstream"}
	p.toU = direction{src: &p.c, dst: &p.u, pipeR: -1, pipeW: -1}
	p.toC = direction{src: &p.u, dst: &p.c, pipeR: -1, pipeW: -1}
	if live != nil {
		p.toU.live, p.toC.live = &live.ToUpstream, &live.ToClient
	}
	if codec != nil {
		p.toU.seal, p.toC.open = codec, codec
	}
	return p
}
