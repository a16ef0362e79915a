package relay

import (
	"net"
	"sync"
	"sync/atomic"
)

// Ending records why a relay that runs a goroutine per direction ended,
// for the portable Copy and the TLS session relay alike: the first reason
// wins, two directions ended by EOF are ReasonDone, and a client that is
// done (its EOF passed on, or arrived with nothing unread: ConnDone) makes
// an upstream reset ReasonDone (Settle). Set its fields before the
// directions start.
type Ending struct {
	Client *net.TCPConn // the client's socket, whose ConnDone feeds Settle
	// Adjust, if set, rewrites a reason and its error before Settle sees
	// them (Copy: a silent client's reset is ReasonClientGone).
	Adjust func(Reason, error) (Reason, error)
	// Close closes both sides; End calls it for the reason that won only,
	// so once.
	Close func()

	clientDone atomic.Bool  // the client's EOF was passed on
	cleanEnds  atomic.Int32 // directions ended by EOF: at 2 the relay is over

	mu     sync.Mutex
	ended  bool
	reason Reason
	err    error
}

// ClientDone records that the client's EOF is being passed on: a reset
// from the upstream after that ends the relay as done.
func (e *Ending) ClientDone() { e.clientDone.Store(true) }

// HalfClosed records a direction that ended by EOF, before its peer is
// told: once both have, the relay ended cleanly, so a cut (the drain
// deadline) racing its return is not what ended it.
func (e *Ending) HalfClosed() {
	if e.cleanEnds.Add(1) == 2 {
		e.Settle(ReasonDone, nil)
	}
}

// End records the reason, if it is the first, and then closes both
// sides, which unblocks the directions still running.
func (e *Ending) End(reason Reason, err error) {
	if e.Settle(reason, err) && e.Close != nil {
		e.Close()
	}
}

// Settle records why the relay ended, if nothing has yet, and reports
// whether it did. The error is kept where Result.Err says.
func (e *Ending) Settle(reason Reason, err error) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ended {
		return false
	}
	if e.Adjust != nil {
		reason, err = e.Adjust(reason, err)
	}
	reason, err = Settle(reason, err, e.clientDone.Load() || ConnDone(e.Client))
	e.ended, e.reason = true, reason
	switch reason {
	case ReasonClientError, ReasonUpstreamError, ReasonDone: // Done: what refused a command, if anything
		e.err = err
	}
	return true
}

// Ended reports whether a reason has been recorded.
func (e *Ending) Ended() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ended
}

// Result is the reason recorded and its error; "" before any.
func (e *Ending) Result() (Reason, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.reason, e.err
}
