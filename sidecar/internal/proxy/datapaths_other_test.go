//go:build !linux || !(amd64 || arm64)

package proxy_test

import (
	"testing"

	"github.com/example/sidecar/sidecar/internal/relay"
)

// dataPaths is the portable relay only: the epoll engine is Linux on
// amd64 and arm64 only.
func dataPaths(*testing.T) []namedRelay { return []namedRelay{{"portable", relay.Copy}} }
