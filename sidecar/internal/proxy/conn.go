package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/mysqlwire"
	"github.com/example/sidecar/sidecar/internal/relay"
	"github.com/example/sidecar/sidecar/internal/tcpstall"
)

// conn is an in-flight connection, tracked for drain and the stale check.
type conn struct {
	upstream netip.Addr
	asked    time.Time // when the lookup that chose upstream began
	cancel   context.CancelCauseFunc
}

// acceptLoop accepts until the listener is closed. A failed Accept (out of
// file descriptors, …) is logged (rate-limited) and retried after a pause
// that doubles up to AcceptBackoffMax, so the loop never spins. Out of
// descriptors, accepts succeed and fail by turns as connections end, so a
// success does not restart the pause: only a calm spell of
// 2×AcceptBackoffMax since the last failure does.
func (s *Server) acceptLoop(f *forward, loops *sync.WaitGroup) {
	defer loops.Done()
	var backoff time.Duration
	var lastFail time.Time
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.draining.Load() {
				return
			}
			f.stats.acceptErrors.Add(1)
			now := time.Now()
			backoff, lastFail = nextBackoff(backoff, now.Sub(lastFail), s.cfg.AcceptBackoffMax), now
			f.acceptLog.Event("listen_port", f.port, "listen_addr", f.ln.Addr().String(), "err", err.Error(), "retry_in_ms", backoff.Milliseconds())
			select {
			case <-time.After(backoff):
			case <-s.stopAccept:
				return
			}
			continue
		}
		tc, ok := c.(*net.TCPConn)
		if !ok {
			s.log.Error("listener returned a non-TCP connection; closing it", "listen_addr", f.ln.Addr().String(), "type", fmt.Sprintf("%T", c))
			_ = c.Close()
			continue
		}
		s.admit(f, tc)
	}
}

// admit serves an accepted connection, or closes it at once when
// MaxConnections are open.
func (s *Server) admit(f *forward, tc *net.TCPConn) {
	n := s.active.Add(1)
	if n > int64(s.cfg.MaxConnections) {
		s.active.Add(-1)
		f.stats.rejected.Add(1)
		f.rejectLog.Event("listen_port", f.port, "client", tc.RemoteAddr().String(), "max_connections", s.cfg.MaxConnections)
		if f.TLS != nil {
			// The app speaks MySQL to the sidecar: say why. A fresh
			// socket's buffer takes the packet without blocking.
			_ = mysqltls.TellTooMany(tc, s.cfg.MaxConnections)
		}
		_ = tc.Close()
		return
	}
	if s.mem != nil {
		s.mem.up(n)
	}
	s.conns.Add(1)
	go s.serveConn(f, tc)
}

// dialFailed ends a connection whose target could not be dialed: logged
// (rate-limited) and counted, and with TLS the app is told why in a MySQL
// error, unless it has left: the last address's failure, as reason says
// (every address's is in err).
func (s *Server) dialFailed(f *forward, client *net.TCPConn, start time.Time, d dialed, why dialFailure, err error) {
	f.stats.closed(closeDialFailed)
	attrs := []any{"listen_port", f.port, "client", client.RemoteAddr().String(), "target", f.target,
		"reason", why, "duration_ms", durationMS(time.Since(start)), "err", err.Error()}
	var refusal *mysqltls.Refusal
	if f.TLS != nil && why != failUnanswered { // the client has left: nobody to tell
		// Also the refusal's line: server_name and the refusal, as a refused login's has.
		switch {
		case why == failFDLimit:
			refusal = mysqltls.RefuseOutOfFiles(client, err)
		case d.ungreeted != nil:
			refusal = d.ungreeted.Tell(client)
		default:
			refusal = mysqltls.RefuseDial(client, f.target, err)
		}
		attrs = append(attrs, "server_name", f.TLS.ServerName, "refusal", refusal.Reason)
	}
	f.dialFailLog.Event(attrs...)
	if refusal != nil {
		f.stats.tlsRefused(refusal.Reason)
	}
	_ = client.Close()
}

// nextBackoff is the pause after a failed Accept: double the last one,
// from 5 ms up to limit, restarting after a calm spell of 2×limit since
// the failure before.
func nextBackoff(last, sinceFailure, limit time.Duration) time.Duration {
	if sinceFailure > 2*limit {
		last = 0
	}
	return max(5*time.Millisecond, min(2*last, limit))
}

// serveConn dials the target for one accepted client and relays.
func (s *Server) serveConn(f *forward, client *net.TCPConn) {
	start := time.Now()
	f.stats.total.Add(1)
	f.stats.activeConns.Add(1)
	sl := &slot{s: s, f: f}
	defer s.connDone(sl)
	s.setKeepalive(f, client, "client")
	clientAddr := client.RemoteAddr().String()

	// A client that left before the dial (a pool giving up, an `nc -z`
	// check) must cost the database nothing: every connection opened for
	// it would be an aborted connect, which drives max_connect_errors.
	if clientGone(client) {
		s.clientLeft(f, client, start)
		return
	}
	dialCtx, stopWatch := watchClient(withClient(s.hardCtx, client), client)
	if s.cfg.DepartureGrace > 0 && f.departed.flooding(time.Now(), s.cfg.DepartureFlood) {
		// The watch sees a client that leaves during the grace.
		pause(dialCtx, s.cfg.DepartureGrace)
		if context.Cause(dialCtx) == errClientGone {
			stopWatch()
			s.clientLeft(f, client, start)
			return
		}
	}
	var d dialed
	var why dialFailure
	var err, credErr error
	var credsWaited time.Duration
	if f.TLS != nil {
		// With IAM, the credentials come first: a server connection must
		// not wait on them (mysqltls.Target.AwaitCredentials).
		credsWaited, credErr = f.TLS.AwaitCredentials(dialCtx, tellingConn{client, sl})
		err = credErr
	}
	if err == nil {
		d, why, err = s.dial(dialCtx, f)
	}
	upstream, addr := d.conn, d.addr
	stopWatch()
	if err != nil && why != failUnanswered && (context.Cause(dialCtx) == errClientGone || errors.Is(err, errClientGone)) {
		s.failedBefore(f, clientAddr, d, closeClientGone)
		s.clientLeft(f, client, start)
		return
	}
	// The dial's own context may not know of the deadline yet. An
	// unanswered dial ended as its client left, before the deadline: no cut.
	if err != nil && why != failUnanswered && context.Cause(s.hardCtx) == errDrainDeadline {
		s.failedBefore(f, clientAddr, d, closeDrainDeadline)
		_ = client.Close() // cut by the drain, as Serve reports: not the target's failure
		s.log.Debug("connection closed", "listen_port", f.port, "client", clientAddr, "target", f.target,
			"to_upstream", 0, "to_client", 0, "duration_ms", durationMS(time.Since(start)), "reason", closeDrainDeadline)
		f.stats.closed(closeDrainDeadline)
		return
	}
	if r := (*mysqltls.Refusal)(nil); errors.As(credErr, &r) {
		// Refused before the dial (no AWS credentials): the database
		// never saw this connection.
		s.loginRefused(f, client, netip.Addr{}, r.Reason, r.User, err, "duration_ms", durationMS(time.Since(start)))
		_ = client.Close()
		f.stats.closed(closeTLSRefused)
		return
	}
	if err != nil {
		sl.release() // before the app is told or sees the close: it may reconnect at once
		s.dialFailed(f, client, start, d, why, err)
		return
	}
	s.setKeepalive(f, upstream, "upstream")

	ctx, cancel := context.WithCancelCause(s.hardCtx)
	defer cancel(nil)
	c := &conn{upstream: addr, asked: d.asked, cancel: cancel}
	f.track(c)
	res, ok := s.relay(relay.WithCounters(ctx, &f.stats.bytes), f, sl, client, upstream, addr, d.greeting, credsWaited)
	f.untrack(c)
	if !ok {
		f.stats.closed(closeTLSRefused)
		return
	}

	if r := (*mysqltls.Refusal)(nil); errors.As(res.Err, &r) {
		// A login within the session (COM_CHANGE_USER) was refused, which
		// ended the session: logged and counted as a refused login.
		s.loginRefused(f, client, addr, r.Reason, r.User, res.Err, "command", "COM_CHANGE_USER", "duration_ms", durationMS(time.Since(start)))
		f.stats.closed(closeTLSRefused)
		return
	}
	reason := closeReasonOf(res, ctx)
	if reason == closeClientGone {
		f.departed.add(time.Now())
	}
	level := slog.LevelDebug
	switch reason {
	case closeUpstreamError:
		level = slog.LevelWarn
	case closeStale:
		level = slog.LevelInfo
	}
	attrs := []any{"listen_port", f.port, "client", clientAddr, "upstream", netip.AddrPortFrom(addr, uint16(f.TargetPort)).String(),
		"to_upstream", res.ToUpstream, "to_client", res.ToClient, "duration_ms", durationMS(time.Since(start)), "reason", reason}
	if res.Err != nil {
		attrs = append(attrs, "err", res.Err.Error())
	}
	if level == slog.LevelWarn {
		f.brokenLog.Event(attrs...) // a failover breaks a whole pool at once
	} else {
		s.log.Log(context.Background(), level, "connection closed", attrs...)
	}
	// Counted after the log line, so whoever sees the counter sees the line.
	// The bytes were counted live by the relay (relay.Counters).
	f.stats.closed(reason)
}

// failedBefore logs the failures of the addresses a dial tried before its
// connection ended (why) with no address answering: counted and put last,
// they are the target's, whoever still waits.
func (s *Server) failedBefore(f *forward, clientAddr string, d dialed, why closeReason) {
	if len(d.failures) > 0 {
		f.endedFailLog.Event("listen_port", f.port, "client", clientAddr, "target", f.target, "reason", why,
			"err", errors.Join(d.failures...).Error())
	}
}

// clientLeft closes a client that left before its upstream was connected.
func (s *Server) clientLeft(f *forward, client *net.TCPConn, start time.Time) {
	_ = client.Close()
	s.log.Debug("client left before the upstream connection; none kept", "listen_port", f.port,
		"client", client.RemoteAddr().String(), "duration_ms", durationMS(time.Since(start)), "reason", closeClientGone)
	f.departed.add(time.Now())
	f.stats.closed(closeClientGone)
}

// relay moves the session: the bytes as they are, or, with TLS, after the
// MySQL login (from the server's greeting, read by the dial) that upgrades
// the upstream side. ok is false when the login was refused; the client
// has then been told why, and both sides closed. credsWaited is the
// login's wait for IAM credentials before the dial.
func (s *Server) relay(ctx context.Context, f *forward, sl *slot, client, upstream *net.TCPConn, addr netip.Addr, greeting *mysqltls.Greeting, credsWaited time.Duration) (relay.Result, bool) {
	if f.TLS == nil {
		return s.cfg.Relay(ctx, client, upstream, s.cfg.IdleTimeout), true
	}
	// A client that leaves while the login waits on a slow server ends the
	// login at once: its slot is not held for LoginTimeout.
	loginCtx, stopWatch := watchClient(mysqltls.CredentialsWaited(ctx, credsWaited), client) // not the session's: a COM_CHANGE_USER waits anew
	tc, err := f.TLS.Login(loginCtx, tellingConn{client, sl}, upstream, greeting)
	gone := context.Cause(loginCtx) == errClientGone
	stopWatch()
	if err != nil {
		if how := failedLogin(err, gone, ctx.Err() != nil); how != relay.ReasonDone {
			_ = client.Close()
			_ = upstream.Close()
			return relay.Result{Reason: how}, true
		}
		reason, user := mysqltls.ReasonIO, ""
		if r := (*mysqltls.Refusal)(nil); errors.As(err, &r) {
			reason, user = r.Reason, r.User
		}
		judge(f, addr, reason)
		s.loginRefused(f, client, addr, reason, user, err)
		_ = client.Close()
		_ = upstream.Close()
		return relay.Result{}, false
	}
	f.down.answered(addr)
	if sl.given() {
		// The database's ERR ended the login (the app reads it as it would
		// without the sidecar) and gave the slot back: the server closes
		// after it, and a connection is not served without a slot.
		_ = client.Close()
		_ = upstream.Close()
		return relay.Result{Reason: relay.ReasonDone}, true
	}
	if codec := tc.Codec(); codec != nil && s.cfg.RelayCodec != nil {
		return s.cfg.RelayCodec(ctx, client, upstream, codec, s.cfg.IdleTimeout), true
	}
	tc.ReleaseSlot = sl.release // before a refused COM_CHANGE_USER's ERR, as tellingConn at the login
	return mysqltls.Relay(ctx, client, tc, s.cfg.IdleTimeout), true
}

// judge tells the target's down addresses (down.go) what a refused TLS
// login says of addr. A server that stalls in TLS (hung) or closes the
// login (restarting) is down as a failed dial is, so it costs one
// connection, not every one it is first for; any other refusal came from
// a server that answered. One that never
// greeted was judged by the dial, which then tried the next address
// (dialAddrs). Here the app has been sent this server's greeting, whose
// thread id and scramble its login answers, so no other address can take
// the connection over: the refusal stands.
func judge(f *forward, addr netip.Addr, reason string) {
	switch reason {
	case mysqltls.ReasonTLSTimeout, mysqltls.ReasonServerClosed:
		f.down.failed(addr, time.Now())
	case mysqltls.ReasonIO: // the app left: nothing learnt of the server
	default:
		f.down.answered(addr)
	}
}

// failedLogin says how a login that failed with err ended: ReasonDone
// when it was refused, ReasonClientGone when the app left first, and
// ReasonCanceled when the drain deadline or the stale check cut it (cut).
// An app that was sent its refusal was refused, though it may have read it
// and left before the login returned. An app that left without sending a
// byte of its login is gone, whether its close came before or after its
// greeting was written (a race it does not decide), unless a cut came
// first. One that left partway through its login is refused as io_error,
// whether the watch or the login saw it first.
func failedLogin(err error, gone, cut bool) relay.Reason {
	r := (*mysqltls.Refusal)(nil)
	refusal := errors.As(err, &r)
	leftMidLogin := refusal && r.Reason == mysqltls.ReasonIO
	switch {
	case refusal && r.Told:
		return relay.ReasonDone
	case leftMidLogin && r.Silent && (gone || !cut):
		return relay.ReasonClientGone
	case leftMidLogin && gone:
		return relay.ReasonDone
	case gone:
		return relay.ReasonClientGone
	case cut:
		return relay.ReasonCanceled
	}
	return relay.ReasonDone
}

// loginRefused logs a refused login and then counts it. At WARN the lines
// are rate-limited: a writer restarting behind TLS refuses a whole pool.
func (s *Server) loginRefused(f *forward, client net.Conn, addr netip.Addr, reason, user string, err error, extra ...any) {
	attrs := []any{"listen_port", f.port, "client", client.RemoteAddr().String(), "target", f.target}
	if addr.IsValid() { // not when refused before the dial
		attrs = append(attrs, "upstream", netip.AddrPortFrom(addr, uint16(f.TargetPort)).String())
	}
	attrs = append(attrs, "server_name", f.TLS.ServerName, "reason", reason)
	if f.TLS.IAM != nil { // only IAM reads the app's user: without it user="" would mean nothing
		attrs = append(attrs, "user", user)
	}
	attrs = append(append(attrs, "err", err.Error()), extra...)
	if reason == mysqltls.ReasonIO {
		s.log.Debug(f.refusedLog.Msg(), attrs...) // a client that left mid-login is not the operator's problem
	} else {
		f.refusedLog.Event(attrs...)
	}
	f.stats.tlsRefused(reason) // after the line, as every counter here
}

// connDone releases what a connection held: its slot, if an ERR did not
// give it back already, and then its forward's active gauge, so whoever
// sees the gauge drop finds the connection's end counted and can connect
// again.
func (s *Server) connDone(sl *slot) {
	sl.release()
	sl.f.stats.activeConns.Add(-1)
	s.conns.Done()
}

// slot is a connection's place under MaxConnections, given back once.
type slot struct {
	s    *Server
	f    *forward
	done atomic.Bool
}

// given reports whether the slot was given back: the connection is ending.
func (sl *slot) given() bool { return sl.done.Load() }

func (sl *slot) release() {
	if !sl.done.CompareAndSwap(false, true) {
		return
	}
	n := sl.s.active.Add(-1)
	if sl.s.mem != nil {
		sl.s.mem.down(n)
	}
}

// tellingConn is the app's socket before its session. An ERR ends the
// login, and an app that reads it may reconnect at once: the slot is given
// back just before the ERR is written, or the app's own previous
// connection could turn it away at MaxConnections. The sockets are closed
// right after, so for that moment a connection ending so holds its two
// descriptors outside the limit, as one turned away at the limit holds
// one. mysqltls writes a login's packets whole, one a Write
// (mysqlwire.WritePacket), so an ERR's marker is the fifth byte.
type tellingConn struct {
	*net.TCPConn
	slot *slot
}

func (c tellingConn) Write(p []byte) (int, error) {
	if len(p) > 4 && p[4] == mysqlwire.ErrPacketHdr {
		c.slot.release()
	}
	return c.TCPConn.Write(p)
}

// durationMS is d in milliseconds with microsecond precision: a JSON
// number CloudWatch Logs Insights can compute on.
func durationMS(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

// setKeepalive applies the keepalive settings to one side of a connection.
// A failure (the kernel refusing a value) is logged once per forward, so
// the socket silently keeping the kernel's defaults is never a surprise.
func (s *Server) setKeepalive(f *forward, c *net.TCPConn, side string) {
	ka := s.cfg.Keepalive
	var err error
	if ka < 0 {
		err = c.SetKeepAlive(false)
	} else {
		// First probe after ka of silence, then every ka/3: a dead peer (a
		// failed-over writer that vanished) is noticed within about 2×ka,
		// and upstream the same bound holds while sent data waits for an
		// ACK. Not on the app's side: there the timeout also cut an app
		// that was alive but read a large result slowly (a zero window
		// for 2×ka), and a peer in the task cannot vanish unannounced.
		// In whole seconds, as the kernel takes them (Go rounds up): the
		// user timeout below must be what the probes really take.
		kc := net.KeepAliveConfig{Enable: true, Idle: wholeSeconds(ka), Interval: wholeSeconds(max(ka/3, time.Second)), Count: 3}
		err = c.SetKeepAliveConfig(kc)
		if err == nil && side == "upstream" {
			err = tcpstall.Set(c, kc.Idle+time.Duration(kc.Count)*kc.Interval) // as long as keepalive takes to give up
		}
	}
	if err != nil && f.sockoptFailed.CompareAndSwap(false, true) {
		s.log.Error("setting TCP keepalive failed; the socket keeps the kernel's settings (logged once per forward)",
			"listen_port", f.port, "side", side, "keepalive_ms", ka.Milliseconds(), "err", err.Error())
	}
}

// wholeSeconds rounds d up to a whole second.
func wholeSeconds(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}

func (f *forward) track(c *conn) {
	f.mu.Lock()
	f.conns[c] = struct{}{}
	f.mu.Unlock()
}

func (f *forward) untrack(c *conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}
