package mysqltls_test

import (
	"testing"

	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/relay/relaytest"
)

// The portable data path of TLS sessions (two goroutines over the
// tls.Conn) passes the relay conformance suite that the byte relays pass,
// as the epoll engine's RelayCodec does.
func TestRelayCodecConformance(t *testing.T) {
	relaytest.RunCodec(t, mysqltls.RelayCodec)
}
