package mysqltls_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
	"github.com/example/sidecar/sidecar/internal/proxy"
)

// A COM_CHANGE_USER the sidecar refuses ends the session even when the
// app reads nothing: the ERR's write is bounded, as a refused login's is.
// Here the app first asked for a result larger than the sockets' buffers
// and left it unread, so the relay's write of it blocks, and with it the
// refusal. With IDLE_TIMEOUT off (the default) the session held its
// connection slot until the app closed or the sidecar stopped.
func TestIAMChangeUserRefusalToAnAppThatDoesNotRead(t *testing.T) {
	const local = "local-pw"
	for _, tc := range []struct {
		name       string
		localPW    bool
		changeUser func(proof []byte) []byte // the refused packet
	}{
		{"user not in IAM_USERS", false, func([]byte) []byte {
			cu := mysqlwire.ChangeUser{User: "intruder", Database: "orders", Charset: 45, Plugin: mysqlwire.NativePassword}
			return cu.Append(nil, appCaps&^mysqlwire.ClientCompress)
		}},
		{"wrong LOCAL_PASSWORD", true, func([]byte) []byte {
			cu := mysqlwire.ChangeUser{User: "app", AuthData: bytes.Repeat([]byte{9}, 20), Database: "orders", Charset: 45, Plugin: mysqlwire.NativePassword}
			return cu.Append(nil, appCaps&^mysqlwire.ClientCompress)
		}},
		{"over MaxLoginPacket", false, func([]byte) []byte {
			cu := mysqlwire.ChangeUser{User: "app", Database: "orders", Charset: 45, Plugin: mysqlwire.NativePassword,
				Attrs: make([]byte, mysqltls.MaxLoginPacket)}
			return cu.Append(nil, appCaps&^mysqlwire.ClientCompress)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ca := testkit.NewCA(t, "test CA")
			srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName)})
			target := iamTarget(t, ca)
			target.IAM.Users = map[string]bool{"app": true}
			if tc.localPW {
				target.IAM.LocalPassword = []byte(local)
			}
			addr, s, _ := sidecar(t, srv, target) // IDLE_TIMEOUT off
			a := dialApp(t, addr)
			scramble, err := mysqlwire.GreetingScramble(a.read().Payload)
			if err != nil {
				t.Fatal(err)
			}
			login := mysqlwire.HandshakeResponse{Caps: appCaps &^ mysqlwire.ClientCompress, MaxPacket: 1 << 24, Charset: 45, User: "app",
				AuthData: mysqlwire.NativeProof([]byte(local), scramble), Database: "orders", Plugin: mysqlwire.NativePassword}
			a.write(1, login.Append(nil))
			if ok := a.read(); ok.Payload[0] != mysqlwire.OK {
				t.Fatalf("login: %q", ok.Payload)
			}
			// Queries the fake echoes, their results never read: more than
			// the app's receive buffer and the sidecar's send buffer hold.
			// Once they are all with the server and the results stall,
			// the relay's write to the app blocks.
			const queries, size = 128, 64 << 10
			for range queries {
				a.write(0, append([]byte{0x03}, make([]byte, size-1)...))
			}
			waitStalled(t, s, queries*size)
			refused := tc.changeUser(mysqlwire.NativeProof([]byte(local), scramble))
			go func() { _, _ = mysqlwire.WritePacket(a.c, 0, refused) }() // the sidecar may stop reading
			for deadline := time.Now().Add(mysqltls.LoginTimeout); s.Snapshot().Forwards[0].Active != 0; time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the refused COM_CHANGE_USER's session still holds its connection after %s: closed %v",
						mysqltls.LoginTimeout, s.Snapshot().Forwards[0].ConnectionsClosed)
				}
			}
		})
	}
}

// waitStalled waits until the first forward has sent the upstream at
// least sent bytes and its bytes to the client stop growing: the app's
// receive buffer and the sidecar's send buffer are full.
func waitStalled(t *testing.T, s *proxy.Server, sent uint64) {
	t.Helper()
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
