package tlscodec_test

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/example/sidecar/internal/testkit"
)

// The largest record bodies crypto/tls accepts (RFC 8446 5.2, RFC 5246
// 6.2.3): a header claiming more must fail as soon as it is whole, before
// anything waits for, or buffers, the body it claims.
const (
	maxBodyTLS12 = 16384 + 2048
	maxBodyTLS13 = 16384 + 256
)

// FuzzOpen feeds the codec what a real TLS server sent, cut at the
// fuzzer's split points, optionally with a byte flipped or garbage (a
// forged record header, say) appended, and opens it as the event loop
// does. Whatever the bytes: no panic, no fed byte kept beyond what
// crypto/tls is reading, every whole record opened without waiting for
// more bytes, an oversized record header refused at once, a
// clean end only for what the server sent, and what was opened a prefix
// of what the server sealed; unchanged, every byte of it, when nothing
// was tampered with.
//
// mode bits: 1 TLS 1.2 (else 1.3), 2 add a message of several records,
// 4 close_notify, 8 append tail, 16 flip a byte (position from tail),
// 32 larger pieces; mode>>6 picks Open's buffer size.
func FuzzOpen(f *testing.F) {
	cert, roots := testkit.ServerTLS(f, "db")
	f.Add([]byte("greeting|row|ok"), []byte{0}, uint8(4), []byte(nil))
	f.Add([]byte("a|bb|ccc"), []byte{4, 0, 99}, uint8(2|4|1<<6), []byte(nil))
	f.Add([]byte("a|bb|ccc|dddd"), []byte{201, 3, 255}, uint8(2|4|1<<6), []byte(nil))
	f.Add([]byte("x"), []byte{200, 3}, uint8(1|2|4|32|2<<6), []byte(nil))
	f.Add([]byte("row"), []byte{1}, uint8(8|3<<6), []byte{0x17, 0x03, 0x03, 0xff, 0xff, 1, 2, 3})
	f.Add([]byte("row"), []byte{2}, uint8(1|8), []byte{0x17, 0x03, 0x03, 0x48, 0x01})
	f.Add([]byte("row|more"), []byte{0, 7}, uint8(4|16), []byte{0, 40, 0x80})
	f.Add([]byte("row"), []byte{3}, uint8(8), []byte{0x15, 0x03})
	f.Fuzz(func(t *testing.T, payload, cuts []byte, mode uint8, tail []byte) {
		if len(payload) > 4096 || len(tail) > 70_000 {
			t.Skip()
		}
		version, maxBody := uint16(tls.VersionTLS13), maxBodyTLS13
		if mode&1 != 0 {
			version, maxBody = tls.VersionTLS12, maxBodyTLS12
		}
		var msgs [][]byte
		for _, m := range bytes.SplitAfter(payload, []byte("|")) {
			if len(m) > 0 {
				msgs = append(msgs, m)
			}
		}
		if mode&2 != 0 {
			msgs = append(msgs, bytes.Repeat([]byte{mode}, 40_000))
		}
		s := newSessionWith(t, cert, roots, version)
		raw := s.serverSends(t, mode&4 != 0, msgs...)
		tampered := false
		if mode&8 != 0 && len(tail) > 0 {
			raw, tampered = append(raw, tail...), true
		}
		if mode&16 != 0 && len(tail) >= 2 && len(raw) > 0 {
			raw[int(binary.BigEndian.Uint16(tail))%len(raw)] ^= 0x40
			tampered = true
		}

		out := make([]byte, []int{1, 7, 1000, 20_000}[mode>>6])
		var got []byte
		var end error
		// drain opens until the codec needs more bytes or fails, as the
		// loop's drainOpen does.
		drain := func() {
			for end == nil {
				n, err := s.codec.Open(out)
				got, end = append(got, out[:n]...), err
				if n == 0 && err == nil {
					break
				}
			}
			if end == nil && s.codec.Unread() != 0 {
				t.Fatalf("the codec holds %d fed bytes crypto/tls has not read, yet wants more", s.codec.Unread())
			}
		}
		scratch := make([]byte, 0, 64<<10)
		oversized := oversizedHeaderEnd(raw, maxBody)
		for off, i := 0, 0; off < len(raw) && end == nil; i++ {
			piece, stalled := 1, false
			if len(cuts) > 0 {
				// An odd cut: the client takes one Open's worth and then
				// no more for now; the fed bytes left must survive Hold.
				piece, stalled = int(cuts[i%len(cuts)]>>1)+1, cuts[i%len(cuts)]&1 != 0
			}
			if mode&32 != 0 {
				piece *= 97
			}
			scratch = append(scratch[:0], raw[off:min(off+piece, len(raw))]...)
			off += len(scratch)
			s.codec.Feed(scratch)
			if stalled {
				n, err := s.codec.Open(out)
				got, end = append(got, out[:n]...), err
			} else {
				drain()
			}
			s.codec.Hold()
			for i := range scratch { // the loop reuses its buffer
				scratch[i] = 0xff
			}
			if oversized > 0 && off >= oversized && end == nil && !stalled {
				t.Fatalf("a record header claiming more than %d bytes was fed whole (%d bytes in), and the codec waits for more", maxBody, oversized)
			}
		}
		drain()
		want := bytes.Join(msgs, nil)
		if !tampered && !bytes.Equal(got, want) {
			// The loop waits for the socket now: a record left unopened
			// would wait for bytes that may never come.
			t.Fatalf("every record fed, but %d of %d bytes opened", len(got), len(want))
		}
		if end == nil {
			s.codec.Feed(nil)
			for i := 0; end == nil; i++ {
				if i == 100 {
					t.Fatal("after EOF the codec keeps wanting more bytes")
				}
				drain()
			}
		}

		if !bytes.HasPrefix(want, got) {
			t.Fatalf("opened %d bytes that are not a prefix of the %d the server sealed", len(got), len(want))
		}
		if !tampered && (end != io.EOF || !bytes.Equal(got, want)) {
			t.Fatalf("untampered stream: opened %d of %d bytes, ended with %v; want all, then io.EOF", len(got), len(want), end)
		}
		if tampered && errors.Is(end, io.EOF) && !bytes.Equal(got, want) {
			t.Fatalf("tampered stream ended cleanly after %d of %d bytes", len(got), len(want))
		}
	})
}

// oversizedHeaderEnd follows raw's record framing and returns where the
// first header claiming a body over maxBody ends, or 0 if none does.
func oversizedHeaderEnd(raw []byte, maxBody int) int {
	for off := 0; off+5 <= len(raw); {
		n := int(binary.BigEndian.Uint16(raw[off+3:]))
		if n > maxBody {
			return off + 5
		}
		off += 5 + n
	}
	return 0
}
