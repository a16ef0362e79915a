// Package mysqltls makes the sidecar the app's TLS to MySQL. MySQL starts
// TLS inside its protocol (greeting, SSLRequest, then TLS on the same
// socket), so no byte relay can add it: this package takes part in the
// connection phase. The app speaks plaintext to the sidecar on loopback;
// the sidecar speaks verified TLS to the server, then relays the session.
//
// The connection phase, as done here:
//  1. read the server greeting; refuse a server without CLIENT_SSL;
//  2. forward the greeting with CLIENT_SSL cleared, every other byte as is
//     (thread id, scramble, version, plugin), so CONNECTION_ID() and KILL
//     keep matching;
//  3. read the app's HandshakeResponse; an SSLRequest gets an ERR;
//  4. send the server an SSLRequest with the app's own capability flags
//     plus CLIENT_SSL (the server takes the session's flags from it), then
//     the TLS handshake, verified per Mode;
//  5. forward the app's response and the rest of the authentication
//     exchange, shifting sequence ids by one (the SSLRequest took one),
//     until the server's OK or ERR; the RSA step of caching_sha2_password
//     and sha256_password, which a server over TLS does not do, the
//     sidecar answers itself (rsa.go).
//
// Every refusal reaches the app as a MySQL ERR packet whose message starts
// with "sidecar:" and says what to fix.
package mysqltls

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/example/sidecar/sidecar/internal/iamauth"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
	"github.com/example/sidecar/sidecar/internal/rdsca"
	"github.com/example/sidecar/sidecar/internal/relay"
	"github.com/example/sidecar/sidecar/internal/tlscodec"
)

// Mode is how the server's certificate is checked. There is no mode that
// encrypts without verifying: it would hand the app's credentials to
// whoever answers at the target's address.
type Mode string

const (
	VerifyCA       Mode = "verify-ca"       // chain to a trusted CA; any name
	VerifyIdentity Mode = "verify-identity" // chain, and the name is ServerName
)

// MaxLoginPacket bounds the connection-phase packets read here; a greeting
// or a HandshakeResponse with attributes is far smaller (docs/tls.md
// quotes it; a test ties them).
const MaxLoginPacket = 1 << 20

// LoginTimeout bounds the whole connection phase, so a client or a server
// that stops talking mid-login does not hold a connection slot for long.
const LoginTimeout = 30 * time.Second

// Target is how connections to one forward's target are secured.
type Target struct {
	Mode       Mode
	Roots      *x509.CertPool // trusted CAs
	RootsFrom  string         // where Roots came from, for messages (a path, or "the embedded RDS bundle")
	ServerName string         // checked by VerifyIdentity and sent as SNI; "" = none (VerifyCA with an IP)

	// HandshakeTimeout bounds the wait for the server's greeting and the
	// TLS handshake, each; 0 = 5s. LoginTimeout bounds both all the same.
	HandshakeTimeout time.Duration
	// Sessions resumes TLS sessions across connections; nil = none.
	Sessions tls.ClientSessionCache

	// PasswordKey is the RSA key the app encrypts its password with for
	// caching_sha2_password and sha256_password (rsa.go); nil = such a
	// login is refused. One can serve every Target.
	PasswordKey *PasswordKey

	// IAM, when set, logs the app in with IAM database authentication
	// (TARGET_AUTH=iam) instead of passing its credentials on; see iam.go.
	IAM *iamauth.Authority
	// Buffers lends sessions relayed by Relay their buffers while they
	// carry data, so that an idle one holds none; nil = each direction
	// makes its own each time it starts carrying data. One can serve
	// every Target.
	Buffers *Buffers
}

// Conn is the server side of a session after the login.
type Conn struct {
	*tls.Conn
	// ReleaseSlot, if set, is called just before an ERR that ends the
	// session (a refused COM_CHANGE_USER): an app that reads it may
	// reconnect at once, so the proxy gives its connection slot back then,
	// as before a refused login's ERR.
	ReleaseSlot func()
	iam         *iamSession     // nil unless IAM
	codec       *tlscodec.Codec // the same connection, for an event loop; nil with IAM
	bufs        *Buffers        // Target.Buffers, for Relay; IAM's come with iam
}

// Codec returns the connection as a relay.Codec, for a data path that
// runs TLS in its own loop (relay.CodecFunc); nil with IAM, whose session
// the sidecar reads frame by frame (Relay).
func (c *Conn) Codec() relay.Codec {
	if c.codec == nil {
		return nil // not a nil *tlscodec.Codec in a non-nil interface
	}
	return c.codec
}

// Refusal is why a connection was refused; the app has been sent an ERR
// packet with Message.
type Refusal struct {
	Reason  string // stable, for logs and metrics: see the Reason* constants
	Message string // as sent to the app
	Err     error  // the underlying error, if any
	User    string // with IAM, the database user the app named
	// Told: the app was sent the refusal. An app that reads it and leaves
	// at once was refused, not gone (a data path may see it leave first).
	Told bool
	// Silent: with ReasonIO, the app left before a byte of its login
	// arrived, whether before or after its greeting was written: a pool
	// giving up or a health check, as one that leaves before the dial.
	Silent bool
}

func (r *Refusal) Error() string {
	if r.Err != nil {
		return r.Message + ": " + r.Err.Error()
	}
	return r.Message
}

func (r *Refusal) Unwrap() error { return r.Err }

// Reasons a connection is refused. Values are stable: they appear in logs
// and as the reason label of sidecar_tls_refusals_total.
const (
	ReasonDialFailed     = "dial_failed"
	ReasonServerNoTLS    = "server_without_tls"
	ReasonServerError    = "server_error" // the server sent ERR instead of a greeting
	ReasonClientTLS      = "client_requested_tls"
	ReasonClientProtocol = "client_protocol"
	ReasonUnknownCA      = "unknown_ca"
	ReasonNameMismatch   = "name_mismatch"
	ReasonExpired        = "certificate_expired"
	ReasonTLSTimeout     = "tls_timeout"
	ReasonTLSHandshake   = "tls_handshake"
	ReasonNoGreeting     = "no_greeting"   // the target closed, stayed silent or spoke another protocol
	ReasonServerClosed   = "server_closed" // the database closed or failed mid-login
	ReasonIO             = "io_error"      // the app closed or failed mid-login
	ReasonIAM            = "iam"           // an IAM login failed: sidecar_iam_failures_total says why
	ReasonPasswordKey    = "password_key"  // the app encrypted its password with another RSA key than the sidecar's
)

// Reasons lists every reason, for metrics.
var Reasons = []string{ReasonDialFailed, ReasonServerNoTLS, ReasonServerError, ReasonClientTLS, ReasonClientProtocol,
	ReasonUnknownCA, ReasonNameMismatch, ReasonExpired, ReasonTLSTimeout, ReasonTLSHandshake, ReasonNoGreeting, ReasonServerClosed,
	ReasonIO, ReasonIAM, ReasonPasswordKey}

// MySQL error codes used in the ERR packets sent to the app: server codes
// only, since libmariadb reads an ERR with a client code (2000-2999, such
// as 2003 CR_CONN_HOST_ERROR) as a malformed packet and drops its text.
const (
	codeHandshake = 1043 // ER_HANDSHAKE_ERROR, SQLSTATE 08S01 (a connection error to JDBC)
	codeDenied    = 1045 // ER_ACCESS_DENIED_ERROR
	codeTooMany   = 1040 // ER_CON_COUNT_ERROR, SQLSTATE 08004: what a server at max_connections sends
)

// RefuseDial tells a client whose target could not be dialed, as the
// first packet in place of a greeting (MySQL clients accept an ERR there).
func RefuseDial(client net.Conn, target string, err error) *Refusal {
	return refuseDial(client, err, fmt.Sprintf("sidecar: cannot connect to the database at %s; check TARGET_HOST/TARGET_PORT (or FORWARDS), the security groups and that the cluster is available", target))
}

// RefuseOutOfFiles is RefuseDial when the sidecar itself was out of file
// descriptors: the database is not to blame.
func RefuseOutOfFiles(client net.Conn, err error) *Refusal {
	return refuseDial(client, err, "sidecar: the sidecar is out of file descriptors and could not connect to the database; raise the task's ulimits nofile or lower MAX_CONNECTIONS")
}

// TellTooMany tells a client turned away at the sidecar's connection limit,
// as a server at max_connections does: an ERR in place of the greeting, so
// the app's error names the limit instead of a lost connection.
func TellTooMany(client net.Conn, limit int) error {
	return sendErrTo(client, 0, codeTooMany, "08004", fmt.Sprintf(
		"sidecar: too many connections: MAX_CONNECTIONS=%d are open through this sidecar; raise MAX_CONNECTIONS or lower the app's connection pool", limit))
}

func refuseDial(client net.Conn, err error, msg string) *Refusal {
	r := &Refusal{Reason: ReasonDialFailed, Err: err, Message: msg}
	sendErr(client, 0, codeHandshake, r.Message)
	return r
}

// Greeting is a server's first packet, read by Greet before anything is
// sent to the app.
type Greeting struct {
	packet mysqlwire.Packet
	began  time.Time // when the wait for it began: LoginTimeout counts from then
}

// Greet reads the server's greeting on a fresh TCP connection to the
// target, waiting at most HandshakeWait, and sends the app nothing: until
// the greeting is forwarded, a target with several addresses can still try
// the next one for the same app. An ERR in place of the greeting is the
// server's answer, which Login forwards. On failure the error is a
// *Refusal the app has not been told (ReasonNoGreeting: the server stayed
// silent, closed, or spoke another protocol; Tell sends it), or, when ctx
// ended the wait, ctx's cause. server is not closed here.
func (t *Target) Greet(ctx context.Context, server net.Conn) (*Greeting, error) {
	began := time.Now()
	// A MySQL server greets at once; a port that waits for the client to
	// speak (another service) must not hold the app for the whole login.
	_ = server.SetReadDeadline(soonest(ctx, began.Add(t.handshakeTimeout())))
	// The app leaving or the drain deadline ends the wait at once; the
	// cut's deadline must not land on the login.
	release := cutWhenDone(ctx, server.SetReadDeadline)
	p, err := mysqlwire.ReadPacket(server, MaxLoginPacket)
	release()
	if err != nil && ctx.Err() != nil {
		return nil, context.Cause(ctx) // nothing learnt of the server
	}
	_ = server.SetReadDeadline(time.Time{})
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, &Refusal{Reason: ReasonNoGreeting, Err: err, Message: fmt.Sprintf(
			"sidecar: the database sent no greeting within %s; check that TARGET_PORT is the MySQL port", t.handshakeTimeout())}
	case errors.Is(err, mysqlwire.ErrTooLarge):
		err = fmt.Errorf("a first packet that long is no greeting: %w", err) // another protocol's bytes read as a length
	case err != nil:
		return nil, &Refusal{Reason: ReasonNoGreeting, Err: err,
			Message: "sidecar: the database closed the connection before its greeting; check that TARGET_PORT is a MySQL port"}
	case isErrPacket(p.Payload):
		return &Greeting{packet: p, began: began}, nil // e.g. "Host is blocked": the server's own words, for the app
	default:
		_, _, _, err = mysqlwire.GreetingCaps(p.Payload)
	}
	if err != nil {
		return nil, &Refusal{Reason: ReasonNoGreeting, Err: err,
			Message: "sidecar: the target did not send a MySQL greeting; check that TARGET_PORT is a MySQL port"}
	}
	return &Greeting{packet: p, began: began}, nil
}

// isErrPacket is whether p is an ERR: its marker and a code. Shorter,
// 0xff is no MySQL server's first packet, and no ERR for the app.
func isErrPacket(p []byte) bool {
	_, _, ok := mysqlwire.ErrMessage(p)
	return ok
}

// Tell sends the app a refusal from Greet, in place of the greeting, and
// records whether it was sent (Told). It returns r.
func (r *Refusal) Tell(client net.Conn) *Refusal {
	r.Told = sendErr(client, 0, codeHandshake, r.Message) == nil
	return r
}

// Handshake does the connection phase between client (plaintext) and
// server (a fresh TCP connection to the target): Greet, then Login. On
// failure the client has been sent an ERR packet (unless ctx ended the
// login), and the error is a *Refusal. Neither connection is closed here.
func (t *Target) Handshake(ctx context.Context, client, server net.Conn) (*Conn, error) {
	g, err := t.Greet(ctx, server)
	if r := (*Refusal)(nil); errors.As(err, &r) {
		return nil, r.Tell(client)
	}
	if err != nil {
		return nil, &Refusal{Reason: ReasonNoGreeting, Message: "the login was cut before the database's greeting", Err: err}
	}
	return t.Login(ctx, client, server, g)
}

// Login does the rest of the connection phase after Greet: it forwards
// the greeting to client, and returns the TLS connection to server, ready
// for the session. From the greeting on, the app holds the server's
// thread id and scramble, so no other server can take the login over. On
// failure the client has been sent an ERR packet (unless ctx ended the
// login), and the error is a *Refusal. Neither connection is closed here.
func (t *Target) Login(ctx context.Context, client, server net.Conn, g *Greeting) (*Conn, error) {
	deadline := soonest(ctx, g.began.Add(LoginTimeout))
	_ = client.SetDeadline(deadline)
	_ = server.SetDeadline(deadline)
	// A drain deadline ends a login at once. If ctx ended as the login
	// did (the app left after its OK), the cut's deadlines must not land
	// on the session after they are cleared, where they would fail the
	// server's side as an upstream error.
	release := cutWhenDone(ctx, client.SetDeadline, server.SetDeadline)
	tc, err := t.handshake(ctx, afterCut{client, ctx}, server, deadline, g.packet)
	release()
	if err != nil {
		return nil, err
	}
	_ = client.SetDeadline(time.Time{})
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}

// afterCut is the app's side of a login: once ctx has ended it (the drain
// deadline, the stale check, the app leaving), nothing more is written to
// it, so the app sees its connection close rather than an ERR that blames
// the database for what cut the login.
type afterCut struct {
	net.Conn
	ctx context.Context
}

func (c afterCut) Write(p []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

// SetReadDeadline keeps the cut's deadline once ctx has ended (readBy):
// readAway's second must not hold a cut login, and the drain, longer.
func (c afterCut) SetReadDeadline(t time.Time) error { return readBy(c.ctx, c.Conn, t) }

func (t *Target) handshake(ctx context.Context, client, server net.Conn, deadline time.Time, greeting mysqlwire.Packet) (_ *Conn, err error) {
	var login *iamLogin
	defer func() {
		// An IAM login refused once the app was admitted (the server
		// closing, TLS failing) names its user, as a refused token does.
		if r := (*Refusal)(nil); login != nil && errors.As(err, &r) && r.User == "" {
			r.User = login.user
		}
	}()
	_ = readBy(ctx, server, deadline)
	if isErrPacket(greeting.Payload) {
		_, werr := mysqlwire.WritePacket(client, greeting.Seq, greeting.Payload) // e.g. "Host is blocked": the server's own words
		_, msg, _ := mysqlwire.ErrMessage(greeting.Payload)
		return nil, &Refusal{Reason: ReasonServerError, Message: "the database refused the connection: " + msg, Told: werr == nil}
	}
	caps, _, _, _ := mysqlwire.GreetingCaps(greeting.Payload) // Greet checked it
	if caps&mysqlwire.ClientSSL == 0 {
		// TARGET_TLS=disabled is no way out with IAM: the sidecar refuses
		// to start with it, as tokens go over TLS only.
		fix := "enable TLS on the server or set TARGET_TLS=disabled"
		if t.IAM != nil {
			fix = "enable TLS on the server (TARGET_AUTH=iam sends its tokens over TLS only)"
		}
		return nil, t.refuse(client, 0, ReasonServerNoTLS, fmt.Sprintf(
			"sidecar: the database server does not offer TLS, and TARGET_TLS=%s requires it; %s", t.Mode, fix), nil)
	}
	hidden := mysqlwire.ClientSSL
	if t.IAM != nil {
		// The sidecar reads the app's commands (COM_CHANGE_USER), which
		// compression would hide.
		hidden |= mysqlwire.ClientCompress | mysqlwire.ClientZstdCompressionAlgorithm
	}
	toApp, _ := mysqlwire.WithoutGreetingCaps(greeting.Payload, hidden)
	if _, err := mysqlwire.WritePacket(client, greeting.Seq, toApp); err != nil {
		return nil, appLeftSilent(err)
	}

	// Whether a byte of the response came decides how a departure counts,
	// not which of the app's close and the greeting's write came first.
	counted := &readCounter{Conn: client}
	resp, err := t.readApp(counted, 2) // the app's response is 1
	if r := (*Refusal)(nil); errors.As(err, &r) && r.Reason == ReasonIO && counted.n == 0 {
		r.Silent = true
	}
	if err != nil {
		return nil, err
	}
	if mysqlwire.IsSSLRequest(resp.Payload) {
		return nil, t.refuse(client, resp.Seq+1, ReasonClientTLS,
			"sidecar: TLS from the app to the sidecar is not offered; connect in plaintext (ssl-mode DISABLED or PREFERRED) to the sidecar on loopback: the sidecar encrypts and verifies the connection to the database", nil)
	}
	appCaps, err := mysqlwire.ResponseCaps(resp.Payload)
	if err != nil || appCaps&mysqlwire.ClientProtocol41 == 0 || len(resp.Payload) < mysqlwire.SSLRequestLen {
		return nil, t.refuse(client, resp.Seq+1, ReasonClientProtocol,
			"sidecar: the client uses the pre-4.1 MySQL protocol, which cannot be carried over TLS; use a current MySQL client library", err)
	}
	if t.IAM != nil {
		if login, err = t.iamAdmit(ctx, client, resp, greeting.Payload, caps, deadline); err != nil {
			return nil, err
		}
	}
	sslReq, _ := mysqlwire.SSLRequestFrom(resp.Payload)
	if login != nil {
		sslReq, _ = mysqlwire.SSLRequestFrom(login.response)
	}
	if _, err := mysqlwire.WritePacket(server, resp.Seq, sslReq); err != nil {
		return nil, t.serverClosed(client, resp.Seq+1, err)
	}
	tc, transport, err := t.startTLS(ctx, server)
	if err != nil {
		reason, msg := t.explain(err)
		return nil, t.refuse(client, resp.Seq+1, reason, msg, err)
	}
	if login != nil {
		return t.iamLogin(client, tc, resp.Seq+1, login)
	}
	if err := t.authenticate(client, tc, resp, greeting.Payload); err != nil {
		return nil, err
	}
	return &Conn{Conn: tc, codec: tlscodec.New(tc, transport), bufs: t.Buffers}, nil
}

// authenticate forwards the app's response and the authentication exchange
// that follows, until the server's OK or ERR. The server's sequence ids
// are one ahead of the app's (the SSLRequest took one), and two more
// behind for each RSA key exchange the sidecar answers itself (rsa.go).
// Who speaks next is known from the protocol, so nothing is read ahead of
// the session: after an auth switch or more data the client answers,
// except after caching_sha2_password's "fast auth succeeded" (0x01 0x03),
// which the server follows with OK.
func (t *Target) authenticate(client net.Conn, tc *tls.Conn, resp mysqlwire.Packet, greeting []byte) error {
	a := &login{t: t, client: client, shift: -1}
	a.nonce, _ = mysqlwire.GreetingScramble(greeting)
	fromApp := resp
	var secret [][]byte // a password in clear (rsa.go), wiped once sent
	if r, err := mysqlwire.ParseHandshakeResponse(resp.Payload); err == nil && r.Caps&mysqlwire.ClientPluginAuth != 0 {
		a.plugin = r.Plugin
		if a.plugin == pluginSHA256 {
			pw, seq, err := a.password(resp, r.AuthData)
			if err != nil {
				return err
			}
			if pw != nil {
				payload, err := mysqlwire.WithAuthData(resp.Payload, pw)
				if err != nil {
					return t.refuse(client, seq+1, ReasonClientProtocol, "sidecar: cannot read the app's login packet", err)
				}
				fromApp = mysqlwire.Packet{Seq: seq, Payload: payload}
				secret = [][]byte{pw, fromApp.Payload}
			}
		}
	}
	for {
		_, err := mysqlwire.WritePacket(tc, byte(int(fromApp.Seq)-a.shift), fromApp.Payload)
		for _, b := range secret {
			clear(b)
		}
		secret = nil
		appNext := fromApp.Seq + 1 // the sequence id the app expects next
		if err != nil {
			return t.serverClosed(client, appNext, err)
		}
		rsaNext := false // the app's next packet may be an RSA step (rsa.go)
		for {
			p, err := mysqlwire.ReadPacket(tc, MaxLoginPacket)
			if err != nil {
				return t.serverClosed(client, appNext, err)
			}
			if _, err := mysqlwire.WritePacket(client, byte(int(p.Seq)+a.shift), p.Payload); err != nil {
				return appLeft(err)
			}
			appNext = byte(int(p.Seq)+a.shift) + 1
			if len(p.Payload) == 0 {
				continue
			}
			switch {
			case p.Payload[0] == mysqlwire.OK || p.Payload[0] == mysqlwire.ErrPacketHdr:
				return nil // the server's verdict is the app's to read
			case p.Payload[0] == mysqlwire.MoreData && len(p.Payload) == 2 && p.Payload[1] == cachingSHA2FastAuthOK &&
				(a.switchedTo == "" || a.switchedTo == pluginCachingSHA2):
				// Fast auth succeeded; OK follows (whatever plugin the app named:
				// never wait for the app here). After a switch to another
				// plugin it is that plugin's data: dialog's empty last question.
				continue
			case p.Payload[0] == mysqlwire.MoreData && len(p.Payload) == 2 && p.Payload[1] == cachingSHA2FullAuth && a.plugin == pluginCachingSHA2:
				rsaNext = true
			case p.Payload[0] == mysqlwire.AuthSwitch:
				a.plugin, a.nonce, _ = mysqlwire.ParseAuthSwitch(p.Payload)
				a.switchedTo = a.plugin
				rsaNext = a.plugin == pluginSHA256 // its first answer is the password
			}
			break
		}
		next, err := t.readApp(client, appNext+1)
		if err != nil {
			return err
		}
		fromApp = next
		if rsaNext {
			pw, seq, err := a.password(next, next.Payload)
			if err != nil {
				return err
			}
			if pw != nil {
				fromApp = mysqlwire.Packet{Seq: seq, Payload: pw}
				secret = [][]byte{pw}
			}
		}
	}
}

func (t *Target) tlsConfig() *tls.Config {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		RootCAs:            t.Roots,
		ServerName:         t.ServerName,
		ClientSessionCache: t.Sessions,
	}
	if t.Mode == VerifyCA {
		// The chain is checked below, the name is not: the certificate
		// may name the cluster while the app reaches an instance.
		cfg.InsecureSkipVerify = true
		var sessions *chainSessions
		if t.Sessions != nil {
			sessions = &chainSessions{ClientSessionCache: t.Sessions}
			cfg.ClientSessionCache = sessions
		}
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server sent no certificate")
			}
			opts := x509.VerifyOptions{Roots: t.Roots, Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			chains, err := cs.PeerCertificates[0].Verify(opts)
			if sessions != nil && err == nil {
				sessions.expires = chainsExpire(chains)
			}
			return err
		}
	}
	return cfg
}

// chainSessions is one verify-ca connection's view of Target.Sessions.
// crypto/tls re-verifies a cached session's chain before resuming it only
// when it checks the name too (verify-identity); under verify-ca it
// resumes a session whose CA or intermediate expired since, which
// VerifyConnection then refuses as certificate_expired, though the
// server may send a valid certificate by now (a CA rotation). So each
// session is stored with when its chain expires, and not offered after.
type chainSessions struct {
	tls.ClientSessionCache
	expires time.Time // of the chain verified on this connection; zero = not yet
}

// chainExpiresTag marks the session's SessionState.Extra entry that holds
// the expiry, as Unix nanoseconds.
const chainExpiresTag = "sidecar-chain-expires:"

func (c *chainSessions) Put(key string, cs *tls.ClientSessionState) {
	if _, st, err := cs.ResumptionState(); err == nil && st != nil && !c.expires.IsZero() {
		st.Extra = append(st.Extra, binary.BigEndian.AppendUint64([]byte(chainExpiresTag), uint64(c.expires.UnixNano())))
	}
	c.ClientSessionCache.Put(key, cs)
}

func (c *chainSessions) Get(key string) (*tls.ClientSessionState, bool) {
	cs, ok := c.ClientSessionCache.Get(key)
	if !ok {
		return cs, ok
	}
	if _, st, err := cs.ResumptionState(); err == nil && st != nil {
		for _, e := range st.Extra {
			if rest, tagged := bytes.CutPrefix(e, []byte(chainExpiresTag)); tagged && len(rest) == 8 &&
				!time.Now().Before(time.Unix(0, int64(binary.BigEndian.Uint64(rest)))) {
				c.ClientSessionCache.Put(key, nil) // as crypto/tls drops a session it will not resume
				return nil, false
			}
		}
	}
	return cs, ok
}

// chainsExpire is when the last of chains to stay valid stops being so:
// a chain is valid until the first of its certificates expires.
func chainsExpire(chains [][]*x509.Certificate) time.Time {
	var last time.Time
	for _, chain := range chains {
		var first time.Time
		for _, c := range chain {
			if first.IsZero() || c.NotAfter.Before(first) {
				first = c.NotAfter
			}
		}
		if first.After(last) {
			last = first
		}
	}
	return last
}

// startTLS runs the TLS handshake over a tlscodec.Transport, so that an
// event loop can take the session over after the login.
func (t *Target) startTLS(ctx context.Context, server net.Conn) (*tls.Conn, *tlscodec.Transport, error) {
	ctx, cancel := context.WithTimeout(ctx, t.handshakeTimeout())
	defer cancel()
	transport := tlscodec.NewTransport(server)
	tc := tls.Client(transport, t.tlsConfig())
	if err := tc.HandshakeContext(ctx); err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return nil, nil, fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		return nil, nil, err
	}
	return tc, transport, nil
}

// soonest is when, or ctx's deadline if that comes first.
func soonest(ctx context.Context, when time.Time) time.Time {
	if d, ok := ctx.Deadline(); ok && d.Before(when) {
		return d
	}
	return when
}

// cutWhenDone makes ctx's end cut a wait at once, by setting each of set
// (a connection's deadline setters) in the past. release undoes it; if the
// cut has begun, release waits until it is done, so it never lands after
// the caller goes on to clear the deadlines.
func cutWhenDone(ctx context.Context, set ...func(time.Time) error) (release func()) {
	cut := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(cut)
		for _, s := range set {
			_ = s(time.Unix(1, 0))
		}
	})
	return func() {
		if !stop() {
			<-cut
		}
	}
}

// readBy sets c's read deadline, unless ctx has ended: Handshake's drain
// deadline, set when it ends, must not be moved later.
func readBy(ctx context.Context, c net.Conn, when time.Time) error {
	err := c.SetReadDeadline(when)
	if ctx.Err() != nil {
		_ = c.SetReadDeadline(time.Unix(1, 0))
	}
	return err
}

// HandshakeWait bounds each of the login's first two steps, the wait for
// the greeting and the TLS handshake.
func (t *Target) HandshakeWait() time.Duration { return t.handshakeTimeout() }

// handshakeTimeout is at most LoginTimeout, which bounds the greeting's
// wait and the handshake anyway: a message naming a longer
// CONNECT_TIMEOUT would misstate the wait.
func (t *Target) handshakeTimeout() time.Duration {
	if t.HandshakeTimeout <= 0 {
		return 5 * time.Second
	}
	return min(t.HandshakeTimeout, LoginTimeout)
}

// explain turns a TLS handshake failure into a reason and what to fix.
func (t *Target) explain(err error) (string, string) {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		issuer := ""
		if unknown.Cert != nil {
			issuer = " (issued by " + unknown.Cert.Issuer.String() + ")"
		}
		hint := ""
		if t.RootsFrom == rdsca.Name {
			hint = " (for an AWS region newer than the embedded bundle, AWS's current global-bundle.pem; docs/tls.md lists the regions it covers)"
		}
		return ReasonUnknownCA, fmt.Sprintf("sidecar: the database's certificate%s is not signed by a CA in %s; set TARGET_TLS_CA to a PEM file with the CA that issued it%s", issuer, t.RootsFrom, hint)
	case errors.As(err, &host) && host.Certificate != nil && len(host.Certificate.DNSNames) > 0:
		return ReasonNameMismatch, fmt.Sprintf("sidecar: the database's certificate is not valid for %q (TARGET_SERVER_NAME, or TARGET_HOST by default); it is valid for %s: use one of those names", host.Host, strings.Join(host.Certificate.DNSNames, ", "))
	case errors.As(err, &host):
		// No name would do: Go checks no common name, nor can
		// TARGET_SERVER_NAME be an IP address.
		cn := ""
		if host.Certificate != nil && host.Certificate.Subject.CommonName != "" {
			cn = fmt.Sprintf(" (its common name %q is not checked)", host.Certificate.Subject.CommonName)
		}
		return ReasonNameMismatch, fmt.Sprintf("sidecar: the database's certificate is not valid for %q (TARGET_SERVER_NAME, or TARGET_HOST by default); "+
			"it names no DNS name in its subjectAltName%s: reissue it with the endpoint's name as a subjectAltName DNS entry, or set TARGET_TLS=verify-ca, which checks no name", host.Host, cn)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired && invalid.Cert != nil && invalid.Cert.IsCA:
		// The server's own certificate may be valid for years: name the
		// CA, whose dates the detail gives.
		return ReasonExpired, fmt.Sprintf("sidecar: the CA certificate %q of the database's certificate has expired or is not yet valid (%s); "+
			"move the database to a certificate from a current CA (for Aurora, the instances' certificate authority), or check the clock", invalid.Cert.Subject.String(), invalid.Detail)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return ReasonExpired, "sidecar: the database's certificate has expired or is not yet valid (" + invalid.Detail + "); renew the server certificate, or check the clock"
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		return ReasonTLSTimeout, "sidecar: the TLS handshake with the database timed out; check that TARGET_PORT is the MySQL port and the server is not overloaded"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		// No alert, just gone: a server restarting (a failover), not
		// its TLS settings, which a refusing server names in an alert.
		return ReasonServerClosed, msgServerClosed
	default:
		return ReasonTLSHandshake, "sidecar: the TLS handshake with the database failed; check TARGET_TLS_CA and the server's TLS settings"
	}
}

func (t *Target) refuse(client net.Conn, seq byte, reason, msg string, err error) *Refusal {
	told := sendErr(client, seq, codeHandshake, msg) == nil
	return &Refusal{Reason: reason, Message: msg, Err: err, Told: told}
}

// msgServerClosed is what the app reads when the database leaves mid-login.
const msgServerClosed = "sidecar: the database closed the connection during the login"

// readApp reads the app's next login packet. One over MaxLoginPacket (no
// client sends one) is refused with an ERR at seq, after its rest is read
// away for a moment, so closing does not reset the ERR away unread; any
// other error means the app left.
func (t *Target) readApp(client net.Conn, seq byte) (mysqlwire.Packet, error) {
	p, err := mysqlwire.ReadPacket(client, MaxLoginPacket)
	var tooLarge *mysqlwire.TooLargeError
	switch {
	case errors.As(err, &tooLarge):
		// Read away before the ERR, which gives the connection's
		// MAX_CONNECTIONS slot back (proxy): not for up to readAwayMax
		// while this connection, the database's too, stays open.
		readAway(client, client, tooLarge.Frame)
		return p, t.refuse(client, seq, ReasonClientProtocol, fmt.Sprintf("sidecar: the app's login packet is over %d bytes", MaxLoginPacket), err)
	case err != nil:
		return p, appLeft(err)
	}
	return p, nil
}

// readAwayLimit bounds readAway in bytes: max_allowed_packet's upper
// bound, the largest packet a MySQL server would read.
const readAwayLimit = 1 << 30

// readAwayQuiet and readAwayMax bound readAway in time: an app that stops
// sending for readAwayQuiet is not waited for, nor is one still sending
// after readAwayMax.
const (
	readAwayQuiet = time.Second
	readAwayMax   = 10 * time.Second
)

// readAway reads the rest of a refused packet from r, c's reader, from
// just after the header of a frame of n bytes: through all its frames,
// while bytes keep coming, within readAwayLimit bytes and readAwayMax.
// Closing c with any of it unread sends a reset, which fails the app's
// write of the packet before it reads the ERR (a "lost
// connection", not the reason). A fixed second could end before a busy
// machine had moved 64 MiB.
func readAway(c net.Conn, r io.Reader, n int) {
	_ = awayBounds{limit: readAwayLimit, quiet: readAwayQuiet, max: readAwayMax}.discard(c, r, n)
}

// awayBounds are readAway's bounds, apart so that a test shows each
// holding in megabytes and moments, not a GiB and seconds.
type awayBounds struct {
	limit      int64 // bytes of payload
	quiet, max time.Duration
}

// discard is readAway within b; its error says which bound ended it.
func (b awayBounds) discard(c net.Conn, r io.Reader, n int) error {
	return mysqlwire.DiscardPacket(quietReader{c: c, r: r, quiet: b.quiet, end: time.Now().Add(b.max)}, n, b.limit)
}

// quietReader reads r, giving each read quiet, up to end.
type quietReader struct {
	c     net.Conn
	r     io.Reader
	quiet time.Duration
	end   time.Time
}

func (q quietReader) Read(p []byte) (int, error) {
	by := time.Now().Add(q.quiet)
	if by.After(q.end) {
		by = q.end
	}
	_ = q.c.SetReadDeadline(by)
	return q.r.Read(p)
}

// appLeft is the refusal of a login the app left: nobody is there to
// read an ERR.
func appLeft(err error) *Refusal {
	return &Refusal{Reason: ReasonIO, Message: "the app left during the login", Err: err}
}

// appLeftSilent is appLeft before a byte of the app's login arrived.
func appLeftSilent(err error) *Refusal {
	r := appLeft(err)
	r.Silent = true
	return r
}

// readCounter counts the bytes read from the app.
type readCounter struct {
	net.Conn
	n int
}

func (c *readCounter) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n += n
	return n, err
}

// serverClosed refuses the login the database left or broke off
// (ReasonServerClosed). A packet over MaxLoginPacket is no close: the app
// is told what came instead.
func (t *Target) serverClosed(client net.Conn, seq byte, err error) *Refusal {
	msg := msgServerClosed
	if errors.Is(err, mysqlwire.ErrTooLarge) {
		msg = fmt.Sprintf("sidecar: the database sent a login packet over %d bytes", MaxLoginPacket)
	}
	return t.refuse(client, seq, ReasonServerClosed, msg, err)
}

// sendErr sends an ERR with a SQL state also in place of the greeting,
// where MySQL servers send none: PyMySQL drops the message's first 6
// bytes if the state is missing, while libmysqlclient keeps "#08S01" in
// the message (TestTLSRefusals runs PyMySQL and libmariadb).
func sendErr(client net.Conn, seq byte, code uint16, msg string) error {
	return sendErrTo(client, seq, code, "08S01", msg)
}

// errWriteTimeout bounds sending an ERR to an app that does not read.
const errWriteTimeout = 5 * time.Second
