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
	d, why, err := s.dialAddrs(parent, f, addrs, asked)
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
	return s.dialAddrs(parent, f, untried, freshAsked)
}

// unansweredAfter is how long a dial may go unanswered before the address
// counts as failed when the client leaves first (an app whose connect
// timeout is shorter than CONNECT_TIMEOUT): TCP sends an unanswered SYN
// again after 1 s, and in a VPC the answer takes well under a millisecond.
const unansweredAfter = time.Second

// dialAddrs tries each address in turn, each with the connect timeout;
// addresses whose dials failed lately go last (down.go). With TLS an
// address has answered once its server greets (Target.Greet): one that
// accepts TCP but stays silent, closes or speaks another protocol (a hung
// or restarting mysqld, whose kernel still accepts) has failed as a dial
// that is refused has, and the next address is tried for the same client,
// which has been sent nothing yet.
func (s *Server) dialAddrs(parent context.Context, f *forward, addrs []netip.Addr, asked time.Time) (dialed, dialFailure, error) {
	var errs []error
	var ungreeted *mysqltls.Refusal
	why := failOther
	probeFor := s.cfg.ConnectTimeout
	if f.TLS != nil {
		probeFor += 2 * f.TLS.HandshakeWait() // the greeting (below) and TLS (Server.judge) tell whether it serves
	}
	ordered := f.down.order(addrs, time.Now(), probeFor)
	for i, a := range ordered {
		if parent.Err() != nil {
			return dialed{}, failCanceled, context.Cause(parent)
		}
		ctx, cancel := context.WithTimeout(parent, s.cfg.ConnectTimeout)
		target := netip.AddrPortFrom(a, uint16(f.TargetPort)).String()
		began := time.Now()
		c, err := s.cfg.DialContext(ctx, "tcp", target)
		cancel()
		if err != nil && (context.Cause(parent) == errClientGone || errors.Is(err, errClientGone)) {
			if waited := time.Since(began); waited >= unansweredAfter {
				// The address did not answer; the client not waiting longer
				// does not make that the client's doing.
				f.down.failed(a, time.Now())
				f.stats.dialFailure(failUnanswered)
				errs = append(errs, fmt.Errorf("%s: %s: no answer in %s, when the client left", target, failUnanswered, waited.Round(time.Millisecond)))
				return dialed{exhausted: i == len(ordered)-1}, failUnanswered, fmt.Errorf("the addresses of %s tried failed: %w", f.target, errors.Join(errs...))
			}
			return dialed{}, failCanceled, errClientGone // not the target's failure: not counted
		}
		if err != nil {
			why = dialFailReason(err)
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
			if parent.Err() != nil { // the client left or the drain deadline passed: nothing learnt of the address
				return dialed{}, failCanceled, context.Cause(parent)
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
	d := dialed{exhausted: true}
	if why == failNoGreeting {
		d.ungreeted = ungreeted
	}
	return d, why, fmt.Errorf("every address of %s failed: %w", f.target, errors.Join(errs...))
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
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

func isIP(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}
