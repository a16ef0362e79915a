package mysqltls_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
	"github.com/example/sidecar/sidecar/internal/proxy"
)

// A COM_CHANGE_USER refused in an IAM session gives the connection's
// slot back before the app can read the ERR, as a refused login does: at
// MAX_CONNECTIONS=1 an app that reconnected at once was turned away with
// "too many connections" by its own session, still logging its end. The
// second app is served while that end line is held.
func TestIAMRefusedChangeUserAppReconnectsAtTheLimit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		code   uint16 // the ERR the app reads
		user   string
		server uint16 // fakeOpts.refuseChange
	}{
		{"refused by the sidecar", 1045, "intruder", 0},
		{"refused by the database", 1045, "app", 1045},
		{"database error", 1049, "app", 1049},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := testkit.NewCA(t, "test CA")
			srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName), refuseChange: tc.server})
			target := iamTarget(t, ca)
			target.IAM.Users = map[string]bool{"app": true}
			logs := &testkit.LockedBuffer{}
			h, open := testkit.HoldLines(slog.NewJSONHandler(logs, nil),
				map[bool]string{true: "connection closed", false: "TLS login refused"}[tc.code == 1049])
			addr, _, _ := sidecar(t, srv, target, func(c *proxy.Config) { c.MaxConnections = 1; c.Logger = slog.New(h) })
			t.Cleanup(open) // before the proxy's drain (cleanups run last first)
			a, ok := iamLogin(t, addr)
			if ok.Payload[0] != mysqlwire.OK {
				t.Fatalf("login: %q", ok.Payload)
			}
			cu := mysqlwire.ChangeUser{User: tc.user, Database: "orders", Charset: 45, Plugin: mysqlwire.NativePassword}
			a.write(0, cu.Append(nil, appCaps&^mysqlwire.ClientCompress))
			if p := a.read(); p.Seq != 1 || !hasCode(p.Payload, tc.code) {
				t.Fatalf("app read seq %d %q; want ERR %d at 1", p.Seq, p.Payload, tc.code)
			}
			next := dialApp(t, addr)
			if g := next.read(); g.Payload[0] != 10 {
				t.Fatalf("the reconnecting app read %q; want the greeting: its previous session still held the slot:\n%s", g.Payload, logs)
			}
			open()
		})
	}
}

func hasCode(p []byte, want uint16) bool {
	code, _, isErr := mysqlwire.ErrMessage(p)
	return isErr && code == want
}

// An oversized COM_CHANGE_USER is read away before its ERR, as an
// oversized login is: the slot, given back with the ERR, is held while
// the app still sends its packet, and the next app is turned away at
// MAX_CONNECTIONS=1 meanwhile.
func TestIAMOversizedChangeUserHoldsItsSlotWhileReadAway(t *testing.T) {
	ca := testkit.NewCA(t, "test CA")
	srv := startFake(t, fakeOpts{cert: ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), clusterName)})
	addr, _, _ := sidecar(t, srv, iamTarget(t, ca), func(c *proxy.Config) { c.MaxConnections = 1 })
	a, ok := iamLogin(t, addr)
	if ok.Payload[0] != mysqlwire.OK {
		t.Fatalf("login: %q", ok.Payload)
	}
	n := mysqltls.MaxLoginPacket + 1
	if _, err := a.c.Write(append([]byte{byte(n), byte(n >> 8), byte(n >> 16), 0, mysqlwire.ComChangeUser}, make([]byte, 100)...)); err != nil {
		t.Fatal(err)
	}
	trickleWhileTurnedAway(t, a, addr, "its oversized COM_CHANGE_USER")
	a.expectRefusal(1, "COM_CHANGE_USER is over")
}
