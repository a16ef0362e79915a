//go:build linux && (amd64 || arm64)

package epollrelay

import (
	"errors"
	"fmt"
	"io"

	"github.com/example/sidecar/sidecar/internal/relay"
)

// A pair with a codec (TLS to the upstream) moves raw bytes between the
// upstream socket and the codec, and session bytes between the codec and
// the client, on the same loop as plain pairs: one read and one send per
// message each way, plus the codec's work. Nothing is spliced.

// pumpSeal reads the client and seals what it sent for the upstream.
func (l *loop) pumpSeal(d *direction) {
	n, e := sysRead(d.src.fd, l.scratch)
	if !l.received(d, n, e) {
		return
	}
	// Sealed a record's worth at a time, each counted once its raw bytes
	// are all out (flushSealed), as the plaintext path counts what the
	// socket took: a session that ends before they are has not delivered
	// them, and the app's server never sees them.
	for b := l.scratch[:n]; len(b) > 0; {
		k := min(len(b), maxRecordPlaintext)
		if err := d.seal.Seal(b[:k]); err != nil {
			l.finish(d.src.p, relay.ReasonUpstreamError, fmt.Errorf("tls write to upstream: %w", err))
			return
		}
		d.unsent = append(d.unsent, sealed{end: d.rawOut + int64(len(d.seal.Outgoing())), n: k})
		b = b[k:]
	}
	l.flushSealed(d)
}

// maxRecordPlaintext is the most plaintext a TLS record carries.
const maxRecordPlaintext = 16 << 10

// sealed is plaintext the codec sealed, not counted until the upstream's
// socket has taken the raw bytes up to end (direction.rawOut).
type sealed struct {
	end int64
	n   int
}

// countSealed counts the sealed plaintext whose raw bytes are all out.
func (d *direction) countSealed() {
	i := 0
	for ; i < len(d.unsent) && d.unsent[i].end <= d.rawOut; i++ {
		d.sent(d.unsent[i].n)
	}
	d.unsent = append(d.unsent[:0], d.unsent[i:]...)
}

// flushSealed sends the codec's raw bytes to the upstream. Once they are
// all out after the client's EOF (close_notify included), the upstream's
// write half is shut down.
func (l *loop) flushSealed(d *direction) {
	if out := d.seal.Outgoing(); len(out) > 0 {
		m, e := sysSend(d.dst.fd, out)
		if l.classify(d.dst, "write", e) != moved {
			return
		}
		d.seal.Sent(m)
		d.rawOut += int64(m)
		d.countSealed()
		d.src.p.last = l.now
	}
	if d.eof && !d.pending() {
		sysShutdownWrite(d.dst.fd)
		if p := d.src.p; p.toC.eof {
			l.finish(p, relay.ReasonDone, nil)
		}
	}
}

// pumpOpen reads the upstream and passes what the codec opens to the
// client.
func (l *loop) pumpOpen(d *direction) {
	n, e := sysRead(d.src.fd, l.scratch)
	if l.classify(d.src, "read", e) != moved {
		return
	}
	if n == 0 {
		d.open.Feed(nil) // the codec tells a clean end from a cut one
	} else {
		d.open.Feed(l.scratch[:n])
		d.src.p.last = l.now
		d.src.heard = l.now
	}
	l.drainOpen(d)
}

// drainOpen sends the client what the codec can open, until it needs more
// raw bytes or the client stops taking them (the rest then waits in
// d.buf, and flushOpened drains again once it is out).
func (l *loop) drainOpen(d *direction) {
	defer d.open.Hold() // l.scratch is read into again by the next pump
	for {
		k := 0
		var err error
		for k < len(l.plain) {
			var m int
			m, err = d.open.Open(l.plain[k:])
			k += m
			if err != nil || m == 0 {
				break
			}
		}
		if k > 0 {
			m, e := sysSend(d.dst.fd, l.plain[:k])
			switch l.classify(d.dst, "write", e) {
			case blocked:
				m = 0
			case failed:
				return
			}
			d.sent(m)
			if m < k {
				d.buf = l.getBuf()
				d.off, d.end = 0, copy(d.buf, l.plain[m:k])
				return
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			l.ended(d)
			return
		case err != nil:
			l.finish(d.src.p, relay.ReasonUpstreamError, fmt.Errorf("tls read from upstream: %w", err))
			return
		case k < len(l.plain):
			return // the codec needs more raw bytes
		}
	}
}

// flushOpened sends opened bytes the client did not take before, then
// drains the codec, which may hold more.
func (l *loop) flushOpened(d *direction) {
	if !l.sendBuffered(d) {
		return
	}
	l.putBuf(d.buf)
	d.buf, d.off, d.end = nil, 0, 0
	l.drainOpen(d)
}

// endedCodec handles the end of one direction of a codec pair: the
// client's EOF is sealed as close_notify, the upstream's is passed on as
// a half-close. The login moved bytes before the relay began, so an early
// EOF is not ReasonClientGone here.
func (l *loop) endedCodec(d *direction) {
	p := d.src.p
	d.eof = true
	if d.seal != nil {
		if err := d.seal.CloseWrite(); err != nil {
			l.finish(p, relay.ReasonUpstreamError, fmt.Errorf("tls close_notify to upstream: %w", err))
			return
		}
		l.flushSealed(d) // shuts the write half and may finish p
		return
	}
	sysShutdownWrite(d.dst.fd)
	if p.toU.eof && !p.toU.pending() {
		l.finish(p, relay.ReasonDone, nil)
	}
}
