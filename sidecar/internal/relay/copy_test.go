package relay_test

import (
	"testing"

	"github.com/example/sidecar/sidecar/internal/relay"
	"github.com/example/sidecar/sidecar/internal/relay/relaytest"
)

func TestCopyConformance(t *testing.T) { relaytest.Run(t, relay.Copy) }
