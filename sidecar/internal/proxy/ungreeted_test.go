package proxy_test

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
	"github.com/example/sidecar/sidecar/internal/proxy"
	"github.com/example/sidecar/sidecar/internal/testdns"
)

// full answers as a live server that has no room: an ERR in place of its
// greeting, which the sidecar forwards as the server's own words.
func full(c *net.TCPConn) {
	_, _ = mysqlwire.WritePacket(c, 0, mysqlwire.ErrPacket(1040, "08004", "Too many connections"))
	_, _ = io.Copy(io.Discard, c)
}

// What an address that accepts TCP but serves no MySQL does: each is a
// no_greeting.
var ungreeting = []struct {
	name   string
	handle func(*net.TCPConn)
}{
	{"silent", hold}, // a hung or restarting mysqld, whose kernel still accepts
	{"closes at once", func(*net.TCPConn) {}},
	{"another protocol", func(c *net.TCPConn) { _, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n")); hold(c) }},
}

// tlsModes are the forwards that read the server's greeting: TLS, and
// TLS with IAM logins.
var tlsModes = []struct {
	name string
	iam  bool
}{{"tls", false}, {"iam", true}}

// twoAddresses serves a TLS forward (with IAM logins when iam) to
// db.sidecar.test, which DNS answers with 127.0.0.2, running first, then
// 127.0.0.1, running second, on one port; the greeting's wait is greetWait.
func twoAddresses(t *testing.T, iam bool, first, second func(*net.TCPConn), greetWait time.Duration, cfg proxy.Config) (r *rig, a, b *upstream) {
	t.Helper()
	b = startUpstream(t, "127.0.0.1", second)
	a, err := startUpstreamAt(t, &net.TCPAddr{IP: net.ParseIP("127.0.0.2"), Port: int(b.addr.Port())}, first)
	if err != nil {
		t.Skipf("no second loopback address with port %d: %v", b.addr.Port(), err)
	}
	dns := testdns.Start(t)
	dns.Set("db.sidecar.test", a.addr.Addr(), b.addr.Addr())
	fw := proxy.Forward{TLS: &mysqltls.Target{Mode: mysqltls.VerifyCA, Roots: x509.NewCertPool(), RootsFrom: "test"}}
	if iam {
		fw, _ = iamForward(b, func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "fake", Source: "test"}, nil
		})
	}
	fw.TargetHost, fw.TargetPort, fw.TLS.HandshakeTimeout = "db.sidecar.test", int(b.addr.Port()), greetWait
	cfg.Forwards, cfg.Resolver, cfg.DNSCacheTTL = []proxy.Forward{fw}, dns.Resolver(), 5*time.Second
	return startProxy(t, cfg), a, b
}

// An address that accepts the connection but sends no MySQL greeting is
// an address that failed, as a refused dial is: while nothing has been
// sent to the app, the same app goes on to the next address. The address
// counts once as a failed dial, and goes last for the next connections.
func TestUngreetedAddressPassesTheAppOn(t *testing.T) {
	t.Parallel()
	for _, mode := range tlsModes {
		for _, first := range ungreeting {
			t.Run(mode.name+"/"+first.name, func(t *testing.T) {
				t.Parallel()
				r, a, b := twoAddresses(t, mode.iam, first.handle, full, 200*time.Millisecond, proxy.Config{})
				for i := range 2 {
					c := dial(t, r.addrs[0])
					if p, _, msg, isErr := readFirst(t, c); !isErr || p.Seq != 0 || !strings.Contains(msg, "Too many connections") {
						t.Fatalf("connection %d read %q; want the second address's answer", i, p.Payload)
					}
					_ = c.Close()
				}
				waitFor(t, "the connections ended", func() bool { return forwardSnap(r, 0).Active == 0 })
				if a.count() != 1 || b.count() != 2 {
					t.Errorf("the first address took %d connections, the second %d; want 1 (then tried last) and 2", a.count(), b.count())
				}
				s := forwardSnap(r, 0)
				if countOf(s.DialFailures, "no_greeting") != 1 || countOf(s.TLSRefusals, mysqltls.ReasonNoGreeting) != 0 ||
					countOf(s.TLSRefusals, mysqltls.ReasonServerError) != 2 || countOf(s.ConnectionsClosed, "dial_failed") != 0 {
					t.Errorf("dial failures %v, refusals %v, closed %v; want one no_greeting dial, and both apps given the server's answer",
						s.DialFailures, s.TLSRefusals, s.ConnectionsClosed)
				}
				lines := r.logs.lines("dial of a target address failed")
				if len(lines) != 1 || !strings.Contains(lines[0]["err"].(string), a.addr.String()+": no_greeting") || lines[0]["upstream"] != b.addr.String() {
					t.Errorf("want one line naming the address that sent no greeting and the one that answered; got %v", lines)
				}
			})
		}
	}
}

// When no address greets, the app is refused once, with the last
// address's failure, and the log line names what each address did.
func TestNoAddressGreets(t *testing.T) {
	t.Parallel()
	for _, mode := range tlsModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			r, a, b := twoAddresses(t, mode.iam, hold, func(*net.TCPConn) {}, 200*time.Millisecond, proxy.Config{})
			c := dial(t, r.addrs[0])
			p, code, msg, isErr := readFirst(t, c)
			if !isErr || p.Seq != 0 || code != 1043 || !strings.Contains(msg, "closed the connection before its greeting") {
				t.Fatalf("the app read %q; want the last address's no_greeting refusal in place of the greeting", p.Payload)
			}
			expectClosed(t, c, "refused app")
			waitFor(t, "the connection ended", func() bool { return forwardSnap(r, 0).Active == 0 })
			s := forwardSnap(r, 0)
			if countOf(s.DialFailures, "no_greeting") != 2 || countOf(s.TLSRefusals, mysqltls.ReasonNoGreeting) != 1 || countOf(s.ConnectionsClosed, "dial_failed") != 1 {
				t.Errorf("dial failures %v, refusals %v, closed %v; want two no_greeting dials, one refusal, closed as dial_failed", s.DialFailures, s.TLSRefusals, s.ConnectionsClosed)
			}
			lines := r.logs.lines("dial target failed")
			if len(lines) != 1 || lines[0]["reason"] != "no_greeting" || lines[0]["refusal"] != mysqltls.ReasonNoGreeting ||
				!strings.Contains(lines[0]["err"].(string), a.addr.String()+": no_greeting: sidecar: the database sent no greeting within") ||
				!strings.Contains(lines[0]["err"].(string), b.addr.String()+": no_greeting: sidecar: the database closed the connection before its greeting") {
				t.Errorf("want one \"dial target failed\" line naming each address and what it did; got %v", lines)
			}
			if len(r.logs.lines("TLS login refused")) != 0 {
				t.Errorf("the refusal was logged twice:\n%s", r.logs)
			}
		})
	}
}

// greetingWithTLS is a MySQL 8 greeting that offers TLS.
func greetingWithTLS() []byte {
	caps := mysqlwire.ClientProtocol41 | mysqlwire.ClientSSL | mysqlwire.ClientSecureConnection | mysqlwire.ClientPluginAuth | mysqlwire.ClientPluginAuthLenencClientData
	g := append([]byte{10}, "8.0.39\x00"...)
	g = binary.LittleEndian.AppendUint32(g, 7)
	g = append(g, "abcdefgh\x00"...)
	g = binary.LittleEndian.AppendUint16(g, uint16(caps))
	g = append(g, 45, 2, 0)
	g = binary.LittleEndian.AppendUint16(g, uint16(caps>>16))
	g = append(g, 21)
	g = append(g, make([]byte, 10)...)
	return append(g, "ijklmnopqrst\x00mysql_native_password\x00"...)
}

// Once the app has the server's greeting (its thread id and scramble), no
// other address can take the login over: a server that then stalls in
// TLS refuses this app (tls_timeout), and goes last for the next ones; so
// does one that closes the connection there (a restarting mysqld,
// server_closed), which would otherwise refuse every app it is first for.
func TestNoOtherAddressAfterTheGreeting(t *testing.T) {
	t.Parallel()
	stallsTLS := func(c *net.TCPConn) { _, _ = mysqlwire.WritePacket(c, 0, greetingWithTLS()); hold(c) }
	closesInTLS := func(c *net.TCPConn) {
		if _, err := mysqlwire.WritePacket(c, 0, greetingWithTLS()); err == nil {
			_, _ = mysqlwire.ReadPacket(c, 1<<20) // the SSLRequest
		}
	}
	for _, mode := range tlsModes {
		for _, first := range []struct {
			name   string
			handle func(*net.TCPConn)
			msg    string
			reason string
		}{
			{"stalls in TLS", stallsTLS, "timed out", mysqltls.ReasonTLSTimeout},
			{"closes in TLS", closesInTLS, "closed the connection during the login", mysqltls.ReasonServerClosed},
		} {
			t.Run(mode.name+"/"+first.name, func(t *testing.T) {
				t.Parallel()
				r, a, b := twoAddresses(t, mode.iam, first.handle, full, 200*time.Millisecond, proxy.Config{})
				c := dial(t, r.addrs[0])
				if _, _, _, isErr := readFirst(t, c); isErr {
					t.Fatal("the app read an ERR; want the first address's greeting")
				}
				resp := mysqlwire.HandshakeResponse{Caps: mysqlwire.ClientProtocol41 | mysqlwire.ClientSecureConnection | mysqlwire.ClientPluginAuth,
					MaxPacket: 1 << 24, Charset: 45, User: "app", Plugin: mysqlwire.NativePassword}
				if _, err := mysqlwire.WritePacket(c, 1, resp.Append(nil)); err != nil {
					t.Fatal(err)
				}
				if p, _, msg, isErr := readFirst(t, c); !isErr || p.Seq != 2 || !strings.Contains(msg, first.msg) {
					t.Fatalf("the app read %q; want the %s refusal", p.Payload, first.reason)
				}
				waitFor(t, "the connection ended", func() bool { return forwardSnap(r, 0).Active == 0 })
				if n := b.count(); n != 0 {
					t.Errorf("the second address was dialed %d times for an app that had the first one's greeting", n)
				}
				next := dial(t, r.addrs[0])
				if _, _, msg, _ := readFirst(t, next); !strings.Contains(msg, "Too many connections") || a.count() != 1 {
					t.Errorf("the next app read %q, the first address took %d connections; want the second address, the first tried last", msg, a.count())
				}
				s := forwardSnap(r, 0)
				var failures uint64
				for _, f := range s.DialFailures {
					failures += f.Value
				}
				if failures != 0 || countOf(s.TLSRefusals, first.reason) != 1 {
					t.Errorf("dial failures %v, refusals %v; want none, and one %s", s.DialFailures, s.TLSRefusals, first.reason)
				}
			})
		}
	}
}

// An app that leaves within a second, or a drain deadline that passes
// at any time, while an address is silent ends the wait at once; neither
// is the address's failure, and no other address is dialed for a
// connection that has ended. The second is set on the side of it each
// case is about (an hour, a nanosecond), whatever the machine's load.
func TestGreetingWaitEnds(t *testing.T) {
	t.Parallel()
	drain := func(t *testing.T, r *rig, _ *net.TCPConn) {
		if cut := r.shutdown(t); cut != 1 {
			t.Errorf("connections cut = %d, want 1", cut)
		}
	}
	draining := proxy.Config{DrainTimeout: 50 * time.Millisecond}
	for _, mode := range tlsModes {
		for _, tc := range []struct {
			name   string
			cfg    proxy.Config
			end    func(*testing.T, *rig, *net.TCPConn)
			closed string
		}{
			{"the app leaves", proxy.WithUnansweredAfter(proxy.Config{}, time.Hour), func(_ *testing.T, _ *rig, c *net.TCPConn) { _ = c.Close() }, "client_gone"},
			{"the drain deadline", proxy.WithUnansweredAfter(draining, time.Hour), drain, "drain_deadline"},
			// Past the time after which an app leaving would count the address (below).
			{"the drain deadline after a second", proxy.WithUnansweredAfter(draining, time.Nanosecond), drain, "drain_deadline"},
		} {
			t.Run(mode.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				r, a, b := twoAddresses(t, mode.iam, hold, full, time.Hour, tc.cfg)
				c := dial(t, r.addrs[0])
				waitFor(t, "the silent address dialed", func() bool { return a.count() == 1 })
				tc.end(t, r, c)
				waitFor(t, "the connection ended", func() bool { return forwardSnap(r, 0).Active == 0 })
				s := forwardSnap(r, 0)
				var failures uint64
				for _, f := range s.DialFailures {
					failures += f.Value
				}
				if failures != 0 || countOf(s.ConnectionsClosed, tc.closed) != 1 || b.count() != 0 {
					t.Errorf("dial failures %v, closed %v, second address dialed %d times; want none, one %s, none", s.DialFailures, s.ConnectionsClosed, b.count(), tc.closed)
				}
			})
		}
	}
}

// An app whose connect timeout is shorter than the greeting's wait leaves
// while an address is silent. Silent for a second (here a nanosecond:
// every departure is past it, however the machine schedules the test),
// the address counts as failed as an unanswered TCP dial does (reason
// unanswered: the app left first, and is told nothing), and goes last, so
// the app's next connection reaches the address that greets.
func TestUngreetedAddressWhenTheAppLeaves(t *testing.T) {
	t.Parallel()
	for _, mode := range tlsModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			r, a, b := twoAddresses(t, mode.iam, hold, full, time.Hour, proxy.WithUnansweredAfter(proxy.Config{}, time.Nanosecond))
			impatient := dial(t, r.addrs[0])
			waitFor(t, "the silent address dialed", func() bool { return a.count() == 1 })
			_ = impatient.Close() // the app's connect timeout, past the time after which an address is unanswered
			waitFor(t, "the connection ended", func() bool { return forwardSnap(r, 0).Active == 0 })

			s := forwardSnap(r, 0)
			var refusals uint64
			for _, f := range s.TLSRefusals {
				refusals += f.Value
			}
			if countOf(s.DialFailures, "unanswered") != 1 || countOf(s.DialFailures, "no_greeting") != 0 || refusals != 0 ||
				countOf(s.ConnectionsClosed, "dial_failed") != 1 || countOf(s.ConnectionsClosed, "client_gone") != 0 || b.count() != 0 {
				t.Errorf("dial failures %v, refusals %v, closed %v, second address dialed %d times; want one unanswered dial, nobody told, closed as dial_failed, none",
					s.DialFailures, s.TLSRefusals, s.ConnectionsClosed, b.count())
			}
			lines := r.logs.lines("dial target failed")
			if len(lines) != 1 || lines[0]["reason"] != "unanswered" || lines[0]["refusal"] != nil ||
				!strings.Contains(lines[0]["err"].(string), a.addr.String()+": unanswered: connected but no greeting in") {
				t.Errorf("want one \"dial target failed\" line, reason unanswered and no refusal, naming the silent address; got %v", lines)
			}

			next := dial(t, r.addrs[0])
			if _, _, msg, _ := readFirst(t, next); !strings.Contains(msg, "Too many connections") || a.count() != 1 {
				t.Errorf("the next app read %q, the silent address took %d connections; want the second address, the silent one tried last", msg, a.count())
			}
		})
	}
}

// An app that leaves within a second, or the drain deadline, while the
// next address is silent ends the dial without counting that address,
// but an earlier address's failure of the same round was the target's,
// counted and put last: an operator sees it at WARN, as when another
// address answers or none does, though the connection has ended. The
// second is an hour here, so the app leaves within it however long a
// loaded machine takes to notice.
func TestEarlierFailureLoggedWhenTheDialEnds(t *testing.T) {
	t.Parallel()
	closes := func(*net.TCPConn) {}
	within := proxy.WithUnansweredAfter(proxy.Config{}, time.Hour)
	for _, mode := range tlsModes {
		for _, tc := range []struct {
			name   string
			cfg    proxy.Config
			end    func(*testing.T, *rig, *net.TCPConn)
			closed string
		}{
			{"the app leaves", within, func(_ *testing.T, _ *rig, c *net.TCPConn) { _ = c.Close() }, "client_gone"},
			{"the drain deadline", proxy.Config{DrainTimeout: 50 * time.Millisecond}, func(t *testing.T, r *rig, _ *net.TCPConn) { r.shutdown(t) }, "drain_deadline"},
		} {
			t.Run(mode.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				r, a, b := twoAddresses(t, mode.iam, closes, hold, time.Hour, tc.cfg)
				c := dial(t, r.addrs[0])
				waitFor(t, "the silent address dialed", func() bool { return b.count() == 1 })
				tc.end(t, r, c)
				waitFor(t, "the connection ended", func() bool { return forwardSnap(r, 0).Active == 0 })
				s := forwardSnap(r, 0)
				if countOf(s.DialFailures, "no_greeting") != 1 || countOf(s.ConnectionsClosed, tc.closed) != 1 {
					t.Fatalf("dial failures %v, closed %v; want one no_greeting, one %s", s.DialFailures, s.ConnectionsClosed, tc.closed)
				}
				r.shutdown(t) // writes a pending summary
				var seen []map[string]any
				for _, l := range r.logs.lines("") {
					if err, _ := l["err"].(string); (l["level"] == "WARN" || l["level"] == "ERROR") && strings.Contains(err, a.addr.String()+": no_greeting") {
						seen = append(seen, l)
					}
				}
				if len(seen) != 1 || seen[0]["target"] == nil || seen[0]["client"] == nil || seen[0]["reason"] != tc.closed {
					t.Errorf("want one line at WARN or above naming %s's no_greeting, the target, the client and reason %s; got %v", a.addr, tc.closed, seen)
				}
			})
		}
	}
}
