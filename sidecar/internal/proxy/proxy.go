// Package proxy is the forwarder: it listens on each forward's port, and for
// every accepted connection resolves the target afresh, dials it and hands
// both connections to a relay.Func. It owns limits, drain and the
// stale-upstream check; the bytes move in the relay.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/example/sidecar/sidecar/internal/relay"
)

// Forward is one listening port and the target behind it.
type Forward struct {
	ListenPort int    // 0 picks a free port (tests)
	TargetHost string // DNS name, resolved for every new connection, or IP literal
	TargetPort int
}

// Resolver looks up a target's addresses; *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Defaults of the Config fields whose zero value means "the default". The
// sidecar's configuration table (package config) quotes these.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultKeepalive      = 30 * time.Second
	DefaultMaxConnections = 1024
	DefaultDrainTimeout   = 20 * time.Second
)

// Config configures a Server. The zero value of every field but Forwards
// works and gives the documented default.
type Config struct {
	Forwards   []Forward
	ListenAddr string // IP to bind; "" = all interfaces

	ConnectTimeout     time.Duration // per address tried, and for the DNS lookup; 0 = 5s
	IdleTimeout        time.Duration // 0 = off
	Keepalive          time.Duration // TCP keepalive idle time, both sides; 0 = 30s, negative = off
	MaxConnections     int           // concurrent connections across forwards; 0 = 1024
	DrainTimeout       time.Duration // how long in-flight connections may finish after shutdown begins; 0 = 20s, negative = none
	StaleCheckInterval time.Duration // re-resolve targets this often and close connections to addresses gone from DNS; 0 = off

	Relay       relay.Func                                                               // nil = relay.Copy
	Listen      func(ctx context.Context, network, address string) (net.Listener, error) // nil = net.ListenConfig.Listen
	DialContext func(ctx context.Context, network, address string) (net.Conn, error)     // nil = net.Dialer; must return *net.TCPConn
	Resolver    Resolver                                                                 // nil = net.DefaultResolver
	Logger      *slog.Logger                                                             // nil = discard

	// AcceptBackoffMax caps the pause after a failed Accept (EMFILE, …),
	// which doubles from 5ms; 0 = 1s.
	AcceptBackoffMax time.Duration

	// Memory is returned to the OS once the connection count has fallen to
	// a quarter of a peak of at least BurstConnections, at most once per
	// ReleaseMemoryEvery; a steady load never triggers it.
	// BurstConnections: 0 = 256, negative = never. ReleaseMemoryEvery: 0 = 10s.
	BurstConnections   int
	ReleaseMemoryEvery time.Duration
	FreeOSMemory       func() // nil = debug.FreeOSMemory
}

func (c Config) withDefaults() Config {
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.Keepalive == 0 {
		c.Keepalive = DefaultKeepalive
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Relay == nil {
		c.Relay = relay.Copy
	}
	if c.Listen == nil {
		var lc net.ListenConfig
		c.Listen = lc.Listen
	}
	if c.DialContext == nil {
		d := net.Dialer{KeepAlive: -1} // keepalive is set below, the same way on both sides
		c.DialContext = d.DialContext
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.AcceptBackoffMax <= 0 {
		c.AcceptBackoffMax = time.Second
	}
	if c.BurstConnections == 0 {
		c.BurstConnections = 256
	}
	if c.ReleaseMemoryEvery <= 0 {
		c.ReleaseMemoryEvery = 10 * time.Second
	}
	if c.FreeOSMemory == nil {
		c.FreeOSMemory = freeOSMemory
	}
	return c
}

// Server forwards connections for a set of forwards.
type Server struct {
	cfg  Config
	log  *slog.Logger
	fwds []*forward

	active    atomic.Int64 // connections holding a slot, across forwards
	listening atomic.Bool
	draining  atomic.Bool

	// hardCtx ends every relay and dial: canceled when the drain deadline
	// passes (or when Serve returns).
	hardCtx    context.Context
	hardCancel context.CancelCauseFunc
	conns      sync.WaitGroup
	stopAccept chan struct{}   // closed when the drain begins: wakes accept loops from their backoff
	mem        *memoryReleaser // nil when BurstConnections < 0
}

// forward is one listener, its target and its counters.
type forward struct {
	Forward
	ln     net.Listener
	label  string // listen port as bound, for metrics
	port   int    // listen port as bound, for logs
	target string // host:port as configured
	stats  stats

	mu    sync.Mutex
	conns map[*conn]struct{}

	// Rejections are logged at most once a second, with how many were
	// closed since, so a reconnect storm cannot flood the logs.
	lastRejectLog    time.Time // accept loop only
	rejectedSinceLog int

	dialFailLog *logLimiter // "dial target failed", from every connection goroutine

	sockoptFailed atomic.Bool // a socket option failed once: logged, not again
}

func (f *forward) logRejected(log *slog.Logger, c *net.TCPConn, limit int) {
	f.rejectedSinceLog++
	if time.Since(f.lastRejectLog) < time.Second {
		return
	}
	log.Warn("connection limit reached; closed new connection", "listen_port", f.port, "client", c.RemoteAddr().String(),
		"max_connections", limit, "closed_since_last_log", f.rejectedSinceLog)
	f.lastRejectLog, f.rejectedSinceLog = time.Now(), 0
}

// conn is an in-flight connection, tracked for drain and the stale check.
type conn struct {
	upstream netip.Addr
	cancel   context.CancelCauseFunc
}

var (
	errDrainDeadline = errors.New("drain deadline passed")
	errStale         = errors.New("upstream address left the DNS answer")
)

// New checks cfg and returns a Server that has not opened anything yet.
func New(cfg Config) (*Server, error) {
	if len(cfg.Forwards) == 0 {
		return nil, errors.New("proxy: no forwards configured")
	}
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, log: cfg.Logger, stopAccept: make(chan struct{})}
	s.hardCtx, s.hardCancel = context.WithCancelCause(context.Background())
	if cfg.BurstConnections > 0 {
		s.mem = newMemoryReleaser(cfg.BurstConnections, cfg.ReleaseMemoryEvery, cfg.FreeOSMemory)
	}
	for _, f := range cfg.Forwards {
		fw := &forward{
			Forward: f,
			target:  net.JoinHostPort(f.TargetHost, strconv.Itoa(f.TargetPort)),
			conns:   map[*conn]struct{}{},
		}
		fw.stats.init()
		fw.dialFailLog = newLogLimiter(cfg.Logger, slog.LevelError, "dial target failed; closing client",
			"dial target failed for more clients; closed them (latest failure shown)")
		s.fwds = append(s.fwds, fw)
	}
	return s, nil
}

// listenNetwork binds what was asked: an IPv4 address (0.0.0.0 included)
// listens on IPv4 only; "::" or "" listens on both families (Go's "tcp"
// on a wildcard address is dual-stack), another IPv6 address on IPv6.
func listenNetwork(addr string) string {
	if a, err := netip.ParseAddr(addr); err == nil && a.Is4() {
		return "tcp4"
	}
	return "tcp"
}

// Listen opens every forward's listener. If one fails, the ones already
// open are closed again: nothing is left half-started.
func (s *Server) Listen(ctx context.Context) error {
	for i, f := range s.fwds {
		addr := net.JoinHostPort(s.cfg.ListenAddr, strconv.Itoa(f.ListenPort))
		ln, err := s.cfg.Listen(ctx, listenNetwork(s.cfg.ListenAddr), addr)
		if err != nil {
			for _, g := range s.fwds[:i] {
				_ = g.ln.Close()
				g.ln = nil
			}
			return fmt.Errorf("listen on %s for target %s: %w", addr, f.target, err)
		}
		f.ln = ln
		f.port = f.ListenPort
		if ta, ok := ln.Addr().(*net.TCPAddr); ok {
			f.port = ta.Port
		}
		f.label = strconv.Itoa(f.port)
	}
	return nil
}

// Close closes the listeners without serving; for callers whose startup
// failed after Listen.
func (s *Server) Close() {
	for _, f := range s.fwds {
		if f.ln != nil {
			_ = f.ln.Close()
		}
	}
	s.hardCancel(context.Canceled)
}

// Addrs returns the listeners' addresses, in forward order (after Listen).
func (s *Server) Addrs() []net.Addr {
	out := make([]net.Addr, len(s.fwds))
	for i, f := range s.fwds {
		if f.ln != nil {
			out[i] = f.ln.Addr()
		}
	}
	return out
}

// Ready reports whether connections are being accepted: every listener is
// up and no drain has begun. It never touches the targets.
func (s *Server) Ready() bool { return s.listening.Load() && !s.draining.Load() }

// Draining reports whether shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

// Serve accepts connections on the listeners opened by Listen until ctx is
// done, then drains: it stops accepting at once, lets in-flight connections
// finish until DrainTimeout, then cancels the rest. It returns once every
// connection has ended, with the number of connections cut at the deadline.
func (s *Server) Serve(ctx context.Context) (cut int, err error) {
	for _, f := range s.fwds {
		if f.ln == nil {
			return 0, errors.New("proxy: Serve called before a successful Listen")
		}
	}
	defer s.hardCancel(context.Canceled)
	defer s.flushLogs() // after every connection has ended

	var loops sync.WaitGroup
	for _, f := range s.fwds {
		loops.Add(1)
		go s.acceptLoop(f, &loops)
		if s.cfg.StaleCheckInterval > 0 && !isIP(f.TargetHost) {
			loops.Add(1)
			go s.staleLoop(ctx, f, &loops)
		}
	}
	if s.mem != nil {
		loops.Add(1)
		go s.releaseMemory(ctx, &loops)
	}
	s.listening.Store(true)
	s.log.Info("forwarding", "listeners", s.listenerNames())

	<-ctx.Done()
	s.draining.Store(true)
	close(s.stopAccept)
	for _, f := range s.fwds {
		_ = f.ln.Close() // stop accepting at once
	}
	loops.Wait()
	inFlight := s.active.Load()
	s.log.Info("draining", "in_flight", inFlight, "drain_timeout_ms", max(s.cfg.DrainTimeout, 0).Milliseconds())

	done := make(chan struct{})
	go waitConns(&s.conns, done)
	if s.cfg.DrainTimeout > 0 {
		timer := time.NewTimer(s.cfg.DrainTimeout)
		defer timer.Stop()
		select {
		case <-done:
			s.log.Info("drained", "connections_cut", 0)
			return 0, nil
		case <-timer.C:
		}
	}
	cut = int(s.active.Load())
	s.hardCancel(errDrainDeadline)
	<-done
	s.log.Warn("drain deadline passed, closed remaining connections", "connections_cut", cut)
	return cut, nil
}

// releaseMemory returns memory to the OS after bursts, until the drain.
func (s *Server) releaseMemory(ctx context.Context, loops *sync.WaitGroup) {
	defer loops.Done()
	s.mem.run(ctx, s.active.Load, func(peak, now int64, took time.Duration) {
		s.log.Debug("burst drained; returned free memory to the OS", "peak_connections", peak, "connections", now,
			"duration_ms", durationMS(took))
	})
}

// flushLogs writes rate-limited lines still pending.
func (s *Server) flushLogs() {
	for _, f := range s.fwds {
		f.dialFailLog.close()
	}
}

func waitConns(wg *sync.WaitGroup, done chan<- struct{}) {
	wg.Wait()
	close(done)
}

func (s *Server) listenerNames() []string {
	out := make([]string, len(s.fwds))
	for i, f := range s.fwds {
		out[i] = f.ln.Addr().String() + "=" + f.target
	}
	return out
}

// acceptLoop accepts until the listener is closed. A failed Accept (out of
// file descriptors, …) is logged and retried after a pause that doubles up
// to AcceptBackoffMax, so the loop never spins.
func (s *Server) acceptLoop(f *forward, loops *sync.WaitGroup) {
	defer loops.Done()
	var backoff time.Duration
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.draining.Load() {
				return
			}
			f.stats.acceptErrors.Add(1)
			backoff = max(5*time.Millisecond, min(2*backoff, s.cfg.AcceptBackoffMax))
			s.log.Error("accept failed; retrying", "listen_addr", f.ln.Addr().String(), "err", err, "retry_in_ms", backoff.Milliseconds())
			select {
			case <-time.After(backoff):
			case <-s.stopAccept:
				return
			}
			continue
		}
		backoff = 0
		tc, ok := c.(*net.TCPConn)
		if !ok {
			s.log.Error("listener returned a non-TCP connection; closing it", "listen_addr", f.ln.Addr().String(), "type", fmt.Sprintf("%T", c))
			_ = c.Close()
			continue
		}
		n := s.active.Add(1)
		if n > int64(s.cfg.MaxConnections) {
			s.active.Add(-1)
			f.stats.rejected.Add(1)
			f.logRejected(s.log, tc, s.cfg.MaxConnections)
			_ = tc.Close()
			continue
		}
		if s.mem != nil {
			s.mem.up(n)
		}
		s.conns.Add(1)
		go s.serveConn(f, tc)
	}
}

// serveConn dials the target for one accepted client and relays.
func (s *Server) serveConn(f *forward, client *net.TCPConn) {
	start := time.Now()
	f.stats.total.Add(1)
	f.stats.activeConns.Add(1)
	defer s.connDone(f)
	s.setKeepalive(f, client, "client")
	clientAddr := client.RemoteAddr().String()

	upstream, addr, why, err := s.dial(f)
	if err != nil {
		f.stats.closed(closeDialFailed)
		f.dialFailLog.event("listen_port", f.port, "client", clientAddr, "target", f.target,
			"reason", why, "duration_ms", durationMS(time.Since(start)), "err", err.Error())
		_ = client.Close()
		return
	}
	s.setKeepalive(f, upstream, "upstream")

	ctx, cancel := context.WithCancelCause(s.hardCtx)
	defer cancel(nil)
	c := &conn{upstream: addr, cancel: cancel}
	f.track(c)
	res := s.cfg.Relay(relay.WithCounters(ctx, &f.stats.bytes), client, upstream, s.cfg.IdleTimeout)
	f.untrack(c)

	reason := string(res.Reason)
	if res.Reason == relay.ReasonCanceled {
		switch context.Cause(ctx) {
		case errStale:
			reason = closeStale
		case errDrainDeadline:
			reason = closeDrainDeadline
		}
	}
	level := slog.LevelDebug
	switch reason {
	case string(relay.ReasonUpstreamError):
		level = slog.LevelWarn
	case closeStale:
		level = slog.LevelInfo
	}
	attrs := []any{"listen_port", f.port, "client", clientAddr, "upstream", netip.AddrPortFrom(addr, uint16(f.TargetPort)).String(),
		"to_upstream", res.ToUpstream, "to_client", res.ToClient, "duration_ms", durationMS(time.Since(start)), "reason", reason}
	if res.Err != nil {
		attrs = append(attrs, "err", res.Err.Error())
	}
	s.log.Log(context.Background(), level, "connection closed", attrs...)
	// Counted after the log line, so whoever sees the counter sees the line.
	// The bytes were counted live by the relay (relay.Counters).
	f.stats.closed(reason)
}

// connDone releases what a connection held. The global slot goes first,
// so whoever sees a forward's active gauge drop can connect again.
func (s *Server) connDone(f *forward) {
	n := s.active.Add(-1)
	if s.mem != nil {
		s.mem.down(n)
	}
	f.stats.activeConns.Add(-1)
	s.conns.Done()
}

// Close reasons beyond relay.Reason, as they appear in logs and metrics.
const (
	closeDialFailed    = "dial_failed"
	closeStale         = "stale_upstream"
	closeDrainDeadline = "drain_deadline"
)

// dial resolves the target now (no cache of our own: failover moves DNS)
// and tries each address in turn, each with the connect timeout.
func (s *Server) dial(f *forward) (*net.TCPConn, netip.Addr, string, error) {
	addrs, err := s.resolve(s.hardCtx, f.TargetHost)
	if err != nil {
		f.stats.dialFailure(failDNS)
		return nil, netip.Addr{}, failDNS, err
	}
	var errs []error
	why := failOther
	for _, a := range addrs {
		ctx, cancel := context.WithTimeout(s.hardCtx, s.cfg.ConnectTimeout)
		target := netip.AddrPortFrom(a, uint16(f.TargetPort)).String()
		c, err := s.cfg.DialContext(ctx, "tcp", target)
		cancel()
		if err != nil {
			why = dialFailReason(err)
			f.stats.dialFailure(why)
			errs = append(errs, fmt.Errorf("%s: %s: %w", target, why, err))
			continue
		}
		tc, ok := c.(*net.TCPConn)
		if !ok {
			_ = c.Close()
			why = failOther
			f.stats.dialFailure(why)
			errs = append(errs, fmt.Errorf("%s: dialer returned %T, not *net.TCPConn", target, c))
			continue
		}
		return tc, a, "", nil
	}
	return nil, netip.Addr{}, why, fmt.Errorf("every address of %s failed: %w", f.target, errors.Join(errs...))
}

// resolve returns the target's addresses; an IP literal is used as is.
func (s *Server) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	addrs, err := s.cfg.Resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolve %s: no addresses", host)
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	return addrs, nil
}

func isIP(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
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
		// failed-over writer that vanished) is noticed within about 2×ka.
		err = c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: ka, Interval: max(ka/3, time.Second), Count: 3})
	}
	if err != nil && f.sockoptFailed.CompareAndSwap(false, true) {
		s.log.Error("setting TCP keepalive failed; the socket keeps the kernel's settings (logged once per forward)",
			"listen_port", f.port, "side", side, "keepalive_ms", ka.Milliseconds(), "err", err.Error())
	}
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

// staleLoop re-resolves the target every StaleCheckInterval and cancels the
// relays whose upstream address is no longer in the answer: after a
// failover the demoted writer keeps old connections open (read-only) until
// something closes them. A failed lookup or an empty answer closes nothing.
func (s *Server) staleLoop(ctx context.Context, f *forward, loops *sync.WaitGroup) {
	defer loops.Done()
	t := time.NewTicker(s.cfg.StaleCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		addrs, err := s.resolve(ctx, f.TargetHost)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("stale check: lookup failed; closing nothing", "target", f.target, "err", err)
			}
			continue
		}
		current := make(map[netip.Addr]bool, len(addrs))
		for _, a := range addrs {
			current[a] = true
		}
		var stale []*conn
		f.mu.Lock()
		for c := range f.conns {
			if !current[c.upstream] {
				stale = append(stale, c)
			}
		}
		f.mu.Unlock()
		if len(stale) > 0 {
			s.log.Info("stale check: closing connections to addresses no longer in DNS", "target", f.target, "connections", len(stale), "answer", addrs)
		}
		for _, c := range stale {
			c.cancel(errStale)
		}
	}
}
