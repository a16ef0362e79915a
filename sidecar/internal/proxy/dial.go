package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/example/sidecar/sidecar/internal/mysqltls"
)

// dialed is a connection to the target, the address it reached and when
// the lookup that chose the address began.
type dialed struct {
	conn  *net.TCPConn
	addr  netip.Addr
	asked time.Time
	// With TLS, the server's greeting, read and not yet forwarded.
	greeting *mysqltls.Greeting
	// Without conn: every address was tried and failed (the last one may
	// be unanswered, its client gone).
	exhausted bool
	// Without conn, when the last address tried sent no greeting: what
	// the app is told (not yet sent).
	ungreeted *mysqltls.Refusal
	// Without conn: each address's failure, which a second round for the
	// same connection (a fresh DNS answer) reports with its own, and
	// which is logged when the client left before another answered.
	failures []error
}

// dial looks the target up (an answer at most DNSCacheTTL old: failover
// moves DNS) and tries each address in turn, each with the connect timeout.
// When every address of a cached answer fails, failover may have just
// replaced it: unless the name was looked up within MinRelookup, the
// answer is marked failed and looked up again, and the new answer's
// addresses not tried yet are tried too.
func (s *Server) dial(parent context.Context, f *forward) (dialed, dialFailure, error) {
	addrs, asked, cached, err := s.lookup(parent, f)
	if err != nil && (parent.Err() != nil || s.hardCtx.Err() != nil) {
		return dialed{}, failCanceled, err // not the target's failure: not counted
	}
	if err != nil {
		why := failDNS
		if outOfFiles(err) {
			why = failFDLimit
		}
		f.stats.dialFailure(why)
		return dialed{}, why, err
	}
	d, why, err := s.dialAddrs(parent, f, addrs, asked, nil)
	if why == failUnanswered {
		// The client is gone: nothing to look up again for it. But when
		// every address failed, the next connections look the name up
		// first, as below.
		if cached && d.exhausted {
			f.answers.forget(asked, time.Now())
		}
		return d, why, err
	}
	if err == nil || !cached || why == failCanceled || why == failFDLimit || !f.answers.forget(asked, time.Now()) {
		return d, why, err
	}
	fresh, freshAsked, _, lerr := s.lookup(parent, f)
	untried := slices.DeleteFunc(slices.Clone(fresh), func(a netip.Addr) bool { return slices.Contains(addrs, a) })
	if lerr != nil || len(untried) == 0 {
		return d, why, err
	}
	// The first round's failures go along: counted and put last, they
	// belong in the line that reports this connection's dials.
	return s.dialAddrs(parent, f, untried, freshAsked, d.failures)
}

// unansweredAfter is how long a dial may go unanswered before the address
// counts as failed when the client leaves first (an app whose connect
// timeout is shorter than CONNECT_TIMEOUT): TCP sends an unanswered SYN
// again after 1 s, and in a VPC the answer takes well under a millisecond.
// With TLS the greeting is the answer (leftUnanswered); a MySQL server
// sends it as it accepts.
const unansweredAfter = time.Second

// dialAddrs tries each address in turn, each with the connect timeout;
// addresses whose dials failed lately go last (down.go). With TLS an
// address has answered once its server greets (Target.Greet): one that
// accepts TCP but stays silent, closes or speaks another protocol (a hung
// or restarting mysqld, whose kernel still accepts) has failed as a dial
// that is refused has, and the next address is tried for the same client,
// which has been sent nothing yet. A client that leaves while an address
// is unanswered, by its TCP dial or its greeting, ends the dial; the
// address counts as failed after unansweredAfter (leftUnanswered). errs
// are the failures of an earlier round for the same connection.
func (s *Server) dialAddrs(parent context.Context, f *forward, addrs []netip.Addr, asked time.Time, errs []error) (dialed, dialFailure, error) {
	var ungreeted *mysqltls.Refusal
	why := failOther
	probeFor := s.cfg.ConnectTimeout
	if f.TLS != nil {
		probeFor += 2 * f.TLS.HandshakeWait() // the greeting (below) and TLS (Server.judge) tell whether it serves
	}
	ordered := f.down.order(addrs, time.Now(), probeFor)
	for i, a := range ordered {
		if parent.Err() != nil {
			return dialed{failures: errs}, failCanceled, context.Cause(parent)
		}
		ctx, cancel := context.WithTimeout(parent, s.cfg.ConnectTimeout)
		target := netip.AddrPortFrom(a, uint16(f.TargetPort)).String()
		began := time.Now()
		c, err := s.cfg.DialContext(ctx, "tcp", target)
		cancel()
		if err != nil && clientLeft(parent, err) {
			return leftUnanswered(f, a, target, "no answer", began, s.cfg.unansweredAfter, i == len(ordered)-1, errs)
		}
		if err != nil {
			why = dialFailReason(err)
			if why == failCanceled && parent.Err() != nil {
				// The drain deadline cut it (a client that left is taken
				// above): the address did not fail, so it is not counted
				// or logged as a failure, as in the greeting's wait.
				return dialed{failures: errs}, failCanceled, context.Cause(parent)
			}
			if why == failFDLimit {
				// Says nothing of the address, and the next would fail alike.
				f.stats.dialFailure(why)
				errs = append(errs, fmt.Errorf("%s: %s: the sidecar is out of file descriptors: %w", target, why, err))
				return dialed{}, why, fmt.Errorf("the sidecar could not dial %s: %w", f.target, errors.Join(errs...))
			}
			if why != failCanceled {
				f.down.failed(a, time.Now())
			}
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
		var greeting *mysqltls.Greeting
		if f.TLS == nil {
			f.down.answered(a) // with TLS, once the login shows a server answers there (judge)
		} else if greeting, err = f.TLS.Greet(parent, tc); err != nil {
			_ = tc.Close()
			if clientLeft(parent, err) { // with TLS an address answers by greeting: the same rule as the TCP dial's
				return leftUnanswered(f, a, target, "connected but no greeting", began, s.cfg.unansweredAfter, i == len(ordered)-1, errs)
			}
			if parent.Err() != nil { // the drain deadline passed (or shutdown): nothing learnt of the address
				return dialed{failures: errs}, failCanceled, context.Cause(parent)
			}
			why, ungreeted = failNoGreeting, nil
			errors.As(err, &ungreeted)
			f.down.failed(a, time.Now())
			f.stats.dialFailure(why)
			errs = append(errs, fmt.Errorf("%s: %s: %w", target, why, err))
			continue
		}
		if len(errs) > 0 {
			f.addrFailLog.Event("target", f.target, "upstream", target, "err", errors.Join(errs...).Error())
		}
		return dialed{conn: tc, addr: a, asked: asked, greeting: greeting}, "", nil
	}
	d := dialed{exhausted: true, failures: errs}
	if why == failNoGreeting {
		d.ungreeted = ungreeted
	}
	return d, why, fmt.Errorf("every address of %s failed: %w", f.target, errors.Join(errs...))
}

// clientLeft reports whether a dial for the client of parent ended in err
// because the client left (the watch, or the dialer's last peek).
func clientLeft(parent context.Context, err error) bool {
	return context.Cause(parent) == errClientGone || errors.Is(err, errClientGone)
}

// leftUnanswered ends a dial whose client left while address a, dialed at
// began, had not answered within after (unansweredAfter): "no answer" to the
// TCP dial, or with TLS an accepted connection and no greeting yet (doing,
// for the log). An app whose connect timeout is shorter than CONNECT_TIMEOUT
// would otherwise meet a silent address first on every connection, since no
// wait of the sidecar's ever runs out to mark it. Both count as unanswered,
// not the greeting's no_greeting: that one says the sidecar's own wait ran
// out (or the server closed, or spoke another protocol) and the app is told
// so, while here the app left first and nobody is told (dialFailed), as for
// the TCP dial; err says which wait it was. Under after (unansweredAfter)
// the client says nothing of the address (a pool giving up fast, an nc -z
// check): not counted, not put last. The clock runs from the TCP dial, as
// the address has not answered the sidecar since then.
//
// A live server can be slow to greet (a MySQL server resolving the app's
// host name, skip_name_resolve off, behind a slow resolver), and one app
// that gives up on it then puts it last. That is cheap: it only reorders a
// target's addresses, for DownFor or until a server there answers a login
// (down.order leaves a single address where it is), and the address still
// serves an app the others fail; while it stays that slow, the next apps,
// with the same connect timeout, would give up on it too.
func leftUnanswered(f *forward, a netip.Addr, target, doing string, began time.Time, after time.Duration, last bool, errs []error) (dialed, dialFailure, error) {
	waited := time.Since(began)
	if waited < after {
		return dialed{failures: errs}, failCanceled, errClientGone // not the target's failure: not counted
	}
	f.down.failed(a, time.Now())
	f.stats.dialFailure(failUnanswered)
	errs = append(errs, fmt.Errorf("%s: %s: %s in %s, when the client left", target, failUnanswered, doing, waited.Round(time.Millisecond)))
	return dialed{exhausted: last}, failUnanswered, fmt.Errorf("the addresses of %s tried failed: %w", f.target, errors.Join(errs...))
}

// errNotFound is DNS saying the name has no addresses: an answer, unlike
// a lookup that failed.
var errNotFound = errors.New("no addresses")

// resolve returns the target's addresses; an IP literal is used as is.
// With every, a family whose lookup failed fails the whole (the stale
// check, which closes connections to addresses missing from the answer,
// must not read a failed A lookup as the writer having moved); else the
// other family's addresses do, as Go's resolver has it.
func (s *Server) resolve(ctx context.Context, host string, every bool) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	var addrs []netip.Addr
	var err error
	if !every {
		if addrs, err = s.cfg.Resolver.LookupNetIP(ctx, "ip", host); err != nil && !isNotFound(err) {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
	}
	if len(addrs) == 0 {
		// Go's resolver reports the error it heard last, so a failed A
		// lookup followed by the empty AAAA answer of an IPv4-only name
		// reads as no such host: ask each family to be sure (only now, as
		// apart a name with no AAAA records costs a query per search domain).
		var ferr error
		if addrs, ferr = s.lookupFamilies(ctx, host); ferr != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, ferr)
		}
	}
	if len(addrs) == 0 && err != nil {
		return nil, fmt.Errorf("resolve %s: %w: %w", host, errNotFound, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolve %s: %w", host, errNotFound)
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	return addrs, nil
}

// lookupFamilies looks up the IPv4 and IPv6 addresses apart; the error is
// a family's lookup failing other than with no such host.
func (s *Server) lookupFamilies(ctx context.Context, host string) ([]netip.Addr, error) {
	type found struct {
		addrs []netip.Addr
		err   error
	}
	v6 := make(chan found, 1)
	go func() {
		addrs, err := s.cfg.Resolver.LookupNetIP(ctx, "ip6", host)
		v6 <- found{addrs, err}
	}()
	addrs, err4 := s.cfg.Resolver.LookupNetIP(ctx, "ip4", host)
	r6 := <-v6
	switch {
	case err4 != nil && !isNotFound(err4):
		return nil, err4
	case r6.err != nil && !isNotFound(r6.err):
		return nil, r6.err
	}
	return append(addrs, r6.addrs...), nil
}

func isNotFound(err error) bool {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.IsNotFound
	}
	// A name from /etc/hosts with no address of the family asked for
	// (localhost, ECS extraHosts) gets Go's unexported errNoSuitableAddress,
	// not a DNS error: that family has no addresses, as NXDOMAIN says.
	var addrErr *net.AddrError
	return errors.As(err, &addrErr) && addrErr.Err == "no suitable address found"
}

func isIP(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}
