package mysqlwire

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
)

// Command bytes the sidecar looks at.
const (
	ComChangeUser = 0x11
)

// Auth plugin names.
const (
	NativePassword = "mysql_native_password"
	ClearPassword  = "mysql_clear_password"
)

var errShort = errors.New("mysqlwire: packet ends early")

// HandshakeResponse is a HandshakeResponse41, the app's login packet.
type HandshakeResponse struct {
	Caps      uint32
	MaxPacket uint32
	Charset   byte
	Filler    [23]byte // MariaDB keeps extended capabilities in its last 4 bytes
	User      string
	AuthData  []byte
	Database  string // sent when Caps has ClientConnectWithDB
	Plugin    string // sent when Caps has ClientPluginAuth
	Attrs     []byte // the attribute block without its length; sent when Caps has ClientConnectAttrs
}

// ParseHandshakeResponse parses a HandshakeResponse41 payload.
func ParseHandshakeResponse(p []byte) (HandshakeResponse, error) {
	var r HandshakeResponse
	if len(p) < SSLRequestLen {
		return r, fmt.Errorf("mysqlwire: handshake response of %d bytes is too short", len(p))
	}
	r.Caps = binary.LittleEndian.Uint32(p)
	if r.Caps&ClientProtocol41 == 0 {
		return r, errors.New("mysqlwire: not a protocol 4.1 handshake response")
	}
	r.MaxPacket = binary.LittleEndian.Uint32(p[4:])
	r.Charset = p[8]
	copy(r.Filler[:], p[9:SSLRequestLen])
	rd := reader{b: p[SSLRequestLen:]}
	r.User = rd.nulString()
	switch {
	case r.Caps&ClientPluginAuthLenencClientData != 0:
		r.AuthData = rd.lenencBytes()
	case r.Caps&ClientSecureConnection != 0:
		r.AuthData = rd.bytes(int(rd.byte1()))
	default:
		r.AuthData = []byte(rd.nulString())
	}
	if r.Caps&ClientConnectWithDB != 0 {
		r.Database = rd.optNulString()
	}
	if r.Caps&ClientPluginAuth != 0 {
		r.Plugin = rd.optNulString()
	}
	if r.Caps&ClientConnectAttrs != 0 && len(rd.b) > 0 {
		r.Attrs = rd.lenencBytes()
	}
	return r, rd.err
}

// Append encodes r after dst.
func (r *HandshakeResponse) Append(dst []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, r.Caps)
	dst = binary.LittleEndian.AppendUint32(dst, r.MaxPacket)
	dst = append(dst, r.Charset)
	dst = append(dst, r.Filler[:]...)
	dst = append(append(dst, r.User...), 0)
	dst = appendAuthData(dst, r.Caps, r.AuthData)
	if r.Caps&ClientConnectWithDB != 0 {
		dst = append(append(dst, r.Database...), 0)
	}
	if r.Caps&ClientPluginAuth != 0 {
		dst = append(append(dst, r.Plugin...), 0)
	}
	if r.Caps&ClientConnectAttrs != 0 {
		dst = appendLenencBytes(dst, r.Attrs)
	}
	return dst
}

func appendAuthData(dst []byte, caps uint32, data []byte) []byte {
	switch {
	case caps&ClientPluginAuthLenencClientData != 0:
		return appendLenencBytes(dst, data)
	case caps&ClientSecureConnection != 0:
		return append(append(dst, byte(len(data))), data...)
	default:
		return append(append(dst, data...), 0)
	}
}

// WithAuthData returns a HandshakeResponse41 payload with its auth data
// replaced by data, in the form the client used, and every other byte as
// sent: what follows the attributes too (MySQL 8's zstd level), which a
// parse and Append would drop. It fails when that form cannot hold data.
func WithAuthData(payload, data []byte) ([]byte, error) {
	r, err := ParseHandshakeResponse(payload)
	if err != nil {
		return nil, err
	}
	switch {
	case r.Caps&ClientPluginAuthLenencClientData != 0:
	case r.Caps&ClientSecureConnection != 0:
		if len(data) > 255 {
			return nil, fmt.Errorf("mysqlwire: %d bytes of auth data do not fit the 1-byte length of a client without CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA", len(data))
		}
	default:
		// The field is a C string: a password that ends in its NUL (as
		// servers take one) ends the field with it, or every field after
		// it would shift by one.
		data = bytes.TrimSuffix(data, []byte{0})
		if bytes.IndexByte(data, 0) >= 0 {
			return nil, errors.New("mysqlwire: auth data with a NUL inside cannot be written for a client without CLIENT_SECURE_CONNECTION")
		}
	}
	start := SSLRequestLen + len(r.User) + 1
	old := appendAuthData(nil, r.Caps, r.AuthData)
	if len(payload) < start+len(old) || !bytes.Equal(payload[start:start+len(old)], old) {
		return nil, errors.New("mysqlwire: handshake response's auth data is not where it parsed")
	}
	out := appendAuthData(append([]byte(nil), payload[:start]...), r.Caps, data)
	return append(out, payload[start+len(old):]...), nil
}

// ChangeUser is a COM_CHANGE_USER payload; which fields it has depends on
// the session's capability flags.
type ChangeUser struct {
	User     string
	AuthData []byte
	Database string
	Charset  uint16 // 0 = not sent
	Plugin   string
	Attrs    []byte
}

// ParseChangeUser parses a COM_CHANGE_USER payload (command byte first).
func ParseChangeUser(p []byte, caps uint32) (ChangeUser, error) {
	var c ChangeUser
	if len(p) == 0 || p[0] != ComChangeUser {
		return c, errors.New("mysqlwire: not a COM_CHANGE_USER")
	}
	rd := reader{b: p[1:]}
	c.User = rd.nulString()
	if caps&ClientSecureConnection != 0 {
		c.AuthData = rd.bytes(int(rd.byte1()))
	} else {
		c.AuthData = []byte(rd.nulString())
	}
	c.Database = rd.optNulString()
	if len(rd.b) >= 2 {
		c.Charset = binary.LittleEndian.Uint16(rd.bytes(2))
		if caps&ClientPluginAuth != 0 {
			c.Plugin = rd.optNulString()
		}
		if caps&ClientConnectAttrs != 0 && len(rd.b) > 0 {
			c.Attrs = rd.lenencBytes()
		}
	}
	return c, rd.err
}

// Append encodes c after dst. AuthData must fit the session's framing: at
// most 255 bytes with ClientSecureConnection.
func (c *ChangeUser) Append(dst []byte, caps uint32) []byte {
	dst = append(dst, ComChangeUser)
	dst = append(append(dst, c.User...), 0)
	if caps&ClientSecureConnection != 0 {
		dst = append(append(dst, byte(len(c.AuthData))), c.AuthData...)
	} else {
		dst = append(append(dst, c.AuthData...), 0)
	}
	dst = append(append(dst, c.Database...), 0)
	if c.Charset == 0 && c.Plugin == "" && c.Attrs == nil {
		return dst
	}
	dst = binary.LittleEndian.AppendUint16(dst, c.Charset)
	if caps&ClientPluginAuth != 0 {
		dst = append(append(dst, c.Plugin...), 0)
	}
	if caps&ClientConnectAttrs != 0 && c.Attrs != nil {
		dst = appendLenencBytes(dst, c.Attrs)
	}
	return dst
}

// AuthSwitchRequest is the payload asking the client to answer with plugin
// over data (for mysql_native_password, the scramble).
func AuthSwitchRequest(plugin string, data []byte) []byte {
	out := append([]byte{AuthSwitch}, plugin...)
	out = append(out, 0)
	out = append(out, data...)
	if plugin == NativePassword {
		out = append(out, 0) // as servers send it
	}
	return out
}

// ParseAuthSwitch returns the plugin an AuthSwitchRequest names.
func ParseAuthSwitch(p []byte) (plugin string, data []byte, ok bool) {
	if len(p) < 2 || p[0] != AuthSwitch {
		return "", nil, false
	}
	i := bytes.IndexByte(p[1:], 0)
	if i < 0 {
		return string(p[1:]), nil, true
	}
	return string(p[1 : 1+i]), p[2+i:], true
}

// NativeProof is mysql_native_password's answer for password over
// scramble: SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password))).
// An empty password answers nothing.
func NativeProof(password, scramble []byte) []byte {
	if len(password) == 0 {
		return nil
	}
	h1 := sha1.Sum(password)
	h2 := sha1.Sum(h1[:])
	h := sha1.New()
	h.Write(scramble)
	h.Write(h2[:])
	out := h.Sum(nil)
	for i := range out {
		out[i] ^= h1[i]
	}
	return out
}

// reader reads protocol fields; the first failure sticks in err.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errShort
	}
	r.b = nil
}

func (r *reader) byte1() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bytes(n int) []byte {
	if n > len(r.b) {
		r.fail()
		return nil
	}
	out := append([]byte(nil), r.b[:n]...)
	r.b = r.b[n:]
	return out
}

func (r *reader) nulString() string {
	i := bytes.IndexByte(r.b, 0)
	if i < 0 {
		r.fail()
		return ""
	}
	s := string(r.b[:i])
	r.b = r.b[i+1:]
	return s
}

// optNulString reads a NUL-terminated string that some clients end the
// packet with instead of a NUL.
func (r *reader) optNulString() string {
	if i := bytes.IndexByte(r.b, 0); i >= 0 {
		return r.nulString()
	}
	s := string(r.b)
	r.b = nil
	return s
}

// lenencBytes reads a length-encoded field; an empty one that is present
// is non-nil, so that Append writes it back (a COM_CHANGE_USER's empty
// attribute block, which servers require when CLIENT_CONNECT_ATTRS is on).
func (r *reader) lenencBytes() []byte {
	n, ok := r.lenencInt()
	if !ok || n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	if n == 0 {
		return []byte{}
	}
	return r.bytes(int(n))
}

// LenencSize is how many bytes a length-encoded integer whose first byte
// is c takes, c included: 1 below 0xfb, and for 0xfb (NULL) and 0xff,
// which begin no integer.
func LenencSize(c byte) int {
	switch c {
	case 0xfc:
		return 3
	case 0xfd:
		return 4
	case 0xfe:
		return 9
	}
	return 1
}

func (r *reader) lenencInt() (uint64, bool) {
	if len(r.b) == 0 {
		return 0, false
	}
	c := r.b[0]
	size := LenencSize(c) - 1
	switch {
	case c < 0xfb:
		r.b = r.b[1:]
		return uint64(c), true
	case size == 0 || len(r.b) < 1+size:
		return 0, false
	}
	var v uint64
	for i := size; i >= 1; i-- {
		v = v<<8 | uint64(r.b[i])
	}
	r.b = r.b[1+size:]
	return v, true
}

func appendLenencBytes(dst, b []byte) []byte {
	n := uint64(len(b))
	switch {
	case n < 0xfb:
		dst = append(dst, byte(n))
	case n < 1<<16:
		dst = append(dst, 0xfc, byte(n), byte(n>>8))
	case n < 1<<24:
		dst = append(dst, 0xfd, byte(n), byte(n>>8), byte(n>>16))
	default:
		dst = append(dst, 0xfe)
		dst = binary.LittleEndian.AppendUint64(dst, n)
	}
	return append(dst, b...)
}
