package mysqltls_test

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
)

// clusterName is the only name in the fake server's certificate, as
// Aurora's certificates name endpoints and never an IP.
const clusterName = "x.cluster-abc.us-east-1.rds.amazonaws.com"

// Capabilities of the fake server's greeting.
const serverCaps = mysqlwire.ClientLongPassword | mysqlwire.ClientConnectWithDB | mysqlwire.ClientCompress |
	mysqlwire.ClientLocalFiles | mysqlwire.ClientProtocol41 | mysqlwire.ClientSSL | mysqlwire.ClientTransactions |
	mysqlwire.ClientSecureConnection | mysqlwire.ClientMultiStatements | mysqlwire.ClientMultiResults |
	mysqlwire.ClientPluginAuth | mysqlwire.ClientConnectAttrs | mysqlwire.ClientPluginAuthLenencClientData |
	mysqlwire.ClientDeprecateEOF | mysqlwire.ClientSessionTrack | mysqlwire.ClientZstdCompressionAlgorithm |
	mysqlwire.ClientQueryAttributes // MySQL 8's upper flags: zstd must be hidden in iam mode

// greeting is a HandshakeV10 payload as MySQL 8 writes it.
func greeting(threadID uint32, caps uint32) []byte {
	return greetingFor(threadID, caps, mysqlwire.NativePassword)
}

// greetingNonce is the scramble in every greeting of the fake.
const greetingNonce = "abcdefghijklmnopqrst"

// greetingFor is greeting with another default plugin.
func greetingFor(threadID uint32, caps uint32, plugin string) []byte {
	g := []byte{10}
	g = append(g, "8.0.39-aurora\x00"...)
	g = binary.LittleEndian.AppendUint32(g, threadID)
	g = append(g, "abcdefgh"...) // scramble part 1
	g = append(g, 0)
	g = binary.LittleEndian.AppendUint16(g, uint16(caps))
	g = append(g, 45)                          // utf8mb4
	g = binary.LittleEndian.AppendUint16(g, 2) // autocommit
	g = binary.LittleEndian.AppendUint16(g, uint16(caps>>16))
	g = append(g, 21)
	g = append(g, make([]byte, 10)...)
	g = append(g, "ijklmnopqrst\x00"...) // scramble part 2
	return append(g, plugin+"\x00"...)
}

// fakeServer speaks the server side of the MySQL connection phase over
// real TLS, then echoes each command packet back. It records what it saw.
type fakeServer struct {
	fakeOpts
	ln       net.Listener
	stopped  chan struct{} // closed when the test ends
	threadID atomic32

	mu        sync.Mutex
	tlsConf   *tls.Config // one for every connection: its ticket keys make resumption possible
	sslReqs   [][]byte    // SSLRequest payloads
	responses [][]byte    // HandshakeResponse payloads
	switched  [][]byte    // answers to switchTo
	seqs      []byte      // sequence ids of every client packet in the login
	resumed   []bool
	errs      []error
	ended     int // connections the fake has finished with
}

// fakeOpts shape a fakeServer.
type fakeOpts struct {
	cert      tls.Certificate
	noTLS     bool   // greeting without CLIENT_SSL
	stallTLS  bool   // after the SSLRequest, never start TLS
	dropSSL   bool   // close after the SSLRequest, before TLS (a failover)
	dropGreet bool   // close right after the greeting
	resetTLS  bool   // reset the connection after the ClientHello
	silent    bool   // never greet
	notMySQL  bool   // greet as another protocol would
	hangUp    bool   // close at once
	dropTLS   bool   // close after the TLS handshake
	maxTLS    uint16 // the newest TLS version offered; 0 = Go's
	exchange  bool   // after the response: auth switch, more data, then OK
	tickets   bool   // TLS session tickets on (resumption)
	deaf      bool   // after the login, read and write nothing until the test ends
	rows      int    // answer each command (but COM_PING) with this many copies of it, then an EOF
	// resetMidResult, when set, makes the fake send results after the
	// login, unasked, until it is closed; then the fake resets the
	// connection (a session the database killed).
	resetMidResult chan struct{}
	overLimit      bool   // answer the login with a packet over mysqltls.MaxLoginPacket
	switchTo       string // after the response, an auth switch to this plugin, then OK
	// dialogMore, with exchange, is the more-data packet's payload after
	// the prefix 0x01; nil = "\x04Verification code: ".
	dialogMore []byte
	// refuseChange, when set, answers COM_CHANGE_USER with a switch to
	// mysql_clear_password, then an ERR with this code (1045: the
	// password refused; 1049: an unknown database).
	refuseChange uint16
	// account, when set, is the one account the fake checks passwords
	// of, as MySQL does (fake_auth_test.go); the options above that shape
	// the exchange are then unused.
	account *fakeAccount
}

type atomic32 struct {
	mu sync.Mutex
	n  uint32
}

func (a *atomic32) next() uint32 {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n++
	return a.n
}

func startFake(t testing.TB, o fakeOpts) *fakeServer {
	t.Helper()
	f := &fakeServer{fakeOpts: o, stopped: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.ln = ln
	t.Cleanup(func() { _ = ln.Close(); close(f.stopped) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	return f
}

func (f *fakeServer) tlsConfig() *tls.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tlsConf == nil {
		// The certificate is looked up per handshake, so setCert can
		// rotate it under the same ticket keys, as a server does.
		f.tlsConf = &tls.Config{SessionTicketsDisabled: !f.tickets, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			c := f.cert
			return &c, nil
		}}
		if f.maxTLS != 0 {
			f.tlsConf.MinVersion, f.tlsConf.MaxVersion = tls.VersionTLS10, f.maxTLS
		}
	}
	return f.tlsConf
}

// setCert makes the server present cert from its next full handshake on.
func (f *fakeServer) setCert(cert tls.Certificate) {
	f.mu.Lock()
	f.cert = cert
	f.mu.Unlock()
}

func (f *fakeServer) addr() string { return f.ln.Addr().String() }

func (f *fakeServer) fail(err error) {
	f.mu.Lock()
	f.errs = append(f.errs, err)
	f.mu.Unlock()
}

func (f *fakeServer) serve(c net.Conn) {
	defer func() {
		_ = c.Close()
		f.mu.Lock()
		f.ended++
		f.mu.Unlock()
	}()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	switch {
	case f.silent:
		_, _ = io.Copy(io.Discard, c) // until the sidecar gives up
		return
	case f.notMySQL:
		_, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
		_, _ = io.Copy(io.Discard, c)
		return
	case f.hangUp:
		return
	}
	caps := serverCaps
	if f.noTLS {
		caps &^= mysqlwire.ClientSSL
	}
	id := f.threadID.next()
	greet := greeting(id, caps)
	if f.account != nil {
		greet = greetingFor(id, caps, f.account.greet)
	}
	if _, err := mysqlwire.WritePacket(c, 0, greet); err != nil || f.dropGreet {
		return
	}
	req, err := mysqlwire.ReadPacket(c, 1<<20)
	if err != nil {
		return
	}
	f.mu.Lock()
	f.sslReqs = append(f.sslReqs, req.Payload)
	f.seqs = append(f.seqs, req.Seq)
	f.mu.Unlock()
	if f.stallTLS {
		_, _ = io.Copy(io.Discard, c) // until the sidecar gives up
		return
	}
	if f.dropSSL {
		return
	}
	if f.resetTLS {
		_, _ = c.Read(make([]byte, 512))  // some of the ClientHello
		_ = c.(*net.TCPConn).SetLinger(0) // close sends a reset
		return
	}
	ts := tls.Server(c, f.tlsConfig())
	if err := ts.Handshake(); err != nil {
		return // the client refused our certificate: expected in refusal tests
	}
	f.mu.Lock()
	f.resumed = append(f.resumed, ts.ConnectionState().DidResume)
	f.mu.Unlock()
	if f.dropTLS {
		return
	}
	resp, err := mysqlwire.ReadPacket(ts, 1<<20)
	if err != nil {
		f.fail(err)
		return
	}
	f.mu.Lock()
	f.responses = append(f.responses, resp.Payload)
	f.seqs = append(f.seqs, resp.Seq)
	f.mu.Unlock()
	seq := resp.Seq + 1
	if f.overLimit {
		// The header alone: the sidecar reads no payload past the limit.
		n := mysqltls.MaxLoginPacket + 1
		_, _ = ts.Write([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq})
		return
	}
	if f.account != nil {
		var ok bool
		if seq, ok = f.account.authenticate(f, ts, resp); !ok {
			return
		}
		f.echo(ts)
		return
	}
	if f.switchTo != "" {
		if _, err := mysqlwire.WritePacket(ts, seq, mysqlwire.AuthSwitchRequest(f.switchTo, []byte("new-scramble-01234567"))); err != nil {
			f.fail(err)
			return
		}
		ans, err := mysqlwire.ReadPacket(ts, 1<<20)
		if err != nil {
			return // refused by the sidecar: expected for other plugins
		}
		f.mu.Lock()
		f.switched = append(f.switched, ans.Payload)
		f.seqs = append(f.seqs, ans.Seq)
		f.mu.Unlock()
		seq = ans.Seq + 1
	}
	if f.exchange {
		// auth switch → client answers → more data → client answers → OK,
		// as MariaDB's dialog plugin (PAM) asks for a password, then a code.
		more := f.dialogMore
		if more == nil {
			more = []byte("\x04Verification code: ")
		}
		for _, p := range [][]byte{append([]byte{mysqlwire.AuthSwitch}, "dialog\x00\x04Password: "...),
			append([]byte{mysqlwire.MoreData}, more...)} {
			if _, err := mysqlwire.WritePacket(ts, seq, p); err != nil {
				f.fail(err)
				return
			}
			ans, err := mysqlwire.ReadPacket(ts, 1<<20)
			if err != nil {
				f.fail(err)
				return
			}
			f.mu.Lock()
			f.seqs = append(f.seqs, ans.Seq)
			f.mu.Unlock()
			seq = ans.Seq + 1
		}
	}
	if _, err := mysqlwire.WritePacket(ts, seq, []byte{mysqlwire.OK, 0, 0, 2, 0, 0, 0}); err != nil {
		f.fail(err)
		return
	}
	f.echo(ts)
}

// echo is the command phase: each command comes back as it was sent,
// but COM_PING, which gets OK as from a server, and COM_CHANGE_USER with
// refuseChange.
func (f *fakeServer) echo(ts *tls.Conn) {
	if f.deaf {
		<-f.stopped
		return
	}
	if f.resetMidResult != nil {
		f.floodThenReset(ts)
		return
	}
	for {
		p, err := mysqlwire.ReadPacket(ts, 1<<24)
		if err != nil {
			return
		}
		if f.refuseChange != 0 && len(p.Payload) > 0 && p.Payload[0] == mysqlwire.ComChangeUser {
			f.refuseChangeUser(ts, p.Seq+1)
			continue
		}
		answer := p.Payload
		if len(answer) == 1 && answer[0] == comPing {
			answer = []byte{mysqlwire.OK, 0, 0, 2, 0, 0, 0}
		}
		if f.rows > 0 && len(answer) > 1 {
			if _, err := ts.Write(rowsAnswer(p.Seq+1, f.rows, answer)); err != nil {
				return
			}
			continue
		}
		if _, err := mysqlwire.WritePacket(ts, p.Seq+1, answer); err != nil {
			return
		}
	}
}

// rowsAnswer is n packets of row from seq on, then an EOF, in one write.
func rowsAnswer(seq byte, n int, row []byte) []byte {
	var out []byte
	for range n {
		out, _ = mysqlwire.AppendPacket(out, seq, row)
		seq++
	}
	out, _ = mysqlwire.AppendPacket(out, seq, []byte{mysqlwire.AuthSwitch, 0, 0, 2, 0})
	return out
}

const comPing = 0x0e

// floodThenReset writes results to ts until resetMidResult is closed,
// then resets the connection, whether or not a write waits.
func (f *fakeServer) floodThenReset(ts *tls.Conn) {
	raw := ts.NetConn().(*net.TCPConn)
	go func() {
		select {
		case <-f.resetMidResult:
		case <-f.stopped:
		}
		_ = raw.SetLinger(0)
		_ = raw.Close()
	}()
	row := make([]byte, 64<<10)
	for seq := byte(1); ; seq++ {
		if _, err := mysqlwire.WritePacket(ts, seq, row); err != nil {
			return
		}
	}
}

func (f *fakeServer) refuseChangeUser(ts *tls.Conn, seq byte) {
	if _, err := mysqlwire.WritePacket(ts, seq, mysqlwire.AuthSwitchRequest(mysqlwire.ClearPassword, nil)); err != nil {
		return
	}
	ans, err := mysqlwire.ReadPacket(ts, 1<<20)
	if err != nil {
		return
	}
	f.mu.Lock()
	f.switched = append(f.switched, ans.Payload)
	f.mu.Unlock()
	msg := map[uint16]string{1045: "Access denied for user 'other'@'10.0.0.1' (using password: YES)", 1049: "Unknown database 'orders'"}[f.refuseChange]
	_, _ = mysqlwire.WritePacket(ts, ans.Seq+1, mysqlwire.ErrPacket(f.refuseChange, "28000", msg))
}

// appCaps are a client's flags that the server must see in the SSLRequest.
const appCaps = mysqlwire.ClientLongPassword | mysqlwire.ClientConnectWithDB | mysqlwire.ClientCompress |
	mysqlwire.ClientLocalFiles | mysqlwire.ClientProtocol41 | mysqlwire.ClientSecureConnection |
	mysqlwire.ClientMultiStatements | mysqlwire.ClientMultiResults | mysqlwire.ClientPluginAuth |
	mysqlwire.ClientConnectAttrs | mysqlwire.ClientPluginAuthLenencClientData

// handshakeResponse is a HandshakeResponse41 with a database and attributes.
func handshakeResponse(caps uint32) []byte {
	r := binary.LittleEndian.AppendUint32(nil, caps)
	r = binary.LittleEndian.AppendUint32(r, 1<<24)
	r = append(r, 45)
	r = append(r, make([]byte, 23)...)
	r = append(r, "app\x00"...)
	r = append(r, 20)
	r = append(r, bytes.Repeat([]byte{7}, 20)...)
	r = append(r, "orders\x00mysql_native_password\x00"...)
	return append(r, 10, 3, 'k', 'e', 'y', 5, 'v', 'a', 'l', 'u', 'e')
}
