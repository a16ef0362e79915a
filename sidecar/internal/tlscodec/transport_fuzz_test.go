package tlscodec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// FuzzTransportRead feeds a detached transport any bytes, cut at the
// fuzzer's split points, and reads them back with buffers of the fuzzer's
// sizes, as crypto/tls would. Every fed byte comes back once, in order,
// unchanged; no Read crosses the end of the record it started in (so
// crypto/tls never holds more than part of one record, however long the
// headers claim records are); and Read blocks only when nothing is fed.
func FuzzTransportRead(f *testing.F) {
	f.Add([]byte{0x17, 3, 3, 0, 2, 'h', 'i', 0x17, 3, 3, 0, 1, '!'}, []byte{0}, []byte{99})
	f.Add([]byte{0x17, 3, 3, 0, 2, 'h', 'i', 0x17, 3, 3, 0, 1, '!'}, []byte{2, 3}, []byte{0, 3, 200})
	f.Add(append([]byte{0x17, 3, 3, 0xff, 0xff}, make([]byte, 300)...), []byte{200}, []byte{255})
	f.Add([]byte{0x15, 3, 3, 0, 0, 0x15, 3, 3, 0, 0, 1}, []byte{1}, []byte{7})
	f.Fuzz(func(t *testing.T, raw, cuts, sizes []byte) {
		tr := &Transport{detached: true}
		c := &Codec{t: tr}
		var got []byte
		fed, i, r := 0, 0, 0
		read := func() {
			for {
				size := 1
				if len(sizes) > 0 {
					size = int(sizes[r%len(sizes)])*7 + 1
				}
				r++
				p := make([]byte, size)
				n, err := tr.Read(p)
				if n > 0 {
					if end := recordEnd(raw[:fed], len(got)); len(got)+n > end {
						t.Fatalf("Read returned %d bytes at offset %d, past the end of the record there (offset %d)", n, len(got), end)
					}
					got = append(got, p[:n]...)
					if !bytes.HasPrefix(raw, got) {
						t.Fatalf("read back %x, fed %x", got, raw[:fed])
					}
				}
				switch {
				case errors.Is(err, errWouldBlock), err == io.EOF:
					if len(got) != fed {
						t.Fatalf("Read stopped (%v) with %d of %d fed bytes not read", err, fed-len(got), fed)
					}
					return
				case err != nil:
					t.Fatalf("Read: %v", err)
				case n == 0:
					t.Fatalf("Read returned nothing and no error with %d fed bytes left", fed-len(got))
				}
			}
		}
		scratch := make([]byte, 0, 256)
		for fed < len(raw) {
			piece := 1
			if len(cuts) > 0 {
				piece = int(cuts[i%len(cuts)]) + 1
			}
			i++
			scratch = append(scratch[:0], raw[fed:min(fed+piece, len(raw))]...)
			fed += len(scratch)
			c.Feed(scratch)
			if i%2 == 0 { // reads both before and after the loop's Hold
				c.Hold()
				for j := range scratch {
					scratch[j] = 0xff
				}
			}
			read()
		}
		c.Feed(nil)
		read()
		if !bytes.Equal(got, raw) {
			t.Fatalf("read back %x, fed %x", got, raw)
		}
	})
}

// recordEnd follows fed's record framing and returns where the record
// holding offset at ends: fed's end if its header is not all fed yet.
func recordEnd(fed []byte, at int) int {
	off := 0
	for {
		if off+5 > len(fed) {
			return len(fed)
		}
		off += 5 + int(binary.BigEndian.Uint16(fed[off+3:]))
		if off > at {
			return off
		}
	}
}
