package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/example/sidecar/sidecar/internal/proxy"
	"github.com/example/sidecar/sidecar/internal/relay"
)

// keepaliveOpts are a socket's keepalive settings as the kernel holds them.
type keepaliveOpts struct {
	on                  bool
	idle, intvl, probes int // seconds, seconds, count
	userTimeout         int // TCP_USER_TIMEOUT, milliseconds (0: the kernel's default)
}

// socketOpts are a socket's keepalive options, or why they could not be read.
type socketOpts struct {
	keepaliveOpts
	err error
}

// readKeepalive reads c's keepalive options. It runs on the proxy's
// goroutines, so it reports errors rather than failing the test.
func readKeepalive(c *net.TCPConn) socketOpts {
	rc, err := c.SyscallConn()
	if err != nil {
		return socketOpts{err: err}
	}
	var o socketOpts
	get := func(fd, level, opt int) int {
		v, err := syscall.GetsockoptInt(fd, level, opt)
		if err != nil && o.err == nil {
			o.err = fmt.Errorf("getsockopt(%d, %d): %w", level, opt, err)
		}
		return v
	}
	if err := rc.Control(func(raw uintptr) {
		fd := int(raw)
		o.keepaliveOpts = keepaliveOpts{
			on:          get(fd, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) != 0,
			idle:        get(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE),
			intvl:       get(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL),
			probes:      get(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT),
			userTimeout: get(fd, syscall.IPPROTO_TCP, 0x12), // TCP_USER_TIMEOUT
		}
	}); err != nil {
		return socketOpts{err: err}
	}
	return o
}

// Keepalive is set on both the client-side and the upstream-side sockets,
// with the configured idle time, a third of it between probes and 3
// probes, and upstream, sent data may wait for an ACK as long as those
// probes take (TCP_USER_TIMEOUT), since keepalive does not probe while it
// waits; the options are read as the proxy hands the sockets to the data
// path, which then takes the user timeout over (package tcpstall).
// Keepalive < 0 turns it off on both. The listener and dialer here
// are Go's defaults, which enable a 15s keepalive of their own, so the
// off case fails unless the proxy switches it off.
func TestKeepaliveBothSides(t *testing.T) {
	tests := []struct {
		name      string
		keepalive time.Duration
		want      keepaliveOpts
	}{
		{"9s", 9 * time.Second, keepaliveOpts{on: true, idle: 9, intvl: 3, probes: 3, userTimeout: 18000}},
		// The kernel takes whole seconds (Go rounds up): the user timeout
		// is what the probes really take, 4 s + 3 × 2 s, not 4 s + 3 × 4/3 s.
		{"4s", 4 * time.Second, keepaliveOpts{on: true, idle: 4, intvl: 2, probes: 3, userTimeout: 10000}},
		{"1500ms", 1500 * time.Millisecond, keepaliveOpts{on: true, idle: 2, intvl: 1, probes: 3, userTimeout: 5000}},
		{"off", -1, keepaliveOpts{on: false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eachRelay(t, func(t *testing.T, f relay.Func) {
				up := startUpstream(t, "127.0.0.1", echo)
				handed := make(chan [2]socketOpts, 1)
				var lc net.ListenConfig // Go's defaults: keepalive on, 15s
				var d net.Dialer
				r := startProxy(t, proxy.Config{
					Forwards:    []proxy.Forward{forwardTo(up)},
					Keepalive:   tt.keepalive,
					Listen:      lc.Listen,
					DialContext: d.DialContext,
					Relay: func(ctx context.Context, client, upstream *net.TCPConn, idle time.Duration) relay.Result {
						handed <- [2]socketOpts{readKeepalive(client), readKeepalive(upstream)}
						return f(ctx, client, upstream, idle)
					},
				})
				if err := exchange(dial(t, r.addrs[0]), []byte("ping")); err != nil {
					t.Fatal(err)
				}
				opts := <-handed
				for i, side := range []string{"client side", "upstream side"} {
					got, want := opts[i], tt.want
					if got.err != nil {
						t.Fatalf("%s: %v", side, got.err)
					}
					if !tt.want.on {
						got.idle, got.intvl, got.probes = 0, 0, 0 // meaningless when off
					}
					if side == "client side" {
						want.userTimeout = 0 // the kernel's: a slow reader is not a dead one
					}
					if got.keepaliveOpts != want {
						t.Errorf("%s: keepalive %+v, want %+v", side, got.keepaliveOpts, want)
					}
				}
			})
		})
	}
}

// A keepalive the kernel refuses (TCP_KEEPIDLE above 32767 s) is not
// dropped silently: it is logged once per forward, however many
// connections fail to take it, and the connections still work.
func TestKeepaliveErrorLoggedOncePerForward(t *testing.T) {
	up := startUpstream(t, "127.0.0.1", echo)
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up), forwardTo(up)}, Keepalive: 10 * time.Hour})
	for range 3 {
		for _, a := range r.addrs {
			c := dial(t, a)
			if err := exchange(c, []byte("ping")); err != nil {
				t.Fatal(err)
			}
			_ = c.Close()
		}
	}
	r.shutdown(t)
	lines := r.logs.lines("setting TCP keepalive failed")
	if len(lines) != 2 {
		t.Fatalf("%d keepalive failure lines, want 2 (one per forward):\n%s", len(lines), r.logs)
	}
	ports := map[float64]bool{}
	for _, l := range lines {
		ports[l["listen_port"].(float64)] = true
		if l["level"] != "ERROR" || l["keepalive_ms"] != float64(36000000) || !strings.Contains(l["err"].(string), "invalid argument") {
			t.Errorf("line %v, want ERROR with keepalive_ms 36000000 and the kernel's error", l)
		}
	}
	if len(ports) != 2 {
		t.Errorf("lines name ports %v, want both forwards", ports)
	}
}

// An app that is alive but stops reading a large result for longer than
// the keepalive bound (a zero window) keeps its connection and gets every
// byte: TCP_USER_TIMEOUT on the app's side cut it with "connection timed
// out".
func TestSlowReaderKeepsItsConnection(t *testing.T) {
	t.Parallel() // the 6 s waits are the kernel's timers: they overlap
	const size = 32 << 20
	eachRelay(t, func(t *testing.T, f relay.Func) {
		t.Parallel()
		up := startUpstream(t, "127.0.0.1", func(c *net.TCPConn) {
			_, _ = c.Write(make([]byte, size))
			_ = c.CloseWrite()
			_, _ = io.Copy(io.Discard, c)
		})
		r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, Keepalive: time.Second, Relay: f})
		c := dial(t, r.addrs[0])
		_ = c.SetReadBuffer(64 << 10)
		time.Sleep(6 * time.Second) // past the 4 s bound of a 1 s keepalive
		_ = c.SetReadDeadline(time.Now().Add(safety))
		n, err := io.Copy(io.Discard, c)
		if err != nil || n != size {
			t.Errorf("read %d bytes, %v; want all %d", n, err, size)
		}
	})
}
