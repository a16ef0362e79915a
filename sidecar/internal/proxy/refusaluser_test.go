package proxy_test

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
	"github.com/example/sidecar/sidecar/internal/proxy"
)

// The refusal line names the app's user only where the sidecar reads it,
// with TARGET_AUTH=iam (empty there when the refusal came before the
// login): in passthrough the line has no user, not user="".
func TestRefusalLineNamesAUserOnlyWithIAM(t *testing.T) {
	const line = "TLS login refused; the app was sent a MySQL error"
	t.Run("passthrough", func(t *testing.T) {
		up := startUpstream(t, "127.0.0.1", func(c *net.TCPConn) {
			_, _ = mysqlwire.WritePacket(c, 0, mysqlwire.ErrPacket(1040, "08004", "Too many connections"))
			hold(c)
		})
		fw := forwardTo(up)
		fw.TLS = &mysqltls.Target{Mode: mysqltls.VerifyCA, Roots: x509.NewCertPool(), RootsFrom: "test"}
		r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{fw}})
		c := dial(t, r.addrs[0])
		if _, code, _, ok := readFirst(t, c); !ok || code != 1040 {
			t.Fatalf("the app read code %d; want the server's 1040 ERR", code)
		}
		waitFor(t, "the refusal logged", func() bool { return len(r.logs.lines(line)) == 1 })
		if l := r.logs.lines(line)[0]; l["reason"] != mysqltls.ReasonServerError {
			t.Fatalf("refusal line %v; want reason %s", l, mysqltls.ReasonServerError)
		} else if u, ok := l["user"]; ok {
			t.Errorf("refusal line %v has user %q; want none without IAM", l, u)
		}
	})
	t.Run("iam", func(t *testing.T) {
		up := startUpstream(t, "127.0.0.1", hold)
		fw, _ := iamForward(up, func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{}, errors.New("no task role")
		})
		r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{fw}})
		c := dial(t, r.addrs[0])
		if _, code, _, ok := readFirst(t, c); !ok || code != 1043 {
			t.Fatalf("the app read code %d; want a 1043 ERR", code)
		}
		waitFor(t, "the refusal logged", func() bool { return len(r.logs.lines(line)) == 1 })
		if l := r.logs.lines(line)[0]; l["user"] != "" {
			t.Errorf("refusal line %v; want user, empty before the app's login was read", l)
		}
	})
}
