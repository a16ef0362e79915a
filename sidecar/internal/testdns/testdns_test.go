package testdns

import (
	"context"
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
