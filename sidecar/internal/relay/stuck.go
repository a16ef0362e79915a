package relay

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// StuckCheck is how often a relay with a goroutine per direction looks,
// while a write of its is in progress, for a reset of the other side.
const StuckCheck = 250 * time.Millisecond

// Stuck notices a peer that resets while its direction is blocked writing
// to the other side (a database that does not read, an app that does not
// read a result). Then nothing reads the peer's socket, so without Stuck
// its reset went unseen, and the connection held its slot, until the
// other side read again. Writes bracket themselves with Begin; a timer
// runs only while some write is in progress.
type Stuck struct {
	end   func(Reason, error)
	sides [2]stuckSide // writes to the client, writes to the upstream

	mu      sync.Mutex
	t       *time.Timer
	armed   atomic.Bool
	stopped bool
}

// stuckSide is one destination: its writes in progress, and the socket
// (the other side) that is not read meanwhile.
type stuckSide struct {
	writing atomic.Int32
	other   *net.TCPConn // nil: not watched
	reason  Reason       // the other side's
	name    string
}

// NewStuck watches client and upstream; end is called, once, with the
// reset side's Reason. Either may be nil (not watched). Call Stop when
// the relay ends.
func NewStuck(client, upstream *net.TCPConn, end func(Reason, error)) *Stuck {
	s := &Stuck{end: end}
	s.sides[0] = stuckSide{other: upstream, reason: ReasonUpstreamError, name: "upstream"}
	s.sides[1] = stuckSide{other: client, reason: ReasonClientError, name: "client"}
	return s
}

// Begin marks a write to the upstream (toUpstream) or the client in
// progress, until Done is called with the same toUpstream.
func (s *Stuck) Begin(toUpstream bool) {
	s.side(toUpstream).writing.Add(1)
	if !s.armed.Load() {
		s.arm()
	}
}

// Done ends a write Begin marked.
func (s *Stuck) Done(toUpstream bool) { s.side(toUpstream).writing.Add(-1) }

func (s *Stuck) side(toUpstream bool) *stuckSide {
	if toUpstream {
		return &s.sides[1]
	}
	return &s.sides[0]
}

func (s *Stuck) arm() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || !s.armed.CompareAndSwap(false, true) {
		return
	}
	if s.t == nil {
		s.t = time.AfterFunc(StuckCheck, s.tick)
		return
	}
	s.t.Reset(StuckCheck)
}

func (s *Stuck) tick() {
	busy := false
	for i := range s.sides {
		side := &s.sides[i]
		if side.writing.Load() == 0 || side.other == nil {
			continue
		}
		busy = true
		// Its error is left pending: another write than the one its
		// reader waits on (an IAM session's), or that write done since
		// the Load, leaves a reader on the socket now.
		if err := resetErr(side.other); err != nil {
			s.Stop()
			s.end(side.reason, fmt.Errorf("%s reset while the relay waited to write to the other side: %w", side.name, err))
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	if busy {
		s.t.Reset(StuckCheck)
		return
	}
	s.armed.Store(false)
	// A Begin that saw the timer still armed is not left unwatched.
	if s.sides[0].writing.Load() > 0 || s.sides[1].writing.Load() > 0 {
		s.armed.Store(true)
		s.t.Reset(StuckCheck)
	}
}

// Stop ends the watch.
func (s *Stuck) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	if s.t != nil {
		s.t.Stop()
	}
}

// Writer returns w with each Write bracketed by Begin and Done. It passes
// SetWriteDeadline on, if w has it.
func (s *Stuck) Writer(w io.Writer, toUpstream bool) io.Writer {
	return stuckWriter{w, s, toUpstream}
}

type stuckWriter struct {
	w          io.Writer
	s          *Stuck
	toUpstream bool
}

func (w stuckWriter) Write(b []byte) (int, error) {
	w.s.Begin(w.toUpstream)
	defer w.s.Done(w.toUpstream)
	return w.w.Write(b)
}

func (w stuckWriter) SetWriteDeadline(t time.Time) error {
	if c, ok := w.w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		return c.SetWriteDeadline(t)
	}
	return nil
}
