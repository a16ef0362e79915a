package mysqlwire

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
)

func TestHandshakeResponseRoundTrip(t *testing.T) {
	base := ClientProtocol41 | ClientSecureConnection
	for _, tc := range []struct {
		name string
		r    HandshakeResponse
	}{
		{"secure connection", HandshakeResponse{Caps: base, MaxPacket: 1 << 24, Charset: 45, User: "app", AuthData: bytes.Repeat([]byte{7}, 20)}},
		{"db plugin attrs", HandshakeResponse{Caps: base | ClientConnectWithDB | ClientPluginAuth | ClientConnectAttrs, Charset: 33,
			User: "app", AuthData: []byte{1, 2}, Database: "appdb", Plugin: NativePassword, Attrs: []byte("\x04_pid\x031234")}},
		{"lenenc 1.4 KB", HandshakeResponse{Caps: base | ClientPluginAuth | ClientPluginAuthLenencClientData, User: "iam",
			AuthData: append(bytes.Repeat([]byte("t"), 1400), 0), Plugin: ClearPassword}},
		{"old auth", HandshakeResponse{Caps: ClientProtocol41, User: "u", AuthData: []byte("pw")}},
		{"mariadb filler", HandshakeResponse{Caps: base, User: "u", Filler: [23]byte{19: 1, 22: 9}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := tc.r.Append(nil)
			got, err := ParseHandshakeResponse(enc)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normalize(got), normalize(tc.r)) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tc.r)
			}
			if again := got.Append(nil); !bytes.Equal(again, enc) {
				t.Fatal("re-encoding differs")
			}
		})
	}
}

func normalize(r HandshakeResponse) HandshakeResponse {
	if len(r.AuthData) == 0 {
		r.AuthData = nil
	}
	return r
}

func TestParseHandshakeResponseErrors(t *testing.T) {
	good := (&HandshakeResponse{Caps: ClientProtocol41 | ClientSecureConnection, User: "app", AuthData: []byte{1, 2, 3}}).Append(nil)
	for _, tc := range []struct {
		name string
		p    []byte
		want string
	}{
		{"short", good[:10], "too short"},
		{"no NUL after user", good[:SSLRequestLen+2], "ends early"},
		{"auth data cut", good[:len(good)-1], "ends early"},
		{"pre-4.1", append([]byte{0, 0, 0, 0}, good[4:]...), "4.1"},
	} {
		if _, err := ParseHandshakeResponse(tc.p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestChangeUserRoundTrip(t *testing.T) {
	caps := ClientProtocol41 | ClientSecureConnection | ClientPluginAuth | ClientConnectAttrs
	c := ChangeUser{User: "report", AuthData: bytes.Repeat([]byte{9}, 20), Database: "appdb", Charset: 45, Plugin: NativePassword, Attrs: []byte("\x01a\x01b")}
	got, err := ParseChangeUser(c.Append(nil, caps), caps)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("got %+v, %v", got, err)
	}
	// Without the optional tail (old clients).
	short := ChangeUser{User: "u", AuthData: []byte{}, Database: ""}
	p := short.Append(nil, caps)
	if !bytes.Equal(p, []byte{ComChangeUser, 'u', 0, 0, 0}) {
		t.Fatalf("short form % x", p)
	}
	if got, err := ParseChangeUser(p, caps); err != nil || got.User != "u" || got.Plugin != "" {
		t.Fatalf("short: %+v, %v", got, err)
	}
	if _, err := ParseChangeUser([]byte{0x03, 'x'}, caps); err == nil {
		t.Fatal("a COM_QUERY parsed as COM_CHANGE_USER")
	}
}

func TestAuthSwitch(t *testing.T) {
	scramble := []byte("abcdefghijklmnopqrst")
	p := AuthSwitchRequest(NativePassword, scramble)
	plugin, data, ok := ParseAuthSwitch(p)
	if !ok || plugin != NativePassword || !bytes.Equal(data, append(scramble, 0)) {
		t.Fatalf("%q %q %v", plugin, data, ok)
	}
	if plugin, _, ok := ParseAuthSwitch([]byte("\xfemysql_clear_password\x00")); !ok || plugin != ClearPassword {
		t.Fatalf("clear: %q %v", plugin, ok)
	}
	if _, _, ok := ParseAuthSwitch([]byte{OK, 0, 0}); ok {
		t.Fatal("OK parsed as auth switch")
	}
}

// TestNativeProof checks against a value computed with MySQL's formula by
// an independent tool (Python's hashlib).
func TestNativeProof(t *testing.T) {
	got := hex.EncodeToString(NativeProof([]byte("secret"), []byte("01234567890123456789")))
	// python3 -c 'import hashlib;s=b"01234567890123456789";p=b"secret";h1=hashlib.sha1(p).digest();h2=hashlib.sha1(h1).digest();print(bytes(a^b for a,b in zip(h1,hashlib.sha1(s+h2).digest())).hex())'
	const want = "7abe1a8776b59e931059451f81e596a60dbbf7a8"
	if got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if NativeProof(nil, []byte("x")) != nil {
		t.Fatal("empty password must answer nothing")
	}
}

// WithAuthData changes the auth data alone: bytes after the attributes
// (MySQL 8's zstd level) and a CONNECT_ATTRS flag with no attribute block
// stay as sent, in every auth data framing.
func TestWithAuthDataKeepsEveryOtherByte(t *testing.T) {
	base := ClientProtocol41 | ClientSecureConnection | ClientPluginAuth | ClientConnectWithDB | ClientConnectAttrs
	for _, tc := range []struct {
		name    string
		caps    uint32
		tail    []byte // after the encoded fields
		noAttrs bool
	}{
		{name: "zstd level after the attributes", caps: base | ClientPluginAuthLenencClientData | ClientZstdCompressionAlgorithm, tail: []byte{3}},
		{name: "one-byte length", caps: base, tail: []byte{3}},
		{name: "attributes flag without a block", caps: base | ClientPluginAuthLenencClientData, noAttrs: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := HandshakeResponse{Caps: tc.caps, MaxPacket: 1 << 24, Charset: 45, User: "app", AuthData: []byte{1},
				Database: "orders", Plugin: "sha256_password", Attrs: []byte("\x04_pid\x03123")}
			payload := append(r.Append(nil), tc.tail...)
			if tc.noAttrs {
				payload = payload[:len(payload)-len(r.Attrs)-1]
			}
			pw := []byte("s3cret\x00")
			got, err := WithAuthData(payload, pw)
			if err != nil {
				t.Fatal(err)
			}
			r.AuthData = pw
			want := append(r.Append(nil), tc.tail...)
			if tc.noAttrs {
				want = want[:len(want)-len(r.Attrs)-1]
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got  %x\nwant %x", got, want)
			}
		})
	}
}

// A parsed COM_CHANGE_USER is written back byte for byte: an empty
// attribute block too (mysql2 always sends one), which servers read
// whenever CLIENT_CONNECT_ATTRS is on.
func TestChangeUserReencodesAsSent(t *testing.T) {
	caps := ClientProtocol41 | ClientSecureConnection | ClientPluginAuth | ClientConnectAttrs
	for _, tc := range []struct {
		name string
		p    string
	}{
		{"attributes", "\x11report\x00\x02ab" + "appdb\x00\x21\x00mysql_native_password\x00\x04\x01k\x01v"},
		{"empty attribute block", "\x11report\x00\x00appdb\x00\x21\x00mysql_native_password\x00\x00"},
		{"no tail", "\x11report\x00\x00appdb\x00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseChangeUser([]byte(tc.p), caps)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Append(nil, caps); string(got) != tc.p {
				t.Errorf("re-encoded %q\n          want %q", got, tc.p)
			}
		})
	}
}

// WithAuthData writes the password in the auth-response form the client
// used, and every field after it stays where the server reads it: a
// password that ends in its NUL (as rsa.go hands it over) is not given a
// second one in the NUL-terminated form, which shifted the database into
// the plugin's place; what a form cannot hold is an error, not a wrapped
// length.
func TestWithAuthDataInEachForm(t *testing.T) {
	base := ClientProtocol41 | ClientPluginAuth | ClientConnectWithDB | ClientConnectAttrs
	lenenc, oneByte, cString := base|ClientSecureConnection|ClientPluginAuthLenencClientData, base|ClientSecureConnection, base
	token := append(bytes.Repeat([]byte("t"), 1500), 0) // an IAM token's size
	for _, tc := range []struct {
		name     string
		caps     uint32
		data     []byte
		wantAuth []byte // as the server parses it; nil = an error
	}{
		{"length-encoded", lenenc, []byte("s3cret\x00"), []byte("s3cret\x00")},
		{"length-encoded, token-sized", lenenc, token, token},
		{"one-byte length", oneByte, []byte("s3cret\x00"), []byte("s3cret\x00")},
		{"one-byte length, 255 bytes", oneByte, token[len(token)-255:], token[len(token)-255:]},
		{"one-byte length, 256 bytes", oneByte, token[len(token)-256:], nil},
		{"NUL-terminated", cString, []byte("s3cret\x00"), []byte("s3cret")},
		{"NUL-terminated, no NUL given", cString, []byte("s3cret"), []byte("s3cret")},
		{"NUL-terminated, NUL inside", cString, []byte("s3\x00cret\x00"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := HandshakeResponse{Caps: tc.caps, MaxPacket: 1 << 24, Charset: 45, User: "app", AuthData: []byte{1},
				Database: "orders", Plugin: "sha256_password", Attrs: []byte("\x04_pid\x03123")}
			got, err := WithAuthData(r.Append(nil), tc.data)
			if tc.wantAuth == nil {
				if err == nil {
					t.Fatalf("wrote %d bytes of auth data in a form that cannot hold them: %q", len(tc.data), got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseHandshakeResponse(got)
			want := r
			want.AuthData = tc.wantAuth
			if err != nil || !reflect.DeepEqual(back, want) {
				t.Fatalf("the server reads %+v, %v\nwant %+v", back, err, want)
			}
		})
	}
}
