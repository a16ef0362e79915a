//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/example/sidecar/internal/testkit"
)

type bulkResult struct {
	Bytes   int64
	Seconds float64
	Gbps    float64 // received bits per second / 1e9
}

// parseIperf3 reads iperf3 -J output: the receiver's totals.
func parseIperf3(b []byte) (bulkResult, error) {
	var doc struct {
		Error string `json:"error"`
		End   struct {
			SumReceived *struct {
				Seconds       float64 `json:"seconds"`
				Bytes         int64   `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return bulkResult{}, fmt.Errorf("iperf3 -J output: %w: %s", err, tail(string(b), 300))
	}
	if doc.Error != "" {
		return bulkResult{}, fmt.Errorf("iperf3: %s", doc.Error)
	}
	s := doc.End.SumReceived
	if s == nil || s.Seconds <= 0 || s.Bytes <= 0 {
		return bulkResult{}, errors.New("iperf3 -J output has no end.sum_received totals")
	}
	return bulkResult{Bytes: s.Bytes, Seconds: s.Seconds, Gbps: s.BitsPerSecond / 1e9}, nil
}

// bulkTarget is the receiving end for the bulk workload: an iperf3 server,
// or an in-process Go receiver.
type bulkTarget struct {
	port  int
	iperf *child
	goRx  *goReceiver
}

func (r *runner) startBulkTarget(ctx context.Context) (*bulkTarget, error) {
	if r.iperfPath == "" {
		rx, err := startGoReceiver()
		if err != nil {
			return nil, err
		}
		return &bulkTarget{port: rx.port, goRx: rx}, nil
	}
	port, err := testkit.LoopbackPort()
	if err != nil {
		return nil, err
	}
	c, err := r.procs.start("iperf3 -s", nil, r.iperfPath, "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(port))
	if err != nil {
		return nil, err
	}
	if err := waitListening(ctx, c, port, 10*time.Second); err != nil {
		r.procs.stop(c, time.Second)
		return nil, err
	}
	return &bulkTarget{port: port, iperf: c}, nil
}

func (r *runner) stopBulkTarget(t *bulkTarget) {
	if t == nil {
		return
	}
	if t.iperf != nil {
		r.procs.stop(t.iperf, time.Second)
	}
	if t.goRx != nil {
		t.goRx.close()
	}
}

func (r *runner) bulkOnce(ctx context.Context, t *bulkTarget, port int) (bulkResult, error) {
	if t.iperf != nil {
		secs := int(math.Max(1, math.Round(r.cfg.bulkTime.Seconds())))
		out, err := runTool(ctx, r.iperfPath, "-c", "127.0.0.1", "-p", strconv.Itoa(port), "-t", strconv.Itoa(secs), "-J")
		if ctx.Err() != nil {
			return bulkResult{}, ctx.Err()
		}
		res, perr := parseIperf3([]byte(out))
		if perr != nil {
			return res, fmt.Errorf("iperf3 client (exit %v): %w", err, perr)
		}
		return res, nil
	}
	return t.goRx.measure(ctx, port, r.cfg.bulkTime)
}

// goReceiver counts bytes from one sender at a time and reports the total
// when the sender closes.
type goReceiver struct {
	ln    net.Listener
	port  int
	got   chan int64
	wg    sync.WaitGroup
	close func()
}

func startGoReceiver() (*goReceiver, error) {
	ln, err := listenLoopback()
	if err != nil {
		return nil, err
	}
	rx := &goReceiver{ln: ln, port: ln.Addr().(*net.TCPAddr).Port, got: make(chan int64, 16)}
	rx.wg.Add(1)
	go rx.acceptLoop()
	rx.close = func() { ln.Close(); rx.wg.Wait() }
	return rx, nil
}

func (rx *goReceiver) acceptLoop() {
	defer rx.wg.Done()
	for {
		c, err := rx.ln.Accept()
		if err != nil {
			return
		}
		rx.wg.Add(1)
		go rx.drain(c)
	}
}

func (rx *goReceiver) drain(c net.Conn) {
	defer rx.wg.Done()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
	n, _ := io.Copy(io.Discard, c)
	select {
	case rx.got <- n:
	default:
	}
}

// measure sends for d through port and returns what the receiver counted.
func (rx *goReceiver) measure(ctx context.Context, port int, d time.Duration) (bulkResult, error) {
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return bulkResult{}, err
	}
	defer conn.Close()
	buf := make([]byte, 128<<10)
	start := time.Now()
	_ = conn.SetWriteDeadline(start.Add(d))
	for ctx.Err() == nil {
		if _, err := conn.Write(buf); err != nil {
			if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
				break
			}
			return bulkResult{}, err
		}
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	select {
	case n := <-rx.got:
		secs := time.Since(start).Seconds()
		return bulkResult{Bytes: n, Seconds: secs, Gbps: float64(n) * 8 / secs / 1e9}, nil
	case <-ctx.Done():
		return bulkResult{}, ctx.Err()
	case <-time.After(30 * time.Second):
		return bulkResult{}, errors.New("receiver did not see the end of the stream within 30s")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (r *runner) bulkWorkload(ctx context.Context, round int, order []contestant) error {
	target, err := r.startBulkTarget(ctx)
	if err != nil {
		return fmt.Errorf("bulk receiver: %w", err)
	}
	defer r.stopBulkTarget(target)
	lives, err := r.launchAll(ctx, order, target.port)
	defer r.shutdownAll(lives)
	if err != nil {
		return err
	}
	var res bulkResult
	return r.eachLive(ctx, round, lives, "bulk", func(l *live) (err error) {
		res, err = r.bulkOnce(ctx, target, l.port)
		return err
	}, func(l *live, used time.Duration) error {
		return r.recordBulk(round, l, res, used, "bulk", "bulk")
	})
}
