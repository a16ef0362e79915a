package mysqltls_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
	"github.com/example/sidecar/sidecar/internal/proxy"
	"github.com/example/sidecar/sidecar/internal/relay"
)

// A COM_CHANGE_USER the sidecar refuses ends the session even when the
// app reads nothing: the ERR's write is bounded, as a refused login's is.
// Here the app first asked for a result larger than the sockets' buffers
// and left it unread, so the relay's write of it blocks, and with it the
// refusal. With IDLE_TIMEOUT off (the default) the session held its
// connection slot until the app closed or the drain deadline cut it; and
// the refusal is logged and counted as such, not as the write it cut.
func TestIAMChangeUserRefusalToAnAppThatDoesNotRead(t *testing.T) {
	const local = "local-pw"
	for _, tc := range []struct {
		name    string
		reason  string // the refusal's
		localPW bool
		cu      mysqlwire.ChangeUser // refused
	}{
		{"user not in IAM_USERS", mysqltls.ReasonIAM, false,
			mysqlwire.ChangeUser{User: "intruder", Database: "orders", Charset: 45, Plugin: mysqlwire.NativePassword}},
		{"wrong LOCAL_PASSWORD", mysqltls.ReasonIAM, true,
			mysqlwire.ChangeUser{User: "app", AuthData: bytes.Repeat([]byte{9}, 20), Database: "orders", Charset: 45, Plugin: mysqlwire.NativePassword}},
		{"over MaxLoginPacket", mysqltls.ReasonClientProtocol, false,
			mysqlwire.ChangeUser{User: "app", Database: "orders", Charset: 45, Plugin: mysqlwire.NativePassword, Attrs: make([]byte, mysqltls.MaxLoginPacket)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, _, s, logs := loggedIn(t, local, fakeOpts{}, func(target *mysqltls.Target) {
				target.IAM.Users = map[string]bool{"app": true}
				if !tc.localPW {
					target.IAM.LocalPassword = nil
				}
			})
			leaveResultsUnread(t, a, s)
			refused := tc.cu.Append(nil, appCaps&^mysqlwire.ClientCompress)
			go func() { _, _ = mysqlwire.WritePacket(a.c, 0, refused) }() // the sidecar may stop reading
			for deadline := time.Now().Add(mysqltls.LoginTimeout); s.Snapshot().Forwards[0].Active != 0; time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the refused COM_CHANGE_USER's session still holds its connection after %s: closed %v",
						mysqltls.LoginTimeout, s.Snapshot().Forwards[0].ConnectionsClosed)
				}
			}
			// The refusal is why the session ended, not the write it cut.
			if n := refusals(s, tc.reason); n != 1 || closedAs(s, "tls_refused") != 1 {
				t.Fatalf("refusals %v, closed %v; want one %s refusal, closed as tls_refused:\n%s",
					s.Snapshot().Forwards[0].TLSRefusals, s.Snapshot().Forwards[0].ConnectionsClosed, tc.reason, logs)
			}
			if lines := testkit.JSONLogLines(logs.String(), "TLS login refused"); len(lines) != 1 || lines[0]["command"] != "COM_CHANGE_USER" {
				t.Fatalf("want one \"TLS login refused\" line for the COM_CHANGE_USER:\n%s", logs)
			}
		})
	}
}

// leaveResultsUnread sends a query the fake echoes and reads only the
// header of its result: more than the app's receive buffer and the
// sidecar's send buffer hold. It returns once the query is with the server
// and its result stalls: the relay's write to the app is blocked. One
// result, begun toward the app, so that a COM_CHANGE_USER sent now is
// refused for its own sake, not as one sent before any of that answer
// (pipelined).
func leaveResultsUnread(t *testing.T, a *app, s *proxy.Server) {
	t.Helper()
	const size = 8 << 20
	a.write(0, append([]byte{0x03}, make([]byte, size-1)...))
	// The header shows the answer begun. A still byte count does not: on
	// a loaded machine the fake can take longer than the stall's samples
	// to read the query before it answers.
	var hdr [4]byte
	_ = a.c.SetReadDeadline(time.Now().Add(mysqltls.LoginTimeout))
	if _, err := io.ReadFull(a.c, hdr[:]); err != nil || mysqlwire.FrameLen(hdr) != size || hdr[3] != 1 {
		t.Fatalf("the result's header: %v %v; want %d bytes at seq 1", hdr, err, size)
	}
	_ = a.c.SetReadDeadline(time.Time{})
	sent := uint64(size)
	last, still := uint64(0), 0
	for deadline := time.Now().Add(mysqltls.LoginTimeout); still < 5; time.Sleep(100 * time.Millisecond) {
		f := s.Snapshot().Forwards[0]
		if f.BytesToUpstream >= sent && f.BytesToClient == last {
			still++
		} else {
			still = 0
		}
		last = f.BytesToClient
		if time.Now().After(deadline) {
			t.Fatalf("the results to the app never stalled: %d bytes to the server (want %d), %d to the app", f.BytesToUpstream, sent, f.BytesToClient)
		}
	}
}

// An app that resets its connection while the sidecar writes it a result
// ends the session as the client's error, whatever the session: with
// TARGET_AUTH=iam the relay blamed the database for the failed write
// (upstream_error, at WARN), as if it had broken the connection.
func TestAppResetMidResultIsTheClients(t *testing.T) {
	for _, iam := range []bool{false, true} {
		t.Run(fmt.Sprintf("iam=%v", iam), func(t *testing.T) {
			t.Parallel()
			a, s, logs := greetedApp(t, iam)
			if !iam {
				a.write(1, handshakeResponse(appCaps))
				if ok := a.read(); ok.Payload[0] != mysqlwire.OK {
					t.Fatalf("login: %q", ok.Payload)
				}
			}
			leaveResultsUnread(t, a, s)
			_ = a.c.(*net.TCPConn).SetLinger(0) // a reset, as from an app killed mid-result
			_ = a.c.Close()
			for deadline := time.Now().Add(mysqltls.LoginTimeout); closedAs(s, relay.ReasonClientError) != 1; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("closed %v; want client_error 1:\n%s", s.Snapshot().Forwards[0].ConnectionsClosed, logs)
				}
			}
		})
	}
}

// An app that resets while the database does not read ends the session
// as the client's error, with TARGET_AUTH=iam too: the relay's write to
// the database blocks, nothing reads the app's socket, and only
// relay.Stuck sees the reset. Without it the session held its connection
// slot until the database read again.
func TestAppResetWhileTheDatabaseDoesNotRead(t *testing.T) {
	for _, iam := range []bool{false, true} {
		t.Run(fmt.Sprintf("iam=%v", iam), func(t *testing.T) {
			t.Parallel()
			a, s, logs := greetedApp(t, iam, func(o *fakeOpts) { o.deaf = true })
			if !iam {
				a.write(1, handshakeResponse(appCaps))
				if ok := a.read(); ok.Payload[0] != mysqlwire.OK {
					t.Fatalf("login: %q", ok.Payload)
				}
			}
			// Commands until the sockets' buffers toward the database are
			// full: the relay's write to it blocks, and so do the app's.
			go func() {
				for {
					if _, err := mysqlwire.WritePacket(a.c, 0, append([]byte{0x03}, make([]byte, 64<<10-1)...)); err != nil {
						return
					}
				}
			}()
			last, still := uint64(0), 0
			for deadline := time.Now().Add(mysqltls.LoginTimeout); still < 5; time.Sleep(100 * time.Millisecond) {
				f := s.Snapshot().Forwards[0]
				if f.BytesToUpstream > 0 && f.BytesToUpstream == last {
					still++
				} else {
					still = 0
				}
				last = f.BytesToUpstream
				if time.Now().After(deadline) {
					t.Fatalf("the app's commands to the database never stalled: %d bytes to it", f.BytesToUpstream)
				}
			}
			_ = a.c.(*net.TCPConn).SetLinger(0) // a reset, as from an app killed mid-command
			_ = a.c.Close()
			for deadline := time.Now().Add(mysqltls.LoginTimeout); closedAs(s, relay.ReasonClientError) != 1; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%s after the app's reset, closed %v; want client_error 1:\n%s",
						mysqltls.LoginTimeout, s.Snapshot().Forwards[0].ConnectionsClosed, logs)
				}
			}
		})
	}
}

// A database that resets while the app does not read a result ends the
// session as the database's error, with TARGET_AUTH=iam too: the relay's
// write to the app blocks, nothing reads the database's socket, and only
// relay.Stuck sees the reset. Without it the session held its connection
// slot, and the app a dead session, until the app read again.
func TestDatabaseResetWhileTheAppDoesNotRead(t *testing.T) {
	for _, iam := range []bool{false, true} {
		t.Run(fmt.Sprintf("iam=%v", iam), func(t *testing.T) {
			t.Parallel()
			reset := make(chan struct{})
			a, s, logs := greetedApp(t, iam, func(o *fakeOpts) { o.resetMidResult = reset })
			if !iam {
				a.write(1, handshakeResponse(appCaps))
				if ok := a.read(); ok.Payload[0] != mysqlwire.OK {
					t.Fatalf("login: %q", ok.Payload)
				}
			}
			// The results the app does not read fill the sockets'
			// buffers toward it: the relay's write to it blocks.
			last, still := uint64(0), 0
			for deadline := time.Now().Add(mysqltls.LoginTimeout); still < 5; time.Sleep(100 * time.Millisecond) {
				f := s.Snapshot().Forwards[0]
				if f.BytesToClient > 0 && f.BytesToClient == last {
					still++
				} else {
					still = 0
				}
				last = f.BytesToClient
				if time.Now().After(deadline) {
					t.Fatalf("the results to the app never stalled: %d bytes to it", f.BytesToClient)
				}
			}
			close(reset)
			for deadline := time.Now().Add(mysqltls.LoginTimeout); s.Snapshot().Forwards[0].Active != 0; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%s after the database's reset, the session still holds its connection: closed %v:\n%s",
						mysqltls.LoginTimeout, s.Snapshot().Forwards[0].ConnectionsClosed, logs)
				}
			}
			if n := closedAs(s, relay.ReasonUpstreamError); n != 1 {
				t.Fatalf("closed %v; want upstream_error 1:\n%s", s.Snapshot().Forwards[0].ConnectionsClosed, logs)
			}
			// The app, reading at last, gets what was sent, then the end.
			_ = a.c.SetReadDeadline(time.Now().Add(mysqltls.LoginTimeout))
			if _, err := io.Copy(io.Discard, a.c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("app read after the session ended: %v; want its end", err)
			}
		})
	}
}

// What the sidecar writes an app for its COM_CHANGE_USER (the switch to
// mysql_native_password that proves LOCAL_PASSWORD, the database's ERR
// it passes on) is written before the app reads, and a refused change
// ends the session though the app never reads: the app read every answer
// before it sent the command, so they fit its empty receive buffer. Only
// results it left unread could fill it, and then the relay's write of
// those holds the session first, as it does without a COM_CHANGE_USER.
func TestIAMChangeUserAnswersToAnAppThatDoesNotRead(t *testing.T) {
	const local = "local-pw"
	for _, tc := range []struct {
		name   string
		code   uint16 // the fake's refusal of the change
		plugin string // the app's: another than mysql_native_password is switched with LOCAL_PASSWORD
		closed relay.Reason
	}{
		{"the database refuses the token", 1045, mysqlwire.NativePassword, "tls_refused"},
		{"the database refuses the database", 1049, mysqlwire.NativePassword, relay.ReasonUpstreamError},
		{"after the sidecar's switch", 1045, "caching_sha2_password", "tls_refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, proof, s, logs := loggedIn(t, local, fakeOpts{refuseChange: tc.code}, nil)
			cu := mysqlwire.ChangeUser{User: "app", AuthData: proof, Database: "orders", Charset: 45, Plugin: tc.plugin}
			a.write(0, cu.Append(nil, appCaps&^mysqlwire.ClientCompress))
			switched := tc.plugin != mysqlwire.NativePassword
			if switched {
				a.write(2, proof) // unread, the switch asks for the login's scramble
			}
			for deadline := time.Now().Add(mysqltls.LoginTimeout); s.Snapshot().Forwards[0].Active != 0; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the refused COM_CHANGE_USER's session still holds its connection after %s: closed %v",
						mysqltls.LoginTimeout, s.Snapshot().Forwards[0].ConnectionsClosed)
				}
			}
			if closedAs(s, tc.closed) != 1 {
				t.Fatalf("closed %v; want %s 1:\n%s", s.Snapshot().Forwards[0].ConnectionsClosed, tc.closed, logs)
			}
			// Nothing was lost: the answers wait in the app's buffer.
			seq := byte(1)
			if switched {
				if p := a.read(); p.Seq != 1 || p.Payload[0] != mysqlwire.AuthSwitch {
					t.Fatalf("app got seq %d %q; want the switch at 1", p.Seq, p.Payload)
				}
				seq = 3
			}
			if p := a.read(); p.Seq != seq || p.Payload[0] != mysqlwire.ErrPacketHdr {
				t.Fatalf("app got seq %d %q; want the database's ERR at %d", p.Seq, p.Payload, seq)
			}
		})
	}
}

// An app that never answers the sidecar's switch for its COM_CHANGE_USER
// (the proof of LOCAL_PASSWORD) loses its session after LoginTimeout, as
// a login that stalls does, and as a login the app left. With IDLE_TIMEOUT off (the default) it held
// its connection slot until it closed or the drain deadline cut it.
func TestIAMChangeUserSwitchUnansweredEnds(t *testing.T) {
	t.Parallel() // waits out the real LoginTimeout
	const local = "local-pw"
	a, _, s, logs := loggedIn(t, local, fakeOpts{}, nil)
	cu := mysqlwire.ChangeUser{User: "app", Database: "orders", Charset: 45, Plugin: "caching_sha2_password"}
	a.write(0, cu.Append(nil, appCaps&^mysqlwire.ClientCompress))
	if p := a.read(); p.Seq != 1 || p.Payload[0] != mysqlwire.AuthSwitch {
		t.Fatalf("app got seq %d %q; want the sidecar's switch at 1", p.Seq, p.Payload)
	}
	began := time.Now() // and the app never answers
	for deadline := began.Add(2 * mysqltls.LoginTimeout); s.Snapshot().Forwards[0].Active != 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the session still holds its connection %s after the unanswered switch: closed %v",
				time.Since(began).Round(time.Second), s.Snapshot().Forwards[0].ConnectionsClosed)
		}
	}
	if waited := time.Since(began); waited < mysqltls.LoginTimeout-time.Second {
		t.Fatalf("the session ended after %s, before LoginTimeout (%s):\n%s", waited, mysqltls.LoginTimeout, logs)
	}
	// As a login the app left partway: io_error, logged at debug.
	if refusals(s, mysqltls.ReasonIO) != 1 || closedAs(s, "tls_refused") != 1 {
		t.Fatalf("refusals %v, closed %v; want one io_error refusal:\n%s",
			s.Snapshot().Forwards[0].TLSRefusals, s.Snapshot().Forwards[0].ConnectionsClosed, logs)
	}
}

// loggedIn is an app logged in as app, proving the LOCAL_PASSWORD local
// with proof, through an IAM sidecar (IDLE_TIMEOUT off) to a fake with
// opts and the test CA's certificate. tune, if any, changes the target
// (with LocalPassword set) before the sidecar starts.
func loggedIn(t *testing.T, local string, opts fakeOpts, tune func(*mysqltls.Target)) (a *app, proof []byte, s *proxy.Server, logs *testkit.LockedBuffer) {
	t.Helper()
	ca := testkit.NewCA(t, "test CA")
	opts.cert = ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName)
	target := iamTarget(t, ca)
	target.IAM.LocalPassword = []byte(local)
	if tune != nil {
		tune(&target)
	}
	addr, s, logs := sidecar(t, startFake(t, opts), target)
	a = dialApp(t, addr)
	scramble, err := mysqlwire.GreetingScramble(a.read().Payload)
	if err != nil {
		t.Fatal(err)
	}
	proof = mysqlwire.NativeProof([]byte(local), scramble)
	login := mysqlwire.HandshakeResponse{Caps: appCaps &^ mysqlwire.ClientCompress, MaxPacket: 1 << 24, Charset: 45, User: "app",
		AuthData: proof, Database: "orders", Plugin: mysqlwire.NativePassword}
	a.write(1, login.Append(nil))
	if ok := a.read(); ok.Payload[0] != mysqlwire.OK {
		t.Fatalf("login: %q", ok.Payload)
	}
	return a, proof, s, logs
}
