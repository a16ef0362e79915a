//go:build linux && (amd64 || arm64)

package proxy_test

import (
	"testing"

	"github.com/example/sidecar/sidecar/internal/epollrelay"
	"github.com/example/sidecar/sidecar/internal/relay"
)

// dataPaths are the portable relay and the epoll engine with its defaults;
// the engine lives until the calling test ends.
func dataPaths(t *testing.T) []namedRelay {
	t.Helper()
	e, err := epollrelay.New(epollrelay.Options{})
	if err != nil {
		t.Fatalf("epoll engine: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return []namedRelay{{"portable", relay.Copy}, {"epoll", e.Relay}}
}
