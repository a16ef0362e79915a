package proxy

import (
	"sort"

	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/relay"
	"sync"
	"sync/atomic"
)

// stats are one forward's counters. Hot counters are atomics; the
// by-reason maps are small and change only on failures and closes.
type stats struct {
	activeConns  atomic.Int64
	total        atomic.Uint64
	rejected     atomic.Uint64
	acceptErrors atomic.Uint64
	heldAnswers  atomic.Uint64  // failed lookups answered with the last answer
	bytes        relay.Counters // the data path adds to these as it delivers bytes

	mu           sync.Mutex
	dialFailures map[string]uint64
	closes       map[string]uint64
	tlsRefusals  map[string]uint64 // by mysqltls reason; empty without TLS
}

// newStats starts every known reason at zero, so that rate() over a
// reason works from the first scrape.
func (s *stats) init() {
	s.dialFailures, s.closes = map[string]uint64{}, map[string]uint64{}
	for _, r := range dialFailures {
		s.dialFailures[string(r)] = 0
	}
	for _, r := range closeReasons {
		s.closes[string(r)] = 0
	}
}

// initTLS starts every TLS refusal reason at zero, for forwards with TLS.
func (s *stats) initTLS() {
	s.tlsRefusals = map[string]uint64{}
	for _, r := range mysqltls.Reasons {
		s.tlsRefusals[r] = 0
	}
}

func (s *stats) tlsRefused(reason string) {
	s.mu.Lock()
	s.tlsRefusals[reason]++
	s.mu.Unlock()
}

func (s *stats) dialFailure(reason dialFailure) {
	s.mu.Lock()
	s.dialFailures[string(reason)]++
	s.mu.Unlock()
}

func (s *stats) closed(reason closeReason) {
	s.mu.Lock()
	s.closes[string(reason)]++
	s.mu.Unlock()
}

// Snapshot is a point-in-time copy of the server's state for /metrics.
type Snapshot struct {
	Ready    bool
	Draining bool
	Forwards []ForwardSnapshot
}

// ForwardSnapshot is one forward's counters.
type ForwardSnapshot struct {
	Listen            string // listen port as bound
	Target            string // host:port as configured
	Active            int64
	Total             uint64
	Rejected          uint64 // closed at once: MaxConnections reached
	AcceptErrors      uint64
	HeldAnswers       uint64 // failed lookups after which the last DNS answer kept serving
	BytesToUpstream   uint64 // live: grows as bytes are delivered, not only when connections end
	BytesToClient     uint64
	DialFailures      []Count // by reason, sorted
	ConnectionsClosed []Count // by reason, sorted
	TLSRefusals       []Count // by reason, sorted; nil without TLS
}

// Count is a counter value under a label.
type Count struct {
	Label string
	Value uint64
}

// Snapshot copies the counters.
func (s *Server) Snapshot() Snapshot {
	snap := Snapshot{Ready: s.Ready(), Draining: s.Draining()}
	for _, f := range s.fwds {
		fs := ForwardSnapshot{
			Listen:          f.label,
			Target:          f.target,
			Active:          f.stats.activeConns.Load(),
			Total:           f.stats.total.Load(),
			Rejected:        f.stats.rejected.Load(),
			AcceptErrors:    f.stats.acceptErrors.Load(),
			HeldAnswers:     f.stats.heldAnswers.Load(),
			BytesToUpstream: uint64(f.stats.bytes.ToUpstream.Load()),
			BytesToClient:   uint64(f.stats.bytes.ToClient.Load()),
		}
		f.stats.mu.Lock()
		fs.DialFailures = counts(f.stats.dialFailures)
		fs.ConnectionsClosed = counts(f.stats.closes)
		if f.stats.tlsRefusals != nil {
			fs.TLSRefusals = counts(f.stats.tlsRefusals)
		}
		f.stats.mu.Unlock()
		snap.Forwards = append(snap.Forwards, fs)
	}
	return snap
}

func counts(m map[string]uint64) []Count {
	out := make([]Count, 0, len(m))
	for k, v := range m {
		out = append(out, Count{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Label < out[j].Label })
	return out
}
