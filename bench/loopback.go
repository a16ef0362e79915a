//go:build linux

package main

import (
	"errors"
	"net"
	"sync"
	"time"
)

// loopbackServer accepts on a loopback port the kernel picks and runs
// handle on each connection in its own goroutine, closing the connection
// when handle returns. close stops accepting and waits for every handler.
type loopbackServer struct {
	ln     net.Listener
	port   int
	handle func(net.Conn)
	wg     sync.WaitGroup
}

func startLoopbackServer(handle func(net.Conn)) (*loopbackServer, error) {
	ln, err := listenLoopback()
	if err != nil {
		return nil, err
	}
	s := &loopbackServer{ln: ln, port: ln.Addr().(*net.TCPAddr).Port, handle: handle}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

func (s *loopbackServer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if isTemporary(err) { // EMFILE at the fd limit: back off, do not spin
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		s.wg.Add(1)
		go s.serve(c)
	}
}

func (s *loopbackServer) serve(c net.Conn) {
	defer s.wg.Done()
	defer c.Close()
	s.handle(c)
}

func (s *loopbackServer) close() {
	s.ln.Close()
	s.wg.Wait()
}

// isTemporary reports whether an Accept error leaves the listener usable:
// any error but the one Accept returns once the listener is closed.
func isTemporary(err error) bool {
	return !errors.Is(err, net.ErrClosed)
}
