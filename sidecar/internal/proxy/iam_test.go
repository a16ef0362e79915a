package proxy_test

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/example/sidecar/sidecar/internal/iamauth"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
	"github.com/example/sidecar/sidecar/internal/proxy"
)

// iamForward forwards to up with IAM logins whose credentials come from
// provider, cached as the sidecar caches them.
func iamForward(up *upstream, provider aws.CredentialsProviderFunc) (proxy.Forward, *iamauth.Tokens) {
	tokens := &iamauth.Tokens{Source: iamauth.Source{Provider: aws.NewCredentialsCache(provider), Name: "test source"}, Region: "us-east-1"}
	fw := forwardTo(up)
	fw.TLS = &mysqltls.Target{Mode: mysqltls.VerifyIdentity, Roots: x509.NewCertPool(), RootsFrom: "test",
		ServerName: "db.cluster-abc.us-east-1.rds.amazonaws.com",
		IAM:        &iamauth.Authority{Tokens: tokens, Endpoint: "db.cluster-abc.us-east-1.rds.amazonaws.com:3306"}}
	return fw, tokens
}

// readFirst reads the first packet an app gets, and its error if it is
// an ERR.
func readFirst(t *testing.T, c net.Conn) (p mysqlwire.Packet, code uint16, msg string, isErr bool) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(safety))
	p, err := mysqlwire.ReadPacket(c, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	code, msg, isErr = mysqlwire.ErrMessage(p.Payload)
	return p, code, msg, isErr
}

// With IAM the AWS credentials come before the database is dialed: a
// server connection that waited on a slow credentials endpoint after its
// greeting was closed by the server's connect_timeout (the app read "the
// database closed the connection during the login"), and a login refused
// for want of credentials left the server an aborted connect, which counts
// towards max_connect_errors.
func TestIAMCredentialsBeforeTheDial(t *testing.T) {
	greet := func(c *net.TCPConn) { _, _ = c.Write([]byte("greeting")); hold(c) }

	t.Run("none", func(t *testing.T) {
		up := startUpstream(t, "127.0.0.1", greet)
		fw, tokens := iamForward(up, func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{}, errors.New("no task role")
		})
		r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{fw}})
		c := dial(t, r.addrs[0])
		p, code, msg, ok := readFirst(t, c)
		if !ok || code != 1043 || !strings.Contains(msg, "AWS credentials from test source") {
			t.Fatalf("the app read %q (code %d); want a 1043 ERR naming the credential source", p.Payload, code)
		}
		expectClosed(t, c, "refused app")
		waitFor(t, "the refusal counted", func() bool { return countOf(forwardSnap(r, 0).ConnectionsClosed, "tls_refused") == 1 })
		if n := up.count(); n != 0 {
			t.Errorf("the database was dialed %d times for a login that had no credentials", n)
		}
		if n := countOf(forwardSnap(r, 0).TLSRefusals, mysqltls.ReasonIAM); n != 1 {
			t.Errorf("refusals{iam} = %d, want 1", n)
		}
		if n := tokens.Stats().Failures[iamauth.ReasonNoCredentials]; n != 1 {
			t.Errorf("IAM failures{no_credentials} = %d, want 1", n)
		}
		if l := r.logs.lines("TLS login refused"); len(l) != 1 || l[0]["reason"] != mysqltls.ReasonIAM || l[0]["upstream"] != nil {
			t.Errorf("refusal lines %v; want one, reason iam, without an upstream", l)
		}
	})

	t.Run("none, with LOCAL_PASSWORD", func(t *testing.T) {
		// The app has proved nothing yet: the source and its error go to
		// the log, not to whoever connects.
		up := startUpstream(t, "127.0.0.1", greet)
		fw, _ := iamForward(up, func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{}, errors.New("no task role")
		})
		fw.TLS.IAM.LocalPassword = []byte("local secret")
		r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{fw}})
		c := dial(t, r.addrs[0])
		p, code, msg, ok := readFirst(t, c)
		if !ok || code != 1043 || strings.Contains(msg, "test source") || strings.Contains(msg, "no task role") {
			t.Fatalf("the app read %q (code %d); want a 1043 ERR that names neither the credential source nor its error", p.Payload, code)
		}
		waitFor(t, "the refusal logged", func() bool { return len(r.logs.lines("TLS login refused")) == 1 })
		if l := r.logs.lines("TLS login refused")[0]; !strings.Contains(l["err"].(string), "test source") || !strings.Contains(l["err"].(string), "no task role") {
			t.Errorf("refusal line %v; want the source and its error in err", l)
		}
	})

	t.Run("slow", func(t *testing.T) {
		up := startUpstream(t, "127.0.0.1", greet)
		asked, release := make(chan struct{}), make(chan struct{})
		var calls atomic.Int32
		fw, _ := iamForward(up, func(ctx context.Context) (aws.Credentials, error) {
			if calls.Add(1) == 1 {
				close(asked)
			}
			select {
			case <-release:
			case <-ctx.Done():
				return aws.Credentials{}, ctx.Err()
			}
			return aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "fake", Source: "test"}, nil
		})
		r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{fw}})
		c := dial(t, r.addrs[0])
		select {
		case <-asked:
		case <-time.After(safety):
			t.Fatal("the credentials were not asked for before the database greeted")
		}
		if n := up.count(); n != 0 {
			t.Errorf("the database was dialed while the credentials were awaited (%d connections)", n)
		}
		close(release)
		waitFor(t, "the dial once the credentials came", func() bool { return up.count() == 1 })
		_ = c.Close()
	})
	t.Run("cut by the drain", func(t *testing.T) {
		// A login still waiting for credentials when the drain deadline
		// passes is cut, not a failed IAM login.
		up := startUpstream(t, "127.0.0.1", greet)
		asked := make(chan struct{})
		var calls atomic.Int32
		fw, tokens := iamForward(up, func(ctx context.Context) (aws.Credentials, error) {
			if calls.Add(1) == 1 {
				close(asked)
			}
			<-ctx.Done()
			return aws.Credentials{}, ctx.Err()
		})
		tokens.SignTimeout = time.Minute
		r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{fw}, DrainTimeout: 50 * time.Millisecond})
		c := dial(t, r.addrs[0])
		select {
		case <-asked:
		case <-time.After(safety):
			t.Fatal("the credentials were not asked for before the database greeted")
		}
		if cut := r.shutdown(t); cut != 1 {
			t.Errorf("connections cut = %d, want 1", cut)
		}
		expectClosed(t, c, "login cut by the drain")
		snap := forwardSnap(r, 0)
		if countOf(snap.ConnectionsClosed, "drain_deadline") != 1 || countOf(snap.TLSRefusals, mysqltls.ReasonIAM) != 0 || up.count() != 0 {
			t.Errorf("closed %v, refusals %v, database connections %d; want one drain_deadline, no refusal, no connection",
				snap.ConnectionsClosed, snap.TLSRefusals, up.count())
		}
		for reason, n := range tokens.Stats().Failures {
			if n != 0 {
				t.Errorf("IAM failures{%s} = %d; a login the drain cut is not one", reason, n)
			}
		}
	})
}
