package admin

import (
	"context"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/example/sidecar/internal/testenv"
	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/iamauth"
	"github.com/example/sidecar/sidecar/internal/proxy"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func TestProbes(t *testing.T) {
	var ready atomic.Bool
	h := Handler(Config{Ready: ready.Load})
	tests := []struct {
		path  string
		ready bool
		code  int
	}{
		{"/livez", false, 200},
		{"/livez", true, 200},
		{"/readyz", false, 503},
		{"/readyz", true, 200},
		{"/nope", true, 404},
	}
	for _, tc := range tests {
		ready.Store(tc.ready)
		if code, body := get(t, h, tc.path); code != tc.code {
			t.Errorf("GET %s with ready=%v: %d %q, want %d", tc.path, tc.ready, code, body, tc.code)
		}
	}
	// Sleep mode: no Ready func means ready.
	if code, _ := get(t, Handler(Config{}), "/readyz"); code != 200 {
		t.Errorf("sleep-mode /readyz = %d, want 200", code)
	}
}

// sampleLine is one exposition sample: name, optional labels, a number.
var sampleLine = regexp.MustCompile(`^[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? [0-9.e+-]+$`)

func TestMetrics(t *testing.T) {
	snap := proxy.Snapshot{Draining: true, Forwards: []proxy.ForwardSnapshot{{
		Listen: "8080", Target: "writer.example:3306", Active: 3, Total: 10, Rejected: 1, AcceptErrors: 2, HeldAnswers: 5,
		BytesToUpstream: 1234, BytesToClient: 5678,
		DialFailures:      []proxy.Count{{Label: "refused", Value: 4}, {Label: "timeout", Value: 0}},
		ConnectionsClosed: []proxy.Count{{Label: "eof", Value: 6}},
	}, {
		Listen: "8081", Target: `odd"name\`, Active: 0,
	}}}
	h := Handler(Config{Mode: "proxy", Version: "1.2.3", Commit: "abc", Ready: func() bool { return false },
		Snapshot: func() proxy.Snapshot { return snap }})
	code, body := get(t, h, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	want := []string{
		`sidecar_build_info{version="1.2.3",commit="abc",mode="proxy"} 1`,
		`sidecar_ready 0`,
		`sidecar_draining 1`,
		`sidecar_connections_active{listen_port="8080",target="writer.example:3306"} 3`,
		`sidecar_connections_total{listen_port="8080",target="writer.example:3306"} 10`,
		`sidecar_connections_rejected_total{listen_port="8080",target="writer.example:3306"} 1`,
		`sidecar_accept_errors_total{listen_port="8080",target="writer.example:3306"} 2`,
		`sidecar_dns_held_answers_total{listen_port="8080",target="writer.example:3306"} 5`,
		`sidecar_dial_failures_total{listen_port="8080",target="writer.example:3306",reason="refused"} 4`,
		`sidecar_dial_failures_total{listen_port="8080",target="writer.example:3306",reason="timeout"} 0`,
		`sidecar_connections_closed_total{listen_port="8080",target="writer.example:3306",reason="eof"} 6`,
		`sidecar_bytes_total{listen_port="8080",target="writer.example:3306",direction="to_upstream"} 1234`,
		`sidecar_bytes_total{listen_port="8080",target="writer.example:3306",direction="to_client"} 5678`,
		`sidecar_connections_active{listen_port="8081",target="odd\"name\\"} 0`,
		`# TYPE sidecar_bytes_total counter`,
		`# TYPE sidecar_connections_active gauge`,
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
		lines[l] = true
		if !strings.HasPrefix(l, "#") && !sampleLine.MatchString(l) {
			t.Errorf("malformed sample line %q", l)
		}
	}
	for _, w := range want {
		if !lines[w] {
			t.Errorf("missing line %q in:\n%s", w, body)
		}
	}
}

// docs/operations.md's metrics table lists every sidecar_* family a proxy
// exposes, IAM's included, and no other.
func TestMetricsTableMatchesExposition(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(sidecar_[a-z_]+)`").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	snap := proxy.Snapshot{Forwards: []proxy.ForwardSnapshot{{Listen: "8080", Target: "w.example:3306",
		DialFailures: []proxy.Count{{Label: "dns"}}, ConnectionsClosed: []proxy.Count{{Label: "eof"}}, TLSRefusals: []proxy.Count{{Label: "unknown_ca"}}}}}
	tokens := &iamauth.Tokens{Region: "us-east-1", Source: iamauth.Source{Name: "test", Provider: credentials.NewStaticCredentialsProvider("AKID", "s", "")}}
	_, body := get(t, Handler(Config{Mode: "proxy", IAM: tokens, Snapshot: func() proxy.Snapshot { return snap }}), "/metrics")
	exposed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (sidecar_[a-z_]+) `).FindAllStringSubmatch(body, -1) {
		exposed[m[1]] = true
		if !documented[m[1]] {
			t.Errorf("%s is exposed but not in docs/operations.md's metrics table", m[1])
		}
	}
	for name := range documented {
		if !exposed[name] {
			t.Errorf("docs/operations.md's metrics table has %s, which /metrics does not expose", name)
		}
	}
}

func TestSleepModeMetricsHaveNoForwards(t *testing.T) {
	_, body := get(t, Handler(Config{Mode: "sleep"}), "/metrics")
	if !strings.Contains(body, "sidecar_ready 1") || strings.Contains(body, "sidecar_connections_active") {
		t.Errorf("sleep-mode metrics:\n%s", body)
	}
}

// Check, the healthcheck client, against a real admin listener.
func TestCheck(t *testing.T) {
	var ready atomic.Bool
	srv, err := Listen(context.Background(), Config{Addr: "127.0.0.1:0", Ready: ready.Load})
	if err != nil {
		t.Fatal(err)
	}
	go serveUntilClosed(srv)
	defer srv.Close()
	port := srv.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if err := Check(ctx, port); err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), ": not ready: ") {
		t.Errorf("Check when not ready = %v, want a 503 error with the sidecar's reason", err)
	}
	ready.Store(true)
	if err := Check(ctx, port); err != nil {
		t.Errorf("Check when ready = %v", err)
	}
	_ = srv.Shutdown(ctx)
	// A sidecar on another ADMIN_ADDR (::1, 127.0.0.2) is refused the same way.
	if err := Check(ctx, port); err == nil || !strings.Contains(err.Error(), ", with the same ADMIN_ADDR and ADMIN_PORT?") {
		t.Errorf("Check with nothing listening = %v, want an error hinting at ADMIN_ADDR and ADMIN_PORT", err)
	}
}

func TestListenPortInUse(t *testing.T) {
	busy := testkit.Listen(t)
	_, err := Listen(context.Background(), Config{Addr: busy.Addr().String()})
	if err == nil || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Fatalf("Listen on a busy port = %v, want an error naming %s", err, busy.Addr())
	}
}

func serveUntilClosed(s *Server) { _ = s.Serve() }

func TestReadyzNamesTheSidecar(t *testing.T) {
	code, body := get(t, Handler(Config{Version: "1.2.3", Mode: "proxy"}), "/readyz")
	if code != 200 || body != "ready: sidecar version=1.2.3 mode=proxy\n" {
		t.Fatalf("/readyz = %d %q", code, body)
	}
}

// Another process answering 200 on the admin port cannot pass for the
// sidecar, nor one redirecting to a sidecar elsewhere; the real one does.
func TestCheckRefusesAForeignServer(t *testing.T) {
	elsewhere := httptest.NewServer(Handler(Config{Version: "dev", Mode: "sleep"}))
	defer elsewhere.Close()
	for _, tc := range []struct {
		name    string
		handler http.Handler
		want    string // "" = healthy
	}{
		{"foreign", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("OK")) }), "not as the sidecar"},
		{"redirect", http.RedirectHandler(elsewhere.URL+"/readyz", http.StatusFound), "answered 302 Found, not as the sidecar"},
		{"not found", http.NotFoundHandler(), "answered 404 Not Found, not as the sidecar"},
		{"a foreign 503", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }), "answered 503 Service Unavailable, not as the sidecar"},
		{"sidecar", Handler(Config{Version: "dev", Mode: "sleep"}), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			err := Check(context.Background(), srv.Listener.Addr().String())
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Check = %v; want %q", err, tc.want)
			}
		})
	}
}

// The standard process and Go metrics are there with plausible values, and
// promtool (Prometheus's own checker) accepts the whole exposition.
func TestStandardMetricsAndPromtool(t *testing.T) {
	snap := proxy.Snapshot{Forwards: []proxy.ForwardSnapshot{{Listen: "8080", Target: "w.example:3306",
		DialFailures: []proxy.Count{{Label: "refused", Value: 1}}, ConnectionsClosed: []proxy.Count{{Label: "eof", Value: 2}},
		TLSRefusals: []proxy.Count{{Label: "unknown_ca", Value: 3}}}}}
	_, body := get(t, Handler(Config{Mode: "proxy", Version: "dev", Snapshot: func() proxy.Snapshot { return snap }}), "/metrics")
	value := func(name string) float64 {
		m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			t.Errorf("no %s in /metrics", name)
			return 0
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	if rss := value("process_resident_memory_bytes"); rss < 1<<20 || rss > 4<<30 {
		t.Errorf("process_resident_memory_bytes = %v", rss)
	}
	if start := value("process_start_time_seconds"); math.Abs(start-float64(time.Now().Unix())) > 3600 {
		t.Errorf("process_start_time_seconds = %v, now %d: the test process started within the hour", start, time.Now().Unix())
	}
	if g := value("go_goroutines"); g < 1 {
		t.Errorf("go_goroutines = %v", g)
	}
	value("process_cpu_seconds_total")
	value("go_memstats_alloc_bytes")
	if !strings.Contains(body, `sidecar_tls_refusals_total{listen_port="8080",target="w.example:3306",reason="unknown_ca"} 3`) {
		t.Error("no sidecar_tls_refusals_total sample")
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testenv.Unavailable(t, "promtool not found (install Debian's prometheus package)")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// ADMIN_ADDR binds as LISTEN_ADDR does: 0.0.0.0 is IPv4 only (Go's "tcp"
// on 0.0.0.0 would bind every IPv6 address too), :: both families, so
// the healthcheck reaches it on 127.0.0.1 even where IPv6 is off.
func TestListenBindsTheFamilyAsked(t *testing.T) {
	for addr, want := range map[string]string{"0.0.0.0:0": "0.0.0.0", "127.0.0.1:0": "127.0.0.1", "[::]:0": "::"} {
		s, err := Listen(context.Background(), Config{Addr: addr})
		if err != nil {
			t.Fatalf("Listen(%s): %v", addr, err)
		}
		if got := s.Addr().(*net.TCPAddr).IP.String(); got != want {
			t.Errorf("ADMIN_ADDR %s bound %s, want %s", addr, got, want)
		}
		if want == "::" { // sidecar healthcheck reaches it on 127.0.0.1 (config.AdminEndpoint)
			c, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Addr().(*net.TCPAddr).Port)))
			if err != nil {
				t.Errorf("ADMIN_ADDR :: not reachable on 127.0.0.1: %v", err)
			} else {
				_ = c.Close()
			}
		}
		_ = s.ln.Close()
	}
}

// The healthcheck's unhealthy line shows at most reasonLimit characters
// of the sidecar's reason: cut between words when one ends near the
// limit, never inside a rune, and marked with "…" only when cut.
func TestCheckCutsALongReason(t *testing.T) {
	words := strings.TrimSpace(strings.Repeat("credentials ", 30))
	for _, tc := range []struct {
		name, reason string
		cut, atSpace bool
	}{
		{"short", "waiting for IAM credentials", false, false},
		{"at the limit", strings.Repeat("x", reasonLimit-len(notReadyPrefix)), false, false},
		{"words", words, true, true},
		{"one long word", strings.Repeat("é", 300), true, false},
		// 3-byte runes: the line is longer than any fixed read of 512 bytes.
		{"wide runes", "a" + strings.Repeat("認証", 200), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte(notReadyPrefix + tc.reason + "\n"))
			}))
			defer srv.Close()
			err := Check(context.Background(), srv.Listener.Addr().String())
			if err == nil {
				t.Fatal("Check = nil, want the 503's reason")
			}
			_, shown, ok := strings.Cut(err.Error(), "503 Service Unavailable: "+notReadyPrefix)
			if !ok || !utf8.ValidString(err.Error()) {
				t.Fatalf("Check = %q: want valid UTF-8 with the reason after the status", err)
			}
			if n := utf8.RuneCountInString(notReadyPrefix + shown); n > reasonLimit {
				t.Errorf("reason shown is %d characters, over %d: %q", n, reasonLimit, shown)
			}
			if !tc.cut {
				if shown != tc.reason {
					t.Errorf("reason shown = %q, want it whole: %q", shown, tc.reason)
				}
				return
			}
			kept, marked := strings.CutSuffix(shown, "…")
			if !marked || !strings.HasPrefix(tc.reason, kept) || len(kept) == 0 {
				t.Fatalf("reason shown = %q, want a start of the reason marked with …", shown)
			}
			if rest := tc.reason[len(kept):]; tc.atSpace && (strings.HasSuffix(kept, " ") || !strings.HasPrefix(rest, " ")) {
				t.Errorf("reason cut inside a word: %q|%q", kept, rest)
			}
		})
	}
}
