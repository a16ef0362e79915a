package proxy

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"
)

const (
	testTTL    = time.Second
	testLookup = 5 * time.Second // the lookup's timeout
)

var (
	errFail = errors.New("server misbehaving")
	addrA   = []netip.Addr{netip.MustParseAddr("10.0.0.1")}
	addrB   = []netip.Addr{netip.MustParseAddr("10.0.0.2")}
)

// hit fails the test unless the cache answers at now with want.
func hit(t *testing.T, a *answers, now time.Time, want []netip.Addr, why string) {
	t.Helper()
	got, tk := a.get(now, testTTL, testLookup)
	if tk != nil || got.err != nil || !slices.Equal(got.addrs, want) {
		t.Fatalf("%s: get = %v, %v, miss %v; want %v", why, got.addrs, got.err, tk != nil, want)
	}
}

// miss fails the test unless the cache sends the caller to look up at now.
func miss(t *testing.T, a *answers, now time.Time, why string) *ticket {
	t.Helper()
	got, tk := a.get(now, testTTL, testLookup)
	if tk == nil {
		t.Fatalf("%s: get = %v, %v; want a miss", why, got.addrs, got.err)
	}
	return tk
}

// The cached answer is the newest lookup's, whatever order lookups end in,
// and serves while younger than the TTL; then the first caller looks up
// and the others keep the answer until that lookup ends (or could have).
func TestAnswers(t *testing.T) {
	t0 := time.Now()
	var a answers
	a.end(miss(t, &a, t0, "an empty cache"))
	a.put(addrB, nil, t0)
	a.put(addrA, nil, t0.Add(-time.Millisecond)) // a slower lookup that began first
	hit(t, &a, t0.Add(testTTL-time.Millisecond), addrB, "the newer lookup's answer, within the TTL")

	exp := t0.Add(testTTL)
	first := miss(t, &a, exp, "an answer as old as the TTL")
	hit(t, &a, exp.Add(time.Millisecond), addrB, "while the first caller looks up")
	a.end(first) // given up: its client left
	second := miss(t, &a, exp.Add(2*time.Millisecond), "after the lookup was given up")
	hit(t, &a, exp.Add(3*time.Millisecond), addrB, "while the second caller looks up")
	third := miss(t, &a, second.began.Add(2*testLookup), "after the second lookup could have ended")
	a.end(second) // ends late: the third lookup keeps its role
	hit(t, &a, third.began.Add(time.Millisecond), addrB, "while the third caller looks up")

	a.put(addrA, nil, second.began)
	a.end(third)
	hit(t, &a, second.began.Add(testTTL-time.Millisecond), addrA, "the lookup's answer")
	miss(t, &a, second.began.Add(testTTL), "the lookup's answer as old as the TTL")
}

// No such name is an answer: it fails connections for the TTL without a
// lookup each, and is not used while the name is looked up again.
func TestAnswersNotFound(t *testing.T) {
	t0 := time.Now()
	errNone := errors.New("no such host")
	var a answers
	a.put(addrA, nil, t0.Add(-testTTL))
	a.put(nil, errNone, t0)
	if got, tk := a.get(t0.Add(testTTL-time.Millisecond), testTTL, testLookup); tk != nil || got.err != errNone || got.addrs != nil {
		t.Fatalf("get = %v, %v, miss %v; want the cached no such name", got.addrs, got.err, tk != nil)
	}
	miss(t, &a, t0.Add(testTTL), "no such name as old as the TTL")
	miss(t, &a, t0.Add(testTTL+time.Millisecond), "no such name while it is looked up again")
}

// A connection whose every address failed marks the answer (unless DNS
// was asked within MinRelookup): the next callers look the name up rather
// than dial it, and the answer stays until another replaces it. While a
// failed lookup holds it, it is not marked: DNS has nothing newer to say.
func TestAnswersForget(t *testing.T) {
	t0 := time.Now()
	var a answers
	tk := miss(t, &a, t0, "an empty cache")
	a.put(addrA, nil, tk.began)
	a.end(tk)
	if !a.forget(t0.Add(-time.Millisecond), t0.Add(MinRelookup)) {
		t.Error("forget of a replaced answer said a new lookup would not help")
	}
	hit(t, &a, t0.Add(MinRelookup), addrA, "after forgetting a replaced answer")
	if a.forget(t0, t0.Add(MinRelookup-time.Millisecond)) {
		t.Error("forget asked for a lookup within MinRelookup of the last")
	}
	hit(t, &a, t0.Add(MinRelookup), addrA, "an answer not marked")
	if !a.forget(t0, t0.Add(MinRelookup)) {
		t.Fatal("forget MinRelookup after the last lookup said a new one would not help")
	}
	relook := miss(t, &a, t0.Add(MinRelookup), "a failed answer")
	miss(t, &a, t0.Add(MinRelookup+time.Millisecond), "a failed answer while it is looked up again")
	failed := relook.began.Add(testLookup)
	if got, held, _ := a.hold(relook, errFail, failed, testTTL); !held || !slices.Equal(got.addrs, addrA) {
		t.Fatalf("hold of a failed answer when DNS fails = %v, held %v; want it kept", got.addrs, held)
	}
	a.end(relook)
	hit(t, &a, failed.Add(time.Millisecond), addrA, "a failed answer held: DNS failed too")
	if a.forget(t0, failed.Add(MinRelookup)) {
		t.Error("forget during a hold asked for a lookup: DNS failed, it has nothing newer to say")
	}
	hit(t, &a, failed.Add(MinRelookup), addrA, "an answer failing again during the hold")
}

// After a failed lookup the last answer serves for the TTL; then one
// caller looks up again while the others keep it; an answer ends the hold,
// and a lookup that failed after a newer one answered holds nothing.
func TestAnswersHold(t *testing.T) {
	t0 := time.Now()
	var a answers
	if got, held, _ := a.hold(&ticket{began: t0}, errFail, t0, testTTL); held || got.addrs != nil || got.err != errFail {
		t.Fatalf("hold of an empty cache = %v, %v, held %v; want the failure", got.addrs, got.err, held)
	}
	if got, tk := a.get(t0.Add(testTTL-time.Millisecond), testTTL, testLookup); tk != nil || got.err != errFail {
		t.Fatalf("get after a failure with nothing to hold = %v, miss %v; want the failure, cached for the TTL", got.err, tk != nil)
	}
	a.put(addrA, nil, t0)
	tk := miss(t, &a, t0.Add(2*testTTL), "an expired answer before any lookup failed")
	failed := tk.began.Add(testLookup)
	got, held, started := a.hold(tk, errFail, failed, testTTL)
	if !held || !started || !slices.Equal(got.addrs, addrA) || !got.asked.Equal(t0) {
		t.Fatalf("hold = %v asked %v, held %v, started %v; want the last answer, asked at t0, held, started", got.addrs, got.asked, held, started)
	}
	a.end(tk)
	if _, _, started := a.hold(tk, errFail, failed.Add(time.Millisecond), testTTL); started {
		t.Error("a second failure during the hold said it started one")
	}
	hit(t, &a, failed.Add(testTTL), addrA, "during the hold")
	end := failed.Add(time.Millisecond + testTTL) // the second failure renewed the hold
	again := miss(t, &a, end, "as the hold ended")
	hit(t, &a, end.Add(time.Millisecond), addrA, "while one caller looks up again")
	a.put(addrB, nil, again.began)
	a.end(again)
	miss(t, &a, end.Add(testTTL), "an answer as old as the TTL after a lookup answered: the hold survived")

	late := &ticket{began: end.Add(-time.Millisecond)} // began before the answer above
	if got, held, started := a.hold(late, errFail, end.Add(testTTL), testTTL); held || started || !slices.Equal(got.addrs, addrB) {
		t.Errorf("hold for a lookup older than the answer = %v, held %v, started %v; want the newer answer, not held", got.addrs, held, started)
	}
	a.put(nil, errors.New("no such host"), end.Add(testTTL))
	after := &ticket{began: end.Add(2 * testTTL)}
	if got, held, _ := a.hold(after, errFail, after.began, testTTL); held || got.addrs != nil || got.err != errFail {
		t.Errorf("hold after no such name = %v, %v, held %v; want the failure, nothing to hold", got.addrs, got.err, held)
	}
}
