package mysqltls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/example/sidecar/sidecar/internal/relay"
	"github.com/example/sidecar/sidecar/internal/tcpstall"
	"github.com/example/sidecar/sidecar/internal/tlscodec"
)

// RelayCodec is Relay for a session handed over as its Codec, when the
// data path that was to run it cannot (relay.CodecFunc). codec must come
// from Conn.Codec.
func RelayCodec(ctx context.Context, client, upstream *net.TCPConn, codec relay.Codec, idle time.Duration) relay.Result {
	c, ok := codec.(*tlscodec.Codec)
	if !ok {
		_ = client.Close()
		_ = upstream.Close()
		return relay.Result{Reason: relay.ReasonClientError, Err: fmt.Errorf("mysqltls: RelayCodec got a %T, not a codec from Conn.Codec", codec)}
	}
	return Relay(ctx, client, &Conn{Conn: c.TLS()}, idle)
}

// Relay moves the session between the plaintext client and the TLS
// connection to the server, with relay.Func's contract (half-close, idle,
// ctx, live Counters). The byte relays cannot serve here: TLS needs the
// bytes in user space.
func Relay(ctx context.Context, client *net.TCPConn, server *Conn, idle time.Duration) relay.Result {
	sctx, stopSession := context.WithCancel(ctx)
	defer stopSession()
	s := &session{ctx: sctx, stop: stopSession, client: client, server: server.Conn, idle: idle, releaseSlot: server.ReleaseSlot}
	if s.releaseSlot == nil {
		s.releaseSlot = func() {}
	}
	s.ending.Client, s.ending.Close, s.ending.Adjust = client, s.close, s.refused
	s.touch()
	var toUpstream, toClient *atomic.Int64
	if c := relay.CountersFrom(ctx); c != nil {
		toUpstream, toClient = &c.ToUpstream, &c.ToClient
	}
	stop := context.AfterFunc(ctx, func() { s.end(relay.ReasonCanceled, nil) })
	defer stop()
	if tcp := socketOf(server.Conn); tcp != nil {
		// The server's TCP_USER_TIMEOUT, enforced so that a live server
		// that stops reading is not cut (package tcpstall).
		stopWatch := tcpstall.Watch(tcp, func(err error) { s.end(relay.ReasonUpstreamError, fmt.Errorf("upstream: %w", err)) })
		defer stopWatch()
	}
	// A side's reset, seen while the other does not read (relay.Stuck).
	s.stuck = relay.NewStuck(client, socketOf(server.Conn), s.end)
	defer s.stuck.Stop()
	if idle > 0 {
		t := time.AfterFunc(idle, s.checkIdle)
		defer t.Stop()
		s.idleTimer = t
	}
	var wg sync.WaitGroup
	wg.Add(2)
	if server.iam != nil {
		s.relayIAM(&wg, server.iam, toUpstream, toClient)
	} else {
		s.bufs = server.bufs
		go s.pump(&wg, s.stuck.Writer(server, true), client, relayBuffer, tcpReady(client), toUpstream, &s.toUpstream, relay.ReasonClientError, relay.ReasonUpstreamError, s.clientEnded)
		go s.pump(&wg, s.stuck.Writer(client, false), server, maxRecordPlaintext, tlsReady(server.Conn), toClient, &s.toClient, relay.ReasonUpstreamError, relay.ReasonClientError, client.CloseWrite)
	}
	wg.Wait()
	s.ending.Settle(relay.ReasonDone, nil) // no-op if something ended the session earlier
	s.close()
	reason, err := s.ending.Result()
	return relay.Result{ToUpstream: s.toUpstream.Load(), ToClient: s.toClient.Load(), Reason: reason, Err: err}
}

type session struct {
	ctx        context.Context // ends with the session: bounds the work a pump does for it (an IAM signing)
	stop       context.CancelFunc
	client     *net.TCPConn
	server     *tls.Conn
	idle       time.Duration
	idleTimer  *time.Timer
	stuck      *relay.Stuck
	lastActive atomic.Int64

	toUpstream, toClient atomic.Int64
	ending               relay.Ending
	closeOnce            sync.Once
	refusal              atomic.Pointer[Refusal] // being sent to the app (iam.go): the session's end
	bufs                 *Buffers                // the relay buffers' lender
	releaseSlot          func()                  // Conn.ReleaseSlot, never nil
}

// refused makes a client error during a refusal the refusal: the app
// not reading it is no reason to lose why the session ended.
func (s *session) refused(reason relay.Reason, err error) (relay.Reason, error) {
	if r := s.refusal.Load(); r != nil && reason == relay.ReasonClientError {
		return relay.ReasonDone, r
	}
	return reason, err
}

func (s *session) touch() { s.lastActive.Store(time.Now().UnixNano()) }

// checkIdle ends the session when nothing moved for idle, else re-arms.
func (s *session) checkIdle() {
	quiet := time.Since(time.Unix(0, s.lastActive.Load()))
	if quiet >= s.idle {
		s.end(relay.ReasonIdle, nil)
		return
	}
	s.idleTimer.Reset(s.idle - quiet)
}

// pump copies src to dst. A clean EOF is passed on as a half-close; any
// error ends the session, blamed on the side it came from. full is the
// most one read of src returns: a TLS record's plaintext, or a buffer.
// ready, if not nil, reads what src has without waiting.
func (s *session) pump(wg *sync.WaitGroup, dst io.Writer, src io.Reader, full int, ready readyFunc, live, total *atomic.Int64,
	srcSide, dstSide relay.Reason, closeWrite func() error) {
	defer wg.Done()
	c := &chunks{bufs: s.bufs, full: full, ready: ready}
	defer c.release()
	for {
		buf, rerr := c.read(src)
		if n := len(buf); n > 0 {
			s.touch()
			w, werr := dst.Write(buf)
			total.Add(int64(w))
			if live != nil {
				live.Add(int64(w))
			}
			if werr != nil {
				s.end(dstSide, werr)
				return
			}
		}
		c.done(len(buf))
		if errors.Is(rerr, io.EOF) {
			s.halfClosed()
			if err := closeWrite(); err != nil {
				s.end(dstSide, err)
			}
			return
		}
		if rerr != nil {
			s.end(srcSide, rerr)
			return
		}
	}
}

// maxRecordPlaintext is the most a TLS record carries, and so the most a
// read of a tls.Conn returns.
const maxRecordPlaintext = 16 << 10

// chunks are a pump's reads. An idle direction waits in a read of lead,
// holding no buffer (two of 32 KiB made an idle session 80 KB of heap). A
// read that fills what it was given says more is likely behind it: the
// next reads go into a buffer borrowed from bufs, until one falls short.
// With ready, what src has after a full lead goes out with it, in one
// write. A direction whose last read happened to fill its buffer keeps it
// until its next bytes.
type chunks struct {
	lead  [leadSize]byte
	held  *[]byte // nil while idle
	want  int     // what the next read into held asks for
	asked int     // what the last read asked for
	bufs  *Buffers
	full  int
	ready readyFunc
}

// readyFunc reads what a source has without waiting for more: (0, nil)
// when it has nothing.
type readyFunc func([]byte) (int, error)

// tlsReady reads what c has received whole, without waiting: a read
// deadline in the past fails only a read of the socket, and crypto/tls
// keeps the connection after a timeout. Nothing else sets the server's
// read deadline during the relay, which ends sessions by closing them.
func tlsReady(c *tls.Conn) readyFunc {
	return func(p []byte) (int, error) {
		if err := c.SetReadDeadline(time.Unix(1, 0)); err != nil {
			return 0, err
		}
		n, err := c.Read(p)
		if derr := c.SetReadDeadline(time.Time{}); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			err = derr
		}
		return n, err
	}
}

// read reads src's next bytes: into lead while idle, else into the held
// buffer; after a full lead, with what ready has as well.
func (c *chunks) read(src io.Reader) ([]byte, error) {
	buf := c.lead[:]
	if c.held != nil {
		buf = (*c.held)[:c.want]
	}
	c.asked = len(buf)
	n, err := src.Read(buf)
	if err == nil && n == c.asked && c.held == nil && c.ready != nil {
		return c.extend(n)
	}
	return buf[:n], err
}

// extend borrows a buffer for the n bytes a full lead holds and what src
// has ready after them, up to full.
func (c *chunks) extend(n int) ([]byte, error) {
	c.held = c.bufs.chunk()
	b := (*c.held)[:c.full]
	copy(b, c.lead[:n])
	c.asked = c.full
	m, err := c.ready(b[n:])
	return b[:n+m], err
}

// done takes note that the n bytes read last have gone out.
func (c *chunks) done(n int) {
	switch {
	case n < c.asked:
		c.release()
	case c.held == nil:
		c.held = c.bufs.chunk()
		// The rest of a full read, so that reads of a tls.Conn keep to
		// its records and a record costs one write.
		c.want = c.full - n
	default:
		c.want = c.full
	}
}

func (c *chunks) release() {
	c.bufs.giveBack(c.held)
	c.held = nil
}

// clientEnded passes the client's EOF on to the server as a close_notify
// and FIN, after which a reset from the server ends the session as done
// (relay.Settle). The server's rows still come: tlscodec.CloseWrite keeps
// a KeyUpdate from the server from breaking the read side.
func (s *session) clientEnded() error {
	s.ending.ClientDone()
	return tlscodec.CloseWrite(s.server)
}

// end and halfClosed are the session's relay.Ending, under the names its
// pumps (here and in iam.go) call.
func (s *session) end(reason relay.Reason, err error) { s.ending.End(reason, err) }
func (s *session) halfClosed()                        { s.ending.HalfClosed() }

// close closes both sides, once.
func (s *session) close() {
	s.closeOnce.Do(func() {
		s.stop()
		_ = s.client.Close()
		// The socket first: tls.Conn's Close sends close_notify, which
		// waits up to 5 s for a server that reads nothing. A clean end
		// has sent it already (CloseWrite).
		_ = s.server.NetConn().Close()
		_ = s.server.Close()
	})
}

// socketOf is the TCP socket under c, through the layers that expose theirs
// (tls.Conn, tlscodec.Transport); nil if there is none.
func socketOf(c net.Conn) *net.TCPConn {
	for {
		switch v := c.(type) {
		case *net.TCPConn:
			return v
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
}

// chunk lends a read buffer of relayBuffer bytes; a nil b makes one.
func (b *Buffers) chunk() *[]byte {
	if b != nil {
		if p, ok := b.reads.Get().(*[]byte); ok {
			return p
		}
	}
	p := make([]byte, relayBuffer)
	return &p
}

// giveBack returns a buffer chunk lent; nil p is none.
func (b *Buffers) giveBack(p *[]byte) {
	if b != nil && p != nil {
		b.reads.Put(p)
	}
}
