package testdns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func TestAnswersFollowSet(t *testing.T) {
	s := Start(t)
	r := s.Resolver()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, b, v6 := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("::1")
	steps := []struct {
		set  []netip.Addr
		want []netip.Addr
	}{
		{[]netip.Addr{a}, []netip.Addr{a}},
		{[]netip.Addr{b, a}, []netip.Addr{b, a}},
		{[]netip.Addr{b, v6}, []netip.Addr{v6, b}}, // the resolver sorts by RFC 6724
	}
	for i, st := range steps {
		s.Set("DB.Sidecar.Test.", st.set...)
		got, err := r.LookupNetIP(ctx, "ip", "db.sidecar.test")
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, st.want) {
			t.Errorf("step %d: got %v, want %v", i, got, st.want)
		}
	}
	s.Set("db.sidecar.test")
	if got, err := r.LookupNetIP(ctx, "ip", "db.sidecar.test"); err == nil {
		t.Errorf("removed name resolved to %v", got)
	}
	if s.Queries() == 0 {
		t.Error("no queries counted")
	}
}

// Fail gives a lookup error that is not "no such host", until Set.
func TestFail(t *testing.T) {
	s := Start(t)
	r := s.Resolver()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a := netip.MustParseAddr("127.0.0.2")
	s.Set("db.sidecar.test", a)
	s.Fail("DB.sidecar.test.")
	_, err := r.LookupNetIP(ctx, "ip", "db.sidecar.test")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || dnsErr.IsNotFound {
		t.Fatalf("lookup of a failing name: %v; want a DNS error other than not found", err)
	}
	s.Set("db.sidecar.test", a)
	if got, err := r.LookupNetIP(ctx, "ip", "db.sidecar.test"); err != nil || !reflect.DeepEqual(got, []netip.Addr{a}) {
		t.Errorf("after Set: %v, %v; want %v", got, err, a)
	}
	s.Set("db.sidecar.test")
	if _, err := r.LookupNetIP(ctx, "ip", "db.sidecar.test"); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("lookup of a removed name: %v; want not found", err)
	}
}

// Stall holds queries until release, which answers them as the table is
// then; a client that gives up first sees a timeout.
func TestStall(t *testing.T) {
	s := Start(t)
	r := s.Resolver()
	a, b := netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")
	s.Set("db.sidecar.test", a)
	release := s.Stall()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := r.LookupNetIP(ctx, "ip4", "db.sidecar.test")
	cancel()
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsTimeout || s.Queries() != 0 {
		t.Fatalf("lookup during a stall: %v, %d answered; want a timeout and none answered", err, s.Queries())
	}
	got := make(chan []netip.Addr, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		addrs, _ := r.LookupNetIP(ctx, "ip4", "db.sidecar.test")
		got <- addrs
	}()
	for s.Stalled() < 2 { // the timed-out query and this one
		time.Sleep(time.Millisecond)
	}
	s.Set("db.sidecar.test", b)
	release()
	if addrs := <-got; !reflect.DeepEqual(addrs, []netip.Addr{b}) {
		t.Errorf("lookup answered at release: %v; want %v, the table at release", addrs, b)
	}
	if s.Stalled() != 0 || s.Queries() != 2 {
		t.Errorf("after release: %d stalled, %d answered; want 0 and 2", s.Stalled(), s.Queries())
	}
}

// FailA fails A questions only, and answers AAAA (none, for an IPv4-only
// name) after the failure: asked for both families at once, Go's resolver
// then reports the last error heard, "no such host".
func TestFailA(t *testing.T) {
	s := Start(t)
	r := s.Resolver()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.Set("db.sidecar.test", netip.MustParseAddr("127.0.0.2"))
	s.FailA("db.sidecar.test")
	var dnsErr *net.DNSError
	if _, err := r.LookupNetIP(ctx, "ip4", "db.sidecar.test"); !errors.As(err, &dnsErr) || dnsErr.IsNotFound {
		t.Errorf("A lookup: %v; want a failure other than not found", err)
	}
	if addrs, err := r.LookupNetIP(ctx, "ip6", "db.sidecar.test"); len(addrs) != 0 || !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("AAAA lookup: %v, %v; want no addresses", addrs, err)
	}
	if _, err := r.LookupNetIP(ctx, "ip", "db.sidecar.test"); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("lookup of both: %v; want not found, the error heard last", err)
	}
}

// QueriesOf counts the questions answered about one name, whatever its
// case or final dot, apart from the other names'.
func TestQueriesOf(t *testing.T) {
	s := Start(t)
	r := s.Resolver()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.Set("db.sidecar.test", netip.MustParseAddr("127.0.0.2"))
	s.Set("other.sidecar.test", netip.MustParseAddr("127.0.0.3"))
	if _, err := r.LookupNetIP(ctx, "ip4", "db.sidecar.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.LookupNetIP(ctx, "ip", "other.sidecar.test"); err != nil {
		t.Fatal(err)
	}
	if db, other := s.QueriesOf("DB.Sidecar.Test."), s.QueriesOf("other.sidecar.test"); db != 1 || other != 2 || s.Queries() != 3 {
		t.Errorf("QueriesOf: db %d, other %d (of %d); want 1 (A) and 2 (A and AAAA) of 3", db, other, s.Queries())
	}
}
