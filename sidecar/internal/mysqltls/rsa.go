package mysqltls

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/example/sidecar/sidecar/internal/mysqlwire"
)

// The app sees a plaintext connection, so caching_sha2_password (full
// authentication) and sha256_password make it send its password RSA
// encrypted, after asking for the server's public key. The server sees TLS,
// and over TLS it takes the password in clear and never answers a key
// request: MySQL's sql/auth/sha2_password.cc, caching_sha2_password_authenticate
// and sha256_password_authenticate, read RSA only when !my_vio_is_secure.
// So the sidecar plays the server's part of the RSA step with a key of its
// own, as MySQL Router does between a plaintext client and a TLS server,
// and sends the password in clear over the verified TLS connection.

// Plugin names and the AuthMoreData bytes of that step.
const (
	pluginCachingSHA2 = "caching_sha2_password"
	pluginSHA256      = "sha256_password"

	cachingSHA2FastAuthOK   = 0x03 // after 0x01: OK follows
	cachingSHA2FullAuth     = 0x04 // after 0x01: send the password
	cachingSHA2RequestKey   = 0x02 // the client asks for the public key
	sha256RequestKey        = 0x01
	passwordKeyBits         = 2048
	passwordKeyCipherLength = passwordKeyBits / 8
)

// PasswordKey is the RSA key apps encrypt their password with. It is made
// on first use (about a tenth of a second), so a sidecar whose apps never
// need it never pays for it. One is shared by every forward.
type PasswordKey struct {
	once sync.Once
	key  *rsa.PrivateKey
	pem  []byte // the public key as a "PUBLIC KEY" PEM block, as MySQL sends it
	err  error
}

// NewPasswordKey returns a key made on first use.
func NewPasswordKey() *PasswordKey { return &PasswordKey{} }

func (k *PasswordKey) load() error {
	k.once.Do(func() {
		key, err := rsa.GenerateKey(rand.Reader, passwordKeyBits)
		if err != nil {
			k.err = fmt.Errorf("make the RSA key for password exchanges: %w", err)
			return
		}
		der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
		if err != nil {
			k.err = fmt.Errorf("encode the RSA public key: %w", err)
			return
		}
		k.key = key
		k.pem = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	})
	return k.err
}

var errNoKey = errors.New("no RSA key configured for password exchanges")

// PublicPEM is the public key the app is given.
func (k *PasswordKey) PublicPEM() ([]byte, error) {
	if k == nil {
		return nil, errNoKey
	}
	if err := k.load(); err != nil {
		return nil, err
	}
	return k.pem, nil
}

var errForeignKey = errors.New("not encrypted with the sidecar's public key")

// Password decrypts what the app sent: RSA-OAEP (SHA-1, as every MySQL
// client uses) over the password and its terminating NUL, XORed with the
// plugin's nonce. It returns the password with its NUL, as the server takes
// it over TLS.
func (k *PasswordKey) Password(cipher, nonce []byte) ([]byte, error) {
	if k == nil {
		return nil, errNoKey
	}
	if err := k.load(); err != nil {
		return nil, err
	}
	if len(nonce) == 0 {
		return nil, errors.New("no nonce to unmask the password with")
	}
	plain, err := rsa.DecryptOAEP(sha1.New(), nil, k.key, cipher, nil)
	if err != nil {
		return nil, errForeignKey
	}
	for i := range plain {
		plain[i] ^= nonce[i%len(nonce)]
	}
	if len(plain) == 0 || plain[len(plain)-1] != 0 {
		return nil, errForeignKey // a password always ends in NUL
	}
	return plain, nil
}

// login is the state of one authentication exchange that the RSA step
// needs.
type login struct {
	t      *Target
	client net.Conn
	plugin string // the plugin the app answers for (its response's, then an auth switch's)
	// switchedTo is the plugin the server's last auth switch named: the
	// one it runs, whatever the app named; "" before a switch.
	switchedTo string
	nonce      []byte // that plugin's nonce (the greeting's scramble, then an auth switch's data)
	shift      int    // app sequence id minus the server's for the same packet
}

// password handles what the app sent as a password (data, in packet p)
// while the server expects it in clear: a key request is answered with the
// sidecar's key and the encrypted password that follows is read; an
// encrypted password is decrypted. It returns the password in clear, or
// nil when data is neither (an empty password), to be passed on as is;
// and the sequence id of the app's last packet.
func (a *login) password(p mysqlwire.Packet, data []byte) ([]byte, byte, error) {
	request := byte(cachingSHA2RequestKey)
	if a.plugin == pluginSHA256 {
		request = sha256RequestKey
	}
	noKey := func(seq byte, err error) error {
		return a.t.refuse(a.client, seq+1, ReasonPasswordKey, "sidecar: cannot make the RSA key for the app's password exchange; retry", err)
	}
	cipher := data
	switch {
	case len(data) == 1 && data[0] == request:
		key, err := a.t.PasswordKey.PublicPEM()
		if err != nil {
			return nil, 0, noKey(p.Seq, err)
		}
		if _, err := mysqlwire.WritePacket(a.client, p.Seq+1, append([]byte{mysqlwire.MoreData}, key...)); err != nil {
			return nil, 0, appLeft(err)
		}
		next, err := a.t.readApp(a.client, p.Seq+3) // the app answers the key at p.Seq+2
		if err != nil {
			return nil, 0, err
		}
		a.shift += 2 // the request and the key never reach the server
		p, cipher = next, next.Payload
	case !rsaSized(len(data)):
		return nil, p.Seq, nil
	}
	nonce := a.nonce
	if len(nonce) > scrambleLength {
		nonce = nonce[:scrambleLength] // an auth switch's data ends in NUL
	}
	pw, err := a.t.PasswordKey.Password(cipher, nonce)
	if err != nil && !errors.Is(err, errForeignKey) {
		return nil, 0, noKey(p.Seq, err)
	}
	if err != nil {
		return nil, 0, a.t.refuse(a.client, p.Seq+1, ReasonPasswordKey, fmt.Sprintf("sidecar: the app sent its %s password encrypted with a public key that is not the sidecar's. "+
			"The database sees TLS, so the sidecar answers the app's key request itself: remove the client's server public key setting and let it ask for the key "+
			"(e.g. --get-server-public-key, allowPublicKeyRetrieval=true)", a.plugin), err)
	}
	return pw, p.Seq, nil
}

// rsaSized is whether n bytes can be an RSA ciphertext: a modulus of 1024
// bits or more, in 512-bit steps. The sidecar's key gives 256 bytes; any
// other such size is a key that is not the sidecar's, to refuse, not a
// password to pass on in clear.
func rsaSized(n int) bool { return n >= 128 && n%64 == 0 }

// scrambleLength is the nonce's length (MySQL's SCRAMBLE_LENGTH).
const scrambleLength = 20
