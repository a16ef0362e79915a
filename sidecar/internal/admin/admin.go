// Package admin is the sidecar's loopback HTTP listener: /livez, /readyz and
// /metrics (Prometheus text format), one per process, in every mode. It
// reports the forwarder's own state and never dials the target, so ECS
// health checks cost the database nothing.
package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	neturl "net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/example/sidecar/sidecar/internal/iamauth"
	"github.com/example/sidecar/sidecar/internal/loglimit"
	"github.com/example/sidecar/sidecar/internal/proxy"
)

// Config configures the admin listener.
type Config struct {
	Addr     string // host:port; 127.0.0.1:ADMIN_PORT in production
	Mode     string // proxy or sleep, for sidecar_build_info
	Version  string
	Commit   string
	Ready    func() bool           // nil = always ready (sleep mode)
	Snapshot func() proxy.Snapshot // nil = no forwarding metrics (sleep mode)
	Logger   *slog.Logger          // nil = slog.Default()
	// IAM, with TARGET_AUTH=iam, holds readiness until credentials have
	// been obtained once, and gives the token metrics; nil = none.
	IAM *iamauth.Tokens
}

// readiness is Ready and the IAM gate together, with why not.
func (cfg Config) readiness() (bool, string) {
	if cfg.Ready != nil && !cfg.Ready() {
		return false, "listeners down or draining"
	}
	if cfg.IAM != nil {
		if ok, why := cfg.IAM.Ready(); !ok {
			return false, why
		}
	}
	return true, ""
}

// Server is a listening admin endpoint.
type Server struct {
	ln     net.Listener
	http   *http.Server
	errLog *loglimit.Limiter // Go's HTTP server's own errors
}

// Listen opens the admin listener; Serve starts answering on it.
func Listen(ctx context.Context, cfg Config) (*Server, error) {
	var lc net.ListenConfig
	host, _, _ := net.SplitHostPort(cfg.Addr)
	ln, err := lc.Listen(ctx, proxy.ListenNetwork(host), cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener on %s: %w", cfg.Addr, err)
	}
	return newServer(ln, cfg, defaultConnLimits()), nil
}

// connLimits bound each phase of an admin connection. Without them a
// client that stops partway through a request, does not read the answer
// or idles on a keep-alive connection holds a descriptor for good; enough
// of them leave the forwarder none.
type connLimits struct {
	header time.Duration // to read a request's headers
	read   time.Duration // to read a whole request
	write  time.Duration // to write an answer, from the request's headers on
	idle   time.Duration // between a keep-alive connection's requests
}

// defaultConnLimits are generous for a loopback health check or a
// scrape: requests are a few hundred bytes, without a body. The idle
// limit is past the common scrape intervals (15 s, 30 s), so a collector
// keeps its connection.
func defaultConnLimits() connLimits {
	return connLimits{header: 5 * time.Second, read: 10 * time.Second, write: 10 * time.Second, idle: 2 * time.Minute}
}

func newServer(ln net.Listener, cfg Config, lim connLimits) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	// Out of descriptors, Go's HTTP server logs each failed accept of a
	// waiting health check or scrape: a line a second or more.
	errLog := loglimit.New(log, slog.LevelWarn, "admin listener: Go's HTTP server reported an error",
		"admin listener: Go's HTTP server reported more errors (latest shown)")
	return &Server{ln: ln, errLog: errLog, http: &http.Server{
		Handler:           Handler(cfg),
		ReadHeaderTimeout: lim.header,
		ReadTimeout:       lim.read,
		WriteTimeout:      lim.write,
		IdleTimeout:       lim.idle,
		ErrorLog:          stdlog.New(httpErrors{errLog}, "", 0),
	}}
}

// httpErrors passes each line of Go's HTTP server to the limiter.
type httpErrors struct{ l *loglimit.Limiter }

func (h httpErrors) Write(p []byte) (int, error) {
	h.l.Event("err", strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// Addr is the address the admin listener is bound to.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers requests until Shutdown.
func (s *Server) Serve() error {
	defer s.errLog.Close() // no count is lost at exit
	if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin listener: %w", err)
	}
	return nil
}

// Shutdown stops the listener, letting requests in progress finish until
// ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	defer s.errLog.Close()
	if err := s.http.Shutdown(ctx); err != nil {
		return s.http.Close()
	}
	return nil
}

// Close closes the listener at once (startup failed elsewhere).
func (s *Server) Close() error { return s.http.Close() }

// notReadyPrefix starts /readyz's 503 body; Check passes on only such a reason.
const notReadyPrefix = "not ready: "

// reasonLimit is how many characters of /readyz's not-ready line Check
// passes on: the unhealthy line stays short in ECS's health check output.
const reasonLimit = 200

// wordSlack is how many characters cutReason gives up to end at a space.
const wordSlack = 20

// cutReason cuts line to reasonLimit characters, the last one "…" when
// cut: at the last space within wordSlack of the limit, else between runes.
func cutReason(line string) string {
	line = strings.ToValidUTF8(line, "\uFFFD")
	if utf8.RuneCountInString(line) <= reasonLimit {
		return line
	}
	end := 0
	for range reasonLimit - 1 { // room for the "…"
		_, size := utf8.DecodeRuneInString(line[end:])
		end += size
	}
	kept := line[:end]
	if sp := strings.LastIndexByte(kept, ' '); line[end] != ' ' && sp > 0 && utf8.RuneCountInString(kept[sp:]) <= wordSlack {
		kept = kept[:sp]
	}
	return strings.TrimRight(kept, " ") + "…"
}

// Handler serves /livez, /readyz and /metrics.
func Handler(cfg Config) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ok, why := cfg.readiness(); !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(notReadyPrefix + why + "\n"))
			return
		}
		_, _ = w.Write([]byte(ReadyBody(cfg.Version, cfg.Mode)))
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		var snap *proxy.Snapshot
		if cfg.Snapshot != nil {
			s := cfg.Snapshot()
			snap = &s
		}
		ok, _ := cfg.readiness()
		_ = WriteMetrics(w, cfg, ok, snap)
	})
	return mux
}

// ReadyBody is /readyz's answer when ready. It names this program, so
// `sidecar healthcheck` cannot be satisfied by another process that
// happens to answer 200 on the admin port.
func ReadyBody(version, mode string) string {
	return fmt.Sprintf("%s version=%s mode=%s\n", readyPrefix, version, mode)
}

const readyPrefix = "ready: sidecar"

// Check asks the admin listener at addr (host:port) whether the sidecar is
// ready: the `sidecar healthcheck` subcommand. It returns nil when healthy.
func Check(ctx context.Context, addr string) error {
	url := "http://" + addr + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	// A redirect is not the sidecar's answer: following it could reach
	// another host, or pass off another process's page as the sidecar's.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		if ue, ok := err.(*neturl.Error); ok {
			err = ue.Err // it names the URL again
		}
		if errors.Is(err, context.DeadlineExceeded) {
			// Not a port mismatch, which is refused at once: something
			// holds the port and does not answer.
			return fmt.Errorf("GET %s: no answer within %s: whatever holds that port did not answer (a sidecar hung or starved of CPU, "+
				"or another program on ADMIN_PORT)", url, time.Since(start).Round(100*time.Millisecond))
		}
		return fmt.Errorf("GET %s: %w (is the sidecar running, with the same ADMIN_ADDR and ADMIN_PORT?)", url, err)
	}
	defer resp.Body.Close()
	// Enough bytes for reasonLimit characters and one more, so a longer
	// line is cut by cutReason, between whole runes.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, utf8.UTFMax*reasonLimit+1))
	if resp.StatusCode != http.StatusOK {
		// The sidecar's 503 says why (starting, draining, waiting for IAM
		// credentials): pass its first line on. Another answer (a 404, a
		// redirect) is another process's, whose page says nothing useful.
		why, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.HasPrefix(why, notReadyPrefix) {
			return fmt.Errorf("GET %s answered %s, not as the sidecar: another process holds that port; give the sidecar a free ADMIN_PORT", url, resp.Status)
		}
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, cutReason(why))
	}
	if !strings.HasPrefix(string(body), readyPrefix+" ") {
		return fmt.Errorf("GET %s answered 200 but not as the sidecar (body %.60q): another process holds that port; give the sidecar a free ADMIN_PORT", url, body)
	}
	return nil
}
