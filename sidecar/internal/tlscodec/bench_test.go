package tlscodec_test

import (
	"crypto/tls"
	"io"
	"testing"
)

// BenchmarkRoundTrip is one point-select-sized exchange through the codec
// as the event loop drives it: seal a 60-byte query, then open a 200-byte
// response from the server. The peer's work (the server's Read and Write)
// is in the timing too; allocs/op is the codec's cost to the loop's GC.
func BenchmarkRoundTrip(b *testing.B) {
	s := newSession(b, tls.VersionTLS13)
	query, resp := make([]byte, 60), make([]byte, 200)
	in, out := make([]byte, 64<<10), make([]byte, 64<<10)
	go func() { // the server: read a query, answer it
		q := make([]byte, len(query))
		for {
			if _, err := io.ReadFull(s.server, q); err != nil {
				return
			}
			if _, err := s.server.Write(resp); err != nil {
				return
			}
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.codec.Seal(query); err != nil {
			b.Fatal(err)
		}
		sealed := s.codec.Outgoing()
		s.codec.Sent(len(sealed))
		if _, err := s.raw.Write(sealed); err != nil {
			b.Fatal(err)
		}
		n, err := s.raw.Read(in) // net.Pipe: the server's one write, its response record
		if err != nil {
			b.Fatal(err)
		}
		s.codec.Feed(in[:n])
		n, err = s.codec.Open(out)
		if err != nil || n != len(resp) {
			b.Fatalf("Open = %d, %v", n, err)
		}
		if n, err := s.codec.Open(out); n != 0 || err != nil {
			b.Fatalf("second Open = %d, %v; want (0, nil)", n, err)
		}
	}
}
