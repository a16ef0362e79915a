package tlscodec_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/tls"
	"testing"
)

// Point-select-sized messages: the query the app sends, the response the
// server sends back.
const benchQuery, benchResponse = 60, 200

// BenchmarkExchange is the codec's own cost for one point-select exchange
// as the event loop drives it: seal a query into Outgoing, then open one
// response record. The server's records are made ahead, outside the
// timing, so no socket or peer work is counted. allocs/op is the codec's
// cost to the loop's GC.
func BenchmarkExchange(b *testing.B) {
	s := newSession(b, tls.VersionTLS13)
	query := make([]byte, benchQuery)
	out := make([]byte, 64<<10)
	var records [][]byte
	b.ReportAllocs()
	for b.Loop() {
		if len(records) == 0 {
			b.StopTimer()
			records = s.responses(b, 10_000)
			b.StartTimer()
		}
		if err := s.codec.Seal(query); err != nil {
			b.Fatal(err)
		}
		s.codec.Sent(len(s.codec.Outgoing()))
		s.codec.Feed(records[0])
		records = records[1:]
		if n, err := s.codec.Open(out); err != nil || n != benchResponse {
			b.Fatalf("Open = %d, %v", n, err)
		}
		if n, err := s.codec.Open(out); n != 0 || err != nil {
			b.Fatalf("second Open = %d, %v; want (0, nil)", n, err)
		}
	}
}

// BenchmarkExchangeAEAD is the floor under BenchmarkExchange: the same
// two records' AES-128-GCM alone (TLS 1.3's inner content type byte
// included), with no record layer around it.
func BenchmarkExchangeAEAD(b *testing.B) {
	block, err := aes.NewCipher(make([]byte, 16))
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	nonce, header := make([]byte, aead.NonceSize()), make([]byte, 5)
	query := make([]byte, benchQuery+1)
	sealed := aead.Seal(nil, nonce, make([]byte, benchResponse+1), header)
	dst := make([]byte, 0, 1024)
	for b.Loop() {
		dst = aead.Seal(dst[:0], nonce, query, header)
		if _, err := aead.Open(dst[:0], nonce, sealed, header); err != nil {
			b.Fatal(err)
		}
	}
}

// responses has the server write n responses and returns each record's
// raw bytes.
func (s *session) responses(b *testing.B, n int) [][]byte {
	b.Helper()
	written := make(chan error, 1)
	go func() {
		resp := make([]byte, benchResponse)
		for range n {
			if _, err := s.server.Write(resp); err != nil {
				written <- err
				return
			}
		}
		written <- nil
	}()
	raw := readRecords(b, s.raw, n)
	records := make([][]byte, 0, n)
	for l := recordLen(raw); l > 0; l = recordLen(raw) {
		records, raw = append(records, raw[:l:l]), raw[l:]
	}
	if err := <-written; err != nil {
		b.Fatal(err)
	}
	return records
}
