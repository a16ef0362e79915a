//go:build linux

package proxy

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// takeQueued admits every connection waiting in f's accept queue as the
// drain begins: the kernel completed their handshakes, and closing the
// listener would reset them, a lost connection no log line or metric
// showed. It accepts without waiting, beside the accept loop (Control
// does not take the read lock the loop's Accept holds), until the queue
// is empty; one completed after that and before Close is reset by the
// kernel: the app's connect succeeded, so its first read or write fails
// with a reset, but nothing of it was ever served, then dropped.
func (s *Server) takeQueued(f *forward) {
	sc, ok := f.ln.(syscall.Conn)
	if !ok {
		return // a test's listener: nothing to take
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	var failed error
	if err := rc.Control(func(fd uintptr) { failed = s.acceptQueued(f, int(fd)) }); err != nil {
		failed = err
	}
	if failed != nil {
		f.stats.acceptErrors.Add(1)
		s.log.Error("could not accept the connections queued when the drain began; any there were reset",
			"listen_port", f.port, "listen_addr", f.ln.Addr().String(), "err", failed.Error())
	}
}

// acceptQueued accepts from the listening socket lfd until its queue is
// empty, admitting each connection; no more than a queue holds
// (queuedOn), so that clients arriving as fast as it accepts (a flood)
// do not keep the listener open.
func (s *Server) acceptQueued(f *forward, lfd int) error {
	limit := s.cfg.queuedCap
	if limit <= 0 {
		limit = queuedOn(lfd)
	}
	for ; limit > 0; limit-- {
		nfd, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		switch {
		case errors.Is(err, syscall.EAGAIN):
			return nil
		case errors.Is(err, syscall.EINTR), errors.Is(err, syscall.ECONNABORTED): // that client left first
			continue
		case err != nil:
			return fmt.Errorf("accept: %w", err)
		}
		tc, err := fdConn(nfd)
		if err != nil {
			return err
		}
		s.admit(f, tc)
	}
	return nil
}

// queuedOn bounds how many connections acceptQueued takes from lfd: no
// accept queue holds more than one over net.core.somaxconn (Go listens
// with that backlog; Linux refuses a SYN only once the queue is over
// it), so a flood that refills the queue as fast as it is taken ends
// there. 4096, the kernel's default, if it cannot be read.
func queuedOn(int) int {
	b, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if n, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil && n > 0 {
		return n + 1
	}
	return 4096 + 1
}

// fdConn makes an accepted socket a *net.TCPConn; fd is closed either way.
func fdConn(fd int) (*net.TCPConn, error) {
	file := os.NewFile(uintptr(fd), "accepted")
	c, err := net.FileConn(file) // a dup of fd
	_ = file.Close()
	if err != nil {
		return nil, fmt.Errorf("accepted connection: %w", err)
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		_ = c.Close()
		return nil, fmt.Errorf("accepted a %T, not a TCP connection", c)
	}
	return tc, nil
}
