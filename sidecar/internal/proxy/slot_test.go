package proxy_test

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
	"github.com/example/sidecar/sidecar/internal/proxy"
)

// A connection that ends with an ERR to the app gives its slot back
// before the app can read the ERR: at MAX_CONNECTIONS=1 an app that
// reconnects at once was turned away with "too many connections" by its
// own connection, still logging its end. Each case's second app is
// served while the first connection's end line is held.
func TestRefusedAppReconnectsAtTheLimit(t *testing.T) {
	freePort := func(t *testing.T) *upstream {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_ = ln.Close() // nothing listens there: the dial is refused
		return &upstream{addr: ln.Addr().(*net.TCPAddr).AddrPort()}
	}
	tlsTo := func(up *upstream) proxy.Forward {
		fw := forwardTo(up)
		fw.TLS = &mysqltls.Target{Mode: mysqltls.VerifyCA, Roots: x509.NewCertPool(), RootsFrom: "test"}
		return fw
	}
	for _, tc := range []struct {
		name, line string
		code       uint16
		forward    func(t *testing.T) proxy.Forward
	}{
		{"database ERR at login", "TLS login refused", 1129, func(t *testing.T) proxy.Forward {
			return tlsTo(startUpstream(t, "127.0.0.1", func(c *net.TCPConn) {
				_, _ = mysqlwire.WritePacket(c, 0, mysqlwire.ErrPacket(1129, "HY000", "Host is blocked"))
				hold(c)
			}))
		}},
		{"TLS dial failed", "dial target failed", 1043, func(t *testing.T) proxy.Forward { return tlsTo(freePort(t)) }},
		{"IAM without credentials", "TLS login refused", 1043, func(t *testing.T) proxy.Forward {
			fw, _ := iamForward(startUpstream(t, "127.0.0.1", hold), func(context.Context) (aws.Credentials, error) {
				return aws.Credentials{}, errors.New("no task role")
			})
			return fw
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &logBuffer{}
			h, open := testkit.HoldLines(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}), tc.line)
			r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{tc.forward(t)}, MaxConnections: 1, Logger: slog.New(h)})
			t.Cleanup(open) // before the proxy's drain (cleanups run last first)
			for i := range 2 {
				c := dial(t, r.addrs[0])
				if _, code, msg, ok := readFirst(t, c); !ok || code != tc.code {
					t.Fatalf("app %d read code %d %q; want %d: its previous connection still held the slot", i+1, code, msg, tc.code)
				}
			}
			open()
			if n := forwardSnap(r, 0).Rejected; n != 0 {
				t.Errorf("rejected = %d; want 0", n)
			}
		})
	}
}

// A slot given back as the ERR is written is not given back again when
// the connection ends: each refusal would let one more connection past
// MAX_CONNECTIONS, for good. Three refused dials (given back before the
// ERR, then at the end), then the limit of one still turns a second
// connection away.
func TestSlotGivenBackOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_ = ln.Close() // nothing listens there: the dial is refused
	refused := forwardTo(&upstream{addr: ln.Addr().(*net.TCPAddr).AddrPort()})
	refused.TLS = &mysqltls.Target{Mode: mysqltls.VerifyCA, Roots: x509.NewCertPool(), RootsFrom: "test"}
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{refused, forwardTo(startUpstream(t, "127.0.0.1", hold))}, MaxConnections: 1})
	for i := range 3 {
		c := dial(t, r.addrs[0])
		if _, code, msg, ok := readFirst(t, c); !ok || code != 1043 {
			t.Fatalf("app %d read code %d %q; want the failed dial's 1043", i+1, code, msg)
		}
		waitFor(t, "the refused connection's end", func() bool { return forwardSnap(r, 0).Active == 0 })
	}
	dial(t, r.addrs[1])
	waitFor(t, "the first connection to the live forward", func() bool { return forwardSnap(r, 1).Active == 1 })
	dial(t, r.addrs[1])
	waitFor(t, "the second turned away at MAX_CONNECTIONS=1", func() bool { return forwardSnap(r, 1).Rejected == 1 })
}
