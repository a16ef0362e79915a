package mysqltls

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/iamauth"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
	"github.com/example/sidecar/sidecar/internal/relay"
)

// iamRelay is an IAM session's relay between app, the app's end, and db,
// the server's end of its TLS connection, as after the login. The
// session's result comes on the channel once both sides have ended.
type iamRelay struct {
	t      *testing.T
	app    *net.TCPConn
	db     *tls.Conn
	is     *iamSession
	tokens *iamauth.Tokens
	done   chan struct{} // closed once res is the session's result
	res    relay.Result
	slot   atomic.Bool // Conn.ReleaseSlot was called
}

// relayCaps are the session's flags: a MySQL 8 client's, with
// CLIENT_DEPRECATE_EOF, as Connector/J and libmysqlclient send them.
const relayCaps = mysqlwire.ClientProtocol41 | mysqlwire.ClientSecureConnection | mysqlwire.ClientPluginAuth |
	mysqlwire.ClientConnectAttrs | mysqlwire.ClientPluginAuthLenencClientData | mysqlwire.ClientConnectWithDB |
	mysqlwire.ClientDeprecateEOF | mysqlwire.ClientMultiStatements | mysqlwire.ClientMultiResults

func startIAMRelay(t *testing.T, local string) *iamRelay {
	t.Helper()
	const name = "db.answers.example"
	cert, pool := testkit.ServerTLS(t, name)
	ln := testkit.Listen(t)
	app, side := testkit.Pair(t, ln)
	dbConn, sidecarConn := testkit.Pair(t, ln)
	tokens := &iamauth.Tokens{Region: "us-east-1", Source: iamauth.Source{Name: "test",
		Provider: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""))}}
	target := &Target{IAM: &iamauth.Authority{Tokens: tokens, Endpoint: name + ":3306", LocalPassword: []byte(local)}}
	tc := tls.Client(sidecarConn, &tls.Config{RootCAs: pool, ServerName: name})
	db := tls.Server(dbConn, &tls.Config{Certificates: []tls.Certificate{cert}})
	testkit.Handshake(t, tc, db)
	for _, c := range []net.Conn{app, db} {
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	}
	is := &iamSession{target: target, caps: relayCaps | mysqlwire.ClientSSL, appCaps: relayCaps, scramble: []byte("abcdefghijklmnopqrst")}
	r := &iamRelay{t: t, app: app, db: db, is: is, tokens: tokens, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	conn := &Conn{Conn: tc, iam: is, ReleaseSlot: func() { r.slot.Store(true) }}
	go func() { r.res = Relay(ctx, side, conn, 0); close(r.done) }()
	t.Cleanup(func() { cancel(); _ = app.Close(); _ = db.Close(); <-r.done })
	return r
}

func (r *iamRelay) write(c net.Conn, packets ...[]byte) {
	r.t.Helper()
	if _, err := c.Write(bytes.Join(packets, nil)); err != nil {
		r.t.Fatal(err)
	}
}

func (r *iamRelay) read(c net.Conn) mysqlwire.Packet {
	r.t.Helper()
	p, err := mysqlwire.ReadPacket(c, 1<<24)
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	return p
}

// handled waits until the session has dealt with the app's
// COM_CHANGE_USER: sent it to the server, or marked it pipelined.
func (r *iamRelay) handled() {
	r.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); r.is.pending.Load() == nil && r.is.answers.Load() >= 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			r.t.Fatal("the session never took the COM_CHANGE_USER up")
		}
	}
}

// changeGoesThrough has the app send a COM_CHANGE_USER once it read
// every answer; the change must be taken up, not refused as pipelined,
// and the app must get its OK at 1. what names the case in failures.
func (r *iamRelay) changeGoesThrough(what string) {
	r.t.Helper()
	r.write(r.app, frame(0, changeTo("other", mysqlwire.NativePassword)))
	// Taken for pipelined, the change waits, unanswered, for an answer
	// that never comes, to be refused in its place.
	if r.handled(); r.is.answers.Load() < 0 {
		r.t.Fatalf("%s: the change, sent once every answer was read, was taken for pipelined", what)
	}
	r.serveChange()
	if p := r.read(r.app); p.Seq != 1 || p.Payload[0] != mysqlwire.OK {
		r.t.Fatalf("%s: app read seq %d %q; want the change's OK at 1", what, p.Seq, p.Payload)
	}
}

// multiFrameQuery has the app send a COM_QUERY of exactly MaxPayload
// bytes, a full frame at 0 and an empty one at 1, and the server read it:
// its answer begins at 2.
func (r *iamRelay) multiFrameQuery() {
	r.t.Helper()
	query := append([]byte{0x03}, bytes.Repeat([]byte("x"), mysqlwire.MaxPayload-1)...)
	big, _ := mysqlwire.AppendPacket(nil, 0, query)
	go func() { _, _ = r.app.Write(big) }()
	if p, err := mysqlwire.ReadPacket(r.db, 1<<25); err != nil || len(p.Payload) != len(query) {
		r.t.Fatalf("server read %d bytes, %v; want the query", len(p.Payload), err)
	}
}

// answerBegun has the app send query and read the start of its answer,
// a result of one column described by def: the answer has begun, not
// ended.
func (r *iamRelay) answerBegun(query, def string) {
	r.t.Helper()
	r.write(r.app, frame(0, append([]byte{0x03}, query...)))
	r.read(r.db)
	r.write(r.db, frame(1, []byte{1}), frame(2, []byte(def)))
	r.read(r.app)
	r.read(r.app)
}

// serverPackets reads what the server got until the sidecar closed it.
func (r *iamRelay) serverPackets() []mysqlwire.Packet {
	var got []mysqlwire.Packet
	for {
		p, err := mysqlwire.ReadPacket(r.db, 1<<24)
		if err != nil {
			return got
		}
		got = append(got, p)
	}
}

func frame(seq byte, p []byte) []byte { b, _ := mysqlwire.AppendPacket(nil, seq, p); return b }

var (
	okPacket  = []byte{mysqlwire.OK, 0, 0, 2, 0, 0, 0}
	endOfRows = []byte{mysqlwire.AuthSwitch, 0, 0, 2, 0, 0, 0} // a result's last packet with CLIENT_DEPRECATE_EOF
)

func changeTo(user, plugin string) []byte {
	cu := mysqlwire.ChangeUser{User: user, Database: "orders", Charset: 45, Plugin: plugin, Attrs: []byte{}}
	return cu.Append(nil, relayCaps)
}

// expectPipelined reads the refusal of a pipelined COM_CHANGE_USER at seq.
func (r *iamRelay) expectPipelined(seq byte) {
	r.t.Helper()
	r.expectRefused(seq, msgPipelined, "the refusal of its pipelined COM_CHANGE_USER")
}

// expectRefused reads the client_protocol refusal msg at seq, in place of
// the server's packet, and the session's end; what names it in failures.
func (r *iamRelay) expectRefused(seq byte, want, what string) {
	r.t.Helper()
	p := r.read(r.app)
	if _, msg, isErr := mysqlwire.ErrMessage(p.Payload); !isErr || p.Seq != seq || msg != want {
		r.t.Fatalf("app read seq %d %q; want %s at seq %d", p.Seq, p.Payload, what, seq)
	}
	<-r.done
	var ref *Refusal
	if !errors.As(r.res.Err, &ref) || ref.Reason != ReasonClientProtocol || ref.Message != want {
		r.t.Fatalf("the session ended %s, %v; want the client_protocol refusal", r.res.Reason, r.res.Err)
	}
}

// Two commands sent together, the app reading the first one's answer,
// then sending COM_CHANGE_USER before the second's: the change is
// pipelined. The relay counted the packets passed to the app since the
// last command, so the first answer's made it look read; the change went
// to the server and the second command's ERR, at sequence id 1, was taken
// for the server's verdict on it: the app got that ERR as the change's and
// the log blamed the server for refusing the change.
func TestIAMChangeUserBeforeTheSecondOfTwoAnswers(t *testing.T) {
	r := startIAMRelay(t, "")
	r.write(r.app, frame(0, []byte("\x03SELECT 1")), frame(0, []byte("\x03SELECT * FROM missing")))
	r.read(r.db)
	r.read(r.db)
	r.write(r.db, frame(1, okPacket))
	if p := r.read(r.app); p.Seq != 1 || p.Payload[0] != mysqlwire.OK {
		t.Fatalf("app read seq %d %q; want the first answer", p.Seq, p.Payload)
	}
	r.write(r.app, frame(0, changeTo("other", mysqlwire.NativePassword)))
	r.pipelinedInPlaceOf(mysqlwire.ErrPacket(1146, "42S02", "Table 'orders.missing' doesn't exist"))
}

// pipelinedInPlaceOf has the server send answer at 1 once the relay took
// the app's COM_CHANGE_USER up: the app must read the pipelined refusal in
// its place, and the server must never get the change.
func (r *iamRelay) pipelinedInPlaceOf(answer []byte) {
	r.t.Helper()
	r.handled()
	r.write(r.db, frame(1, answer))
	r.expectPipelined(1)
	for _, p := range r.serverPackets() {
		if len(p.Payload) > 0 && p.Payload[0] == mysqlwire.ComChangeUser {
			r.t.Fatal("the server was sent the pipelined COM_CHANGE_USER")
		}
	}
}

// serveChange is the server's side of a COM_CHANGE_USER it is sent: a
// switch to mysql_clear_password, the sidecar's token, then OK.
func (r *iamRelay) serveChange() {
	r.t.Helper()
	if p := r.read(r.db); p.Seq != 0 || p.Payload[0] != mysqlwire.ComChangeUser {
		r.t.Fatalf("server read seq %d %q; want the COM_CHANGE_USER", p.Seq, p.Payload)
	}
	r.write(r.db, frame(1, mysqlwire.AuthSwitchRequest(mysqlwire.ClearPassword, nil)))
	if p := r.read(r.db); p.Seq != 2 || !strings.Contains(string(p.Payload), "X-Amz-Signature") {
		r.t.Fatalf("server read seq %d; want the token at 2", p.Seq)
	}
	r.write(r.db, frame(3, okPacket))
}

// Two answers read whole, the first ending at sequence id 0 or going past
// it, then COM_CHANGE_USER: the change goes through, whichever packet at
// 1 the relay counts as the second answer's start.
func TestIAMChangeUserAfterTwoAnswersRead(t *testing.T) {
	for _, packets := range []int{1, 256, 300} {
		r := startIAMRelay(t, "")
		r.write(r.app, frame(0, []byte("\x03SELECT a")), frame(0, []byte("\x03SELECT b")))
		r.read(r.db)
		r.read(r.db)
		var answers [][]byte
		for i := 1; i < packets; i++ {
			answers = append(answers, frame(byte(i), []byte("\x01x")))
		}
		answers = append(answers, frame(byte(packets), endOfRows), frame(1, mysqlwire.ErrPacket(1146, "42S02", "no such table")))
		if packets == 1 {
			answers[0] = frame(1, okPacket)
		}
		r.write(r.db, answers...)
		for range answers {
			r.read(r.app)
		}
		r.changeGoesThrough(fmt.Sprintf("first answer of %d packets", packets))
	}
}

// A result set of more than 255 packets ends at sequence id 1, the ids
// having wrapped. An app that sent COM_CHANGE_USER before reading that end
// had it taken for the server's switch: the app read "the database user …
// is not set up for IAM authentication" and the user was counted as
// user_not_iam. It is the rest of that answer: the 0xFE OK with
// CLIENT_DEPRECATE_EOF, and without it an EOF (0xFE, its warnings and its
// status) whose warnings' first byte is a letter or a digit (65 warnings:
// "A"), read as a plugin of that name.
func TestIAMChangeUserBeforeTheEndOfAWrappedResult(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  []byte
	}{
		{"OK", endOfRows},
		{"EOF with 65 warnings", []byte{mysqlwire.AuthSwitch, 'A', 0, 0x22, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startIAMRelay(t, "")
			r.write(r.app, frame(0, []byte("\x03SELECT * FROM big")))
			r.read(r.db)
			var rows [][]byte
			for i := 1; i <= 256; i++ { // column count, definition and rows: ids 1 to 255, then 0
				rows = append(rows, frame(byte(i), []byte("\x01x")))
			}
			r.write(r.db, rows...)
			for range rows {
				r.read(r.app)
			}
			r.write(r.app, frame(0, changeTo("other", mysqlwire.NativePassword)))
			if p := r.read(r.db); p.Payload[0] != mysqlwire.ComChangeUser {
				t.Fatalf("server read %q; want the COM_CHANGE_USER", p.Payload)
			}
			r.write(r.db, frame(1, tc.end))
			r.expectPipelined(1)
			if n := r.tokens.Stats().Failures[iamauth.ReasonUserNotIAM]; n != 0 {
				t.Errorf("user_not_iam failures: %d; want 0", n)
			}
		})
	}
}

// With LOCAL_PASSWORD, the sidecar's switch for the app's proof of a
// COM_CHANGE_USER landed inside the previous command's answer when the
// app sent the change after that answer began but before it ended: the
// app read a 0xFE packet at sequence id 1 among the rows, while the
// sidecar waited for a proof and passed the rest of the rows on. The
// change is pipelined: the app reads the refusal in place of the rest.
func TestIAMProofSwitchNotInsideAnAnswer(t *testing.T) {
	r := startIAMRelay(t, "local-pw")
	r.answerBegun("SELECT a FROM t", "\x03def\x00\x01t\x00\x01a\x00\x0c\x2d\x00\x00\x01\x00\x00\xfd\x00\x00\x00\x00\x00")
	r.write(r.app, frame(0, changeTo("app", "caching_sha2_password")))
	go func() {
		for deadline := time.Now().Add(10 * time.Second); r.is.pending.Load() == nil; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				return // the test has failed
			}
		}
		_, _ = r.db.Write(bytes.Join([][]byte{frame(3, []byte("\x01x")), frame(4, endOfRows)}, nil))
	}()
	r.expectPipelined(3)
}

// Once the answer has ended, the switch comes, at sequence id 1, and
// the change goes through; the server answered the sidecar's COM_PING
// first, and the app never saw that answer.
func TestIAMProofSwitchAfterAnAnswer(t *testing.T) {
	const local = "local-pw"
	r := startIAMRelay(t, local)
	r.write(r.app, frame(0, []byte("\x03SELECT 1")))
	r.read(r.db)
	r.write(r.db, frame(1, okPacket))
	r.read(r.app)
	r.write(r.app, frame(0, changeTo("app", "caching_sha2_password")))
	if p := r.read(r.db); p.Seq != 0 || !bytes.Equal(p.Payload, []byte{0x0e}) {
		t.Fatalf("server read seq %d %q; want the sidecar's COM_PING", p.Seq, p.Payload)
	}
	r.write(r.db, frame(1, okPacket))
	p := r.read(r.app)
	if plugin, _, _ := mysqlwire.ParseAuthSwitch(p.Payload); p.Seq != 1 || plugin != mysqlwire.NativePassword {
		t.Fatalf("app read seq %d %q; want the sidecar's switch to %s at 1", p.Seq, p.Payload, mysqlwire.NativePassword)
	}
	r.write(r.app, frame(2, mysqlwire.NativeProof([]byte(local), r.is.scramble)))
	r.serveChange()
	if p := r.read(r.app); p.Seq != 3 || p.Payload[0] != mysqlwire.OK {
		t.Fatalf("app read seq %d %q; want the change's OK at 3", p.Seq, p.Payload)
	}
}

// A command of MaxPayload bytes or more goes in several frames, and the
// server's answer goes on from the last one's sequence id: it begins at
// 2, not 1. The relay took only a packet at 1 for an answer's start, so
// it counted that answer as never begun, and every COM_CHANGE_USER after
// it, sent once the answer was read, was refused as pipelined.
func TestIAMChangeUserAfterAMultiFrameCommand(t *testing.T) {
	r := startIAMRelay(t, "")
	r.multiFrameQuery()
	r.write(r.db, frame(2, okPacket))
	if p := r.read(r.app); p.Seq != 2 || p.Payload[0] != mysqlwire.OK {
		t.Fatalf("app read seq %d %q; want the answer at 2", p.Seq, p.Payload)
	}
	r.changeGoesThrough("after a multi-frame command")
}

// barrierPing has the app send, once a command's answer is read, a
// COM_CHANGE_USER that asks for the proof, and reads the sidecar's
// COM_PING at the server.
func (r *iamRelay) barrierPing() {
	r.t.Helper()
	r.write(r.app, frame(0, []byte("\x03SELECT 1")))
	r.read(r.db)
	r.write(r.db, frame(1, okPacket))
	r.read(r.app)
	r.write(r.app, frame(0, changeTo("app", "caching_sha2_password")))
	if p := r.read(r.db); p.Seq != 0 || !bytes.Equal(p.Payload, []byte{comPing}) {
		r.t.Fatalf("server read seq %d %q; want the sidecar's COM_PING", p.Seq, p.Payload)
	}
}

// A server that answers the sidecar's COM_PING with an ERR (a connection
// killed, a shutdown) had the app told it sent COM_CHANGE_USER before
// reading an answer, and the log blamed the app (client_protocol). The
// app reads the server's ERR as the change's answer, and the session
// ends as the server's doing.
func TestIAMProofBarrierPingRefused(t *testing.T) {
	r := startIAMRelay(t, "local-pw")
	r.barrierPing()
	const msg = "Connection was killed"
	r.write(r.db, frame(1, mysqlwire.ErrPacket(1927, "70100", msg)))
	p := r.read(r.app)
	if _, got, isErr := mysqlwire.ErrMessage(p.Payload); !isErr || p.Seq != 1 || got != msg {
		t.Fatalf("app read seq %d %q; want the server's ERR at 1", p.Seq, p.Payload)
	}
	if !r.slot.Load() {
		t.Error("the ERR that ends the session came before the slot was given back")
	}
	<-r.done
	if r.res.Reason != relay.ReasonUpstreamError || r.res.Err == nil || !strings.Contains(r.res.Err.Error(), "COM_PING") || !strings.Contains(r.res.Err.Error(), msg) {
		t.Fatalf("the session ended %s, %v; want upstream_error naming the COM_PING and the server's message", r.res.Reason, r.res.Err)
	}
}

// A server that closed the connection instead of answering the COM_PING
// (killed, failed over) left the session waiting out LoginTimeout, then
// logged that the database did not answer within it.
func TestIAMProofBarrierServerCloses(t *testing.T) {
	r := startIAMRelay(t, "local-pw")
	r.barrierPing()
	_ = r.db.Close()
	<-r.done
	if r.res.Reason != relay.ReasonUpstreamError || r.res.Err == nil || !strings.Contains(r.res.Err.Error(), "closed the connection") {
		t.Fatalf("the session ended %s, %v; want upstream_error: the database closed the connection", r.res.Reason, r.res.Err)
	}
}

// A frame of MaxPayload bytes is never the answer to the sidecar's
// COM_PING, nor to its COM_CHANGE_USER: it is more of the previous
// answer, a row of 16 MiB or more. It went to the app, and the switch
// for the proof, or the change's answer, came after it, inside that
// answer.
func TestIAMChangeUserBeforeALargeRow(t *testing.T) {
	// The proof is asked for (barrier) only for a plugin other than mysql_native_password.
	for plugin, sent := range map[string]byte{"caching_sha2_password": comPing, mysqlwire.NativePassword: mysqlwire.ComChangeUser} {
		r := startIAMRelay(t, "local-pw")
		r.answerBegun("SELECT blob FROM t", "\x03def\x00\x01t\x00\x01b\x00\x0c\x3f\x00\xff\xff\xff\xff\xfc\x90\x00\x00\x00\x00")
		cu := mysqlwire.ChangeUser{User: "app", AuthData: mysqlwire.NativeProof([]byte("local-pw"), r.is.scramble), Database: "orders", Charset: 45, Plugin: plugin, Attrs: []byte{}}
		r.write(r.app, frame(0, cu.Append(nil, relayCaps)))
		if p := r.read(r.db); p.Seq != 0 || p.Payload[0] != sent {
			t.Fatalf("%s: server read seq %d %q; want 0x%02x", plugin, p.Seq, p.Payload, sent)
		}
		row := append([]byte{0xfd, 0xff, 0xff, 0xff}, bytes.Repeat([]byte("x"), 1<<24)...)
		go func() { _, _ = mysqlwire.WritePacket(r.db, 3, row) }()
		p, err := mysqlwire.ReadPacket(r.app, 1<<25)
		if _, msg, isErr := mysqlwire.ErrMessage(p.Payload); err != nil || !isErr || p.Seq != 3 || msg != msgPipelined {
			t.Fatalf("%s: app read seq %d, %d bytes, %v; want the refusal of its pipelined COM_CHANGE_USER at 3", plugin, p.Seq, len(p.Payload), err)
		}
	}
}

// Should the relay miscount (here a server whose answer begins at an id
// no server uses, 2 for a one-frame command), it counts an answer that
// never comes. A COM_CHANGE_USER after that was marked pipelined and
// waited for a server packet to refuse in place of, which none sent: the
// app hung until the server's wait_timeout. The sidecar now sends the
// server a COM_PING with the refusal, so a packet comes and the app is
// told, at once. (A LOAD DATA LOCAL file at id 0 was such a miscount:
// TestIAMChangeUserAfterAFileAtZero.)
func TestIAMChangeUserAfterAMiscountIsToldNotHeld(t *testing.T) {
	r := startIAMRelay(t, "")
	r.write(r.app, frame(0, []byte("\x03DO 1")))
	r.read(r.db)
	r.write(r.db, frame(2, okPacket))
	if p := r.read(r.app); p.Seq != 2 || p.Payload[0] != mysqlwire.OK {
		t.Fatalf("app read seq %d %q; want the OK", p.Seq, p.Payload)
	}
	r.write(r.app, frame(0, changeTo("other", mysqlwire.NativePassword)))
	_ = r.db.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := mysqlwire.ReadPacket(r.db, 1<<24)
	if err != nil {
		t.Fatalf("the server got nothing after the app's COM_CHANGE_USER (%v): the app waits for an answer no one sends", err)
	}
	if !bytes.Equal(p.Payload, []byte{comPing}) {
		t.Fatalf("server read seq %d %q; want the sidecar's COM_PING", p.Seq, p.Payload)
	}
	r.write(r.db, frame(1, okPacket))
	r.expectPipelined(1)
}

// A second COM_CHANGE_USER sent before the first one's answer is
// pipelined. The sidecar sent the server its COM_PING with the refusal
// while the first change was still pending, so the server, waiting for the
// token after its switch, could read the COM_PING in its place (packets
// out of order, or a wrong password counted as server_refused). The
// pending change's answer comes anyway, and the refusal takes its place.
func TestIAMSecondChangeUserWhileOneIsPending(t *testing.T) {
	r := startIAMRelay(t, "")
	r.write(r.app, frame(0, changeTo("other", mysqlwire.NativePassword)))
	if p := r.read(r.db); p.Seq != 0 || p.Payload[0] != mysqlwire.ComChangeUser {
		t.Fatalf("server read seq %d %q; want the COM_CHANGE_USER", p.Seq, p.Payload)
	}
	r.write(r.app, frame(0, changeTo("third", mysqlwire.NativePassword)))
	for deadline := time.Now().Add(10 * time.Second); r.is.answers.Load() >= 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second COM_CHANGE_USER was never taken for pipelined")
		}
	}
	r.write(r.db, frame(1, mysqlwire.AuthSwitchRequest(mysqlwire.ClearPassword, nil)))
	got := make(chan []mysqlwire.Packet, 1)
	go func() { got <- r.serverPackets() }()
	r.write(r.db, frame(3, okPacket)) // the server's verdict, once it has the token
	r.expectPipelined(1)
	packets := <-got
	if len(packets) == 0 || packets[0].Seq != 2 || !strings.Contains(string(packets[0].Payload), "X-Amz-Signature") {
		t.Fatalf("server read %d packets after its switch; want the token at 2 first", len(packets))
	}
	for _, p := range packets {
		if bytes.Equal(p.Payload, []byte{comPing}) {
			t.Fatal("the server was sent a COM_PING while the first change was pending")
		}
	}
}

// Prepared statements' commands, two of which the server never answers
// (COM_STMT_SEND_LONG_DATA, COM_STMT_CLOSE), one long data of several
// frames among them, then COM_CHANGE_USER once every answer is read: the
// change goes through, and no late start is left behind.
func TestIAMChangeUserAfterPreparedStatements(t *testing.T) {
	r := startIAMRelay(t, "")
	stmt := []byte{1, 0, 0, 0}
	long := append(append([]byte{0x18}, stmt...), 0, 0) // COM_STMT_SEND_LONG_DATA, parameter 0
	long = append(long, bytes.Repeat([]byte("x"), mysqlwire.MaxPayload)...)
	prepareOK := []byte{0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}
	for _, step := range []struct {
		command []byte
		answer  []byte // nil: none
	}{
		{append([]byte{0x16}, "INSERT INTO t VALUES (?)"...), prepareOK}, // COM_STMT_PREPARE, one parameter
		{long, nil},
		{append(append([]byte{0x18}, stmt...), 0, 0, 'y'), nil},
		{append(append([]byte{0x17}, stmt...), 0, 1, 0, 0, 0, 0, 1, 0xfc, 0), okPacket}, // COM_STMT_EXECUTE
		{append([]byte{0x1a}, stmt...), okPacket},                                       // COM_STMT_RESET
		{append(append([]byte{0x1c}, stmt...), 1, 0, 0, 0), endOfRows},                  // COM_STMT_FETCH
		{append([]byte{0x19}, stmt...), nil},                                            // COM_STMT_CLOSE
	} {
		b, _ := mysqlwire.AppendPacket(nil, 0, step.command)
		go func() { _, _ = r.app.Write(b) }()
		if p, err := mysqlwire.ReadPacket(r.db, 1<<25); err != nil || !bytes.Equal(p.Payload, step.command) {
			t.Fatalf("command 0x%02x: server read %d bytes, %v; want the command", step.command[0], len(p.Payload), err)
		}
		if step.answer != nil {
			r.write(r.db, frame(1, step.answer))
			if p := r.read(r.app); p.Seq != 1 || !bytes.Equal(p.Payload, step.answer) {
				t.Fatalf("command 0x%02x: app read seq %d %q; want the answer at 1", step.command[0], p.Seq, p.Payload)
			}
		}
	}
	r.changeGoesThrough("after the unanswered commands")
	r.is.lateMu.Lock()
	defer r.is.lateMu.Unlock()
	if len(r.is.late) != 0 || r.is.answers.Load() != r.is.sent.Load() {
		t.Fatalf("late starts %v, %d answers of %d sent; want none left, every answer counted", r.is.late, r.is.answers.Load(), r.is.sent.Load())
	}
}

// fileRequestAfter has the app send a multi-statement, and the server
// answer it with n packets of a first result (ids 1, 2, …, wrapping after
// 255) and then a LOAD DATA LOCAL request, which the app reads whole.
func (r *iamRelay) fileRequestAfter(n int) {
	r.t.Helper()
	r.write(r.app, frame(0, []byte("\x03SELECT * FROM big; LOAD DATA LOCAL INFILE 'f' INTO TABLE t")))
	r.read(r.db)
	var answer [][]byte
	for i := 1; i <= n; i++ {
		answer = append(answer, frame(byte(i), []byte("\x01x")))
	}
	answer = append(answer, frame(byte(n+1), []byte("\xfbf")))
	r.write(r.db, answer...)
	for range answer {
		r.read(r.app)
	}
}

// A LOAD DATA LOCAL INFILE whose request lands at sequence id 255 has the
// app's file start at id 0, which the relay counted as a command with an
// answer to come. A COM_CHANGE_USER the app sent once it had read the
// LOAD DATA's OK was then refused as pipelined. The file's next packet, at
// the app's next id, shows it was no command.
func TestIAMChangeUserAfterAFileAtZero(t *testing.T) {
	for _, file := range []int{1, 3} { // data packets, at 0, 1, …
		r := startIAMRelay(t, "")
		r.fileRequestAfter(254) // the first result at ids 1 to 254, the request at 255
		var data [][]byte
		for i := 0; i < file; i++ {
			data = append(data, frame(byte(i), []byte("a,b\n")))
		}
		r.write(r.app, append(data, frame(byte(file), nil))...) // the file, then its end
		for range file + 1 {
			r.read(r.db)
		}
		r.write(r.db, frame(byte(file+1), okPacket))
		if p := r.read(r.app); p.Seq != byte(file+1) || p.Payload[0] != mysqlwire.OK {
			t.Fatalf("app read seq %d %q; want the LOAD DATA's OK", p.Seq, p.Payload)
		}
		r.write(r.app, frame(0, changeTo("other", mysqlwire.NativePassword)))
		if p := r.read(r.db); p.Seq != 0 || p.Payload[0] != mysqlwire.ComChangeUser {
			t.Fatalf("file of %d packets: server read seq %d %q; want the COM_CHANGE_USER, sent once every answer was read", file, p.Seq, p.Payload)
		}
		r.write(r.db, frame(1, mysqlwire.AuthSwitchRequest(mysqlwire.ClearPassword, nil)))
		r.read(r.db)
		r.write(r.db, frame(3, okPacket))
		if p := r.read(r.app); p.Seq != 1 || p.Payload[0] != mysqlwire.OK {
			t.Fatalf("file of %d packets: app read seq %d %q; want the change's OK at 1", file, p.Seq, p.Payload)
		}
	}
}

// A LOAD DATA LOCAL request at sequence id 0 (after 255) has the app's
// file start at 1, right after the query at 0 whose answer it is part of:
// that query is no file, and its count stays. A change sent before the
// next command's answer began is still pipelined.
func TestIAMChangeUserBeforeAnAnswerAfterAFileAtOne(t *testing.T) {
	r := startIAMRelay(t, "")
	r.fileRequestAfter(255) // the first result at ids 1 to 255, the request at 0
	r.write(r.app, frame(1, []byte("a,b\n")), frame(2, nil))
	r.read(r.db)
	r.read(r.db)
	r.write(r.db, frame(3, okPacket))
	if p := r.read(r.app); p.Seq != 3 || p.Payload[0] != mysqlwire.OK {
		t.Fatalf("app read seq %d %q; want the LOAD DATA's OK", p.Seq, p.Payload)
	}
	r.write(r.app, frame(0, []byte("\x03SELECT 1")), frame(0, changeTo("other", mysqlwire.NativePassword)))
	if p := r.read(r.db); p.Payload[0] != 0x03 {
		t.Fatalf("server read %q; want the SELECT", p.Payload)
	}
	r.pipelinedInPlaceOf(okPacket)
}

// expectFileOrChange reads the refusal of the app's packet at 0 after the
// server's 0xFB packet at 255, in place of the server's packet at seq.
func (r *iamRelay) expectFileOrChange(seq byte) {
	r.t.Helper()
	r.expectRefused(seq, msgFileOrChange, "the refusal of its packet after the 0xFB at 255")
}

// A LOAD DATA LOCAL file whose request came at sequence id 255 starts at
// 0, where a packet beginning with 0x11 was taken for a COM_CHANGE_USER:
// the server, reading the file, got the sidecar's change (or, with a
// proof to ask for, its COM_PING) as the file's data. It gets an empty
// packet instead, which ends the file with no rows, and the app is told.
func TestIAMFileAtZeroBeginningAsAChange(t *testing.T) {
	r := startIAMRelay(t, "")
	r.fileRequestAfter(254) // the first result at ids 1 to 254, the request at 255
	r.write(r.app, frame(0, changeTo("other", mysqlwire.NativePassword)), frame(1, nil))
	if p := r.read(r.db); p.Seq != 0 || len(p.Payload) != 0 {
		t.Fatalf("server read seq %d %q; want an empty packet at 0, the file's end", p.Seq, p.Payload)
	}
	r.write(r.db, frame(1, okPacket)) // no rows loaded
	r.expectFileOrChange(1)
}

// After a row at 255 whose first column is NULL (0xFB), a COM_CHANGE_USER
// at 0 is sent before the rest of the result, but cannot be told from a
// file's first packet: neither goes to the server, and the app is refused
// in place of the next row.
func TestIAMChangeUserAfterANullRowAt255(t *testing.T) {
	r := startIAMRelay(t, "")
	r.write(r.app, frame(0, []byte("\x03SELECT a FROM big")))
	r.read(r.db)
	var rows [][]byte
	for i := 1; i <= 254; i++ {
		rows = append(rows, frame(byte(i), []byte("\x01x")))
	}
	rows = append(rows, frame(255, []byte{0xfb}))
	r.write(r.db, rows...)
	for range rows {
		r.read(r.app)
	}
	r.write(r.app, frame(0, changeTo("other", mysqlwire.NativePassword)))
	if p := r.read(r.db); p.Seq != 0 || len(p.Payload) != 0 {
		t.Fatalf("server read seq %d %q; want an empty packet at 0", p.Seq, p.Payload)
	}
	r.write(r.db, frame(0, []byte("\x01y")), frame(1, endOfRows))
	r.expectFileOrChange(0)
}
