//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestFloodFlags(t *testing.T) {
	for _, tt := range []struct {
		name    string
		args    []string
		want    floodConfig
		wantErr []string
	}{
		{name: "defaults, flood not run unless asked", want: floodConfig{cycles: 10000, bursts: 10, maxConn: 3000, idle: time.Minute, socat: 1000}},
		{name: "set", args: []string{"-workloads", "flood", "-flood-cycles", "50", "-flood-bursts", "2", "-flood-max-connections", "7", "-flood-idle", "0s", "-flood-socat-cycles", "9"},
			want: floodConfig{cycles: 50, bursts: 2, maxConn: 7, socat: 9}},
		{name: "every bad value named", args: []string{"-flood-cycles", "0", "-flood-bursts", "101", "-flood-max-connections", "-1", "-flood-idle", "11m", "-flood-socat-cycles", "0"},
			wantErr: []string{"-flood-cycles 0: want 1 to", "-flood-bursts 101: want 1 to 100", "-flood-max-connections -1", "-flood-idle 11m0s", "-flood-socat-cycles 0"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseFlags(tt.args, io.Discard)
			for _, w := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v lacks %q", err, w)
				}
			}
			if len(tt.wantErr) > 0 {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.flood != tt.want {
				t.Errorf("flood config %+v, want %+v", c.flood, tt.want)
			}
			if flood := len(tt.args) > 0; flood != (len(c.workloads) == 1 && c.workloads[0] == "flood") {
				t.Errorf("workloads %v", c.workloads)
			}
		})
	}
}

// The rejection counter is summed over its labels; a missing one is an
// error, not a zero.
func TestScrapeCounter(t *testing.T) {
	const body = `# HELP sidecar_connections_rejected_total Connections closed at once.
# TYPE sidecar_connections_rejected_total counter
sidecar_connections_rejected_total{listen_port="1",target="a:3306"} 3
sidecar_connections_rejected_total{listen_port="2",target="b:3306"} 4
sidecar_connections_rejected_totalx 100
`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, body) }))
	defer srv.Close()
	_, p, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	port, _ := strconv.Atoi(p)
	got, err := scrapeCounter(context.Background(), port, "sidecar_connections_rejected_total")
	if err != nil || got != 7 {
		t.Errorf("got %v, %v; want 7", got, err)
	}
	if _, err := scrapeCounter(context.Background(), port, "sidecar_nothing_total"); err == nil {
		t.Error("a missing counter read as zero")
	}
}

// One flood makes exactly n connections, each closed before the next.
func TestFloodCycles(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_ = c.Close()
		}
	}()
	if err := flood(context.Background(), ln.Addr().String(), 25); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); accepted.Load() < 25 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // room for a surplus connection to show
	if n := accepted.Load(); n != 25 {
		t.Errorf("%d connections, want 25", n)
	}
}
