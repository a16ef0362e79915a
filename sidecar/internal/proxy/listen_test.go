package proxy_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testenv"
	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/proxy"
)

// LISTEN_ADDR=0.0.0.0 means IPv4 only and "::" both families; the
// address in the "forwarding" log line is the one asked for. The test
// listens on wildcard addresses but sends traffic to loopback only.
func TestListenBindsWhatWasAsked(t *testing.T) {
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		testenv.Unavailable(t, "no IPv6 loopback: %v", err)
	} else {
		_ = ln.Close()
	}
	up := startUpstream(t, "127.0.0.1", echo)
	for _, tc := range []struct {
		addr       string
		wantPrefix string
		v4, v6     bool
	}{
		{"0.0.0.0", "0.0.0.0:", true, false},
		{"127.0.0.1", "127.0.0.1:", true, false},
		{"::", "[::]:", true, true},
		{"::1", "[::1]:", false, true},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, ListenAddr: tc.addr})
			for tc.addr == "::1" && r.addrs[0] == net.JoinHostPort("::1", strconv.Itoa(int(up.addr.Port()))) {
				// The kernel may give [::1] the port the upstream holds on
				// 127.0.0.1, which the IPv4 probe would then reach.
				r = startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up)}, ListenAddr: tc.addr})
			}
			if !strings.HasPrefix(r.addrs[0], tc.wantPrefix) {
				t.Errorf("listener address %s, want %s…", r.addrs[0], tc.wantPrefix)
			}
			_, port, _ := net.SplitHostPort(r.addrs[0])
			for _, probe := range []struct {
				ip   string
				want bool
			}{{"127.0.0.1", tc.v4}, {"::1", tc.v6}} {
				c, err := net.DialTimeout("tcp", net.JoinHostPort(probe.ip, port), 2*time.Second)
				if err == nil {
					_ = c.Close()
				}
				if got := err == nil; got != probe.want {
					t.Errorf("LISTEN_ADDR=%s: connect to %s accepted = %v, want %v (err %v)", tc.addr, probe.ip, got, probe.want, err)
				}
			}
			fw := r.logs.lines("forwarding")
			if len(fw) != 1 {
				t.Fatalf("forwarding lines: %v", fw)
			}
			if l := fw[0]["listeners"].([]any); len(l) != 1 || !strings.HasPrefix(l[0].(string), r.addrs[0]+"=") {
				t.Errorf("forwarding line lists %v, want %s=…", l, r.addrs[0])
			}
		})
	}
}

// Durations in log lines are JSON numbers in milliseconds and ports are
// numbers, so CloudWatch Logs Insights can compute on them.
func TestLogFieldsAreNumbers(t *testing.T) {
	up := startUpstream(t, "127.0.0.1", echo)
	refused := testkit.RefusedPort(t)
	r := startProxy(t, proxy.Config{Forwards: []proxy.Forward{forwardTo(up), {TargetHost: "127.0.0.1", TargetPort: refused}}})
	c := dial(t, r.addrs[0])
	if err := exchange(c, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	expectClosed(t, dial(t, r.addrs[1]), "client of a refused upstream")
	waitFor(t, "both connections logged", func() bool {
		return len(r.logs.lines("connection closed")) == 1 && len(r.logs.lines("dial target failed")) == 1
	})
	r.shutdown(t)
	for i, l := range []map[string]any{r.logs.lines("connection closed")[0], r.logs.lines("dial target failed")[0]} {
		if _, ok := l["duration_ms"].(float64); !ok {
			t.Errorf("line %v: duration_ms = %#v, want a number", l, l["duration_ms"])
		}
		if _, ok := l["duration"]; ok {
			t.Errorf("line %v still has a duration string", l)
		}
		_, port, _ := net.SplitHostPort(r.addrs[i])
		if p, ok := l["listen_port"].(float64); !ok || strconv.Itoa(int(p)) != port {
			t.Errorf("line %v: listen_port = %#v, want the number %s", l, l["listen_port"], port)
		}
		if _, ok := l["client"].(string); !ok {
			t.Errorf("line %v: client address not a string", l)
		}
	}
	if d := r.logs.lines("draining"); len(d) != 1 || d[0]["drain_timeout_ms"] != float64(20000) {
		t.Errorf("draining line %v, want drain_timeout_ms 20000", d)
	}
}
