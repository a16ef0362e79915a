// Package mysqlwire reads and writes the MySQL client/server protocol's
// connection phase: packet framing with sequence ids, the server greeting
// (HandshakeV10), the client's SSLRequest and HandshakeResponse41, and the
// server's OK, ERR, EOF, AuthSwitchRequest and AuthMoreData replies.
//
// It reads exactly the bytes of the packets asked for and nothing more (no
// read-ahead buffer), so a connection can be handed to TLS or to a byte
// relay right after the last packet read here.
//
// Parsers keep every byte: marshaling a parsed greeting or handshake
// response gives back the packet it came from, so a proxy changes only the
// fields it means to change. Field layouts follow the protocol
// documentation of MySQL (dev.mysql.com/doc/dev/mysql-server/latest/
// page_protocol_connection_phase.html) and MariaDB.
package mysqlwire

import (
	"errors"
	"fmt"
	"io"
)

// MaxPayload is the largest payload one frame carries; a longer logical
// packet continues in the following frames, and a payload of exactly a
// multiple of it ends with an empty frame.
const MaxPayload = 1<<24 - 1

// readChunk is the most AppendPayload allocates ahead of the bytes that
// have arrived, beyond doubling what it holds.
const readChunk = 64 << 10

// headerLen is the frame header: 3 bytes little-endian length, 1 byte
// sequence id.
const headerLen = 4

// ErrTooLarge is returned when a logical packet exceeds the reader's limit.
var ErrTooLarge = errors.New("mysqlwire: packet larger than the limit")

// TooLargeError is ReadPacket's ErrTooLarge. Frame is the length of the
// frame whose header went over the limit, none of whose payload was read:
// what DiscardPacket needs to read the packet away.
type TooLargeError struct {
	Limit, Frame int
}

func (e *TooLargeError) Error() string { return fmt.Sprintf("%v: over %d bytes", ErrTooLarge, e.Limit) }

func (e *TooLargeError) Unwrap() error { return ErrTooLarge }

// Packet is one logical packet: the payload of one or more frames joined.
type Packet struct {
	Seq     byte   // sequence id of the first frame
	Payload []byte // joined payload of every frame
}

// Frames is how many frames the packet takes on the wire.
func (p Packet) Frames() int { return len(p.Payload)/MaxPayload + 1 }

// NextSeq is the sequence id of the packet that follows this one.
func (p Packet) NextSeq() byte { return p.Seq + byte(p.Frames()) }

// ReadPacket reads one logical packet from r, joining continuation frames,
// and fails with a *TooLargeError (having read no more than the first
// header beyond limit) when its payload would exceed limit bytes. Each frame must
// carry the sequence id following the previous frame's.
//
// It reads the header and the payload with separate io.ReadFull calls and
// never past the packet's end.
func ReadPacket(r io.Reader, limit int) (Packet, error) {
	var p Packet
	var hdr [headerLen]byte
	for frame := 0; ; frame++ {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if frame > 0 {
				err = unexpectedEOF(err)
			}
			return Packet{}, err
		}
		n := FrameLen(hdr)
		if frame == 0 {
			p.Seq = hdr[3]
		} else if want := p.Seq + byte(frame); hdr[3] != want {
			return Packet{}, fmt.Errorf("mysqlwire: continuation frame has sequence id %d, want %d", hdr[3], want)
		}
		if len(p.Payload)+n > limit {
			return Packet{}, &TooLargeError{Limit: limit, Frame: n}
		}
		var err error
		if p.Payload, err = AppendPayload(p.Payload, r, n); err != nil {
			return Packet{}, err
		}
		if n < MaxPayload {
			return p, nil
		}
	}
}

// DiscardPacket reads away the rest of a packet from just after the header
// of one of its frames, of n bytes: that frame's payload, then each frame
// that follows a full one. It reads at most limit bytes of payload and
// fails with ErrTooLarge, having read no more, when the packet has more.
func DiscardPacket(r io.Reader, n int, limit int64) error {
	var hdr [headerLen]byte
	for read := int64(0); ; {
		if read += int64(n); read > limit {
			return fmt.Errorf("%w: over %d bytes", ErrTooLarge, limit)
		}
		if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
			return unexpectedEOF(err)
		}
		if n < MaxPayload {
			return nil
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return unexpectedEOF(err)
		}
		n = FrameLen(hdr)
	}
}

// FrameLen is the payload length a frame's header gives.
func FrameLen(hdr [headerLen]byte) int { return int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16 }

// unexpectedEOF is err, or io.ErrUnexpectedEOF for an EOF inside a packet.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// AppendPayload reads a frame's n payload bytes from r, appends them to
// dst and returns the result; it fails with io.ErrUnexpectedEOF when r
// ends first. It allocates as the bytes arrive, not by n: a header alone
// must not cost up to 16 MiB of memory.
func AppendPayload(dst []byte, r io.Reader, n int) ([]byte, error) {
	for left, have := n, 0; left > 0; {
		step := min(left, max(readChunk, have))
		start := len(dst)
		dst = append(dst, make([]byte, step)...)
		if _, err := io.ReadFull(r, dst[start:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return dst[:start], err
		}
		left, have = left-step, have+step
	}
	return dst, nil
}

// AppendPacket appends payload framed with sequence ids starting at seq to
// dst, and returns the result and the sequence id that follows.
func AppendPacket(dst []byte, seq byte, payload []byte) ([]byte, byte) {
	for {
		n := min(len(payload), MaxPayload)
		dst = append(dst, byte(n), byte(n>>8), byte(n>>16), seq)
		dst = append(dst, payload[:n]...)
		payload = payload[n:]
		seq++
		if n < MaxPayload {
			return dst, seq
		}
	}
}

// WritePacket writes payload as one logical packet starting at sequence id
// seq, in a single Write, and returns the sequence id that follows.
func WritePacket(w io.Writer, seq byte, payload []byte) (byte, error) {
	buf, next := AppendPacket(make([]byte, 0, len(payload)+headerLen*(len(payload)/MaxPayload+1)), seq, payload)
	_, err := w.Write(buf)
	return next, err
}
