//go:build linux && (amd64 || arm64)

package epollrelay_test

import (
	"testing"

	"github.com/example/sidecar/sidecar/internal/relay/relaytest"
)

// The engine passes the same suite as the portable data path, in each
// shape it can run in.
func TestConformance(t *testing.T) {
	for _, c := range engineConfigs {
		t.Run(c.name, func(t *testing.T) {
			if testing.Short() && c.name != engineConfigs[0].name {
				t.Skip("-short: the suite runs against the first shape (the default) only; the engine tests (TestPingPong, TestBulkBothWays, TestIdleTimeout…) still run every shape")
			}
			relaytest.Run(t, newEngine(t, c.opts).Relay)
		})
	}
}

// TLS sessions (RelayCodec) pass it too, but for the tests of a client
// leaving before the login, which a codec's relay starts after.
func TestConformanceCodec(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: mysqltls's TestRelayCodecConformance still runs the TLS suite (on the portable TLS relay), and the sidecar's TLS end-to-end tests run TLS sessions on this engine")
	}
	for _, c := range engineConfigs {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel() // an engine each
			relaytest.RunCodec(t, newEngine(t, c.opts).RelayCodec)
		})
	}
}
