// Package proxy is the forwarder: it listens on each forward's port, and for
// every accepted connection looks the target up (DNSCacheTTL), dials it and hands
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

	"github.com/example/sidecar/sidecar/internal/loglimit"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/relay"
)

// Forward is one listening port and the target behind it.
type Forward struct {
	ListenPort int    // 0 picks a free port (tests)
	TargetHost string // DNS name, looked up again once its answer is DNSCacheTTL old, or IP literal
	TargetPort int

	// TLS, when set, makes the sidecar take part in each connection's MySQL
	// login and speak verified TLS to the target (package mysqltls); nil
	// relays bytes as they are.
	TLS *mysqltls.Target
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
	DefaultDNSCacheTTL    = time.Second

	// Memory goes back to the OS after a burst of at least this many
	// connections has drained, at most once per DefaultReleaseMemoryEvery
	// (docs/operations.md quotes both; a test ties them).
	DefaultBurstConnections   = 256
	DefaultReleaseMemoryEvery = 10 * time.Second
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
	StaleAfter         time.Duration // close them once gone from two checks' answers and this long; 0 = DefaultStaleAfter
	CheckTargets       bool          // look each target name up once at start and warn if it fails; false = not before a connection
	DNSCacheTTL        time.Duration // reuse a target's DNS answer for new connections this long; 0 = 1s, negative = look up for every connection

	Relay       relay.Func                                                               // nil = relay.Copy
	RelayCodec  relay.CodecFunc                                                          // TLS sessions (TARGET_TLS); nil = mysqltls.Relay, two goroutines each
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
	// BurstConnections: 0 = DefaultBurstConnections, negative = never.
	// ReleaseMemoryEvery: 0 = DefaultReleaseMemoryEvery.
	BurstConnections   int
	ReleaseMemoryEvery time.Duration
	FreeOSMemory       func() // nil = debug.FreeOSMemory

	// While at least DepartureFlood clients per second leave a forward
	// without sending a byte, each new client of it waits DepartureGrace
	// before the dial, so one that leaves at once costs the database no
	// connection (see departures). DepartureGrace: 0 = DefaultDepartureGrace,
	// negative = never wait. DepartureFlood: 0 = DefaultDepartureFlood.
	DepartureGrace time.Duration
	DepartureFlood int

	// unansweredAfter is the package's unansweredAfter unless a test sets
	// it (export_test.go): which side of it a departure falls on must not
	// be up to the test machine's scheduler.
	unansweredAfter time.Duration
	// queuedCap, when positive, is what the drain takes from a listener's
	// accept queue at most in place of a full queue (queuedOn), which a
	// test could not fill past (export_test.go).
	queuedCap int
}

func (c Config) withDefaults() Config {
	if c.StaleAfter <= 0 {
		c.StaleAfter = DefaultStaleAfter
	}
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
	if c.DNSCacheTTL == 0 {
		c.DNSCacheTTL = DefaultDNSCacheTTL
	}
	if c.Relay == nil {
		c.Relay = relay.Copy
	}
	if c.Listen == nil {
		var lc net.ListenConfig
		c.Listen = lc.Listen
	}
	if c.DialContext == nil {
		// Keepalive is set below, the same way on both sides. The client is
		// checked once more just before connect(): on a fast network the
		// connection is complete within the call, and a database counts
		// every connection that never logs in as an aborted connect.
		d := net.Dialer{KeepAlive: -1, ControlContext: refuseIfClientGone}
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
	if c.DepartureGrace == 0 {
		c.DepartureGrace = DefaultDepartureGrace
	}
	if c.DepartureFlood <= 0 {
		c.DepartureFlood = DefaultDepartureFlood
	}
	if c.BurstConnections == 0 {
		c.BurstConnections = DefaultBurstConnections
	}
	if c.ReleaseMemoryEvery <= 0 {
		c.ReleaseMemoryEvery = DefaultReleaseMemoryEvery
	}
	if c.FreeOSMemory == nil {
		c.FreeOSMemory = freeOSMemory
	}
	if c.unansweredAfter <= 0 {
		c.unansweredAfter = unansweredAfter
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
	// DNS lookups run apart from connections (answers.go), under
	// lookupCtx: ended when no connection is left to wait for them.
	lookups     sync.WaitGroup
	lookupCtx   context.Context
	stopLookups context.CancelFunc
	stopAccept  chan struct{}   // closed when the drain begins: wakes accept loops from their backoff
	mem         *memoryReleaser // nil when BurstConnections < 0
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

	answers answers   // the target's last DNS answer (DNSCacheTTL)
	down    downAddrs // addresses whose dials failed lately: tried last

	// Rate-limited, so a reconnect storm or a failover cannot flood the
	// logs: "connection limit reached" from the accept loop, "dial target
	// failed" from every connection goroutine.
	rejectLog    *loglimit.Limiter
	acceptLog    *loglimit.Limiter // accept failures: out of descriptors, they come by the hundred a second
	dialFailLog  *loglimit.Limiter
	addrFailLog  *loglimit.Limiter // an address failed, a later one answered
	endedFailLog *loglimit.Limiter // an address failed, and the connection ended before another answered
	brokenLog    *loglimit.Limiter // "connection closed" at WARN: the database side broke it
	refusedLog   *loglimit.Limiter // TLS logins refused at WARN: a restarting writer refuses a whole pool

	sockoptFailed atomic.Bool // a socket option failed once: logged, not again
	departed      departures  // clients that left without sending a byte, for the departure grace
}

// New checks cfg and returns a Server that has not opened anything yet.
func New(cfg Config) (*Server, error) {
	if len(cfg.Forwards) == 0 {
		return nil, errors.New("proxy: no forwards configured")
	}
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, log: cfg.Logger, stopAccept: make(chan struct{})}
	s.hardCtx, s.hardCancel = context.WithCancelCause(context.Background())
	s.lookupCtx, s.stopLookups = context.WithCancel(s.hardCtx)
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
		if f.TLS != nil {
			fw.stats.initTLS()
		}
		fw.rejectLog = loglimit.New(cfg.Logger, slog.LevelWarn, "connection limit reached; closed new connection",
			"connection limit reached for more clients; closed them (latest shown)")
		fw.acceptLog = loglimit.New(cfg.Logger, slog.LevelError, "accept failed; retrying",
			"accept failed more times; retrying (latest shown)")
		fw.dialFailLog = loglimit.New(cfg.Logger, slog.LevelError, "dial target failed; closing client",
			"dial target failed for more clients; closed them (latest failure shown)")
		fw.brokenLog = loglimit.New(cfg.Logger, slog.LevelWarn, "connection closed",
			"connection closed: more connections broken on the database side (latest shown)")
		fw.addrFailLog = loglimit.New(cfg.Logger, slog.LevelWarn, "dial of a target address failed; another answered, and the failed one is tried last for a while",
			"dials of target addresses failed for more clients; others answered (latest shown)")
		fw.endedFailLog = loglimit.New(cfg.Logger, slog.LevelWarn, "dial of a target address failed; the connection ended before another answered",
			"dials of target addresses failed for more connections that ended before another answered (latest shown)")
		fw.refusedLog = loglimit.New(cfg.Logger, slog.LevelWarn, "TLS login refused; the app was sent a MySQL error",
			"TLS logins refused for more clients; the apps were sent MySQL errors (latest shown)")
		s.fwds = append(s.fwds, fw)
	}
	return s, nil
}

// ListenNetwork binds what was asked: an IPv4 address (0.0.0.0 included)
// listens on IPv4 only; "::" or "" listens on both families (Go's "tcp"
// on a wildcard address is dual-stack), another IPv6 address on IPv6.
// The admin listener binds the same way.
func ListenNetwork(addr string) string {
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
		ln, err := s.cfg.Listen(ctx, ListenNetwork(s.cfg.ListenAddr), addr)
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

	// The stale checks outlive ctx until Serve returns: a writer demoted
	// during the drain must not keep its connections until DRAIN_TIMEOUT.
	staleCtx, stopStale := context.WithCancel(context.WithoutCancel(ctx))
	var loops, staleLoops sync.WaitGroup
	defer staleLoops.Wait()
	defer stopStale()
	for _, f := range s.fwds {
		loops.Add(1)
		go s.acceptLoop(f, &loops)
		if s.cfg.StaleCheckInterval > 0 && !isIP(f.TargetHost) {
			staleLoops.Add(1)
			go s.staleLoop(staleCtx, f, &staleLoops)
		}
	}
	if s.mem != nil {
		loops.Add(1)
		go s.releaseMemory(ctx, &loops)
	}
	s.listening.Store(true)
	s.log.Info("forwarding", "listeners", s.listenerNames())
	if s.cfg.CheckTargets {
		for _, f := range s.fwds {
			if !isIP(f.TargetHost) {
				s.conns.Add(1) // the lookup it starts ends with the drain, as a connection's does
				go s.checkTarget(ctx, f)
			}
		}
	}

	<-ctx.Done()
	s.draining.Store(true)
	close(s.stopAccept)
	for _, f := range s.fwds {
		s.takeQueued(f)  // connections the kernel completed are served, not reset
		_ = f.ln.Close() // then refuse new ones
	}
	loops.Wait()
	inFlight := s.active.Load()
	s.log.Info("draining", "in_flight", inFlight, "drain_timeout_ms", max(s.cfg.DrainTimeout, 0).Milliseconds())

	cut = s.drainOrCut()
	// Every connection has ended, so no more events: a pending summary is
	// written now, before the line that says the drain is done.
	s.flushLogs()
	if cut == 0 {
		s.log.Info("drained", "connections_cut", 0)
		return 0, nil
	}
	s.log.Warn("drain deadline passed, closed remaining connections", "connections_cut", cut)
	return cut, nil
}

// drainOrCut waits up to DrainTimeout for the open connections to end,
// then closes those left and waits for them; it returns how many it
// closed (0 also when DRAIN_TIMEOUT=0 found nothing open): those counted
// as drain_deadline, not every one open at the deadline, as one may end
// cleanly as the cut comes (relay.Copy).
func (s *Server) drainOrCut() int {
	done := make(chan struct{})
	go s.waitConns(done)
	if s.cfg.DrainTimeout > 0 {
		timer := time.NewTimer(s.cfg.DrainTimeout)
		defer timer.Stop()
		select {
		case <-done:
			return 0
		case <-timer.C:
		}
	}
	before := s.closedAs(closeDrainDeadline)
	s.hardCancel(errDrainDeadline)
	<-done
	return int(s.closedAs(closeDrainDeadline) - before)
}

// closedAs is how many connections ended for reason, across forwards.
func (s *Server) closedAs(reason closeReason) uint64 {
	var n uint64
	for _, f := range s.fwds {
		f.stats.mu.Lock()
		n += f.stats.closes[string(reason)]
		f.stats.mu.Unlock()
	}
	return n
}

// releaseMemory returns memory to the OS after bursts, until the drain.
func (s *Server) releaseMemory(ctx context.Context, loops *sync.WaitGroup) {
	defer loops.Done()
	s.mem.run(ctx, s.active.Load, func(peak, now int64, took time.Duration) {
		s.log.Debug("burst drained; returned free memory to the OS", "peak_connections", peak, "connections", now,
			"duration_ms", durationMS(took))
	})
}

// checkTarget looks f's target up once, so a mistyped TARGET_HOST shows
// at start rather than at the app's first connection. The answer fills the
// DNS cache, as a connection's lookup does.
func (s *Server) checkTarget(ctx context.Context, f *forward) {
	defer s.conns.Done()
	if _, _, _, err := s.lookup(ctx, f); err != nil && ctx.Err() == nil {
		s.log.Warn("target name does not resolve from here; connections to it fail until it does",
			"listen_port", f.port, "target", f.target, "err", err.Error())
	}
}

// flushLogs writes rate-limited lines still pending.
func (s *Server) flushLogs() {
	for _, f := range s.fwds {
		f.rejectLog.Close()
		f.acceptLog.Close()
		f.dialFailLog.Close()
		f.addrFailLog.Close()
		f.endedFailLog.Close()
		f.brokenLog.Close()
		f.refusedLog.Close()
	}
}

// waitConns closes done once every connection has ended, and with them
// the lookups only they start: one nobody waits for any more (its client
// left) is stopped, not waited out for up to CONNECT_TIMEOUT.
func (s *Server) waitConns(done chan<- struct{}) {
	s.conns.Wait()
	s.stopLookups()
	s.lookups.Wait()
	close(done)
}

func (s *Server) listenerNames() []string {
	out := make([]string, len(s.fwds))
	for i, f := range s.fwds {
		out[i] = f.ln.Addr().String() + "=" + f.target
	}
	return out
}
