package mysqltls_test

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"sync"

	"github.com/example/sidecar/sidecar/internal/mysqlwire"
)

// fakeAccount is one account of the fake server, checked the way MySQL 8
// checks caching_sha2_password and sha256_password accounts over TLS
// (sql/auth/sha2_password.cc: caching_sha2_password_authenticate and
// sha256_password_authenticate). Over TLS the password comes in clear,
// ending in NUL; there is no public-key request and no RSA: a request byte
// or an RSA blob is read as a (wrong) password. MariaDB has neither plugin,
// so the tests cannot use the real server for this.
type fakeAccount struct {
	user, password string
	plugin         string // the account's plugin
	greet          string // the greeting's default plugin

	mu     sync.Mutex
	cached bool     // caching_sha2_password's cache: filled by a full authentication
	clear  []string // the passwords received in clear
	fast   int      // fast authentications
}

const switchNonce = "switch-nonce-0123456"

// authenticate runs the account's plugin after the HandshakeResponse
// resp; it returns the sequence id of the packet after the server's OK.
func (a *fakeAccount) authenticate(f *fakeServer, ts *tls.Conn, resp mysqlwire.Packet) (byte, bool) {
	r, err := mysqlwire.ParseHandshakeResponse(resp.Payload)
	if err != nil {
		f.fail(err)
		return 0, false
	}
	seq := resp.Seq + 1
	nonce, data := []byte(greetingNonce), r.AuthData
	// read is the client's next packet, whose sequence id MySQL checks
	// ("Got packets out of order").
	read := func() ([]byte, bool) {
		p, err := mysqlwire.ReadPacket(ts, 1<<20)
		if err != nil {
			return nil, false // the sidecar refused the app: a test's concern
		}
		if p.Seq != seq {
			f.fail(fmt.Errorf("client packet with sequence id %d, want %d", p.Seq, seq))
			return nil, false
		}
		seq++
		return p.Payload, true
	}
	write := func(payload []byte) bool {
		if _, err := mysqlwire.WritePacket(ts, seq, payload); err != nil {
			f.fail(err)
			return false
		}
		seq++
		return true
	}
	if r.User != a.user {
		return 0, write(mysqlwire.ErrPacket(1045, "28000", "Access denied for user '"+r.User+"'"))
	}
	if r.Plugin != a.plugin {
		nonce = []byte(switchNonce)
		if !write(mysqlwire.AuthSwitchRequest(a.plugin, append([]byte(switchNonce), 0))) {
			return 0, false
		}
		var ok bool
		if data, ok = read(); !ok {
			return 0, false
		}
	}
	denied := func() (byte, bool) {
		write(mysqlwire.ErrPacket(1045, "28000", "Access denied for user '"+a.user+"'@'127.0.0.1' (using password: YES)"))
		return 0, false
	}
	a.mu.Lock()
	cached := a.cached
	a.mu.Unlock()
	switch a.plugin {
	case "caching_sha2_password":
		if len(data) != sha256.Size {
			return denied()
		}
		if cached && bytes.Equal(data, sha2Scramble(a.password, nonce)) {
			a.mu.Lock()
			a.fast++
			a.mu.Unlock()
			if !write([]byte{mysqlwire.MoreData, 0x03}) {
				return 0, false
			}
			break
		}
		if !write([]byte{mysqlwire.MoreData, 0x04}) { // perform full authentication
			return 0, false
		}
		var ok bool
		if data, ok = read(); !ok {
			return 0, false
		}
		fallthrough
	case "sha256_password":
		pw := string(bytes.TrimSuffix(data, []byte{0}))
		a.mu.Lock()
		a.clear = append(a.clear, pw)
		a.mu.Unlock()
		if pw != a.password {
			return denied()
		}
		a.mu.Lock()
		a.cached = true
		a.mu.Unlock()
	default:
		f.fail(fmt.Errorf("fake account with plugin %q", a.plugin))
		return 0, false
	}
	if !write([]byte{mysqlwire.OK, 0, 0, 2, 0, 0, 0}) {
		return 0, false
	}
	return seq, true
}

// sha2Scramble is caching_sha2_password's fast-authentication answer:
// SHA256(password) XOR SHA256(SHA256(SHA256(password)), nonce).
func sha2Scramble(password string, nonce []byte) []byte {
	h1 := sha256.Sum256([]byte(password))
	h2 := sha256.Sum256(h1[:])
	h := sha256.New()
	h.Write(h2[:])
	h.Write(nonce)
	out := h.Sum(nil)
	for i := range out {
		out[i] ^= h1[i]
	}
	return out
}

// received returns the passwords the account got in clear and the number
// of fast authentications.
func (a *fakeAccount) received() ([]string, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.clear...), a.fast
}
