package mysqltls

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/example/sidecar/sidecar/internal/iamauth"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
	"github.com/example/sidecar/sidecar/internal/relay"
)

// IAM login (TARGET_AUTH=iam). The app names a user and sends any or no
// password; the sidecar checks it (IAM_USERS, LOCAL_PASSWORD), then logs
// in to the server over its verified TLS with mysql_clear_password and a
// token in the first packet, carrying the app's database, flags, character
// set and attributes. COM_CHANGE_USER is re-authenticated the same way.

// iamLogin is an admitted app's login, ready for the server.
type iamLogin struct {
	response []byte // the HandshakeResponse for the server
	appSeq   byte   // the sequence id the app expects the verdict at
	password []byte // the token
	user     string
	caps     uint32 // the session's capability flags, as the server has them
	appCaps  uint32 // the app's, which its packets follow
	scramble []byte
}

// AwaitCredentials is an IAM login's first step, before the database is
// dialed: it waits for the AWS credentials the token will be signed with
// (iamauth.Authority.Credentials says why not later), and returns how long,
// for Login's ctx (CredentialsWaited). Without IAM it returns at once. On
// failure the app has been sent an ERR in place of the greeting, as for a
// failed dial, unless ctx ended the wait (the app left, the drain
// deadline); the error is then a *Refusal.
func (t *Target) AwaitCredentials(ctx context.Context, client net.Conn) (time.Duration, error) {
	if t.IAM == nil {
		return 0, nil
	}
	began := time.Now()
	err := t.IAM.Credentials(ctx)
	waited := time.Since(began)
	if err == nil || ctx.Err() != nil {
		return waited, err
	}
	if t.IAM.WantsProof() {
		// The app has not proved LOCAL_PASSWORD yet: the source and its
		// error are for the log only.
		return waited, t.refuse(client, 0, ReasonIAM, "sidecar: cannot log in with IAM: the sidecar has no AWS credentials; its log says why", err)
	}
	return waited, t.refuse(client, 0, ReasonIAM, err.Error(), nil)
}

// CredentialsWaited returns ctx for Login, telling it that its login
// waited d for credentials before the dial (AwaitCredentials): the signing
// after the greeting waits only for the rest of their one bound.
func CredentialsWaited(ctx context.Context, d time.Duration) context.Context {
	return iamauth.Waited(ctx, d)
}

// iamAdmit reads the app's login and checks it; on failure the app has
// been sent an ERR. The token is signed by deadline, the login's.
func (t *Target) iamAdmit(ctx context.Context, client net.Conn, resp mysqlwire.Packet, greeting []byte, serverCaps uint32, deadline time.Time) (*iamLogin, error) {
	r, err := mysqlwire.ParseHandshakeResponse(resp.Payload)
	if err != nil {
		return nil, t.refuse(client, resp.Seq+1, ReasonClientProtocol, "sidecar: cannot read the app's login packet", err)
	}
	need := mysqlwire.ClientPluginAuth | mysqlwire.ClientPluginAuthLenencClientData | mysqlwire.ClientSecureConnection
	if serverCaps&need != need {
		return nil, t.refuse(client, resp.Seq+1, ReasonIAM, "sidecar: the database server cannot take an IAM token (it lacks CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA); TARGET_AUTH=iam needs Aurora MySQL or MySQL 5.7+", nil)
	}
	scramble, err := mysqlwire.GreetingScramble(greeting)
	if err != nil {
		// The server greeted (it is not down, as no_greeting would say):
		// it is one an IAM login cannot work with, as above.
		return nil, t.refuse(client, resp.Seq+1, ReasonIAM, "sidecar: the database's greeting has no 20-byte scramble, which an IAM login needs; TARGET_AUTH=iam needs Aurora MySQL or MySQL 5.7+", err)
	}
	appSeq := resp.Seq + 1
	read := func(seq byte) (mysqlwire.Packet, error) { return t.readApp(client, seq) }
	proof, appSeq, err := t.iamProof(client, read, r.Plugin, r.AuthData, r.Caps, scramble, appSeq)
	if ref := (*Refusal)(nil); errors.As(err, &ref) {
		ref.User = r.User
	}
	if err != nil {
		return nil, err
	}
	signCtx, cancel := context.WithDeadline(ctx, deadline) // no socket waits meanwhile to end it
	pw, err := t.IAM.Password(signCtx, r.User, proof, scramble)
	cancel()
	if err != nil {
		return nil, t.iamDenied(client, appSeq, r.User, err)
	}
	out := r
	// CLIENT_SSL as in the SSLRequest, as a client that did TLS sends it.
	out.Caps = r.Caps&^(mysqlwire.ClientCompress|mysqlwire.ClientZstdCompressionAlgorithm) | need | mysqlwire.ClientSSL
	out.Plugin = mysqlwire.ClearPassword
	out.AuthData = cleartext(pw)
	return &iamLogin{response: out.Append(nil), appSeq: appSeq, password: pw, user: r.User, caps: out.Caps, appCaps: r.Caps, scramble: scramble}, nil
}

// iamProof returns the app's mysql_native_password answer over scramble
// when LOCAL_PASSWORD is set, switching the app to that plugin when it
// answered with another; and the sequence id the app expects next. read
// reads the answer, refusing one over MaxLoginPacket with an ERR at the
// seq it is given, as a login packet that size is (readApp).
func (t *Target) iamProof(w io.Writer, read func(errSeq byte) (mysqlwire.Packet, error), plugin string, data []byte, caps uint32, scramble []byte, seq byte) ([]byte, byte, error) {
	if !t.asksProof(plugin, caps) {
		return data, seq, nil
	}
	if _, err := mysqlwire.WritePacket(w, seq, mysqlwire.AuthSwitchRequest(mysqlwire.NativePassword, scramble)); err != nil {
		return nil, 0, appLeft(err)
	}
	p, err := read(seq + 2) // the answer is at seq+1
	if err != nil {
		return nil, 0, err
	}
	return p.Payload, p.Seq + 1, nil
}

// asksProof reports whether iamProof switches an app that answered with
// plugin to mysql_native_password for its proof.
func (t *Target) asksProof(plugin string, caps uint32) bool {
	return t.IAM.WantsProof() && plugin != mysqlwire.NativePassword && caps&mysqlwire.ClientPluginAuth != 0
}

// iamDenied tells the app why the sidecar would not log it in.
func (t *Target) iamDenied(client io.Writer, seq byte, user string, err error) error {
	code, state := deniedCode(err)
	told := sendErrTo(client, seq, code, state, err.Error()) == nil
	return &Refusal{Reason: ReasonIAM, Message: err.Error(), User: user, Told: told}
}

// deniedCode is the ERR's code and SQL state for an IAM login the sidecar
// would not do.
func deniedCode(err error) (uint16, string) {
	var f *iamauth.Failure
	if errors.As(err, &f) && f.Reason != iamauth.ReasonUserNotAllowed && f.Reason != iamauth.ReasonLocalPassword {
		return codeHandshake, "08S01" // credentials: the operator's to fix, and maybe passing
	}
	return codeDenied, "28000"
}

// iamLogin logs in to the server with the token and gives the app the
// server's verdict at the sequence id it expects.
func (t *Target) iamLogin(client net.Conn, tc *tls.Conn, seq byte, l *iamLogin) (*Conn, error) {
	if _, err := mysqlwire.WritePacket(tc, seq, l.response); err != nil {
		return nil, t.serverClosed(client, l.appSeq, err)
	}
	for {
		p, err := mysqlwire.ReadPacket(tc, MaxLoginPacket)
		if err != nil {
			return nil, t.serverClosed(client, l.appSeq, err)
		}
		v, err := t.iamVerdict(tc, p, l.password, l.user)
		switch {
		case err != nil:
			told := sendErrTo(client, l.appSeq, codeDenied, "28000", err.Error()) == nil
			return nil, &Refusal{Reason: ReasonIAM, Message: err.Error(), User: l.user, Told: told}
		case v == verdictMore:
			continue
		}
		if _, werr := mysqlwire.WritePacket(client, l.appSeq, p.Payload); werr != nil {
			return nil, appLeft(werr)
		}
		if v == verdictRefused {
			_, msg, _ := mysqlwire.ErrMessage(p.Payload)
			return nil, &Refusal{Reason: ReasonIAM, User: l.user, Told: true,
				Message: "the database refused the IAM token (" + msg + "); check the task role's rds-db:connect permission for this user and cluster"}
		}
		// OK, or an ERR the app reads as it would without IAM; the
		// server closes after it.
		return &Conn{Conn: tc, iam: &iamSession{target: t, caps: l.caps, appCaps: l.appCaps, scramble: l.scramble}}, nil
	}
}

// cleartext is mysql_clear_password's answer: the password as a C string.
func cleartext(password []byte) []byte { return append(append([]byte(nil), password...), 0) }

type verdict int

const (
	verdictOK          verdict = iota
	verdictRefused             // 1045: the server refused the token
	verdictServerError         // another ERR: the app's to read, as without IAM
	verdictMore                // the token was sent after an auth switch; read on
)

// iamVerdict handles one server packet of an IAM login: OK and ERR are the
// verdict (only 1045 refuses the token: Aurora's answer to a bad one); a
// switch to mysql_clear_password is answered with the token; any other
// switch means the user is not set up for IAM (the error).
func (t *Target) iamVerdict(server io.Writer, p mysqlwire.Packet, password []byte, user string) (verdict, error) {
	if len(p.Payload) == 0 {
		return 0, errors.New("sidecar: the database sent an empty packet during the login")
	}
	switch p.Payload[0] {
	case mysqlwire.OK:
		return verdictOK, nil
	case mysqlwire.ErrPacketHdr:
		if code, _, _ := mysqlwire.ErrMessage(p.Payload); code != codeDenied {
			return verdictServerError, nil // not about the token: an unknown database, a connection limit
		}
		t.IAM.Failed(iamauth.ReasonServerRefused)
		return verdictRefused, nil
	case mysqlwire.AuthSwitch:
		plugin, _, _ := mysqlwire.ParseAuthSwitch(p.Payload)
		if plugin == mysqlwire.ClearPassword {
			if _, err := mysqlwire.WritePacket(server, p.Seq+1, cleartext(password)); err != nil {
				return 0, fmt.Errorf("%s: %w", msgServerClosed, err)
			}
			return verdictMore, nil
		}
		t.IAM.Failed(iamauth.ReasonUserNotIAM)
		return 0, fmt.Errorf("sidecar: the database user %q is not set up for IAM authentication (the server asked for %s); "+
			"create it with CREATE USER '%s' IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS', or set TARGET_AUTH=passthrough", user, plugin, user)
	default:
		return 0, fmt.Errorf("sidecar: unexpected packet 0x%02x from the database during the IAM login", p.Payload[0])
	}
}

// iamSession is what the session relay needs to re-authenticate a
// COM_CHANGE_USER.
type iamSession struct {
	target   *Target
	caps     uint32 // the session's, as the server has them
	appCaps  uint32 // the app's: its COM_CHANGE_USER is read with them, as its login is
	scramble []byte
	pending  atomic.Pointer[changeUser] // a COM_CHANGE_USER awaiting the server's verdict
	// sent counts the commands with an answer passed to the server;
	// answers, the answers pumpReplies has begun to pass to the app. An
	// answer begins at sequence id 1 (or late's); one whose ids wrapped
	// may be taken there for the next one due, but answers never passes
	// sent. Fewer answers than sent, a COM_CHANGE_USER is pipelined:
	// pumpCommands swaps pipelined in for the count, and pumpReplies
	// refuses in place of its next packet; the two swaps decide, either
	// way, whether that answer had begun.
	sent, answers atomic.Int64
	// late holds, by their place among the commands sent, the first
	// sequence ids of answers that do not begin at 1: a command of
	// MaxPayload bytes or more goes in several frames, and its answer
	// goes on from the last one's id. lateN is its size, so that the
	// usual session, with none, takes no lock.
	lateMu sync.Mutex
	late   map[int64]byte
	lateN  atomic.Int32
	// fileOrRow: the server's last packet was at 255 and began with 0xFB,
	// a LOAD DATA LOCAL request (the app's file starts at 0) or a row
	// whose first column is NULL (the answer goes on).
	fileOrRow atomic.Bool
}

// commandSent counts a command with an answer, which will begin at
// sequence id first: pumpCommands' own, at the command's last frame,
// before the server can answer it.
func (is *iamSession) commandSent(first byte) {
	if first != 1 {
		is.lateMu.Lock()
		if is.late == nil {
			is.late = make(map[int64]byte)
		}
		is.late[is.sent.Load()] = first
		is.lateN.Store(int32(len(is.late)))
		is.lateMu.Unlock()
	}
	is.sent.Add(1)
}

// uncount takes back the command counted last, which was no command:
// a LOAD DATA LOCAL file's packet at sequence id 0. pumpCommands' own;
// the server sends nothing while it reads a file, so no answer was taken
// for that command's. One whose answer began was a command: its answer
// asked for a file at 0, which the app sends from 1.
func (is *iamSession) uncount() {
	if is.answers.Load() >= is.sent.Load() {
		return
	}
	i := is.sent.Add(-1)
	if is.lateN.Load() == 0 {
		return
	}
	is.lateMu.Lock()
	defer is.lateMu.Unlock()
	delete(is.late, i)
	is.lateN.Store(int32(len(is.late)))
}

// first is the sequence id at which the answer to the command counted
// i-th (from 0) begins.
func (is *iamSession) first(i int64) byte {
	if is.lateN.Load() == 0 {
		return 1
	}
	is.lateMu.Lock()
	defer is.lateMu.Unlock()
	if seq, ok := is.late[i]; ok {
		return seq
	}
	return 1
}

// begun forgets the late starts of the answers up to the i-th, begun.
func (is *iamSession) begun(i int64) {
	if is.lateN.Load() == 0 {
		return
	}
	is.lateMu.Lock()
	defer is.lateMu.Unlock()
	for k := range is.late {
		if k <= i {
			delete(is.late, k)
		}
	}
	is.lateN.Store(int32(len(is.late)))
}

// kind is what a server packet's first bytes tell of where an answer can
// end: the relay does not parse results, but a packet at sequence id 1
// right after one at 0 that cannot end an answer is more of it, its ids
// having wrapped, not the next answer nor the reply to the sidecar's own
// command (goesOn). Each kind that says "cannot end" is so by the
// protocol; where it cannot tell, a packet may end one.
type kind uint8

const (
	kindEnd  kind = iota // ERR, EOF, an OK with 0xFE: may end an answer (also: nothing yet)
	kindZero             // 0x00: an OK, or a binary row (COM_STMT_EXECUTE's, or a text row's empty column)
	kindMore             // 0x00 or 0xFE with SERVER_MORE_RESULTS_EXISTS: more of the answer comes
	kindDef              // a column definition: a COM_STMT_PREPARE's answer may end with one
	kindFile             // 0xFB: a LOAD DATA LOCAL request (an OK follows the file), or a row's NULL
	kindRow              // a row, a column count, a packet of several frames: never an answer's last
)

// serverMoreResults is SERVER_MORE_RESULTS_EXISTS, by which clients know
// that another result of the same answer follows.
const serverMoreResults = 0x0008

// kindPeek is how many of a packet's first bytes kindOf needs: an OK's
// header, two length-encoded integers and its status flags.
const kindPeek = 1 + 9 + 9 + 2

// kindOf tells the kind of a server packet whose first frame is n bytes
// and begins with b (up to kindPeek of them).
func kindOf(b []byte, n int) kind {
	switch {
	case n >= mysqlwire.MaxPayload: // no OK, ERR or EOF is that long
		return kindRow
	case len(b) == 0:
		return kindEnd
	}
	switch b[0] {
	case mysqlwire.OK, mysqlwire.AuthSwitch: // 0xFE: an EOF, or an OK with CLIENT_DEPRECATE_EOF
		if moreResults(b, n) {
			return kindMore
		}
		if b[0] == mysqlwire.OK {
			return kindZero
		}
		return kindEnd
	case mysqlwire.ErrPacketHdr:
		return kindEnd
	case 0xfb:
		return kindFile
	case 3:
		if bytes.HasPrefix(b, []byte("\x03def")) { // the catalog, always "def"
			return kindDef
		}
	}
	return kindRow
}

// moreResults reports whether b, the start of an OK or EOF packet of n
// bytes, has SERVER_MORE_RESULTS_EXISTS in its status flags.
func moreResults(b []byte, n int) bool {
	if n == eofLen { // 0xFE, warnings, status
		return len(b) > 3 && b[3]&serverMoreResults != 0
	}
	i := 1
	for range 2 { // affected rows, last insert id
		if i >= len(b) {
			return false
		}
		i += mysqlwire.LenencSize(b[i])
	}
	return i+1 < len(b) && b[i]&serverMoreResults != 0
}

// shape is a server packet as goesOn sees it.
type shape struct {
	seq  byte // its last frame's sequence id
	kind kind
	mid  bool // not an answer's first packet: at id 0 (answers begin at 1 or late's), or more of one
}

// goesOn reports whether a packet at seq is more of the answer of last,
// the packet before it (and before, the one before last): last is not an
// answer's first, and cannot be its last. A 0x00 (kindZero) is an OK
// only after a result's end, a LOAD DATA's file or a progress report
// (MariaDB's, an ERR): after a row or a column definition it is a binary
// row.
func goesOn(seq byte, last, before shape) bool {
	if !last.mid || seq != last.seq+1 {
		return false
	}
	switch last.kind {
	case kindRow, kindMore, kindFile: // a file's OK is more of the LOAD DATA's answer
		return true
	case kindZero:
		return before.seq+1 == last.seq && (before.kind == kindRow || before.kind == kindZero || before.kind == kindDef)
	}
	return false
}

// pipelined is answers once a COM_CHANGE_USER came before the answer to
// an earlier command.
const pipelined = -1

// began counts an answer begun by a packet at seq, if one is due and the
// packet is not more of an earlier answer (goesOn), and reports whether
// the packet goes to the app: false once a COM_CHANGE_USER was found
// pipelined.
func (is *iamSession) began(seq byte, more bool) bool {
	a := is.answers.Load()
	if a < 0 {
		return false
	}
	if more || a >= is.sent.Load() || seq != is.first(a) {
		return true
	}
	if !is.answers.CompareAndSwap(a, a+1) { // fails only for pipelined
		return false
	}
	is.begun(a)
	return true
}

// markPipelined marks the answers pipelined if one asked for has not
// begun, and reports whether it did. pumpCommands' own: sent is its.
func (is *iamSession) markPipelined() bool {
	for {
		a := is.answers.Load()
		if a >= is.sent.Load() {
			return false
		}
		if is.answers.CompareAndSwap(a, pipelined) {
			return true
		}
	}
}

type changeUser struct {
	password []byte
	user     string
	appSeq   byte
	switched bool // the server asked for the token: its OK is the verdict
	// ping, when set, stands for the sidecar's COM_PING sent before the
	// switch for the app's proof (barrier): closed when its OK came.
	ping chan struct{}
}

// msgPipelined refuses a COM_CHANGE_USER sent before the answer to the
// app's previous command was read: the sidecar, which does not parse
// results, would take that answer for the change's.
const msgPipelined = "sidecar: the app sent COM_CHANGE_USER before reading the answer to its previous command; " +
	"with TARGET_AUTH=iam send it once that answer is read"

// unanswered are the commands the server sends nothing back for.
func unanswered(command byte) bool {
	switch command {
	case 0x01, 0x18, 0x19: // COM_QUIT, COM_STMT_SEND_LONG_DATA, COM_STMT_CLOSE
		return true
	}
	return false
}

// lockedWriter serializes writes from the two pumps to one connection.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// SetWriteDeadline sets the connection's, without the lock: it bounds
// the write that holds it too (the other pump's, to an app that does not
// read), so that a refusal's bound holds in a session (sendErrTo).
func (l lockedWriter) SetWriteDeadline(t time.Time) error {
	if c, ok := l.w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		return c.SetWriteDeadline(t)
	}
	return nil
}

const frameHeader = 4

// relayIAM is Relay's IAM form: both directions are read frame by frame,
// so the client's COM_CHANGE_USER can be re-authenticated, and the
// server's answer to it given back at the sequence ids the app expects.
func (s *session) relayIAM(wg *sync.WaitGroup, is *iamSession, toUpstream, toClient *atomic.Int64) {
	var cmu, smu sync.Mutex
	client := lockedWriter{&cmu, s.stuck.Writer(s.client, false)}
	server := lockedWriter{&smu, s.stuck.Writer(s.server, true)}
	s.bufs = is.target.Buffers
	go s.pumpCommands(wg, is, client, server, toUpstream)
	go s.pumpReplies(wg, is, client, server, toClient)
}

// frames moves one direction frame by frame, so that a pump can look at
// a frame before passing it on: src's frames to dst, with the session's
// half-close, counters and flushing when src has nothing buffered.
// br and bw are held only while the direction carries data: an idle
// direction waits in a read of lead, so an idle session holds no relay
// buffer (four of 32 KiB made it 150 KB of heap).
type frames struct {
	br             *bufio.Reader // nil while idle
	bw             *bufio.Writer // nil while idle
	bufs           *Buffers
	src            touching
	dst            io.Writer  // a recording, made an interface once, not at each lending
	in             leadReader // br's source: lead's bytes, then src
	srcErr, dstErr relay.Reason
	closeWrite     func() error // passes src's EOF on
	total, live    *atomic.Int64
	dstFailed      error // the first failed write to dst: copying fails on either side
	// forward's, here so that no packet allocates: a header handed to
	// bw, and the payload's reader.
	hdr  [frameHeader]byte
	body io.LimitedReader
}

// leadSize is the read an idle direction waits in: a typical query fits,
// so it costs no extra read.
const leadSize = 1024

// leadReader reads lead's unread bytes, then r.
type leadReader struct {
	lead [leadSize]byte
	at   int
	n    int
	r    io.Reader
}

func (l *leadReader) Read(p []byte) (int, error) {
	if l.at < l.n {
		n := copy(p, l.lead[l.at:l.n])
		l.at += n
		return n, nil
	}
	return l.r.Read(p)
}

func newFrames(s *session, src io.Reader, dst io.Writer, srcErr, dstErr relay.Reason, closeWrite func() error, total, live *atomic.Int64) *frames {
	f := &frames{bufs: s.bufs, src: touching{s, src}, srcErr: srcErr, dstErr: dstErr, closeWrite: closeWrite, total: total, live: live}
	f.dst = &recording{dst, &f.dstFailed}
	f.in.r = f.src
	return f
}

// relayBuffer is the size of each of a busy direction's two buffers.
const relayBuffer = 32 * 1024

// Buffers lends sessions their relay buffers while a direction carries
// data: IAM's readers and writers, and the read buffers of sessions
// relayed byte for byte (chunks, session.go). One can serve every Target.
type Buffers struct{ readers, writers, reads sync.Pool }

// NewBuffers returns an empty Buffers.
func NewBuffers() *Buffers { return &Buffers{} }

// reader lends a reader of r; a nil b makes one.
func (b *Buffers) reader(r io.Reader) *bufio.Reader {
	if b != nil {
		if br, ok := b.readers.Get().(*bufio.Reader); ok {
			br.Reset(r)
			return br
		}
	}
	return bufio.NewReaderSize(r, relayBuffer)
}

// writer lends a writer to w; a nil b makes one.
func (b *Buffers) writer(w io.Writer) *bufio.Writer {
	if b != nil {
		if bw, ok := b.writers.Get().(*bufio.Writer); ok {
			bw.Reset(w)
			return bw
		}
	}
	return bufio.NewWriterSize(w, relayBuffer)
}

// release gives f's buffers back, dropping what they hold: the session's
// connections are not kept alive by a pool.
func (f *frames) release() {
	if f.br != nil {
		f.br.Reset(nil)
		if f.bufs != nil {
			f.bufs.readers.Put(f.br)
		}
		f.br = nil
	}
	if f.bw != nil {
		f.bw.Reset(io.Discard)
		if f.bufs != nil {
			f.bufs.writers.Put(f.bw)
		}
		f.bw = nil
	}
}

// await waits, holding no buffer, for src's next bytes when f has none
// buffered, then lends f a reader of them. false when the direction has
// ended (the session is told why).
func (f *frames) await(s *session) bool {
	if f.br != nil && f.br.Buffered() > 0 {
		return true
	}
	if f.flush(s) != nil {
		return false
	}
	f.release()
	n, err := f.src.Read(f.in.lead[:])
	if n == 0 && err == nil {
		err = io.ErrNoProgress
	}
	if n == 0 {
		f.ended(s, err)
		return false
	}
	// A read error with bytes is src's again at its next read.
	f.in.at, f.in.n = 0, n
	f.br = f.bufs.reader(&f.in)
	return true
}

// ended ends the direction on src's read error err.
func (f *frames) ended(s *session, err error) {
	switch {
	case f.flush(s) != nil:
	case errors.Is(err, io.EOF):
		s.halfClosed()
		if cerr := f.closeWrite(); cerr != nil {
			s.end(f.dstErr, cerr)
		}
	default:
		s.end(f.srcErr, err)
	}
}

// recording is a writer that keeps its first error, so that a failed copy
// is blamed on the side that failed it.
type recording struct {
	w   io.Writer
	err *error
}

func (r recording) Write(p []byte) (int, error) {
	n, err := r.w.Write(p)
	if err != nil && *r.err == nil {
		*r.err = err
	}
	return n, err
}

// touching marks the session active at every read, not every frame: a
// 16 MiB packet can take longer than IDLE_TIMEOUT to move.
type touching struct {
	s *session
	r io.Reader
}

func (t touching) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.s.touch()
	}
	return n, err
}

// next reads the next frame header and returns the payload length; false
// when the direction has ended (the session is told why).
func (f *frames) next(s *session, hdr *[frameHeader]byte) (int, bool) {
	if !f.await(s) {
		return 0, false
	}
	if _, err := io.ReadFull(f.br, hdr[:]); err != nil {
		f.ended(s, err)
		return 0, false
	}
	return mysqlwire.FrameLen(*hdr), true
}

// payload reads a frame's payload of n bytes, to look at it.
func (f *frames) payload(s *session, n int) ([]byte, bool) {
	b, err := mysqlwire.AppendPayload(nil, f.br, n)
	if err != nil {
		s.end(f.srcErr, err)
		return nil, false
	}
	return b, true
}

// forward passes the frame with header hdr and n payload bytes on.
func (f *frames) forward(s *session, hdr [frameHeader]byte, n int) bool {
	if f.bw == nil {
		f.bw = f.bufs.writer(f.dst)
	}
	f.hdr = hdr
	if _, err := f.bw.Write(f.hdr[:]); err != nil {
		s.end(f.dstErr, err)
		return false
	}
	f.body = io.LimitedReader{R: f.br, N: int64(n)}
	copied, err := io.Copy(f.bw, &f.body)
	f.body.R = nil // br goes back to the pool when the direction idles
	if err == nil && copied < int64(n) {
		err = io.EOF // as io.CopyN says src ended inside the payload
	}
	f.total.Add(copied + frameHeader)
	if f.live != nil {
		f.live.Add(copied + frameHeader)
	}
	switch {
	case f.dstFailed != nil: // the bufio.Writer wrote through mid-copy
		s.end(f.dstErr, f.dstFailed)
		return false
	case err != nil:
		s.end(f.srcErr, err)
		return false
	}
	if f.br.Buffered() == 0 {
		return f.flush(s) == nil
	}
	return true
}

func (f *frames) flush(s *session) error {
	if f.bw == nil {
		return nil
	}
	err := f.bw.Flush()
	if err != nil {
		s.end(f.dstErr, err)
	}
	return err
}

// pumpCommands copies the client's packets to the server. A packet is a
// command when it starts at sequence id 0 and continues nothing: not the
// next frame of a 16 MiB packet, nor a LOAD DATA file whose ids wrapped
// from 255 (a file's packets are not empty; an empty one ends it, unless
// it is the last frame of a packet of MaxPayload bytes).
func (s *session) pumpCommands(wg *sync.WaitGroup, is *iamSession, client, server io.Writer, live *atomic.Int64) {
	defer wg.Done()
	f := newFrames(s, s.client, server, relay.ReasonClientError, relay.ReasonUpstreamError, s.clientEnded, &s.toUpstream, live)
	defer f.release()
	var hdr [frameHeader]byte
	midPacket, inFileAt255 := false, false
	answered := false // the packet under way is a command the server answers
	counted := -1     // the last frame's id of the command just counted, until the next frame
	for {
		n, ok := f.next(s, &hdr)
		if !ok {
			return
		}
		seq := hdr[3]
		// After a command the app sends the next at 0: a packet at the
		// next id continues a LOAD DATA file whose request came at 255,
		// so that it began at 0 (inFileAt255 tells only ids the app wrapped).
		if !midPacket && counted >= 0 && seq == byte(counted+1) {
			is.uncount()
		}
		counted = -1
		command := !midPacket && seq == 0 && !inFileAt255
		// An empty frame at 255 still continues the file when it ends a
		// packet of MaxPayload bytes (the right side reads the old midPacket).
		midPacket, inFileAt255 = n == mysqlwire.MaxPayload, seq == 255 && (n > 0 || midPacket)
		if command && n == 0 {
			answered = true // the server answers an empty command with an ERR
		}
		if command && n > 0 {
			b, err := f.br.Peek(1)
			answered = err == nil && b[0] != mysqlwire.ComChangeUser && !unanswered(b[0])
			if err == nil && b[0] == mysqlwire.ComChangeUser && is.fileOrRow.Load() && is.pending.Load() == nil {
				s.fileOrChange(is, f, server)
				return
			}
			if err == nil && b[0] == mysqlwire.ComChangeUser {
				if n > MaxLoginPacket {
					s.refuseLargeChangeUser(f.br, client, 1, n, "")
					return
				}
				payload, ok := f.payload(s, n)
				// What came before goes on with the change (changeUser):
				// a pipelined change is told by that command's answer.
				if !ok || !s.changeUser(is, f, client, server, payload) {
					return
				}
				continue
			}
		}
		if answered && !midPacket {
			answered, counted = false, int(seq)
			is.commandSent(seq + 1) // the answer goes on from the last frame's id
		}
		if !f.forward(s, hdr, n) {
			return
		}
	}
}

// refuseLargeChangeUser refuses a COM_CHANGE_USER (or the app's answer
// to the switch for it) whose frame of n bytes is over MaxLoginPacket,
// with an ERR at seq, as readApp refuses a login that size: a real one is
// a few hundred bytes, and one never passes on unchecked (the server
// would take the app's own credentials). The rest of the packet is read
// away first (readAway), so that the app gets to read the ERR.
func (s *session) refuseLargeChangeUser(br *bufio.Reader, client io.Writer, seq byte, n int, user string) *Refusal {
	msg := fmt.Sprintf("sidecar: the app's COM_CHANGE_USER is over %d bytes", MaxLoginPacket)
	r := &Refusal{Reason: ReasonClientProtocol, Message: msg, User: user, Err: fmt.Errorf("%w: a frame of %d bytes", mysqlwire.ErrTooLarge, n)}
	s.refuse(client, seq, codeHandshake, "08S01", r, func() { readAway(s.client, br, n) })
	return r
}

// refuse calls first (if any), sends the app r's ERR at seq, and ends
// the session with r. r is the session's end from before the write:
// an app that reads nothing fails it (or the other pump's write, which
// holds the lock), and was refused all the same. The connection's slot
// goes just before the ERR (Conn.ReleaseSlot), after first: as at the
// login, not while a packet's rest is read away, for up to readAwayMax.
func (s *session) refuse(client io.Writer, seq byte, code uint16, state string, r *Refusal, first func()) {
	s.refusal.Store(r)
	if first != nil {
		first()
	}
	s.releaseSlot()
	r.Told = sendErrTo(client, seq, code, state, r.Message) == nil
	s.end(relay.ReasonDone, r)
}

// changeUser re-authenticates a COM_CHANGE_USER under the login's rules
// and sends the server one with no credentials of the app's, asking for
// another plugin so that the server switches to mysql_clear_password (a
// token does not fit COM_CHANGE_USER's 255-byte field). pumpReplies
// answers the switch. It reports whether the session goes on.
func (s *session) changeUser(is *iamSession, f *frames, client, server io.Writer, payload []byte) bool {
	br := f.br
	cu, err := mysqlwire.ParseChangeUser(payload, is.appCaps)
	if err != nil {
		// Refused as a login packet it cannot read is, so that the
		// operator sees it, not a client_error at debug. The message
		// carries err's text: as Err, the log would show it twice.
		s.refuse(client, 1, codeHandshake, "08S01", &Refusal{Reason: ReasonClientProtocol,
			Message: "sidecar: cannot read the app's COM_CHANGE_USER: " + err.Error()}, nil)
		return false
	}
	// Before anything is said to the app about the change (the switch for
	// LOCAL_PASSWORD's proof, an IAM refusal), which it would read as the
	// previous command's answer.
	if is.markPipelined() {
		s.pipelined(cu.User)
		_ = f.flush(s) // the previous command: its answer is what the refusal replaces
		// A packet must come for the refusal to take its place: should
		// the count be wrong, nothing is outstanding (a LOAD DATA file
		// at id 0 taken for a command), and the app would wait for the
		// server's wait_timeout. The COM_PING's OK comes after any answer.
		// Not while a change is pending: its answer comes anyway, and the
		// server, awaiting the token, would read the COM_PING in its place.
		if is.pending.Load() != nil {
			return false
		}
		if _, err := mysqlwire.WritePacket(server, 0, []byte{comPing}); err != nil {
			s.end(relay.ReasonUpstreamError, err)
		}
		return false
	}
	if f.flush(s) != nil {
		return false
	}
	t := is.target
	if t.asksProof(cu.Plugin, is.appCaps) && is.sent.Load() > 0 && !s.barrier(is, server, cu.User) {
		return false
	}
	// The answer to a switch is bounded as a login's is, and ends as one
	// the app left: with IDLE_TIMEOUT off, an app that never answers held
	// the session for good.
	_ = s.client.SetReadDeadline(time.Now().Add(LoginTimeout))
	read := func(seq byte) (mysqlwire.Packet, error) {
		p, err := mysqlwire.ReadPacket(br, MaxLoginPacket)
		var tooLarge *mysqlwire.TooLargeError
		switch {
		case errors.As(err, &tooLarge):
			return p, s.refuseLargeChangeUser(br, client, seq, tooLarge.Frame, cu.User)
		case err != nil:
			return p, appLeft(err)
		}
		return p, nil
	}
	proof, appSeq, err := t.iamProof(client, read, cu.Plugin, cu.AuthData, is.appCaps, is.scramble, 1)
	_ = s.client.SetReadDeadline(time.Time{})
	if err != nil {
		s.end(relay.ReasonClientError, err) // after a refusal, a no-op
		return false
	}
	// Bounded by the session too: a drain deadline, an idle timeout or the
	// stale check must not wait out a credentials endpoint that is silent.
	ctx, cancel := context.WithTimeout(s.ctx, LoginTimeout)
	pw, err := t.IAM.Password(ctx, cu.User, proof, is.scramble)
	cancel()
	if err != nil {
		// The server still holds the old user's session: end it rather
		// than leave the app on credentials it failed to change.
		code, state := deniedCode(err)
		s.refuse(client, appSeq, code, state, &Refusal{Reason: ReasonIAM, Message: err.Error(), User: cu.User}, nil)
		return false
	}
	decoy := make([]byte, 20) // matches no password, so only the switch can log in
	_, _ = rand.Read(decoy)
	// An app's packet without a character set (it ended after the
	// database) gets 0 before the plugin: "none", which leaves the
	// server's default, as a changed session's variables are reset to the
	// global ones; the login's would not be what the server gives.
	out := mysqlwire.ChangeUser{User: cu.User, AuthData: decoy, Database: cu.Database, Charset: cu.Charset,
		Plugin: mysqlwire.NativePassword, Attrs: cu.Attrs}
	is.sent.Add(1)
	is.pending.Store(&changeUser{password: pw, user: cu.User, appSeq: appSeq})
	if _, err := mysqlwire.WritePacket(server, 0, out.Append(nil, is.caps)); err != nil {
		s.end(relay.ReasonUpstreamError, err)
		return false
	}
	return true
}

// comPing is COM_PING, which the server answers with an OK.
const comPing = 0x0e

// barrier sends the server a COM_PING and waits for its OK, before the
// switch for the app's proof: an answer that had begun toward the app may
// not have ended, and the switch would land inside it. pumpReplies
// refuses the change as pipelined if more of that answer comes first.
// It reports whether the session goes on.
func (s *session) barrier(is *iamSession, server io.Writer, user string) bool {
	ping := &changeUser{user: user, ping: make(chan struct{})}
	is.sent.Add(1)
	is.pending.Store(ping)
	if _, err := mysqlwire.WritePacket(server, 0, []byte{comPing}); err != nil {
		s.end(relay.ReasonUpstreamError, err)
		return false
	}
	// Bounded as the proof is: meanwhile nothing reads the app, whose
	// leaving would go unseen.
	wait := time.NewTimer(LoginTimeout)
	defer wait.Stop()
	select {
	case <-ping.ping:
		return true
	case <-s.ctx.Done(): // pumpReplies refused, or the session ended
		return false
	case <-wait.C:
		s.end(relay.ReasonUpstreamError, fmt.Errorf("the database did not answer the sidecar's COM_PING, sent before asking the app for its LOCAL_PASSWORD proof, within %s", LoginTimeout))
		return false
	}
}

// pingReply takes the server's packet while barrier waits: the OK to its
// COM_PING, or more of the previous answer, in whose place the app is
// refused.
func (s *session) pingReply(is *iamSession, cu *changeUser, client io.Writer, p mysqlwire.Packet) bool {
	if p.Seq == 1 && len(p.Payload) > 0 && p.Payload[0] == mysqlwire.ErrPacketHdr {
		// The server's, not the app's, doing (a killed connection, a
		// shutdown): the app reads it as the change's answer.
		s.releaseSlot()
		if _, err := mysqlwire.WritePacket(client, 1, p.Payload); err != nil {
			s.end(relay.ReasonClientError, err)
			return false
		}
		_, msg, _ := mysqlwire.ErrMessage(p.Payload)
		s.end(relay.ReasonUpstreamError, fmt.Errorf("the database refused the sidecar's COM_PING, sent before asking the app for its LOCAL_PASSWORD proof: %s", msg))
		return false
	}
	if p.Seq != 1 || len(p.Payload) == 0 || p.Payload[0] != mysqlwire.OK {
		s.refuse(client, p.Seq, codeHandshake, "08S01", &Refusal{Reason: ReasonClientProtocol, Message: msgPipelined, User: cu.user}, nil)
		return false
	}
	is.pending.Store(nil)
	is.began(1, false)
	close(cu.ping)
	return true
}

// msgFileOrChange refuses a packet at sequence id 0 that begins as
// COM_CHANGE_USER does, after the server's 0xFB packet at 255.
const msgFileOrChange = "sidecar: the app's packet after a LOAD DATA LOCAL request (or a row) at sequence id 255 begins with 0x11, " +
	"as COM_CHANGE_USER does, and cannot be told from one; with TARGET_AUTH=iam run LOAD DATA LOCAL as a statement of its own"

// fileOrChange ends the session for a packet that is a LOAD DATA file's
// first (its request came at 255) or a COM_CHANGE_USER sent before the
// rest of a result (after a row at 255 whose first column is NULL). The
// server gets neither: passed on, a change would go unchecked, and
// re-authenticated, it would replace the file's data. An empty packet
// in its place ends a file with no rows, or is a command the server
// refuses after the result; either way a packet comes, in whose place
// pumpReplies sends the refusal.
func (s *session) fileOrChange(is *iamSession, f *frames, server io.Writer) {
	s.refusal.Store(&Refusal{Reason: ReasonClientProtocol, Message: msgFileOrChange})
	_ = s.client.SetWriteDeadline(time.Now().Add(errWriteTimeout))
	is.answers.Store(pipelined) // whatever is due: the refusal takes the next packet's place
	if f.flush(s) != nil {
		return
	}
	if _, err := mysqlwire.WritePacket(server, 0, nil); err != nil {
		s.end(relay.ReasonUpstreamError, err)
	}
}

// pipelined ends the session for a COM_CHANGE_USER the app sent before
// any of the answer to its previous command reached it: the sidecar, which
// does not parse results, would take that answer for the change's. The
// server is not sent the change; pumpReplies sends the refusal in place of
// the answer. An app that reads nothing cannot hold the session meanwhile:
// its write fails in errWriteTimeout, as the refusal's would.
func (s *session) pipelined(user string) {
	s.refusal.Store(&Refusal{Reason: ReasonClientProtocol, Message: msgPipelined, User: user})
	_ = s.client.SetWriteDeadline(time.Now().Add(errWriteTimeout))
}

// pumpReplies copies the server's packets to the client, and answers the
// server's side of a pending COM_CHANGE_USER.
func (s *session) pumpReplies(wg *sync.WaitGroup, is *iamSession, client, server io.Writer, live *atomic.Int64) {
	defer wg.Done()
	f := newFrames(s, s.server, client, relay.ReasonUpstreamError, relay.ReasonClientError, s.client.CloseWrite, &s.toClient, live)
	defer f.release()
	var hdr [frameHeader]byte
	midPacket := false
	var last, before shape // the last two packets, for goesOn
	for {
		n, ok := f.next(s, &hdr)
		if !ok {
			if cu := is.pending.Load(); cu != nil && cu.ping != nil { // else barrier waits out LoginTimeout
				s.end(relay.ReasonUpstreamError, errors.New("the database closed the connection before answering the sidecar's COM_PING, sent before asking the app for its LOCAL_PASSWORD proof"))
			}
			return
		}
		more := false // more of an answer whose ids wrapped
		if midPacket {
			last.seq = hdr[3]
		} else {
			more = goesOn(hdr[3], last, before)
			b, _ := f.br.Peek(min(n, kindPeek)) // a short read fails the payload's, below
			before, last = last, shape{seq: hdr[3], kind: kindOf(b, n), mid: hdr[3] == 0 || more}
		}
		// Before the app can see the packet: a one-frame 0xFB at 255.
		is.fileOrRow.Store(!midPacket && hdr[3] == 255 && last.kind == kindFile)
		if cu := is.pending.Load(); cu != nil && !cu.switched && !midPacket && (more || n >= mysqlwire.MaxPayload) {
			// No answer to the sidecar's COM_PING or COM_CHANGE_USER is
			// that long, or goes on from the previous answer: more of
			// it, a large row, or one whose ids wrapped to 1.
			if f.flush(s) == nil {
				s.refuse(client, hdr[3], codeHandshake, "08S01", &Refusal{Reason: ReasonClientProtocol, Message: msgPipelined, User: cu.user}, nil)
			}
			return
		}
		if cu := is.pending.Load(); cu != nil && !midPacket {
			payload, ok := f.payload(s, n)
			if !ok || f.flush(s) != nil || !s.changeUserReply(is, cu, client, server, mysqlwire.Packet{Seq: hdr[3], Payload: payload}) {
				return
			}
			continue
		}
		if !midPacket && !is.began(hdr[3], more) {
			s.refusePipelined(f, client, hdr[3])
			return
		}
		midPacket = n == mysqlwire.MaxPayload
		if !f.forward(s, hdr, n) {
			return
		}
	}
}

// refusePipelined sends the app the refusal of its pipelined
// COM_CHANGE_USER at seq, in place of the packet it expected there.
func (s *session) refusePipelined(f *frames, client io.Writer, seq byte) {
	if f.flush(s) == nil {
		s.refuse(client, seq, codeHandshake, "08S01", s.refusal.Load(), nil)
	}
}

func (s *session) changeUserReply(is *iamSession, cu *changeUser, client, server io.Writer, p mysqlwire.Packet) bool {
	if cu.ping != nil {
		return s.pingReply(is, cu, client, p)
	}
	if !cu.switched && !changeAnswer(p) {
		// The rest of the previous command's answer, which the app had
		// not read: the server has the change, the app that answer.
		s.refuse(client, p.Seq, codeHandshake, "08S01", &Refusal{Reason: ReasonClientProtocol, Message: msgPipelined, User: cu.user}, nil)
		return false
	}
	v, err := is.target.iamVerdict(server, p, cu.password, cu.user)
	switch {
	case err != nil:
		s.refuse(client, cu.appSeq, codeDenied, "28000", &Refusal{Reason: ReasonIAM, Message: err.Error(), User: cu.user}, nil)
		return false
	case v == verdictMore:
		cu.switched = true
		return true
	}
	is.pending.Store(nil)
	if !is.began(1, false) { // another COM_CHANGE_USER came before this answer
		s.refuse(client, cu.appSeq, codeHandshake, "08S01", s.refusal.Load(), nil)
		return false
	}
	if v != verdictOK {
		s.releaseSlot() // the ERR ends the session
	}
	if _, err := mysqlwire.WritePacket(client, cu.appSeq, p.Payload); err != nil {
		s.end(relay.ReasonClientError, err)
		return false
	}
	// Whatever the server holds after an ERR, the app asked to be another
	// user and was refused: end it, as a refusal by the sidecar does.
	switch _, msg, _ := mysqlwire.ErrMessage(p.Payload); v {
	case verdictRefused:
		s.end(relay.ReasonDone, &Refusal{Reason: ReasonIAM, Message: "the database refused the token: " + msg, User: cu.user})
		return false
	case verdictServerError: // not the token's fault, but the session is cut: say so at WARN
		s.end(relay.ReasonUpstreamError, fmt.Errorf("the database refused COM_CHANGE_USER to %q (%s); the session was ended rather than left as the old user", cu.user, msg))
		return false
	}
	return true
}

// changeAnswer reports whether p can be the server's first answer to the
// sidecar's COM_CHANGE_USER: a switch (its decoy password matches none)
// or an ERR, at sequence id 1. An OK or a result there, or any packet at
// another id, belongs to the previous command's answer; so does a 0xFE
// that names no plugin: the OK or EOF that ends a result whose ids
// wrapped from 255 to 1 (its next byte, affected rows or warnings, is
// 0 or a count, not a plugin's name). An EOF is always eofLen bytes,
// and its warnings may read as a name ("A" for 65): a switch is longer.
func changeAnswer(p mysqlwire.Packet) bool {
	if p.Seq != 1 || len(p.Payload) == 0 {
		return false
	}
	switch p.Payload[0] {
	case mysqlwire.ErrPacketHdr:
		return true
	case mysqlwire.AuthSwitch:
		plugin, _, _ := mysqlwire.ParseAuthSwitch(p.Payload)
		return len(p.Payload) != eofLen && pluginName(plugin)
	}
	return false
}

// eofLen is an EOF packet's length: 0xFE, warnings and status flags.
const eofLen = 5

// pluginName reports whether s can name an authentication plugin: an
// identifier, as every server's are.
func pluginName(s string) bool {
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return s != ""
}

// sendErrTo sends an ERR, bounded by errWriteTimeout when w has a write
// deadline: a net.Conn, or a session's lockedWriter.
func sendErrTo(w io.Writer, seq byte, code uint16, state, msg string) error {
	if c, ok := w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		_ = c.SetWriteDeadline(time.Now().Add(errWriteTimeout))
	}
	_, err := mysqlwire.WritePacket(w, seq, mysqlwire.ErrPacket(code, state, msg))
	return err
}
