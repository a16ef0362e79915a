// Package testdns is a tiny authoritative DNS server on loopback UDP for
// tests: it answers A and AAAA questions from a table the test changes at
// will (TTL 0), like an Aurora cluster endpoint moving on failover. Wire it
// into code under test with Resolver.
package testdns

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Server answers DNS queries on a loopback UDP port.
type Server struct {
	Addr    string
	conn    *net.UDPConn
	queries atomic.Int64

	mu      sync.Mutex
	answers map[string][]netip.Addr // lower-case name without the final dot
	failing map[string]bool
	failA   map[string]bool
	stalled []query // held by Stall until its release
	stall   bool
	named   map[string]int64 // questions answered, by name (QueriesOf)
}

// query is a question received and not answered yet.
type query struct {
	msg  []byte
	from *net.UDPAddr
}

// Start starts a server that stops when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("testdns: %v", err)
	}
	s := &Server{Addr: c.LocalAddr().String(), conn: c, answers: map[string][]netip.Addr{}, failing: map[string]bool{}, failA: map[string]bool{}, named: map[string]int64{}}
	done := make(chan struct{})
	go s.serve(done)
	t.Cleanup(func() { _ = c.Close(); <-done })
	return s
}

// Set makes name resolve to addrs (no addrs: NXDOMAIN).
func (s *Server) Set(name string, addrs ...netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[canonical(name)] = addrs
	delete(s.failing, canonical(name))
	delete(s.failA, canonical(name))
}

// Fail makes the server answer SERVFAIL for name, as a resolver that
// cannot get an answer does, until the next Set.
func (s *Server) Fail(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing[canonical(name)] = true
}

// Stall holds every query from now on, unanswered, as a resolver that
// drops them does, until release answers them (as the table is then) and
// ends the stall. A client that gives up first has timed out.
func (s *Server) Stall() (release func()) {
	s.mu.Lock()
	s.stall = true
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		held := s.stalled
		s.stalled, s.stall = nil, false
		s.mu.Unlock()
		for _, q := range held {
			s.reply(q)
		}
	}
}

// Stalled is how many queries the stall holds unanswered.
func (s *Server) Stalled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.stalled)
}

// FailA makes the server answer SERVFAIL for name's A questions only,
// until the next Set, and answer its other questions (an IPv4-only name:
// no AAAA records) AAAALater after the question: a client asking for both
// families hears the failure first and the empty answer last.
func (s *Server) FailA(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failA[canonical(name)] = true
}

// AAAALater is how long FailA delays the answers it does not fail.
const AAAALater = 20 * time.Millisecond

// Queries is how many questions the server has answered.
func (s *Server) Queries() int64 { return s.queries.Load() }

// QueriesOf is how many questions about name the server has answered: a
// test waits on it for a lookup it cannot see end (one the code under
// test starts on its own) before it counts the queries of the next.
func (s *Server) QueriesOf(name string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.named[canonical(name)]
}

// Resolver is a pure-Go resolver that sends every query to this server.
func (s *Server) Resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: s.dial}
}

func (s *Server) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "udp", s.Addr)
}

func canonical(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

func (s *Server) serve(done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		q := query{bytes.Clone(buf[:n]), from}
		s.mu.Lock()
		stalled := s.stall
		if stalled {
			s.stalled = append(s.stalled, q)
		}
		s.mu.Unlock()
		if !stalled {
			s.reply(q)
		}
	}
}

func (s *Server) reply(q query) {
	resp, name, later, err := s.answer(q.msg)
	if err != nil {
		return // not a query we understand: let the client time out
	}
	send := func() {
		s.mu.Lock()
		s.named[name]++
		s.mu.Unlock()
		s.queries.Add(1)
		_, _ = s.conn.WriteToUDP(resp, q.from)
	}
	if later {
		time.AfterFunc(AAAALater, send)
		return
	}
	send()
}

const (
	typeA    = 1
	typeAAAA = 28
)

// answer builds the response to one query about name: header, the
// question echoed, then one answer record per address of the asked
// family; later is whether FailA delays it.
func (s *Server) answer(q []byte) (resp []byte, name string, later bool, err error) {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil, "", false, errors.New("want exactly one question")
	}
	// Question: labels up to a zero byte, then type and class.
	i := 12
	var labels []string
	for {
		if i >= len(q) {
			return nil, "", false, errors.New("truncated name")
		}
		l := int(q[i])
		i++
		if l == 0 {
			break
		}
		if l > 63 || i+l > len(q) {
			return nil, "", false, errors.New("bad label")
		}
		labels = append(labels, string(q[i:i+l]))
		i += l
	}
	if i+4 > len(q) {
		return nil, "", false, errors.New("truncated question")
	}
	qtype := binary.BigEndian.Uint16(q[i : i+2])
	question := q[12 : i+4]

	s.mu.Lock()
	name = canonical(strings.Join(labels, "."))
	addrs, known := s.answers[name]
	failing := s.failing[name] || (s.failA[name] && qtype == typeA)
	later = s.failA[name] && !failing
	s.mu.Unlock()
	if failing {
		addrs = nil
	}

	var records [][]byte
	for _, a := range addrs {
		var rtype uint16
		switch {
		case qtype == typeA && a.Is4():
			rtype = typeA
		case qtype == typeAAAA && a.Is6() && !a.Is4In6():
			rtype = typeAAAA
		default:
			continue
		}
		rdata := a.AsSlice()
		rr := []byte{0xC0, 12} // name: pointer to the question's name
		rr = binary.BigEndian.AppendUint16(rr, rtype)
		rr = binary.BigEndian.AppendUint16(rr, 1) // class IN
		rr = binary.BigEndian.AppendUint32(rr, 0) // TTL 0: no caching anywhere
		rr = binary.BigEndian.AppendUint16(rr, uint16(len(rdata)))
		records = append(records, append(rr, rdata...))
	}

	flags := uint16(0x8000 | 0x0400 | 0x0080)         // response, authoritative, recursion available
	flags |= binary.BigEndian.Uint16(q[2:4]) & 0x0100 // echo recursion desired
	switch {
	case failing:
		flags |= 2 // SERVFAIL
	case !known || len(addrs) == 0:
		flags |= 3 // NXDOMAIN
	}
	resp = append([]byte{}, q[0:2]...) // ID
	resp = binary.BigEndian.AppendUint16(resp, flags)
	resp = binary.BigEndian.AppendUint16(resp, 1)
	resp = binary.BigEndian.AppendUint16(resp, uint16(len(records)))
	resp = binary.BigEndian.AppendUint16(resp, 0)
	resp = binary.BigEndian.AppendUint16(resp, 0)
	resp = append(resp, question...)
	for _, rr := range records {
		resp = append(resp, rr...)
	}
	return resp, name, later, nil
}
