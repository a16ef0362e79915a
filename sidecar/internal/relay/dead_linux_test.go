package relay

import (
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
