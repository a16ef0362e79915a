// Package admin is the sidecar's admin HTTP listener (loopback by default): /livez, /readyz and
// /metrics (Prometheus text format), one per process, in every mode. It
// reports the forwarder's own state and never dials the target, so ECS
// health checks cost the database nothing.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/example/sidecar/sidecar/internal/proxy"
)

// Config configures the admin listener.
type Config struct {
	Addr     string // host:port; ADMIN_ADDR:ADMIN_PORT in production
	Mode     string // proxy or sleep, for sidecar_build_info
	Version  string
	Commit   string
	Ready    func() bool           // nil = always ready (sleep mode)
	Snapshot func() proxy.Snapshot // nil = no forwarding metrics (sleep mode)
	Logger   *slog.Logger          // nil = slog.Default()
}

// Server is a listening admin endpoint.
type Server struct {
	ln   net.Listener
	http *http.Server
}

// Listen opens the admin listener; Serve starts answering on it.
func Listen(ctx context.Context, cfg Config) (*Server, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener on %s: %w", cfg.Addr, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Server{ln: ln, http: &http.Server{
		Handler:           Handler(cfg),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}, nil
}

// Addr is the address the admin listener is bound to.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers requests until Shutdown.
func (s *Server) Serve() error {
	if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin listener: %w", err)
	}
	return nil
}

// Shutdown stops the listener, letting requests in progress finish until
// ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.http.Shutdown(ctx); err != nil {
		return s.http.Close()
	}
	return nil
}

// Close closes the listener at once (startup failed elsewhere).
func (s *Server) Close() error { return s.http.Close() }

// Handler serves /livez, /readyz and /metrics.
func Handler(cfg Config) http.Handler {
	ready := cfg.Ready
	if ready == nil {
		ready = func() bool { return true }
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		id := Identity{Name: Name, Version: cfg.Version, Commit: cfg.Commit, Mode: cfg.Mode, Status: "ready"}
		code := http.StatusOK
		if !ready() {
			id.Status, code = "not ready: listeners down or draining", http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(id)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		var snap *proxy.Snapshot
		if cfg.Snapshot != nil {
			s := cfg.Snapshot()
			snap = &s
		}
		_ = WriteMetrics(w, cfg, ready(), snap)
	})
	return mux
}

// Name is what /readyz calls this program, so the healthcheck knows it
// reached a sidecar and not some other process on the port.
const Name = "sidecar"

// Identity is /readyz's body: which program answers, and whether it is ready.
type Identity struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Mode    string `json:"mode"`
	Status  string `json:"status"`
}

// DialAddr is the address that reaches an admin listener bound to
// bindAddr:port from inside the task: a wildcard bind (0.0.0.0, ::) is
// reached on loopback; 127.0.0.1 answers for :: too, as Go binds it
// dual-stack, and exists where IPv6 is off.
func DialAddr(bindAddr string, port int) string {
	if ip := net.ParseIP(bindAddr); ip != nil && ip.IsUnspecified() {
		bindAddr = "127.0.0.1"
	}
	return net.JoinHostPort(bindAddr, strconv.Itoa(port))
}

// Check asks the admin listener at addr (host:port) whether the sidecar is
// ready: the `sidecar healthcheck` subcommand. It returns nil only when a
// sidecar of this version answers ready, so another process on the port,
// even one answering 200, cannot pass for it.
func Check(ctx context.Context, addr, version string) error {
	url := "http://" + addr + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w (is the sidecar running with the same ADMIN_ADDR and ADMIN_PORT?)", url, err)
	}
	defer resp.Body.Close()
	var id Identity
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if json.Unmarshal(body, &id) != nil || id.Name != Name {
		return fmt.Errorf("GET %s: %s from something that is not the sidecar (body %.80q); is another process on ADMIN_PORT?", url, resp.Status, body)
	}
	if id.Version != version {
		return fmt.Errorf("GET %s: a sidecar of version %s answers, not this one (%s); is another sidecar on ADMIN_PORT?", url, id.Version, version)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, id.Status)
	}
	return nil
}
