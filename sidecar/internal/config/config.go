// Package config reads the sidecar's environment once into a typed, checked
// Config. Every problem is reported at once, one line each, naming the
// variable, the bad value and what is accepted, so an operator fixes a task
// definition in one round trip.
package config

import (
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Mode is what the process does: forward connections or sit idle.
type Mode string

const (
	ModeProxy Mode = "proxy"
	ModeSleep Mode = "sleep" // no forwarding; the admin listener keeps health checks green for ECS Exec sessions
)

// DataPath chooses how bytes move between a client and its upstream.
type DataPath string

const (
	DataPathAuto     DataPath = "auto"     // epoll where supported, else portable
	DataPathEpoll    DataPath = "epoll"    // epoll, or refuse to start
	DataPathPortable DataPath = "portable" // goroutines and io.Copy (splice) on Go's netpoller
)

// Forward is one listening port and the target its connections go to.
type Forward struct {
	ListenPort int
	TargetHost string // hostname (resolved for every new connection) or IP literal
	TargetPort int
}

// Target is host:port of the forward's target.
func (f Forward) Target() string {
	return net.JoinHostPort(f.TargetHost, strconv.Itoa(f.TargetPort))
}

// Config is the whole effective configuration.
type Config struct {
	Mode               Mode
	ListenAddr         string    // IP the forward listeners bind to
	Forwards           []Forward // sorted by listen port; empty in sleep mode
	LogLevel           slog.Level
	AdminPort          int // admin HTTP on 127.0.0.1
	DrainTimeout       time.Duration
	ConnectTimeout     time.Duration
	IdleTimeout        time.Duration // 0 = off
	MaxConnections     int           // per process, across forwards
	Keepalive          time.Duration // TCP keepalive idle time on both sides; 0 = off
	StaleCheckInterval time.Duration // 0 = off: never close connections whose upstream left DNS
	DataPath           DataPath
}

// Defaults, as documented in the README's configuration table.
const (
	DefaultListenPort     = 8080
	DefaultListenAddr     = "0.0.0.0"
	DefaultAdminPort      = 9901
	DefaultDrainTimeout   = 20 * time.Second // comfortably below ECS's default 30 s stopTimeout
	DefaultConnectTimeout = 5 * time.Second
	DefaultMaxConnections = 1024
	DefaultKeepalive      = 30 * time.Second
	maxConnectionsLimit   = 1 << 20
)

// Error lists every configuration problem, one per line.
type Error struct {
	Problems []string
}

func (e *Error) Error() string { return strings.Join(e.Problems, "\n") }

// Parse reads the configuration through lookup (os.LookupEnv in
// production). A variable set to the empty string counts as unset, which is
// what ECS task definitions produce for blank values.
func Parse(lookup func(string) (string, bool)) (Config, error) {
	p := &parser{lookup: lookup}
	c := Config{
		Mode:           ModeProxy,
		ListenAddr:     DefaultListenAddr,
		LogLevel:       slog.LevelInfo,
		AdminPort:      DefaultAdminPort,
		DrainTimeout:   DefaultDrainTimeout,
		ConnectTimeout: DefaultConnectTimeout,
		MaxConnections: DefaultMaxConnections,
		Keepalive:      DefaultKeepalive,
		DataPath:       DataPathAuto,
	}

	if v, ok := p.get("MODE"); ok {
		switch Mode(v) {
		case ModeProxy, ModeSleep:
			c.Mode = Mode(v)
		default:
			p.bad("MODE", v, "proxy or sleep")
		}
	}
	if v, ok := p.get("LOG_LEVEL"); ok {
		switch strings.ToLower(v) {
		case "error":
			c.LogLevel = slog.LevelError
		case "warn":
			c.LogLevel = slog.LevelWarn
		case "info":
			c.LogLevel = slog.LevelInfo
		case "debug":
			c.LogLevel = slog.LevelDebug
		default:
			p.bad("LOG_LEVEL", v, "error, warn, info or debug")
		}
	}
	p.port("ADMIN_PORT", &c.AdminPort)

	if c.Mode == ModeSleep {
		// Sleep mode forwards nothing: the forwarding variables a task
		// definition still carries are ignored, so switching MODE alone is
		// enough to get a shell.
		if len(p.problems) > 0 {
			return Config{}, &Error{Problems: p.problems}
		}
		return c, nil
	}

	if v, ok := p.get("LISTEN_ADDR"); ok {
		if ip := net.ParseIP(v); ip == nil {
			p.bad("LISTEN_ADDR", v, "an IP address to bind, such as 0.0.0.0, 127.0.0.1 or ::")
		} else {
			c.ListenAddr = ip.String()
		}
	}
	p.duration("DRAIN_TIMEOUT", &c.DrainTimeout, 0, "a duration such as 20s or 1m (0 closes connections at once)")
	p.duration("CONNECT_TIMEOUT", &c.ConnectTimeout, time.Millisecond, "a positive duration such as 5s or 500ms")
	p.duration("IDLE_TIMEOUT", &c.IdleTimeout, 0, "a duration such as 30m (0 = off)")
	p.duration("KEEPALIVE", &c.Keepalive, 0, "a duration such as 30s (0 = off)")
	p.duration("STALE_CHECK_INTERVAL", &c.StaleCheckInterval, 0, "a duration such as 10s (0 = off)")
	if c.StaleCheckInterval > 0 && c.StaleCheckInterval < 100*time.Millisecond {
		p.bad("STALE_CHECK_INTERVAL", c.StaleCheckInterval.String(), "0 (off) or at least 100ms")
	}
	if v, ok := p.get("DATA_PATH"); ok {
		switch DataPath(v) {
		case DataPathAuto, DataPathEpoll, DataPathPortable:
			c.DataPath = DataPath(v)
		default:
			p.bad("DATA_PATH", v, "auto, epoll or portable")
		}
	}
	if v, ok := p.get("MAX_CONNECTIONS"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxConnectionsLimit {
			p.bad("MAX_CONNECTIONS", v, fmt.Sprintf("an integer from 1 to %d", maxConnectionsLimit))
		} else {
			c.MaxConnections = n
		}
	}

	c.Forwards = p.forwards()
	sort.Slice(c.Forwards, func(i, j int) bool { return c.Forwards[i].ListenPort < c.Forwards[j].ListenPort })
	for _, f := range c.Forwards {
		if f.ListenPort == c.AdminPort {
			p.problems = append(p.problems, fmt.Sprintf(
				"ADMIN_PORT=%q: the admin port is also a listen port; accepted: a port no forward listens on", strconv.Itoa(c.AdminPort)))
		}
	}

	if len(p.problems) > 0 {
		return Config{}, &Error{Problems: p.problems}
	}
	return c, nil
}

type parser struct {
	lookup   func(string) (string, bool)
	problems []string
}

func (p *parser) get(name string) (string, bool) {
	v, ok := p.lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

func (p *parser) bad(name, value, accepted string) {
	p.problems = append(p.problems, fmt.Sprintf("%s=%q is invalid; accepted: %s", name, value, accepted))
}

func (p *parser) port(name string, dst *int) {
	v, ok := p.get(name)
	if !ok {
		return
	}
	n, err := parsePort(v)
	if err != nil {
		p.bad(name, v, "a port number from 1 to 65535")
		return
	}
	*dst = n
}

func parsePort(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q: want 1-65535", v)
	}
	return n, nil
}

func (p *parser) duration(name string, dst *time.Duration, least time.Duration, accepted string) {
	v, ok := p.get(name)
	if !ok {
		return
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < least {
		p.bad(name, v, accepted)
		return
	}
	*dst = d
}

// forwards reads either the single form (TARGET_HOST, TARGET_PORT,
// LISTEN_PORT) or the list form (FORWARDS), never both: mixing them would
// leave an operator guessing which one wins.
func (p *parser) forwards() []Forward {
	list, hasList := p.get("FORWARDS")
	host, hasHost := p.get("TARGET_HOST")
	port, hasPort := p.get("TARGET_PORT")
	listen, hasListen := p.get("LISTEN_PORT")

	if hasList {
		for _, name := range []string{"TARGET_HOST", "TARGET_PORT", "LISTEN_PORT"} {
			if v, ok := p.get(name); ok {
				p.problems = append(p.problems, fmt.Sprintf(
					"%s=%q is set together with FORWARDS; accepted: either FORWARDS alone, or TARGET_HOST, TARGET_PORT and optionally LISTEN_PORT", name, v))
			}
		}
		return p.forwardList(list)
	}

	f := Forward{ListenPort: DefaultListenPort}
	ok := true
	if hasListen {
		n, err := parsePort(listen)
		if err != nil {
			p.bad("LISTEN_PORT", listen, "a port number from 1 to 65535")
			ok = false
		}
		f.ListenPort = n
	}
	if !hasHost {
		p.problems = append(p.problems, "TARGET_HOST is not set; accepted: a hostname or IP address (required when MODE=proxy, unless FORWARDS is set)")
		ok = false
	} else if h, err := checkHost(host); err != nil {
		p.bad("TARGET_HOST", host, "a hostname such as db.cluster-abc.eu-west-1.rds.amazonaws.com or an IP address")
		ok = false
	} else {
		f.TargetHost = h
	}
	if !hasPort {
		p.problems = append(p.problems, "TARGET_PORT is not set; accepted: a port number from 1 to 65535 (required when MODE=proxy, unless FORWARDS is set)")
		ok = false
	} else if n, err := parsePort(port); err != nil {
		p.bad("TARGET_PORT", port, "a port number from 1 to 65535")
		ok = false
	} else {
		f.TargetPort = n
	}
	if !ok {
		return nil
	}
	return []Forward{f}
}

const forwardsAccepted = "a comma-separated list of LISTEN_PORT=HOST:PORT, such as 8080=writer.example:3306,8081=reader.example:3306"

func (p *parser) forwardList(list string) []Forward {
	var out []Forward
	seen := map[int]bool{}
	for _, raw := range strings.Split(list, ",") {
		entry := strings.TrimSpace(raw)
		f, err := parseForward(entry)
		if err != nil {
			p.problems = append(p.problems, fmt.Sprintf("FORWARDS=%q: entry %q %v; accepted: %s", list, entry, err, forwardsAccepted))
			continue
		}
		if seen[f.ListenPort] {
			p.problems = append(p.problems, fmt.Sprintf("FORWARDS=%q: listen port %d appears more than once; accepted: each listen port once", list, f.ListenPort))
			continue
		}
		seen[f.ListenPort] = true
		out = append(out, f)
	}
	return out
}

func parseForward(entry string) (Forward, error) {
	if entry == "" {
		return Forward{}, fmt.Errorf("is empty")
	}
	listen, target, ok := strings.Cut(entry, "=")
	if !ok {
		return Forward{}, fmt.Errorf("has no '='")
	}
	lp, err := parsePort(strings.TrimSpace(listen))
	if err != nil {
		return Forward{}, fmt.Errorf("has listen port %q, want 1-65535", strings.TrimSpace(listen))
	}
	host, port, err := net.SplitHostPort(strings.TrimSpace(target))
	if err != nil {
		return Forward{}, fmt.Errorf("has target %q, want HOST:PORT ([IPv6]:PORT for IPv6)", strings.TrimSpace(target))
	}
	h, err := checkHost(host)
	if err != nil {
		return Forward{}, fmt.Errorf("has target host %q, want a hostname or IP address", host)
	}
	tp, err := parsePort(port)
	if err != nil {
		return Forward{}, fmt.Errorf("has target port %q, want 1-65535", port)
	}
	return Forward{ListenPort: lp, TargetHost: h, TargetPort: tp}, nil
}

// checkHost accepts an IP literal or a DNS name (letters, digits, '-', '_',
// dots between labels of 1-63 bytes, at most 253 bytes, optional final dot).
func checkHost(h string) (string, error) {
	if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil && !strings.Contains(h, "%") {
		return ip.String(), nil
	}
	name := strings.TrimSuffix(h, ".")
	if name == "" || len(name) > 253 {
		return "", fmt.Errorf("host %q: want a DNS name or IP address", h)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("host %q: bad label %q", h, label)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return "", fmt.Errorf("host %q: bad character %q", h, r)
			}
		}
	}
	return h, nil
}

// LogAttrs is the effective configuration for the startup log line. Nothing
// here is secret.
func (c Config) LogAttrs() []slog.Attr {
	attrs := []slog.Attr{
		slog.String("mode", string(c.Mode)),
		slog.String("log_level", c.LogLevel.String()),
		slog.Int("admin_port", c.AdminPort),
	}
	if c.Mode == ModeSleep {
		return attrs
	}
	fw := make([]string, len(c.Forwards))
	for i, f := range c.Forwards {
		fw[i] = fmt.Sprintf("%s=%s", net.JoinHostPort(c.ListenAddr, strconv.Itoa(f.ListenPort)), f.Target())
	}
	return append(attrs,
		slog.Any("forwards", fw),
		slog.String("drain_timeout", c.DrainTimeout.String()),
		slog.String("connect_timeout", c.ConnectTimeout.String()),
		slog.String("idle_timeout", c.IdleTimeout.String()),
		slog.Int("max_connections", c.MaxConnections),
		slog.String("keepalive", c.Keepalive.String()),
		slog.String("stale_check_interval", c.StaleCheckInterval.String()),
		slog.String("data_path", string(c.DataPath)),
	)
}

// AdminPort reads only ADMIN_PORT: the healthcheck subcommand needs nothing
// else, and must not fail over variables the running sidecar already checked.
func AdminPort(lookup func(string) (string, bool)) (int, error) {
	p := &parser{lookup: lookup}
	port := DefaultAdminPort
	p.port("ADMIN_PORT", &port)
	if len(p.problems) > 0 {
		return 0, &Error{Problems: p.problems}
	}
	return port, nil
}
