package mysqlwire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// First bytes of the server's packets in the connection phase.
const (
	OK           = 0x00
	MoreData     = 0x01 // AuthMoreData
	AuthSwitch   = 0xfe // AuthSwitchRequest
	ErrPacketHdr = 0xff
)

// SSLRequestLen is the payload length of an SSLRequest: the first 32 bytes
// of a HandshakeResponse41 (flags, max packet, charset, 23 filler bytes,
// the last 4 of which MariaDB uses for extended capabilities).
const SSLRequestLen = 32

// GreetingCaps returns the capability flags of a HandshakeV10 payload and
// the offsets of their lower and upper halves (upper is -1 when the
// greeting ends before it).
func GreetingCaps(g []byte) (caps uint32, lower, upper int, err error) {
	if len(g) < 1 || g[0] != 10 {
		return 0, 0, 0, errors.New("mysqlwire: not a protocol 10 server greeting")
	}
	end := 1
	for end < len(g) && g[end] != 0 {
		end++
	}
	// version NUL, thread id (4), scramble part 1 (8), filler (1)
	lower = end + 1 + 4 + 8 + 1
	if end >= len(g) || lower+2 > len(g) {
		return 0, 0, 0, errors.New("mysqlwire: server greeting too short")
	}
	caps = uint32(binary.LittleEndian.Uint16(g[lower:]))
	upper = lower + 2 + 1 + 2 // charset (1), status (2)
	if upper+2 > len(g) {
		return caps, lower, -1, nil
	}
	return caps | uint32(binary.LittleEndian.Uint16(g[upper:]))<<16, lower, upper, nil
}

// GreetingThreadID is the connection id the greeting announces.
func GreetingThreadID(g []byte) (uint32, error) {
	_, lower, _, err := GreetingCaps(g)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(g[lower-13:]), nil
}

// WithoutGreetingCaps returns a copy of greeting g with the flags in clear
// cleared and every other byte unchanged.
func WithoutGreetingCaps(g []byte, clear uint32) ([]byte, error) {
	caps, lower, upper, err := GreetingCaps(g)
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), g...)
	caps &^= clear
	binary.LittleEndian.PutUint16(out[lower:], uint16(caps))
	if upper >= 0 {
		binary.LittleEndian.PutUint16(out[upper:], uint16(caps>>16))
	}
	return out, nil
}

// ResponseCaps returns the capability flags of a HandshakeResponse41 or
// SSLRequest payload.
func ResponseCaps(r []byte) (uint32, error) {
	if len(r) < 4 {
		return 0, fmt.Errorf("mysqlwire: handshake response of %d bytes is too short", len(r))
	}
	return binary.LittleEndian.Uint32(r), nil
}

// IsSSLRequest reports whether a client's first packet is an SSLRequest
// rather than a full HandshakeResponse.
func IsSSLRequest(r []byte) bool {
	caps, err := ResponseCaps(r)
	return err == nil && len(r) == SSLRequestLen && caps&ClientSSL != 0
}

// SSLRequestFrom makes the SSLRequest that carries the client's own
// capability flags, max packet size, charset and extended capabilities,
// plus CLIENT_SSL: the server takes the session's flags from it.
func SSLRequestFrom(response []byte) ([]byte, error) {
	if len(response) < SSLRequestLen {
		return nil, fmt.Errorf("mysqlwire: handshake response of %d bytes is too short", len(response))
	}
	out := append([]byte(nil), response[:SSLRequestLen]...)
	caps := binary.LittleEndian.Uint32(out) | ClientSSL
	binary.LittleEndian.PutUint32(out, caps)
	return out, nil
}

// ErrPacket is an ERR packet payload (protocol 4.1 form) with SQL state
// sqlState (5 characters).
func ErrPacket(code uint16, sqlState, msg string) []byte {
	out := []byte{ErrPacketHdr, byte(code), byte(code >> 8), '#'}
	out = append(out, (sqlState + "HY000")[:5]...)
	return append(out, msg...)
}

// ErrMessage returns the code and message of an ERR packet payload.
func ErrMessage(p []byte) (uint16, string, bool) {
	if len(p) < 3 || p[0] != ErrPacketHdr {
		return 0, "", false
	}
	code := binary.LittleEndian.Uint16(p[1:])
	msg := p[3:]
	if len(msg) >= 6 && msg[0] == '#' {
		msg = msg[6:]
	}
	return code, string(msg), true
}

// GreetingScramble returns the 20-byte auth plugin data of a greeting (the
// nonce mysql_native_password signs), from its two parts.
func GreetingScramble(g []byte) ([]byte, error) {
	_, lower, upper, err := GreetingCaps(g)
	if err != nil {
		return nil, err
	}
	part2 := upper + 2 + 1 + 10 // upper flags, auth data length, reserved
	if upper < 0 || part2+12 > len(g) {
		return nil, errors.New("mysqlwire: greeting without a 20-byte scramble")
	}
	out := append([]byte(nil), g[lower-9:lower-1]...)
	return append(out, g[part2:part2+12]...), nil
}
