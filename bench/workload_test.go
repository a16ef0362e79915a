//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// The workload clients and servers, driven against each other directly.

func TestConnRateAgainstEchoServer(t *testing.T) {
	srv, err := startEchoServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close()
	res := connRate(context.Background(), srv.port, 4, 300*time.Millisecond)
	if res.Errors != 0 || res.Conns == 0 || res.Rate <= 0 {
		t.Fatalf("got %+v, want connections and no errors", res)
	}
}

func TestConnRateCountsFailures(t *testing.T) {
	ln, err := listenLoopback()
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().String()
	ln.Close() // nothing listens any more: every dial is refused
	var p int
	fmt.Sscanf(port, "127.0.0.1:%d", &p)
	res := connRate(context.Background(), p, 2, 100*time.Millisecond)
	if res.Conns != 0 || res.Errors == 0 || res.First == nil {
		t.Fatalf("got %+v, want only failures", res)
	}
}

func TestIdlePoolAgainstSink(t *testing.T) {
	sink, err := startSinkServer()
	if err != nil {
		t.Fatal(err)
	}
	defer sink.close()
	pool := &idlePool{addr: fmt.Sprintf("127.0.0.1:%d", sink.port)}
	defer pool.close()
	for _, n := range []int{10, 50, 50} {
		if err := pool.grow(context.Background(), n); err != nil {
			t.Fatal(err)
		}
		if len(pool.conns) != n {
			t.Fatalf("pool holds %d, want %d", len(pool.conns), n)
		}
	}
}

func TestGoReceiverMeasures(t *testing.T) {
	rx, err := startGoReceiver()
	if err != nil {
		t.Fatal(err)
	}
	defer rx.close()
	res, err := rx.measure(context.Background(), rx.port, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.Bytes <= 0 || res.Gbps <= 0 || res.Seconds < 0.2 {
		t.Fatalf("got %+v", res)
	}
}

// procTree on this very process: no children, its own CPU and RSS.
func TestProcTreeSelf(t *testing.T) {
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) { // burn a little CPU so utime moves
	}
	u, err := procTree("/proc", os.Getpid(), true)
	if err != nil {
		t.Fatal(err)
	}
	if u.Procs < 1 || u.RSSBytes <= 0 || u.PSSBytes <= 0 || u.CPUTicks == 0 {
		t.Fatalf("got %+v", u)
	}
}

func TestCountFDs(t *testing.T) {
	before := countFDs("/proc", []int{os.Getpid()})
	f, err := os.Open("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if after := countFDs("/proc", []int{os.Getpid(), 1 << 30}); after != before+1 {
		t.Errorf("descriptors: %d before opening a file, %d after; want one more", before, after)
	}
}
