//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	connRequest  = "GET /ping HTTP/1.0\r\n\r\n"                   // 22 bytes
	connResponse = "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n" // 38 bytes
)

// startEchoServer answers each connection with one small response to one
// small request, then closes (HTTP/1.0 style). The server closes first, so
// TIME_WAIT stays on the server side and the dialers do not run out of
// ephemeral ports.
func startEchoServer() (*loopbackServer, error) { return startLoopbackServer(answerOnce) }

func answerOnce(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, len(connRequest))
	if _, err := io.ReadFull(c, buf); err != nil {
		return
	}
	_, _ = io.WriteString(c, connResponse)
}

type connRateResult struct {
	Conns  int64
	Errors int64
	Rate   float64 // completed connections per second
	First  error
}

// connRate runs dialers concurrent clients for d: each connects, sends the
// request, reads the response and the server's close, and closes.
func connRate(ctx context.Context, port, dialers int, d time.Duration) connRateResult {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	return repeatFor(ctx, dialers, d, func(ctx context.Context, buf []byte) error { return oneExchange(ctx, addr, buf) })
}

// repeatFor runs once in workers goroutines, over and over, for d (each
// at least once), and counts the completed and failed calls. Each worker
// has a 128-byte buffer.
func repeatFor(ctx context.Context, workers int, d time.Duration, once func(context.Context, []byte) error) connRateResult {
	start := time.Now()
	end := start.Add(d)
	runCtx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	var ok, bad atomic.Int64
	var firstErr error
	var first sync.Once
	var wg sync.WaitGroup
	// The clock, not runCtx.Err(), decides when the run is over: a dial can
	// fail with "i/o timeout" at the deadline a moment before the context's
	// own timer marks it done.
	over := func() bool { return ctx.Err() != nil || !time.Now().Before(end) }
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 128)
			// Each worker's first call runs to its end, past d if need
			// be: on a loaded machine a TLS login can outlast a short d,
			// and a run that completed nothing measures nothing.
			for n := 0; n == 0 || !over(); n++ {
				callCtx := runCtx
				if n == 0 {
					callCtx = ctx
				}
				if err := once(callCtx, buf); err != nil {
					if n > 0 && over() {
						return
					}
					bad.Add(1)
					first.Do(func() { firstErr = err })
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	return connRateResult{Conns: ok.Load(), Errors: bad.Load(), Rate: float64(ok.Load()) / el, First: firstErr}
}

func oneExchange(ctx context.Context, addr string, buf []byte) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, connRequest); err != nil {
		return err
	}
	n, err := io.ReadAtLeast(c, buf, len(connResponse))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	// Read to the server's close: a complete exchange ends with EOF.
	for err == nil {
		var m int
		m, err = c.Read(buf[n:])
		n += m
	}
	if !errors.Is(err, io.EOF) {
		return fmt.Errorf("wait for close: %w", err)
	}
	if string(buf[:n]) != connResponse {
		return fmt.Errorf("response %q, want %q", buf[:n], connResponse)
	}
	return nil
}

func (r *runner) connWorkload(ctx context.Context, round int, order []contestant) error {
	srv, err := startEchoServer()
	if err != nil {
		return err
	}
	defer srv.close()
	lives, err := r.launchAll(ctx, order, srv.port)
	defer r.shutdownAll(lives)
	if err != nil {
		return err
	}
	var res connRateResult
	return r.eachLive(ctx, round, lives, "conns", func(l *live) error {
		res = connRate(ctx, l.port, r.cfg.connDialers, r.cfg.connTime)
		return nil
	}, func(l *live, used time.Duration) error {
		return r.recordRate(round, l, res, used, "conns", "conn", "conn")
	})
}
