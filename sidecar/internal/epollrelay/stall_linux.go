//go:build linux && (amd64 || arm64)

package epollrelay

import (
	"fmt"
	"time"

	"github.com/example/sidecar/sidecar/internal/tcpstall"
)

// The engine enforces an upstream socket's TCP_USER_TIMEOUT itself
// (package tcpstall): in the kernel it also cuts a database that is alive
// but has stopped reading. newPair takes the timeout; the sweep checks.

// stallPeriod is how often pairs with a user timeout of bound (ns) are
// checked.
func stallPeriod(bound int64) int64 {
	return int64(tcpstall.Period(time.Duration(bound)))
}

// checkStall cuts p if its upstream has gone silent. Pairs whose upstream
// was read within half the bound are not asked (a peer heard then cannot
// have been silent for the bound; bytes sent to it prove nothing), nor are
// pairs found with nothing waiting whose upstream has not been sent
// anything since.
func (l *loop) checkStall(p *pair) {
	if l.now-p.u.heard < p.stall/2 || (p.last == p.calmAt && p.toU.eof == p.calmEOF) {
		return
	}
	calm, err := tcpstall.Check(p.u.fd, time.Duration(p.stall))
	switch {
	case calm:
		p.calmAt, p.calmEOF = p.last, p.toU.eof
	case err != nil:
		l.finish(p, p.u.side, fmt.Errorf("upstream: %w", err))
	}
}
