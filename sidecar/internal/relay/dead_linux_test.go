package relay

import (
	"errors"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
)

// socketDead tells a socket its peer reset from a healthy one: that is
// what blame relies on when splice fails.
func TestSocketDead(t *testing.T) {
	c, peer := testkit.Pair(t, testkit.Listen(t))
	if socketDead(c) {
		t.Fatal("healthy socket reported dead")
	}
	_ = peer.SetLinger(0)
	_ = peer.Close() // RST
	for deadline := time.Now().Add(10 * time.Second); !socketDead(c); {
		if time.Now().After(deadline) {
			t.Fatal("socket reset by its peer not reported dead")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitUntil polls cond until it holds; the bound is a safety net.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
	}
}

// Stuck's check sees a reset and leaves its error to the socket's reader:
// in an IAM session the other pump may read the socket meanwhile, and an
// error the check took made that read a bare EOF, as from a clean close.
func TestResetSeenWithoutTakingItsError(t *testing.T) {
	c, peer := testkit.Pair(t, testkit.Listen(t))
	if err := resetErr(c); err != nil {
		t.Fatalf("healthy socket reported reset: %v", err)
	}
	_ = peer.SetLinger(0)
	_ = peer.Close() // RST
	waitUntil(t, "reset seen", func() bool { return resetErr(c) != nil })
	if err := resetErr(c); !PeerLeft(err) {
		t.Fatalf("second check: %v; want the reset still seen, as the peer's doing", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after the check: %v; want the reset's ECONNRESET", err)
	}
}

// A clean close is no reset: the peer's FIN alone (half-closed), nor a
// socket both sides closed cleanly, which the kernel has in TCP_CLOSE too.
func TestCleanCloseIsNoReset(t *testing.T) {
	c, peer := testkit.Pair(t, testkit.Listen(t))
	_ = peer.Close() // FIN
	waitUntil(t, "FIN arrived", func() bool { return onFD(c, finArrived) })
	if err := resetErr(c); err != nil {
		t.Fatalf("half-closed socket reported reset: %v", err)
	}

	c, peer = testkit.Pair(t, testkit.Listen(t))
	_ = c.CloseWrite()
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := peer.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("peer read: %v; want EOF", err)
	}
	_ = peer.Close()
	waitUntil(t, "TCP_CLOSE after both FINs", func() bool {
		return onFD(c, func(fd int) bool { return tcpState(fd) == tcpClose })
	})
	if err := resetErr(c); err != nil {
		t.Fatalf("cleanly closed socket reported reset: %v", err)
	}
}

// Stuck ends a relay whose watched side reset, blaming that side, and
// leaves the reset's error to whatever reads the socket.
func TestStuckSeesResetAndLeavesItsError(t *testing.T) {
	client, app := testkit.Pair(t, testkit.Listen(t))
	type ending struct {
		reason Reason
		err    error
	}
	ended := make(chan ending, 2)
	s := NewStuck(client, nil, func(r Reason, err error) { ended <- ending{r, err} })
	defer s.Stop()
	s.Begin(true) // a write to the upstream blocks: nothing reads the client
	defer s.Done(true)
	_ = app.SetLinger(0)
	_ = app.Close() // RST
	select {
	case e := <-ended:
		if e.reason != ReasonClientError || !PeerLeft(e.err) {
			t.Fatalf("ended with %v, %v; want %v and a reset", e.reason, e.err, ReasonClientError)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client's reset not seen")
	}
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after Stuck's check: %v; want the reset's ECONNRESET", err)
	}
}
