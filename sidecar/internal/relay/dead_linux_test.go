package relay

import (
	"net"
	"testing"
	"time"
)

// socketDead tells a socket its peer reset from a healthy one: that is
// what blame relies on when splice fails.
func TestSocketDead(t *testing.T) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
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
