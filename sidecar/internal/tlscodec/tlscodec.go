// Package tlscodec runs a crypto/tls client connection over bytes that an
// event loop moves, so a data path can carry TLS sessions on its own
// sockets (relay.Codec) instead of two goroutines per connection.
//
// The tls.Conn is built over a Transport. During the handshake (and the
// MySQL login after it) the Transport is the socket. Detach then turns it
// into memory: crypto/tls reads the raw bytes the loop fed it and writes
// into a buffer the loop sends. When the fed bytes run out, Read returns a
// temporary net.Error, which crypto/tls passes up without poisoning the
// connection (conn.go, readRecordOrCCS: only errors that are not
// Temporary are kept), so a record split across reads is resumed later.
//
// The Transport follows the record boundaries in every byte crypto/tls
// reads, and once detached it hands over at most the rest of one record
// per Read. crypto/tls then holds at most part of one record between
// reads, so when no fed byte is left Open knows that nothing can be opened
// without asking crypto/tls (a call that costs about as much as opening a
// small record).
package tlscodec

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// Transport is the net.Conn under a tls.Conn: the socket until Detach,
// memory after it. After Detach it must be used from one goroutine.
type Transport struct {
	net.Conn // the socket; not used after Detach

	detached bool
	in       []byte // fed, not read yet
	borrowed bool   // in is the caller's buffer, not a copy
	eof      bool
	out      []byte // written by crypto/tls; out[sent:] is not sent yet
	sent     int
	// shut: the close_notify is sent (in out, once detached): later
	// writes are dropped, and in socket mode write deadlines ignored.
	shut atomic.Bool
	// closing: CloseWrite runs in socket mode (see there).
	closing atomic.Bool

	// The record being handed to crypto/tls: its header bytes read so
	// far, and once the header is whole, the bytes of it not read yet.
	header  [recordHeaderLen]byte
	headerN int
	left    int
}

// recordHeaderLen is a TLS record header's size: type, version, length.
const recordHeaderLen = 5

// NewTransport wraps the socket a TLS client connection will run over.
func NewTransport(socket net.Conn) *Transport { return &Transport{Conn: socket} }

// NetConn returns the socket, as tls.Conn's NetConn does.
func (t *Transport) NetConn() net.Conn { return t.Conn }

// errWouldBlock is returned by a detached Transport's Read when every fed
// byte has been read.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "tlscodec: waiting for more bytes from the socket" }
func (wouldBlock) Timeout() bool   { return false }
func (wouldBlock) Temporary() bool { return true } // read by crypto/tls: keep the connection

func (t *Transport) Read(p []byte) (int, error) {
	if !t.detached {
		n, err := t.Conn.Read(p)
		t.took(p[:n])
		return n, err
	}
	if len(t.in) == 0 {
		if t.eof {
			return 0, io.EOF
		}
		return 0, errWouldBlock
	}
	n := copy(p[:min(len(p), t.recordEnd())], t.in)
	t.took(t.in[:n])
	t.in = t.in[n:]
	return n, nil
}

// recordEnd is how many fed bytes belong to the record being read.
func (t *Transport) recordEnd() int {
	if t.headerN == recordHeaderLen {
		return t.left
	}
	need := recordHeaderLen - t.headerN
	if len(t.in) < need {
		return len(t.in)
	}
	var h [recordHeaderLen]byte
	copy(h[copy(h[:], t.header[:t.headerN]):], t.in[:need])
	return need + int(binary.BigEndian.Uint16(h[3:]))
}

// took follows the record boundaries through the bytes crypto/tls read.
func (t *Transport) took(b []byte) {
	for len(b) > 0 {
		if t.headerN < recordHeaderLen {
			k := copy(t.header[t.headerN:], b)
			t.headerN += k
			b = b[k:]
			if t.headerN == recordHeaderLen {
				t.left = int(binary.BigEndian.Uint16(t.header[3:]))
			}
		} else {
			k := min(len(b), t.left)
			t.left -= k
			b = b[k:]
		}
		if t.headerN == recordHeaderLen && t.left == 0 {
			t.headerN = 0
		}
	}
}

func (t *Transport) Write(p []byte) (int, error) {
	if t.shut.Load() {
		return len(p), nil // see Codec.CloseWrite and CloseWrite
	}
	if !t.detached {
		return t.Conn.Write(p)
	}
	t.out = append(t.out, p...)
	return len(p), nil
}

// The deadlines and Close apply to the socket until Detach; after it the
// event loop owns the socket and crypto/tls's own deadline calls
// (closeNotify sets one) must not reach it. Nor, after CloseWrite, may
// the write deadline closeNotify sets to fail later writes.

func (t *Transport) SetDeadline(d time.Time) error {
	if t.detached {
		return nil
	}
	if t.shut.Load() {
		return t.Conn.SetReadDeadline(d)
	}
	return t.Conn.SetDeadline(d)
}

func (t *Transport) SetReadDeadline(d time.Time) error {
	if t.detached {
		return nil
	}
	return t.Conn.SetReadDeadline(d)
}

func (t *Transport) SetWriteDeadline(d time.Time) error {
	if t.detached || t.shut.Load() {
		return nil
	}
	if t.closing.Load() && !d.After(time.Now()) {
		t.shut.Store(true) // see CloseWrite
		return nil
	}
	return t.Conn.SetWriteDeadline(d)
}

func (t *Transport) Close() error {
	if t.detached {
		return nil
	}
	return t.Conn.Close()
}

// Codec is a TLS client connection over a detached Transport, as a
// relay.Codec.
type Codec struct {
	tls *tls.Conn
	t   *Transport
	// mayHold: crypto/tls may hold opened bytes or whole records. True
	// from Start (the socket-mode reads were not bounded by records) until
	// a Read runs out of fed bytes, and after a Read that filled its buffer.
	mayHold bool
}

// New returns the codec of tc, whose transport is t. Until Start, tc
// still runs over the socket.
func New(tc *tls.Conn, t *Transport) *Codec { return &Codec{tls: tc, t: t} }

// Start detaches the transport: from now on tc never touches the socket,
// and only the codec's caller uses tc, through the codec.
func (c *Codec) Start() { c.t.detached, c.mayHold = true, true }

// Seal encrypts p into Outgoing.
func (c *Codec) Seal(p []byte) error {
	_, err := c.tls.Write(p)
	return err
}

// Outgoing returns the raw bytes waiting to be sent.
func (c *Codec) Outgoing() []byte { return c.t.out[c.t.sent:] }

// maxKept is the largest outgoing buffer kept once empty: a pool's idle
// connections should hold no bulk-sized buffers.
const maxKept = 16 << 10

// Sent drops the first n outgoing bytes.
func (c *Codec) Sent(n int) {
	t := c.t
	t.sent += n
	if t.sent < len(t.out) {
		return
	}
	t.sent = 0
	if cap(t.out) > maxKept {
		t.out = nil
		return
	}
	t.out = t.out[:0]
}

// Feed hands over raw bytes read from the socket (nil: EOF).
func (c *Codec) Feed(raw []byte) {
	t := c.t
	switch {
	case raw == nil:
		t.eof = true
	case len(t.in) == 0:
		t.in, t.borrowed = raw, true // Open or Hold releases it
	default:
		c.Hold()
		t.in = append(t.in, raw...)
	}
}

// Hold copies the fed bytes not opened yet, so the caller can reuse its
// buffer.
func (c *Codec) Hold() {
	t := c.t
	if t.borrowed && len(t.in) > 0 {
		t.in = append([]byte(nil), t.in...)
	}
	t.borrowed = false
}

// Open decrypts what the fed bytes hold into p.
func (c *Codec) Open(p []byte) (int, error) {
	if len(c.t.in) == 0 && !c.t.eof && !c.mayHold {
		return 0, nil
	}
	n, err := c.tls.Read(p)
	switch {
	case errors.Is(err, errWouldBlock):
		err, c.mayHold = nil, false
	case n == len(p), err != nil:
		// More may be held; and crypto/tls keeps its error (io.EOF after
		// close_notify too) for the caller that could not take it yet.
		c.mayHold = true
	}
	if len(c.t.in) == 0 {
		c.t.in, c.t.borrowed = nil, false
	}
	return n, err
}

// CloseWrite seals a close_notify alert into Outgoing, the last bytes it
// holds: the data path shuts the write half once they are out, so it
// could never send more. crypto/tls still writes the reply to a TLS 1.3
// KeyUpdate that asks for one; the transport drops it. It must not fail
// it: crypto/tls then skips its read key's update too (handleKeyUpdate),
// and the server's next record fails as a bad record MAC.
func (c *Codec) CloseWrite() error {
	err := c.tls.CloseWrite()
	c.t.shut.Store(true)
	return err
}

// CloseWrite half-closes tc, a connection over a Transport in socket mode
// (not detached) that other goroutines may still read: it sends the
// close_notify, then shuts the socket's write half. crypto/tls still
// writes the reply to a TLS 1.3 KeyUpdate that asks for one (TLS 1.3 wants
// it only before more data, and none follows); the transport drops it.
// Failing it, as the write deadline closeNotify sets to now would, makes
// crypto/tls skip its read key's update (handleKeyUpdate), and the
// server's next record fails as a bad record MAC.
//
// The transport takes that deadline as the mark that the close_notify has
// been written: closeNotify sets it while still holding the lock crypto/tls
// writes under, so no reply can slip in between and fail. Over another
// transport, CloseWrite is tc's.
func CloseWrite(tc *tls.Conn) error {
	t, ok := tc.NetConn().(*Transport)
	if !ok || t.detached {
		return tc.CloseWrite()
	}
	t.closing.Store(true)
	err := tc.CloseWrite()
	t.closing.Store(false)
	if err != nil {
		return err // the close_notify may not have gone out: the caller ends the connection
	}
	t.shut.Store(true) // had crypto/tls not set the deadline
	if s, ok := t.Conn.(interface{ CloseWrite() error }); ok {
		// Not reported: a server that closed first (MySQL, after
		// COM_QUIT) may have answered the close_notify with a reset
		// already, and the reader hears it.
		_ = s.CloseWrite()
	}
	return nil
}

// TLS returns the connection, for a data path that cannot take the codec
// and relays over it as a net.Conn instead. Only before Start.
func (c *Codec) TLS() *tls.Conn { return c.tls }
