//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// startSinkServer echoes the first byte of each connection (proving the
// whole path is up) and then holds the connection open until the client
// closes.
func startSinkServer() (*loopbackServer, error) { return startLoopbackServer(holdIdle) }

func holdIdle(c net.Conn) {
	// Bounded: the workload closes its connections long before this.
	_ = c.SetDeadline(time.Now().Add(10 * time.Minute))
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		return
	}
	if _, err := c.Write(b); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, c)
}

// idlePool opens connections through a contestant and keeps them idle.
type idlePool struct {
	addr  string
	conns []net.Conn
}

// grow opens connections until the pool holds n, with a few parallel
// dialers. It stops at the first failure and returns it.
func (p *idlePool) grow(ctx context.Context, n int) error {
	const dialers = 8
	need := n - len(p.conns)
	if need <= 0 {
		return nil
	}
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	jobs := make(chan struct{})
	for range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				c, err := openIdle(ctx, p.addr)
				mu.Lock()
				if err != nil {
					if first == nil {
						first = err
					}
				} else {
					p.conns = append(p.conns, c)
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for range need {
		mu.Lock()
		stop := first != nil
		mu.Unlock()
		if stop || ctx.Err() != nil {
			break feed
		}
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

func openIdle(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	b := []byte{'x'}
	if _, err := c.Write(b); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := io.ReadFull(c, b); err != nil {
		c.Close()
		return nil, fmt.Errorf("no echo through the forwarder (it may refuse more connections): %w", err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

func (p *idlePool) close() {
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// idleWorkload measures each forwarder's memory holding idle connections:
// first at cfg.idleFirst, then at as many as the descriptor limit allows.
// Memory is not timing-sensitive, so this runs once per forwarder, each in
// a fresh process.
func (r *runner) idleWorkload(ctx context.Context, order []contestant) error {
	sink, err := startSinkServer()
	if err != nil {
		return err
	}
	defer sink.close()
	for _, c := range order {
		if !c.isForwarder() {
			continue
		}
		if err := r.idleOne(ctx, sink, c); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.fail(1, c, "idle", err)
		}
	}
	return nil
}

func (r *runner) idleOne(ctx context.Context, sink *loopbackServer, c contestant) error {
	l, err := r.launch(ctx, c, sink.port)
	if err != nil {
		return err
	}
	defer r.shutdown(l)
	base, err := procTree("/proc", l.proc.pid(), true)
	if err != nil {
		return err
	}
	pool := &idlePool{addr: fmt.Sprintf("127.0.0.1:%d", l.port)}
	defer pool.close()
	baseFDs := countFDs("/proc", append([]int{l.proc.pid()}, base.Children...))
	m := map[string]float64{"idle.rss.0": mib(base.RSSBytes), "idle.pss.0": mib(base.PSSBytes)}
	steps := []struct {
		n   int
		key string
	}{{r.cfg.idleFirst, "first"}, {r.idleMax, "max"}}
	for _, st := range steps {
		if st.n < len(pool.conns) || (st.key == "max" && st.n <= r.cfg.idleFirst) {
			continue
		}
		t0 := time.Now()
		gerr := pool.grow(ctx, st.n)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if gerr != nil && st.key == "first" {
			return fmt.Errorf("open %d idle connections: reached %d: %w", st.n, len(pool.conns), gerr)
		}
		if gerr != nil {
			r.note(fmt.Sprintf("%s: idle connections stopped at %d of %d: %v", c.name, len(pool.conns), st.n, gerr))
		}
		open := time.Since(t0)
		// Let lazily-started goroutines and forks settle before reading.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		u, err := procTree("/proc", l.proc.pid(), true)
		if err != nil {
			return err
		}
		m["idle.rss."+st.key] = mib(u.RSSBytes)
		m["idle.pss."+st.key] = mib(u.PSSBytes)
		m["idle.n."+st.key] = float64(len(pool.conns))
		m["idle.procs."+st.key] = float64(u.Procs)
		// Descriptors per connection decide how many connections a
		// descriptor limit allows.
		fds := countFDs("/proc", append([]int{l.proc.pid()}, u.Children...))
		perConn := 0.0
		if len(pool.conns) > 0 {
			perConn = float64(fds-baseFDs) / float64(len(pool.conns))
		}
		m["idle.fds."+st.key] = perConn
		r.progress("idle  %-16s %5d conns: RSS %.1f MiB, PSS %.1f MiB, %d processes, %.2f descriptors per connection (opened in %v)",
			c.name, len(pool.conns), mib(u.RSSBytes), mib(u.PSSBytes), u.Procs, perConn, open.Round(time.Millisecond))
	}
	if r.cfg.burstSettle > 0 && len(pool.conns) > 0 {
		// The connections were a burst: close them all and see how much
		// memory the forwarder still holds a while later.
		n := len(pool.conns)
		pool.close()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.cfg.burstSettle):
		}
		u, err := procTree("/proc", l.proc.pid(), true)
		if err != nil {
			return err
		}
		m["idle.rss.after"] = mib(u.RSSBytes)
		r.progress("idle  %-16s %v after closing %d conns: RSS %.1f MiB", c.name, r.cfg.burstSettle, n, mib(u.RSSBytes))
	}
	r.record(1, c, m)
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
