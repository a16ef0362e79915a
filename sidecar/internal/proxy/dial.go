package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// dial resolves the target now (no cache of our own: failover moves DNS)
// and tries each address in turn, each with the connect timeout.
func (s *Server) dial(parent context.Context, f *forward) (*net.TCPConn, netip.Addr, dialFailure, error) {
	addrs, err := s.resolve(parent, f.TargetHost)
	if err != nil {
		f.stats.dialFailure(failDNS)
		return nil, netip.Addr{}, failDNS, err
	}
	var errs []error
	why := failOther
	for _, a := range addrs {
		if parent.Err() != nil {
			return nil, netip.Addr{}, failCanceled, context.Cause(parent)
		}
		ctx, cancel := context.WithTimeout(parent, s.cfg.ConnectTimeout)
		target := netip.AddrPortFrom(a, uint16(f.TargetPort)).String()
		c, err := s.cfg.DialContext(ctx, "tcp", target)
		cancel()
		if err != nil && (context.Cause(parent) == errClientGone || errors.Is(err, errClientGone)) {
			return nil, netip.Addr{}, failCanceled, errClientGone // not the target's failure: not counted
		}
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
