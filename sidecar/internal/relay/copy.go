package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/example/sidecar/sidecar/internal/tcpstall"
)

// Copy is the portable Func: one goroutine per direction, the caller's
// being one of them. Without an idle timeout each direction splices (zero
// copy) chunk by chunk on Linux (liveCopy), adding each chunk as it is
// delivered to the run's own counts, which tell a client that left without
// sending a byte (ReasonClientGone) from one that half-closed a session,
// and to ctx's Counters if any. With an idle timeout the directions copy
// through a buffer instead, because idleness needs to see every read.
func Copy(ctx context.Context, client, upstream *net.TCPConn, idle time.Duration) Result {
	r := newCopyRun(client, upstream, idle)
	if c := CountersFrom(ctx); c != nil {
		r.sharedToUpstream, r.sharedToClient = &c.ToUpstream, &c.ToClient
	}
	r.touch()

	// Closing both connections is what unblocks the pumps when ctx ends.
	stop := context.AfterFunc(ctx, func() { r.ending.End(ReasonCanceled, nil) })
	// The upstream's TCP_USER_TIMEOUT, enforced so that a live peer that
	// stops reading is not cut (package tcpstall).
	stopWatch := tcpstall.Watch(upstream, func(err error) { r.ending.End(ReasonUpstreamError, fmt.Errorf("upstream: %w", err)) })
	defer stopWatch()
	stuck := NewStuck(client, upstream, r.ending.End)
	defer stuck.Stop()

	var wg sync.WaitGroup
	wg.Add(2)
	go r.pumpDirection(&wg, r.upstream, r.client, counts{&r.own.ToUpstream, r.sharedToUpstream, stuck, true}, &r.toUpstream)
	// The caller's goroutine pumps the second direction: an idle
	// connection parks two goroutines, not three (a stack each).
	r.pumpDirection(&wg, r.client, r.upstream, counts{&r.own.ToClient, r.sharedToClient, stuck, false}, &r.toClient)
	wg.Wait()
	r.ending.Settle(ReasonDone, nil) // no-op if something ended the relay earlier
	stop()
	r.close()

	reason, err := r.ending.Result()
	// wg.Wait orders the totals' writes before these reads.
	return Result{ToUpstream: r.toUpstream, ToClient: r.toClient, Reason: reason, Err: err}
}

func newCopyRun(client, upstream *net.TCPConn, idle time.Duration) *copyRun {
	r := &copyRun{client: client, upstream: upstream, idle: idle}
	r.ending.Client = client
	r.ending.Adjust = r.gone
	r.ending.Close = r.close
	return r
}

// copyRun is the state one Copy call shares between its two directions.
type copyRun struct {
	client, upstream *net.TCPConn
	idle             time.Duration
	lastActive       atomic.Int64 // unix nanos of the last byte moved, either way

	own                              Counters      // this run's bytes, live
	sharedToUpstream, sharedToClient *atomic.Int64 // ctx's Counters; nil = none

	upstreamDone atomic.Bool // the upstream's EOF was passed on
	ending       Ending

	toUpstream, toClient int64 // each written by its direction's goroutine as it ends
}

// pumpDirection is one direction's goroutine: it copies src to dst until
// that ends, records the bytes moved in *total and finishes the direction.
func (r *copyRun) pumpDirection(wg *sync.WaitGroup, dst, src *net.TCPConn, live counts, total *int64) {
	defer wg.Done()
	n, err := r.pump(dst, src, live)
	*total = n
	if src == r.client && err == nil && r.silentClient() {
		r.ending.End(ReasonClientGone, nil)
		return
	}
	r.finish(dst, src, err)
}

// silentClient reports whether a client that ends now (EOF or an error on
// its side) has left (ReasonClientGone): it sent nothing, and the upstream
// had not ended first, as the kernel tells even before the other
// direction reads it.
func (r *copyRun) silentClient() bool {
	return r.own.ToUpstream.Load() == 0 && !r.upstreamDone.Load() && !ConnEnded(r.upstream)
}

// counts are where a direction adds the bytes it delivers: the run's own
// and, if not nil, ctx's Counters; and the Stuck its writes report to, if
// not nil.
type counts struct {
	own, shared *atomic.Int64
	stuck       *Stuck
	toUpstream  bool // the direction writes to the upstream
}

// begin and done bracket a write of the direction's (Stuck).
func (c counts) begin() {
	if c.stuck != nil {
		c.stuck.Begin(c.toUpstream)
	}
}

func (c counts) done() {
	if c.stuck != nil {
		c.stuck.Done(c.toUpstream)
	}
}

func (c counts) add(n int64) {
	c.own.Add(n)
	if c.shared != nil {
		c.shared.Add(n)
	}
}

// finish handles the end of one direction: a clean EOF passes on as a
// half-close; anything else ends the whole relay.
func (r *copyRun) finish(dst, src *net.TCPConn, err error) {
	switch {
	case err == nil:
		// src sent FIN: pass it on, keep the other direction running.
		if src == r.client {
			r.ending.ClientDone()
		} else {
			r.upstreamDone.Store(true)
		}
		r.ending.HalfClosed()
		// An error from the FIN itself (ENOTCONN: dst was reset) is
		// ignored, as the epoll path does: a dst still sending reports its
		// reset on its own direction, and one that has ended lost nothing.
		_ = dst.CloseWrite()
	case errors.Is(err, errIdle):
		r.ending.End(ReasonIdle, nil)
	case r.ending.Ended():
		// Closed by End (ctx, idle, the other direction): already accounted.
	default:
		r.ending.End(r.blame(dst, src, err), err)
	}
}

// errIdle ends a direction when neither direction moved a byte for idle.
var errIdle = errors.New("relay: idle timeout")

// pump copies src to dst until EOF (nil error) or an error, adding what
// it delivers to live (if not nil) as it goes.
func (r *copyRun) pump(dst, src *net.TCPConn, live counts) (int64, error) {
	if r.idle <= 0 {
		return liveCopy(dst, src, live) // splice on Linux
	}
	buf := make([]byte, 32*1024)
	var total int64
	for {
		if err := src.SetReadDeadline(time.Unix(0, r.lastActive.Load()).Add(r.idle)); err != nil {
			return total, err
		}
		nr, rerr := src.Read(buf)
		if nr > 0 {
			r.touch()
			live.begin()
			n, werr := r.writeAll(dst, buf[:nr])
			live.done()
			total += n
			live.add(n)
			if werr != nil {
				return total, werr
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if errors.Is(rerr, os.ErrDeadlineExceeded) {
			// The other direction may have moved bytes meanwhile: the
			// deadline is re-armed from the latest activity.
			if time.Since(time.Unix(0, r.lastActive.Load())) < r.idle {
				continue
			}
			return total, errIdle
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// writeAll writes b, giving up only when nothing moved either way for idle:
// a slow reader on one side is not idle while the other side is busy.
func (r *copyRun) writeAll(dst *net.TCPConn, b []byte) (int64, error) {
	var done int64
	for len(b) > 0 {
		if err := dst.SetWriteDeadline(time.Unix(0, r.lastActive.Load()).Add(r.idle)); err != nil {
			return done, err
		}
		n, err := dst.Write(b)
		done += int64(n)
		b = b[n:]
		if n > 0 {
			r.touch()
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			if time.Since(time.Unix(0, r.lastActive.Load())) >= r.idle {
				return done, errIdle
			}
		default:
			return done, err
		}
	}
	return done, nil
}

func (r *copyRun) touch() { r.lastActive.Store(time.Now().UnixNano()) }

// close closes both connections: Ending.Close, and again at the end,
// which is harmless.
func (r *copyRun) close() {
	_ = r.client.Close()
	_ = r.upstream.Close()
}

// gone is the run's Ending.Adjust: a silent client's reset, or a failed
// write to it, is a client that left, like one that sent FIN then.
func (r *copyRun) gone(reason Reason, err error) (Reason, error) {
	if reason == ReasonClientError && PeerLeft(err) && r.silentClient() {
		return ReasonClientGone, nil
	}
	return reason, err
}

// blame decides which side an error in the src→dst direction belongs to.
// splice reports read and write failures alike, so the socket that the
// kernel has already torn down (a reset moves it to TCP_CLOSE) decides;
// failing that, a broken pipe points at the writer and anything else at the
// reader.
func (r *copyRun) blame(dst, src *net.TCPConn, err error) Reason {
	side := func(c *net.TCPConn) Reason {
		if c == r.client {
			return ReasonClientError
		}
		return ReasonUpstreamError
	}
	dstDead, srcDead := socketDead(dst), socketDead(src)
	switch {
	case srcDead && !dstDead:
		return side(src)
	case dstDead && !srcDead:
		return side(dst)
	case errors.Is(err, syscall.EPIPE):
		return side(dst)
	default:
		return side(src)
	}
}
