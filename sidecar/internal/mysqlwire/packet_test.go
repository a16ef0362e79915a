package mysqlwire

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

// frame is one wire frame, built by hand rather than by AppendPacket so
// that the reader is not checked against the writer alone.
func frame(seq byte, data []byte) []byte {
	n := len(data)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}, data...)
}

func TestReadPacketFraming(t *testing.T) {
	full := make([]byte, MaxPayload)
	for i := range full {
		full[i] = byte(i % 251)
	}
	tail := []byte("tail of a long packet")
	next := frame(9, []byte("next packet")) // must stay unread
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	for _, tc := range []struct {
		name    string
		in      func() []byte // built in its subtest: the 16 MiB inputs are not all held at once
		limit   int
		seq     byte
		payload func() []byte
		err     string // substring of the error; "" for none
		is      error  // the error, when it has an identity
	}{
		{name: "one frame", in: func() []byte { return join(frame(3, []byte("hello")), next) }, limit: 100, seq: 3, payload: func() []byte { return []byte("hello") }},
		{name: "empty packet", in: func() []byte { return join(frame(0, nil), next) }, limit: 100, payload: func() []byte { return []byte{} }},
		{name: "two frames: a full one, then the rest", in: func() []byte { return join(frame(0, full), frame(1, tail), next) },
			limit: 1 << 25, payload: func() []byte { return join(full, tail) }},
		// A payload of exactly MaxPayload ends with an empty frame, which
		// belongs to this packet, not the next.
		{name: "exactly MaxPayload, then its empty frame", in: func() []byte { return join(frame(5, full), frame(6, nil), next) },
			limit: 1 << 25, seq: 5, payload: func() []byte { return full }},
		{name: "sequence id wraps in a continuation", in: func() []byte { return join(frame(255, full), frame(0, tail), next) },
			limit: 1 << 25, seq: 255, payload: func() []byte { return join(full, tail) }},
		{name: "continuation with a wrong sequence id", in: func() []byte { return join(frame(0, full), frame(2, tail)) },
			limit: 1 << 25, err: "continuation frame has sequence id 2, want 1"},
		{name: "continuation repeating the first sequence id", in: func() []byte { return join(frame(7, full), frame(7, tail)) },
			limit: 1 << 25, err: "continuation frame has sequence id 7, want 8"},
		{name: "at the limit across frames", in: func() []byte { return join(frame(0, full), frame(1, tail), next) },
			limit: MaxPayload + len(tail), payload: func() []byte { return join(full, tail) }},
		{name: "over the limit across frames", in: func() []byte { return join(frame(0, full), frame(1, tail)) },
			limit: MaxPayload + len(tail) - 1, is: ErrTooLarge, err: "larger than the limit"},
		{name: "over the limit in one frame", in: func() []byte { return frame(0, []byte("hello")) }, limit: 4, is: ErrTooLarge, err: "larger than the limit"},
		{name: "no packet", in: func() []byte { return nil }, limit: 100, is: io.EOF, err: "EOF"},
		{name: "cut in a header", in: func() []byte { return []byte{5, 0} }, limit: 100, is: io.ErrUnexpectedEOF, err: "unexpected EOF"},
		{name: "cut in a payload", in: func() []byte { return frame(0, []byte("hello"))[:6] }, limit: 100, is: io.ErrUnexpectedEOF, err: "unexpected EOF"},
		{name: "continuation frame missing", in: func() []byte { return frame(0, full) }, limit: 1 << 25, is: io.ErrUnexpectedEOF, err: "unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bytes.NewReader(tc.in())
			p, err := ReadPacket(r, tc.limit)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || tc.is != nil && !errors.Is(err, tc.is) {
					t.Fatalf("ReadPacket err = %v, want %q (%v)", err, tc.err, tc.is)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadPacket: %v", err)
			}
			if want := tc.payload(); p.Seq != tc.seq || !bytes.Equal(p.Payload, want) {
				t.Errorf("packet seq %d, %d bytes; want seq %d, %d bytes (or the content differs)", p.Seq, len(p.Payload), tc.seq, len(want))
			}
			// Exactly this packet's frames are consumed: the next packet is
			// left whole for whoever reads on.
			if rest, _ := io.ReadAll(r); !bytes.Equal(rest, next) {
				t.Errorf("left %d unread bytes %q..., want the next packet's %d", len(rest), rest[:min(len(rest), 16)], len(next))
			}
		})
	}
}

// A header alone must not make ReadPacket allocate the length it claims:
// the peer has sent nothing to hold yet, and a login's limit (1 MiB) or a
// continuation (16 MiB) times many connections would be the sidecar's
// memory. What it allocates follows the bytes that arrived.
func TestReadPacketAllocatesAsBytesArrive(t *testing.T) {
	for _, tc := range []struct {
		name   string
		claim  int // the header's length
		limit  int
		sent   int // payload bytes that arrive before EOF
		budget uint64
	}{
		{name: "a login packet's limit claimed, 10 bytes sent", claim: 1<<20 - 1, limit: 1 << 20, sent: 10, budget: 256 << 10},
		{name: "a full frame claimed, 100 KiB sent", claim: MaxPayload, limit: 1 << 25, sent: 100 << 10, budget: 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]byte{byte(tc.claim), byte(tc.claim >> 8), byte(tc.claim >> 16), 0}, make([]byte, tc.sent)...)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := ReadPacket(bytes.NewReader(in), tc.limit)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("ReadPacket err = %v, want %v", err, io.ErrUnexpectedEOF)
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > tc.budget {
				t.Errorf("allocated %d bytes for a header claiming %d and %d bytes sent, want at most %d", got, tc.claim, tc.sent, tc.budget)
			}
		})
	}
}

// DiscardPacket reads a packet away through its last frame and no
// further, within its limit, and over it no further than the header of
// the frame that went over; ReadPacket's TooLargeError gives it the frame
// length it starts from.
func TestDiscardPacket(t *testing.T) {
	full := make([]byte, MaxPayload)
	next := frame(9, []byte("next packet")) // must stay unread
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name  string
		in    func() []byte
		limit int64
		is    error  // nil: read away
		left  []byte // what it must leave unread
	}{
		{"one frame", func() []byte { return join(frame(0, []byte("hello")), next) }, 1 << 30, nil, next},
		{"several frames", func() []byte { return join(frame(0, full), frame(1, full), frame(2, []byte("tail")), next) }, 1 << 30, nil, next},
		{"exactly MaxPayload, then its empty frame", func() []byte { return join(frame(0, full), frame(1, nil), next) }, 1 << 30, nil, next},
		{"at the limit", func() []byte { return join(frame(0, full), frame(1, []byte("tail")), next) }, MaxPayload + 4, nil, next},
		{"over the limit", func() []byte { return join(frame(0, full), frame(1, []byte("tail")), next) }, MaxPayload + 3, ErrTooLarge, join([]byte("tail"), next)},
		{"over the limit in the first frame", func() []byte { return join(frame(0, []byte("hello")), next) }, 4, ErrTooLarge, join([]byte("hello"), next)},
		{"cut in a continuation header", func() []byte { return join(frame(0, full), []byte{1}) }, 1 << 30, io.ErrUnexpectedEOF, nil},
		{"cut in a payload", func() []byte { return frame(0, []byte("hello"))[:6] }, 1 << 30, io.ErrUnexpectedEOF, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := bytes.NewReader(tc.in())
			_, err := ReadPacket(r, 3)
			var tl *TooLargeError
			if !errors.As(err, &tl) || !errors.Is(err, ErrTooLarge) || tl.Limit != 3 {
				t.Fatalf("ReadPacket: %v; want a *TooLargeError", err)
			}
			err = DiscardPacket(r, tl.Frame, tc.limit)
			if !errors.Is(err, tc.is) || (tc.is == nil) != (err == nil) {
				t.Fatalf("DiscardPacket: %v; want %v", err, tc.is)
			}
			if rest, _ := io.ReadAll(r); !bytes.Equal(rest, tc.left) {
				t.Fatalf("left %d bytes unread; want %d", len(rest), len(tc.left))
			}
		})
	}
}
