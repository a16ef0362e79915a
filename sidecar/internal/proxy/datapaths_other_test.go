//go:build !linux

package proxy_test

import (
	"testing"

	"github.com/example/sidecar/sidecar/internal/relay"
)

// dataPaths is the portable relay only: epoll is Linux-only.
func dataPaths(*testing.T) []namedRelay { return []namedRelay{{"portable", relay.Copy}} }
