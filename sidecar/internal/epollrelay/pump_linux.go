//go:build linux && (amd64 || arm64)

package epollrelay

import (
	"sync/atomic"
	"syscall"

	"github.com/example/sidecar/sidecar/internal/relay"
	"github.com/example/sidecar/sidecar/internal/splicepipe"
)

// direction moves bytes from src to dst: by read and send, or, once it
// carries bulk data, by splice through a pipe (no copy to user space).
type direction struct {
	src, dst *endpoint
	buf      []byte // pending bytes dst would not take yet; nil otherwise
	off, end int
	eof      bool // src sent EOF and dst's write half is shut down
	n        int64
	live     *atomic.Int64 // the relay.Counters to add to as bytes go out; nil = none

	splicing     bool
	pipeR, pipeW int // -1 until the direction first goes bulk
	pipeSize     int
	inPipe       int // bytes spliced from src not yet spliced to dst

	seal   relay.Codec // client to upstream through a codec: it holds the pending bytes
	unsent []sealed    // with seal: plaintext sealed and not all out yet, oldest first
	rawOut int64       // with seal: raw bytes the upstream's socket took
	open   relay.Codec // upstream to client through a codec
}

func (d *direction) pending() bool {
	return d.end > d.off || d.inPipe > 0 || (d.seal != nil && len(d.seal.Outgoing()) > 0)
}

// sent counts m bytes written to dst.
func (d *direction) sent(m int) {
	d.n += int64(m)
	if d.live != nil {
		d.live.Add(int64(m))
	}
}

// pump reads once from d.src and sends what it got to d.dst. What dst does
// not take waits in d.buf, and d.src is not read again until it is sent.
func (l *loop) pump(d *direction) {
	switch {
	case d.splicing:
		l.pumpSplice(d)
		return
	case d.seal != nil:
		l.pumpSeal(d)
		return
	case d.open != nil:
		l.pumpOpen(d)
		return
	}
	buf := d.buf
	if buf == nil {
		buf = l.scratch
	}
	n, e := sysRead(d.src.fd, buf)
	if !l.received(d, n, e) {
		return
	}
	m, e := sysSend(d.dst.fd, buf[:n])
	switch l.classify(d.dst, "write", e) {
	case blocked:
		m = 0 // the raw call returned -1
	case failed:
		return
	}
	d.sent(m)
	switch {
	case m < n && d.buf == nil:
		d.buf = l.getBuf()
		d.off, d.end = 0, copy(d.buf, buf[m:n])
	case m < n:
		d.off, d.end = m, n
	case d.buf != nil && n < len(d.buf)/2:
		// The burst is over; give the buffer back so idle pairs hold none.
		l.putBuf(d.buf)
		d.buf = nil
	case n == len(buf) && l.splice:
		// A full read: bulk data. Splice from now on, if a pipe is to be had.
		l.startSplice(d)
	}
}

// received acts on a read (or splice) of n bytes from d.src: true when
// bytes arrived; false when there was nothing to read, on EOF (handed to
// ended) and on an error (the pair is finished).
func (l *loop) received(d *direction, n int, e syscall.Errno) bool {
	if l.classify(d.src, "read", e) != moved {
		return false
	}
	if n == 0 {
		l.ended(d)
		return false
	}
	d.src.p.last = l.now
	d.src.heard = l.now
	return true
}

// ended handles EOF on d.src: pass the half-close on to d.dst, and finish the
// pair once both directions have ended.
func (l *loop) ended(d *direction) {
	if d.seal != nil || d.open != nil {
		l.endedCodec(d)
		return
	}
	if p := d.src.p; d == &p.toU && silentClient(p) {
		// The client left without sending a byte (relay.ReasonClientGone):
		// free its slot now, not when a slow upstream greets or closes.
		l.finish(p, relay.ReasonClientGone, nil)
		return
	}
	d.eof = true
	sysShutdownWrite(d.dst.fd) // a peer already gone reports itself on its own socket
	if p := d.src.p; p.toU.eof && p.toC.eof {
		l.finish(p, relay.ReasonDone, nil)
	}
}

// silentClient reports whether p's client, ending now (EOF or an error on
// its socket), has left (relay.ReasonClientGone): it sent nothing, and the
// upstream had not ended first, as the kernel tells even before the loop
// reads it. A codec's pair has had its login: never.
func silentClient(p *pair) bool {
	return p.codec == nil && p.toU.n == 0 && !p.toU.pending() && !p.toC.eof && !relay.PeerEnded(p.u.fd)
}

func (l *loop) startSplice(d *direction) {
	if d.pipeR < 0 {
		r, w, size, err := splicepipe.New()
		if err != nil {
			return // out of fds: keep copying
		}
		d.pipeR, d.pipeW, d.pipeSize = r, w, size
	}
	if d.pending() {
		return // flush switches once the copied bytes are out
	}
	if d.buf != nil {
		l.putBuf(d.buf)
		d.buf = nil
	}
	d.splicing = true
}

// pumpSplice moves what src has into the pipe and on to dst. Bytes dst
// does not take stay in the pipe, and src is not read until they are sent.
func (l *loop) pumpSplice(d *direction) {
	n, e := sysSplice(d.src.fd, d.pipeW, d.pipeSize)
	if !l.received(d, n, e) {
		return
	}
	d.inPipe = n
	l.flushPipe(d)
	// Small is judged against what the pipe holds too: past
	// fs.pipe-user-pages-soft the kernel gives 8 KiB pipes, whose every
	// splice is under a quarter of the read buffer, and bulk data would
	// open and close a pipe for each read.
	if !d.src.p.finished && d.inPipe == 0 && n < min(l.bufSize, d.pipeSize)/4 {
		// Small messages again: read and send is cheaper. Give the pipe
		// back too, so a pooled connection that once carried bulk holds
		// no pipe: two fds, and pages the kernel counts against the user
		// (past fs.pipe-user-pages-soft, new pipes shrink to 8 KiB).
		d.splicing = false
		closePipe(d)
	}
}

func closePipe(d *direction) {
	if d.pipeR >= 0 {
		syscall.Close(d.pipeR)
		syscall.Close(d.pipeW)
		d.pipeR, d.pipeW = -1, -1
	}
}

func (l *loop) flushPipe(d *direction) {
	m, e := sysSplice(d.pipeR, d.dst.fd, d.inPipe)
	if l.classify(d.dst, "write", e) != moved {
		return
	}
	d.sent(m)
	d.inPipe -= m
	d.src.p.last = l.now
}

// flush sends pending bytes to d.dst.
func (l *loop) flush(d *direction) {
	switch {
	case d.inPipe > 0:
		l.flushPipe(d)
		return
	case d.seal != nil:
		l.flushSealed(d)
		return
	case d.open != nil:
		l.flushOpened(d)
		return
	}
	if l.sendBuffered(d) {
		d.off, d.end = 0, 0
		if d.pipeR >= 0 && l.splice {
			// The copied bytes that were waiting for a pipe are out.
			l.putBuf(d.buf)
			d.buf = nil
			d.splicing = true
		}
		// Otherwise keep d.buf: the source is likely sending a burst.
	}
}

// sendBuffered sends what waits in d.buf to d.dst; true once all of it
// is out.
func (l *loop) sendBuffered(d *direction) bool {
	m, e := sysSend(d.dst.fd, d.buf[d.off:d.end])
	if l.classify(d.dst, "write", e) != moved {
		return false
	}
	d.sent(m)
	d.off += m
	d.src.p.last = l.now
	return d.off == d.end
}

// outcome is what a non-blocking read, send or splice came to.
type outcome uint8

const (
	moved   outcome = iota // the call succeeded (0 bytes from a read is EOF)
	blocked                // EAGAIN or EINTR: nothing moved; the next event retries
	failed                 // any other error: the pair has been finished
)

// classify sorts the errno of a call on ep. Every pump treats errors alike:
// EAGAIN and EINTR wait for the next event (level-triggered epoll reports
// the socket again), anything else ends the pair, blamed on ep's side.
func (l *loop) classify(ep *endpoint, call string, e syscall.Errno) outcome {
	switch e {
	case 0:
		return moved
	case syscall.EAGAIN, syscall.EINTR:
		return blocked
	}
	l.fail(ep, call, e)
	return failed
}
