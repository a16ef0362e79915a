package mysqlwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
)

// Seeds are real packets: the layouts MySQL 8, MariaDB and their clients
// send, and the fixtures of the unit tests.

// seedGreeting is a HandshakeV10 payload laid out as a server writes it.
func seedGreeting(version string, caps uint32, plugin string) []byte {
	g := append([]byte{10}, version+"\x00"...)
	g = binary.LittleEndian.AppendUint32(g, 7)
	g = append(g, "abcdefgh\x00"...)
	g = binary.LittleEndian.AppendUint16(g, uint16(caps))
	g = append(g, 45)
	g = binary.LittleEndian.AppendUint16(g, StatusAutocommit)
	g = binary.LittleEndian.AppendUint16(g, uint16(caps>>16))
	g = append(g, 21)
	g = append(g, make([]byte, 10)...)
	g = append(g, "ijklmnopqrst\x00"...)
	return append(g, plugin+"\x00"...)
}

const seedCaps = ClientLongPassword | ClientConnectWithDB | ClientProtocol41 | ClientSSL | ClientTransactions |
	ClientSecureConnection | ClientMultiResults | ClientPluginAuth | ClientConnectAttrs |
	ClientPluginAuthLenencClientData | ClientDeprecateEOF

func seedGreetings() [][]byte {
	full := seedGreeting("8.0.39-aurora", seedCaps|ClientZstdCompressionAlgorithm, "caching_sha2_password")
	return [][]byte{
		full,
		seedGreeting("5.5.5-10.11.6-MariaDB", seedCaps, NativePassword),
		full[:len("8.0.39-aurora")+2+4+9+2],   // ends after the lower flags
		full[:len("8.0.39-aurora")+2+4+9+2+5], // ends after the upper flags
		{10, 0},
		{0xff, 0x15, 0x04, '#', '0', '8', 'S', '0', '1', 'H', 'o', 's', 't'},
	}
}

func seedResponses() [][]byte {
	base := ClientProtocol41 | ClientSecureConnection
	rs := []HandshakeResponse{
		{Caps: base, MaxPacket: 1 << 24, Charset: 45, User: "app", AuthData: bytes.Repeat([]byte{7}, 20)},
		{Caps: base | ClientConnectWithDB | ClientPluginAuth | ClientConnectAttrs, Charset: 33,
			User: "app", AuthData: []byte{1, 2}, Database: "appdb", Plugin: NativePassword, Attrs: []byte("\x04_pid\x031234")},
		{Caps: base | ClientPluginAuth | ClientPluginAuthLenencClientData, User: "iam",
			AuthData: append(bytes.Repeat([]byte("t"), 300), 0), Plugin: ClearPassword},
		{Caps: ClientProtocol41, User: "u", AuthData: []byte("pw")},
		{Caps: base, User: "u", Filler: [23]byte{19: 1, 22: 9}},
	}
	var out [][]byte
	for _, r := range rs {
		out = append(out, r.Append(nil))
	}
	// MySQL 8's zstd level after the attributes, and an SSLRequest.
	zstd := HandshakeResponse{Caps: base | ClientPluginAuth | ClientPluginAuthLenencClientData | ClientConnectAttrs | ClientZstdCompressionAlgorithm,
		User: "app", AuthData: []byte{1}, Plugin: "sha256_password", Attrs: []byte("\x04_pid\x03123")}
	out = append(out, append(zstd.Append(nil), 3))
	ssl, _ := SSLRequestFrom(out[0])
	return append(out, ssl)
}

// FuzzReadPacket reads arbitrary bytes as framed packets, one byte per
// Read too: no panic, the limit holds, and exactly the packet's frames are
// consumed, which AppendPacket gives back.
func FuzzReadPacket(f *testing.F) {
	f.Add([]byte("\x05\x00\x00\x03hello\x0b\x00\x00\x09next packet"), uint16(100))
	f.Add([]byte("\x00\x00\x00\x00"), uint16(100))
	f.Add([]byte("\x05\x00\x00\x00hello"), uint16(4))
	f.Add([]byte("\x05\x00"), uint16(100))
	f.Add([]byte("\x05\x00\x00\x00hel"), uint16(100))
	f.Add([]byte("\xff\xff\xff\x00abc"), uint16(65535))
	for _, g := range seedGreetings() {
		f.Add(framed(g), uint16(1024))
	}
	f.Fuzz(func(t *testing.T, in []byte, limit uint16) {
		for _, r := range []io.Reader{bytes.NewReader(in), iotest.OneByteReader(bytes.NewReader(in))} {
			cr := &countingReader{r: r}
			p, err := ReadPacket(cr, int(limit))
			if err != nil {
				if errors.Is(err, ErrTooLarge) && cr.n > headerLen {
					t.Fatalf("read %d bytes before refusing a packet over the limit", cr.n)
				}
				continue
			}
			if len(p.Payload) > int(limit) {
				t.Fatalf("payload of %d bytes over the limit %d", len(p.Payload), limit)
			}
			wire, next := AppendPacket(nil, p.Seq, p.Payload)
			if cr.n != len(wire) || !bytes.Equal(in[:cr.n], wire) {
				t.Fatalf("consumed %d bytes %x, the packet is %x", cr.n, in[:cr.n], wire)
			}
			if next != p.NextSeq() {
				t.Fatalf("AppendPacket's next sequence id %d, NextSeq %d", next, p.NextSeq())
			}
		}
	})
}

// framed frames payload at sequence id 0.
func framed(payload []byte) []byte {
	b, _ := AppendPacket(nil, 0, payload)
	return b
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// FuzzGreeting checks the greeting's readers on arbitrary payloads, and
// that clearing flags changes those flags' bytes alone.
func FuzzGreeting(f *testing.F) {
	for _, g := range seedGreetings() {
		f.Add(g, ClientSSL)
	}
	f.Add(seedGreetings()[0], ClientSSL|ClientCompress|ClientZstdCompressionAlgorithm)
	f.Fuzz(func(t *testing.T, g []byte, clear uint32) {
		caps, lower, upper, err := GreetingCaps(g)
		id, idErr := GreetingThreadID(g)
		scramble, scrErr := GreetingScramble(g)
		out, outErr := WithoutGreetingCaps(g, clear)
		if err != nil {
			if idErr == nil || scrErr == nil || outErr == nil {
				t.Fatalf("GreetingCaps failed (%v), the other readers did not: %v %v %v", err, idErr, scrErr, outErr)
			}
			return
		}
		if idErr != nil || outErr != nil {
			t.Fatalf("GreetingCaps read it, GreetingThreadID (%v) or WithoutGreetingCaps (%v) did not", idErr, outErr)
		}
		if scrErr == nil && len(scramble) != 20 {
			t.Fatalf("scramble of %d bytes", len(scramble))
		}
		if len(out) != len(g) {
			t.Fatalf("WithoutGreetingCaps changed the length from %d to %d", len(g), len(out))
		}
		for i := range g {
			inFlags := i == lower || i == lower+1 || upper >= 0 && (i == upper || i == upper+1)
			if !inFlags && out[i] != g[i] {
				t.Fatalf("byte %d changed from %#x to %#x outside the flags", i, g[i], out[i])
			}
		}
		want := caps &^ clear
		if upper < 0 {
			want &= 0xffff
		}
		caps2, lower2, upper2, err := GreetingCaps(out)
		if err != nil || caps2 != want || lower2 != lower || upper2 != upper {
			t.Fatalf("cleared greeting reads caps %#x at %d/%d (%v), want %#x at %d/%d", caps2, lower2, upper2, err, want, lower, upper)
		}
		if id2, _ := GreetingThreadID(out); id2 != id {
			t.Fatalf("thread id %d became %d", id, id2)
		}
		if s2, _ := GreetingScramble(out); !bytes.Equal(s2, scramble) {
			t.Fatalf("scramble %x became %x", scramble, s2)
		}
	})
}

// FuzzHandshakeResponse parses arbitrary login packets. A parsed one
// encodes to a packet that parses the same and encodes the same again;
// WithAuthData replaces the auth data alone; SSLRequestFrom keeps the
// client's first 32 bytes but for CLIENT_SSL.
func FuzzHandshakeResponse(f *testing.F) {
	for _, r := range seedResponses() {
		f.Add(r, []byte("s3cret\x00"))
	}
	f.Fuzz(func(t *testing.T, p, data []byte) {
		if ssl, err := SSLRequestFrom(p); err == nil {
			caps, _ := ResponseCaps(p)
			if !IsSSLRequest(ssl) || !bytes.Equal(ssl[4:], p[4:SSLRequestLen]) || binary.LittleEndian.Uint32(ssl) != caps|ClientSSL {
				t.Fatalf("SSLRequestFrom(%x) = %x", p[:SSLRequestLen], ssl)
			}
		} else if len(p) >= SSLRequestLen {
			t.Fatalf("SSLRequestFrom refused %d bytes: %v", len(p), err)
		}
		r, err := ParseHandshakeResponse(p)
		if err != nil {
			if _, werr := WithAuthData(p, data); werr == nil {
				t.Fatal("WithAuthData took a packet ParseHandshakeResponse refused")
			}
			return
		}
		enc := r.Append(nil)
		r2, err := ParseHandshakeResponse(enc)
		if err != nil {
			t.Fatalf("re-encoded %x does not parse: %v", enc, err)
		}
		if !reflect.DeepEqual(normalizeFuzz(r2), normalizeFuzz(r)) {
			t.Fatalf("re-encoding changed the response:\n got %+v\nwant %+v", r2, r)
		}
		if again := r2.Append(nil); !bytes.Equal(again, enc) {
			t.Fatalf("encoding is not stable:\n%x\n%x", again, enc)
		}

		out, err := WithAuthData(p, data)
		if !fitsAuthData(r.Caps, data) {
			if err == nil {
				t.Fatalf("WithAuthData wrote %d bytes of auth data that its form cannot hold: %x", len(data), out)
			}
			return
		}
		if err != nil {
			return // auth data not encoded as Append would (a longer length encoding): refused, not mangled
		}
		r3, err := ParseHandshakeResponse(out)
		if err != nil {
			t.Fatalf("WithAuthData's packet %x does not parse: %v", out, err)
		}
		want := r
		want.AuthData = data
		if r.Caps&(ClientPluginAuthLenencClientData|ClientSecureConnection) == 0 {
			want.AuthData = bytes.TrimSuffix(data, []byte{0}) // its NUL ends the field
		}
		if !reflect.DeepEqual(normalizeFuzz(r3), normalizeFuzz(want)) {
			t.Fatalf("WithAuthData changed more than the auth data:\n got %+v\nwant %+v", r3, want)
		}
	})
}

// fitsAuthData is whether data can be framed as caps frame auth data.
func fitsAuthData(caps uint32, data []byte) bool {
	switch {
	case caps&ClientPluginAuthLenencClientData != 0:
		return true
	case caps&ClientSecureConnection != 0:
		return len(data) <= 255
	default: // a C string, which a NUL at the end may end
		return bytes.IndexByte(bytes.TrimSuffix(data, []byte{0}), 0) < 0
	}
}

// normalizeFuzz equates absent and empty byte fields, which encode alike.
func normalizeFuzz(r HandshakeResponse) HandshakeResponse {
	if len(r.AuthData) == 0 {
		r.AuthData = nil
	}
	if len(r.Attrs) == 0 {
		r.Attrs = nil
	}
	return r
}

// FuzzChangeUser parses arbitrary COM_CHANGE_USER payloads under
// arbitrary session flags: what parses encodes to a packet that parses
// the same.
func FuzzChangeUser(f *testing.F) {
	caps := ClientProtocol41 | ClientSecureConnection | ClientPluginAuth | ClientConnectAttrs
	for _, p := range []string{
		"\x11report\x00\x02ab" + "appdb\x00\x21\x00mysql_native_password\x00\x04\x01k\x01v",
		"\x11report\x00\x00appdb\x00\x21\x00mysql_native_password\x00\x00",
		"\x11report\x00\x00appdb\x00",
		"\x11u\x00\x00\x00",
		"\x11u\x00pw\x00db\x00",
		"\x03select 1",
	} {
		f.Add([]byte(p), caps)
	}
	f.Add([]byte("\x11u\x00pw\x00db\x00"), ClientProtocol41)
	f.Fuzz(func(t *testing.T, p []byte, caps uint32) {
		c, err := ParseChangeUser(p, caps)
		if err != nil {
			return
		}
		enc := c.Append(nil, caps)
		c2, err := ParseChangeUser(enc, caps)
		if err != nil {
			t.Fatalf("re-encoded %x does not parse: %v", enc, err)
		}
		if !reflect.DeepEqual(c2, c) {
			t.Fatalf("re-encoding changed the COM_CHANGE_USER:\n got %+v\nwant %+v", c2, c)
		}
		if again := c2.Append(nil, caps); !bytes.Equal(again, enc) {
			t.Fatalf("encoding is not stable:\n%x\n%x", again, enc)
		}
	})
}

// FuzzAuthSwitch: an AuthSwitchRequest reads back as written, and any
// payload that reads as one is exactly its parts.
func FuzzAuthSwitch(f *testing.F) {
	f.Add([]byte("\xfemysql_clear_password\x00"), NativePassword, []byte("abcdefghijklmnopqrst"))
	f.Add(AuthSwitchRequest(NativePassword, []byte("abcdefghijklmnopqrst")), "caching_sha2_password", []byte("x"))
	f.Add([]byte("\xfe"), "", []byte(nil))
	f.Add([]byte{OK, 0, 0}, "dialog", []byte{})
	f.Fuzz(func(t *testing.T, p []byte, plugin string, data []byte) {
		if got, rest, ok := ParseAuthSwitch(p); ok {
			want := append([]byte{AuthSwitch}, got...)
			if bytes.IndexByte(p[1:], 0) >= 0 {
				want = append(append(want, 0), rest...)
			}
			if !bytes.Equal(want, p) {
				t.Fatalf("ParseAuthSwitch(%x) = %q, %x", p, got, rest)
			}
		}
		if plugin == "" || bytes.IndexByte([]byte(plugin), 0) >= 0 {
			return
		}
		got, rest, ok := ParseAuthSwitch(AuthSwitchRequest(plugin, data))
		want := data
		if plugin == NativePassword {
			want = append(append([]byte(nil), data...), 0)
		}
		if !ok || got != plugin || !bytes.Equal(rest, want) {
			t.Fatalf("AuthSwitchRequest(%q, %x) reads back as %q, %x, %v", plugin, data, got, rest, ok)
		}
	})
}

// FuzzErrPacket: an ERR reads back as written; any payload is read
// without a panic.
func FuzzErrPacket(f *testing.F) {
	f.Add([]byte("\xff\x15\x04#28000Access denied"), uint16(1045), "28000", "Access denied for user 'app'")
	f.Add([]byte("\xff\x15\x04Host is blocked"), uint16(1043), "", "sidecar: x")
	f.Add([]byte("\xff\x15"), uint16(0), "08S01", "")
	f.Fuzz(func(t *testing.T, p []byte, code uint16, state, msg string) {
		if c, m, ok := ErrMessage(p); ok && (len(p) < 3 || c != binary.LittleEndian.Uint16(p[1:]) || !bytes.HasSuffix(p, []byte(m))) {
			t.Fatalf("ErrMessage(%x) = %d, %q", p, c, m)
		}
		e := ErrPacket(code, state, msg)
		if c, m, ok := ErrMessage(e); !ok || c != code || m != msg {
			t.Fatalf("ErrPacket(%d, %q, %q) reads back as %d, %q, %v", code, state, msg, c, m, ok)
		}
	})
}
