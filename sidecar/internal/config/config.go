// Package config reads the sidecar's environment once into a typed, checked
// Config. Every problem is reported at once, one line each, naming the
// variable, the bad value and what is accepted, so an operator fixes a task
// definition in one round trip.
package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/example/sidecar/internal/redact"
	"github.com/example/sidecar/sidecar/internal/iamauth"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/proxy"
	"github.com/example/sidecar/sidecar/internal/rdsca"
)

// Mode is what the process does: forward connections or sit idle.
type Mode string

const (
	ModeProxy Mode = "proxy"
	ModeSleep Mode = "sleep" // no forwarding; the admin listener keeps health checks green for ECS Exec sessions
)

// LogFormat is how log lines are written.
type LogFormat string

const (
	LogJSON LogFormat = "json" // one JSON object per line, for CloudWatch
	LogText LogFormat = "text" // slog's key=value lines, for a terminal
)

// NewLogger writes to w in format at level.
func NewLogger(w io.Writer, format LogFormat, level slog.Level) *slog.Logger {
	o := &slog.HandlerOptions{Level: level}
	if format == LogText {
		return slog.New(slog.NewTextHandler(w, o))
	}
	return slog.New(slog.NewJSONHandler(w, o))
}

// EarlyLogFormat reads LOG_FORMAT alone, for the lines written when the
// rest of the configuration is bad: text when it says text, else JSON.
func EarlyLogFormat(lookup func(string) (string, bool)) LogFormat {
	if v, ok := (&parser{lookup: lookup}).get("LOG_FORMAT"); ok && LogFormat(strings.ToLower(v)) == LogText {
		return LogText
	}
	return LogJSON
}

// DataPath chooses how bytes move between a client and its upstream.
type DataPath string

const (
	DataPathAuto     DataPath = "auto"     // epoll where supported, else portable
	DataPathEpoll    DataPath = "epoll"    // epoll, or refuse to start
	DataPathPortable DataPath = "portable" // a goroutine per direction (splice for bulk) on Go's netpoller
)

// TLSMode is TARGET_TLS: whether and how the sidecar secures the
// connection to the database.
type TLSMode string

const (
	TLSDisabled       TLSMode = "disabled" // relay bytes as they are
	TLSVerifyCA       TLSMode = TLSMode(mysqltls.VerifyCA)
	TLSVerifyIdentity TLSMode = TLSMode(mysqltls.VerifyIdentity)
)

// Forward is one listening port and the target its connections go to.
type Forward struct {
	ListenPort int
	TargetHost string // hostname (looked up again once its answer is DNSCacheTTL old) or IP literal
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
	ListenPortVar      string    // the variable the listen ports came from: LISTEN_PORT or FORWARDS
	LogLevel           slog.Level
	LogFormat          LogFormat
	AdminAddr          string // IP the admin HTTP listener binds
	AdminPort          int
	DrainTimeout       time.Duration
	ConnectTimeout     time.Duration
	IdleTimeout        time.Duration // 0 = off
	MaxConnections     int           // per process, across forwards
	Keepalive          time.Duration // TCP keepalive idle time on both sides; 0 = off
	StaleCheckInterval time.Duration // 0 = off: never close connections whose upstream left DNS
	DNSCacheTTL        time.Duration // 0 = off: look the target up for every connection
	DataPath           DataPath

	TLS       TLSMode
	TLSCA     *x509.CertPool // with TLS: the trusted CAs
	TLSCAFrom string         // where TLSCA came from, for messages and logs
	// TLSCASkipped names what TARGET_TLS_CA holds that is not trusted (a
	// CRL, a certificate Go cannot parse), for a warning each.
	TLSCASkipped []string
	// TARGET_SERVER_NAME; "" = each forward's own host (ServerName)
	TLSServerName string

	Auth          AuthMode
	IAMUsers      []string // nil = any user
	LocalPassword string   // "" = none; a secret: never logged
	AWSRegion     string
	// IAM signs and caches tokens for every forward; nil unless
	// TARGET_AUTH=iam.
	IAM *iamauth.Tokens

	// Unused are the variables set that this configuration does not read,
	// so that a TLS or IAM setting without its switch is warned of, not
	// silently plaintext or passthrough. They are ignored rather than
	// refused so a task definition can turn TLS or IAM off by one variable.
	Unused []Unused
}

// Unused is a variable set but not read.
type Unused struct {
	Variable string
	Off      string // the setting that turns it off: TARGET_TLS=disabled
	Fix      string // what to set to use it
}

// AuthMode is TARGET_AUTH: whose credentials log in to the database.
type AuthMode string

const (
	AuthPassthrough AuthMode = "passthrough" // the app's own, unchanged
	AuthIAM         AuthMode = "iam"         // an IAM token the sidecar signs
)

// regionPattern accepts names shaped like AWS regions (us-east-1,
// us-gov-west-1, cn-north-1, eu-central-2), so a typo fails at start
// rather than as a refused token.
func regionPattern(v string) bool {
	parts := strings.Split(v, "-")
	if len(parts) < 3 || len(v) > 32 {
		return false
	}
	for i, part := range parts {
		if part == "" {
			return false
		}
		for _, r := range part {
			digit := r >= '0' && r <= '9'
			if !(r >= 'a' && r <= 'z' || digit) || (i < len(parts)-1 && digit) {
				return false
			}
		}
	}
	last := parts[len(parts)-1]
	return strings.Trim(last, "0123456789") == ""
}

// endpointRegion is the region an RDS endpoint's name says
// (db.cluster-abc.eu-west-1.rds.amazonaws.com: eu-west-1), or "" for a
// name that says none: a global endpoint (….global.rds.amazonaws.com), an
// alias of one's own.
func endpointRegion(name string) string {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	for _, suffix := range []string{".rds.amazonaws.com", ".rds.amazonaws.com.cn"} {
		if rest, ok := strings.CutSuffix(name, suffix); ok {
			region := rest[strings.LastIndexByte(rest, '.')+1:]
			if regionPattern(region) {
				return region
			}
		}
	}
	return ""
}

// RotatingEndpoint reports whether name is an Aurora reader or custom
// endpoint (….cluster-ro-….rds.amazonaws.com, ….cluster-custom-…): DNS
// answers it with one instance after another, unlike a cluster (writer)
// endpoint, which names the writer alone.
func RotatingEndpoint(name string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if endpointRegion(name) == "" {
		return false
	}
	labels := strings.Split(name, ".")
	return len(labels) > 1 && (strings.HasPrefix(labels[1], "cluster-ro-") || strings.HasPrefix(labels[1], "cluster-custom-"))
}

// ServerName is the name TLS checks for f's target and sends as SNI: the
// TARGET_SERVER_NAME override, else f's host when it is a DNS name, else
// "" (only verify-ca accepts that).
func (c Config) ServerName(f Forward) string {
	switch {
	case c.TLSServerName != "":
		return c.TLSServerName
	case isIPLiteral(f.TargetHost):
		return ""
	}
	return strings.TrimSuffix(f.TargetHost, ".")
}

const maxConnectionsLimit = 1 << 20

// ServiceConnectPorts are TCP ports the ECS Service Connect container may
// bind in the task's network namespace, which the sidecar shares in awsvpc
// mode: Envoy's admin interface (ENVOY_ADMIN_PORT_DEFAULT = 9901, bound on
// 0.0.0.0 when ENVOY_ADMIN_MODE=tcp) and the Service Connect agent's
// management interface (AGENT_PORT_DEFAULT = 9902), both in
// aws/amazon-ecs-service-connect-agent agent/config/agent_config.go. No
// default of ours is one of them.
var ServiceConnectPorts = map[int]string{
	9901: "Envoy admin interface of the ECS Service Connect proxy",
	9902: "ECS Service Connect agent management interface",
}

// ECS sends SIGKILL a container's stopTimeout after SIGTERM, by default
// DefaultStopTimeout; Fargate accepts at most FargateMaxStopTimeout
// (ContainerDefinition.stopTimeout in the ECS API reference). StopMargin
// is the room the docs leave between DRAIN_TIMEOUT and stopTimeout for the
// sidecar to close what is left and exit on its own (proxy's
// drain-deadline test bounds that time by it).
const (
	DefaultStopTimeout    = 30 * time.Second
	FargateMaxStopTimeout = 120 * time.Second
	StopMargin            = 5 * time.Second
)

// Limits on durations: below or above them the value is a typo (1ms for
// 1m, 10h for 10s) or something the kernel cannot honour.
const (
	// No deploy waits longer for a task to stop (Fargate: 2 min at most).
	MaxDrainTimeout   = time.Hour
	MinConnectTimeout = time.Millisecond
	// Linux gives up a TCP connect by itself after about 2 min (6 SYN
	// retries), and an app's driver long before.
	MaxConnectTimeout = 2 * time.Minute
	MinIdleTimeout    = time.Second // below it every pooled MySQL session dies between queries
	// MySQL's largest wait_timeout (365 days): a session idle longer is
	// closed by the server already.
	MaxIdleTimeout        = 8760 * time.Hour
	MaxKeepalive          = 32767 * time.Second    // Linux MAX_TCP_KEEPIDLE (and MAX_TCP_KEEPINTVL); beyond it setsockopt fails
	MinStaleCheckInterval = 100 * time.Millisecond // a DNS query pair per target per interval
	// An Aurora failover takes about 30 s: checked less often, the app
	// would write to a demoted writer for hours.
	MaxStaleCheckInterval = time.Hour
	MaxDNSCacheTTL        = 5 * time.Second // Aurora endpoints' DNS TTL: no staler than the VPC resolver may be
)

// Problem is one configuration mistake: the variable, its value ("" when
// unset) and what would be accepted. The fields are logged as fields of
// their own, so log queries can group by variable.
type Problem struct {
	Variable string
	Value    string
	Set      bool   // the variable was set (to Value)
	Accepted string // what would be accepted
	Reason   string // why Value is wrong, when more than "is invalid"
}

// String is the problem as one line: `NAME="value" is invalid; accepted: …`.
func (p Problem) String() string {
	reason := p.Reason
	switch {
	case !p.Set:
		return fmt.Sprintf("%s is not set; accepted: %s", p.Variable, p.Accepted)
	case reason == "":
		reason = " is invalid"
	}
	return fmt.Sprintf("%s=%q%s; accepted: %s", p.Variable, p.Value, reason, p.Accepted)
}

// Error lists every configuration problem, one per line.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// UnsetRule is how Parse reads a blank value, for `sidecar help` and the
// README (a test ties them).
const UnsetRule = "a variable set to the empty string, or to blanks alone, counts as unset"

// Parse reads the configuration through lookup (os.LookupEnv in
// production). A variable set to the empty string counts as unset, which is
// what ECS task definitions produce for blank values.
func Parse(lookup func(string) (string, bool)) (Config, error) {
	p := &parser{lookup: lookup}
	var c Config
	// The variables sleep mode reads come first: they decide the mode.
	for _, sleepToo := range []bool{true, false} {
		for _, st := range Settings {
			if st.set == nil || st.sleep != sleepToo {
				continue
			}
			if st.Default != "" && !st.set(&c, st.Default) {
				panic(fmt.Sprintf("config: default %s=%q is not accepted", st.Name, st.Default))
			}
			// Sleep mode forwards nothing: the forwarding variables a task
			// definition still carries are ignored, so switching MODE
			// alone is enough to get a shell.
			// A refused TARGET_AUTH leaves the mode unknown: the iam
			// settings' forms are still checked, so all problems show.
			if c.Mode == ModeSleep && !st.sleep {
				continue
			}
			if st.iamOnly && c.Auth != AuthIAM && !p.reported("TARGET_AUTH") {
				// AWS_REGION has other readers: a task may well set it.
				if _, set := p.get(st.Name); set && st.Name != "AWS_REGION" {
					c.Unused = append(c.Unused, Unused{st.Name, "TARGET_AUTH=" + string(c.Auth), "the app logs in with its own credentials; set TARGET_AUTH=iam to use it"})
				}
				continue
			}
			get := p.get
			if st.raw {
				get = p.getRaw
			}
			if v, ok := get(st.Name); ok {
				probe := c
				if !st.set(&probe, v) {
					reason := ""
					if st.refused != nil {
						reason = st.refused(v)
					}
					p.badBecause(st.Name, v, reason, st.Accepted)
					continue
				}
				c = probe
			}
		}
	}
	if c.Mode == ModeSleep {
		if len(p.problems) > 0 {
			return Config{}, &Error{Problems: p.problems}
		}
		return c, nil
	}

	c.Forwards = p.forwards()
	c.ListenPortVar = "LISTEN_PORT"
	if _, ok := p.get("FORWARDS"); ok {
		c.ListenPortVar = "FORWARDS"
	}
	sort.Slice(c.Forwards, func(i, j int) bool { return c.Forwards[i].ListenPort < c.Forwards[j].ListenPort })
	p.loops(&c)
	p.tls(&c)
	p.iam(&c)
	for _, port := range p.listenPorts {
		if port != c.AdminPort || p.reported("ADMIN_PORT") {
			continue // a refused value is not checked again as its default
		}
		// Name the variable the user set: ADMIN_PORT, or else the one
		// that put a listener on the admin port's default.
		if v, set := p.get("ADMIN_PORT"); set {
			p.badBecause("ADMIN_PORT", v, fmt.Sprintf(": the admin port is also a listen port (%s)", c.ListenPortVar), "a port no forward listens on")
		} else {
			v, _ := p.get(c.ListenPortVar)
			p.badBecause(c.ListenPortVar, v, fmt.Sprintf(": port %d is also the admin port (ADMIN_PORT's default)", c.AdminPort),
				fmt.Sprintf("a listen port other than %d, or another ADMIN_PORT", c.AdminPort))
		}
		break
	}

	if len(p.problems) > 0 {
		return Config{}, &Error{Problems: p.problems}
	}
	return c, nil
}

// tls reads TARGET_TLS_CA and TARGET_SERVER_NAME, and gives each forward
// its server name. They are read only with TLS on, so a task definition
// can keep them while switching TARGET_TLS off.
func (p *parser) tls(c *Config) {
	if c.TLS == TLSDisabled && !p.reported("TARGET_TLS") {
		for _, name := range []string{"TARGET_TLS_CA", "TARGET_SERVER_NAME"} {
			if _, set := p.get(name); set {
				c.Unused = append(c.Unused, Unused{name, "TARGET_TLS=" + string(c.TLS),
					"the sidecar neither encrypts nor verifies the connection to the database; set TARGET_TLS=verify-identity (or verify-ca) to use it"})
			}
		}
		return
	}
	// A refused TARGET_TLS leaves the mode unknown: the other TLS
	// settings are still checked, so every problem shows in one run.
	c.TLSCAFrom = rdsca.Name
	pemFile, hasCA := p.get("TARGET_TLS_CA")
	if hasCA {
		c.TLSCAFrom = pemFile
		pool, skipped, err := loadCA(pemFile)
		if err != nil {
			p.badBecause("TARGET_TLS_CA", pemFile, ": "+err.Error(), setting("TARGET_TLS_CA").Accepted)
		}
		c.TLSCA, c.TLSCASkipped = pool, skipped
	} else {
		pool, err := rdsca.Pool()
		if err != nil {
			panic(err) // the embedded bundle is tested
		}
		c.TLSCA = pool
	}
	name, hasName := p.get("TARGET_SERVER_NAME")
	nameSet := hasName // set, though perhaps refused below: then not "unset" too
	if hasName {
		if h, err := checkHost(name); err != nil || isIPLiteral(h) {
			reason := ": is an IP address; a certificate is checked against a DNS name"
			if err != nil {
				reason = ": " + err.Error()
			}
			p.badBecause("TARGET_SERVER_NAME", name, reason, setting("TARGET_SERVER_NAME").Accepted)
			hasName = false
		}
	}
	if hasName {
		c.TLSServerName = strings.TrimSuffix(name, ".")
	}
	if c.TLS == TLSDisabled {
		c.TLSCA, c.TLSCAFrom, c.TLSCASkipped, c.TLSServerName = nil, "", nil, ""
		return
	}
	for _, f := range c.Forwards {
		if c.TLS == TLSVerifyIdentity && !nameSet && c.ServerName(f) == "" {
			p.unset("TARGET_SERVER_NAME", fmt.Sprintf("%s; required with TARGET_TLS=verify-identity because the target host %s is an IP address, which a certificate does not name (or use TARGET_TLS=verify-ca)",
				setting("TARGET_SERVER_NAME").Accepted, f.TargetHost))
			return
		}
	}
}

// iam checks TARGET_AUTH=iam's rules and picks the credential source.
// IAM_USERS, LOCAL_PASSWORD and AWS_REGION are read only with iam, so a
// task definition can keep them while switching back to passthrough.
func (p *parser) iam(c *Config) {
	if c.Auth != AuthIAM {
		c.IAMUsers, c.LocalPassword, c.AWSRegion = nil, "", ""
		return
	}
	if c.TLS == TLSDisabled && !p.reported("TARGET_TLS") {
		_, set := p.get("TARGET_TLS")
		p.problems = append(p.problems, Problem{Variable: "TARGET_TLS", Value: string(c.TLS), Set: set,
			Reason:   " with TARGET_AUTH=iam: Aurora accepts IAM tokens only over TLS, and a token must never cross the network in the clear",
			Accepted: "verify-ca or verify-identity with TARGET_AUTH=iam"})
	}
	if ip := net.ParseIP(c.ListenAddr); ip != nil && !ip.IsLoopback() && c.LocalPassword == "" && !p.reported("LISTEN_ADDR") {
		p.unset("LOCAL_PASSWORD", fmt.Sprintf("a password the app must send; required with TARGET_AUTH=iam because LISTEN_ADDR=%s is not loopback, "+
			"so anyone who can reach the listener would get the task role's database access. "+
			"Set LISTEN_ADDR=127.0.0.1 (the app shares the task's network namespace), or set LOCAL_PASSWORD", c.ListenAddr))
	}
	_, nameSet := p.get("TARGET_SERVER_NAME")
	for _, f := range c.Forwards {
		// verify-identity's own check (tls) has reported a missing name;
		// with TLS off (refused above) it is needed all the same.
		if c.TLS != TLSVerifyIdentity && !nameSet && c.ServerName(f) == "" {
			p.unset("TARGET_SERVER_NAME", fmt.Sprintf("%s; required with TARGET_AUTH=iam because the target host %s is an IP address: "+
				"tokens are signed for the name the database knows itself by, never an IP", setting("TARGET_SERVER_NAME").Accepted, f.TargetHost))
			break
		}
	}
	regionVar := "AWS_REGION"
	if c.AWSRegion == "" {
		// AWS_DEFAULT_REGION is the AWS SDKs' fallback; ECS on EC2 sets
		// neither variable when a task definition sets one.
		v, set := p.get("AWS_DEFAULT_REGION")
		switch {
		case set && regionPattern(v):
			c.AWSRegion, regionVar = v, "AWS_DEFAULT_REGION"
		case set:
			p.problems = append(p.problems, Problem{Variable: "AWS_DEFAULT_REGION", Value: shown(v), Set: true,
				Accepted: setting("AWS_REGION").Accepted + "; read with TARGET_AUTH=iam when AWS_REGION is not set"})
			return
		default:
			p.unset("AWS_REGION", setting("AWS_REGION").Accepted+" (or AWS_DEFAULT_REGION); required with TARGET_AUTH=iam: tokens are signed for a region"+endpointRegions(c))
			return
		}
	}
	for _, f := range c.Forwards {
		// Aurora refuses a token signed for another region at every
		// login, while the sidecar would look healthy.
		name := c.ServerName(f)
		if region := endpointRegion(name); region != "" && region != c.AWSRegion && !p.reported(regionVar) {
			fix := ""
			if regionVar != "AWS_REGION" {
				fix = " (or set AWS_REGION, which comes first)"
			}
			p.problems = append(p.problems, Problem{Variable: regionVar, Value: c.AWSRegion, Set: true,
				Reason:   fmt.Sprintf(" is not the region of the database endpoint %s, and the database refuses tokens signed for another region", name),
				Accepted: region + ", the endpoint's region" + fix})
			break
		}
	}
	getenv := func(k string) string { v, _ := p.get(k); return v }
	region := c.AWSRegion
	if p.reported(regionVar) {
		region = "" // no second problem judged by a region already refused
	}
	src, err := iamauth.CredentialSource(getenv, region, regionVar)
	if e := (*iamauth.EnvError)(nil); errors.As(err, &e) {
		p.problems = append(p.problems, Problem{Variable: e.Variable, Value: e.Value, Set: e.Value != "", Reason: e.Reason, Accepted: e.Accepted})
		return
	}
	c.IAM = &iamauth.Tokens{Source: src, Region: c.AWSRegion}
}

// endpointRegions names the region an endpoint's name says, for a
// missing AWS_REGION: "" when no forward's name says one.
func endpointRegions(c *Config) string {
	for _, f := range c.Forwards {
		if name := c.ServerName(f); endpointRegion(name) != "" {
			return fmt.Sprintf("; the endpoint %s is in %s", name, endpointRegion(name))
		}
	}
	return ""
}

// MaxCAFileSize bounds TARGET_TLS_CA: AWS's global RDS bundle and a whole
// system trust store are a few hundred KiB.
const MaxCAFileSize = 4 << 20

// readCAFile reads path only if it is a regular file of at most
// MaxCAFileSize: a device (/dev/zero) or a log would exhaust memory, and a
// FIFO would block the start for good, before any line is logged. What is
// checked is the file opened, not the path: opened without blocking (a
// FIFO's open waits for a writer), so a FIFO swapped in after a check
// cannot block it either.
func readCAFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ENXIO) {
		// A socket cannot be opened, nor a device without its hardware (a
		// /dev/tty with no terminal): "no such device or address" would
		// not tell the user what the path is. The path's type says, for
		// the message only.
		if st, serr := os.Stat(path); serr == nil && st.Mode().Type() != 0 {
			return nil, notRegular(st.Mode().Type())
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cannot be read (%v)", errors.Unwrap(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cannot be read (%v)", errors.Unwrap(err))
	}
	switch {
	case st.Mode().Type() != 0:
		return nil, notRegular(st.Mode().Type())
	case st.Size() > MaxCAFileSize:
		return nil, fmt.Errorf("is %d bytes, more than a CA bundle's %d at most", st.Size(), MaxCAFileSize)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxCAFileSize+1)) // a file that grew since Stat
	switch {
	case err != nil:
		return nil, fmt.Errorf("cannot be read (%v)", err)
	case len(b) > MaxCAFileSize:
		return nil, fmt.Errorf("is more than a CA bundle's %d bytes at most", MaxCAFileSize)
	}
	return b, nil
}

// notRegular names what a file of type t (not a regular file) is.
func notRegular(t fs.FileMode) error {
	switch {
	case t&fs.ModeDir != 0:
		return errors.New("cannot be read (is a directory)")
	case t&fs.ModeNamedPipe != 0:
		return errors.New("is a named pipe (FIFO), not a regular file")
	case t&(fs.ModeDevice|fs.ModeCharDevice) != 0:
		return errors.New("is a device, not a regular file")
	case t&fs.ModeSocket != 0:
		return errors.New("is a socket, not a regular file")
	}
	return errors.New("is not a regular file")
}

// loadCA reads a PEM file of CA certificates.
func loadCA(path string) (*x509.CertPool, []string, error) {
	b, err := readCAFile(path)
	if err != nil {
		return nil, nil, err
	}
	// Block by block, not AppendCertsFromPEM, which skips what it cannot
	// use without a word. A private key stops the start (a secret in a
	// trust file); what cannot be used is skipped, as before, but named
	// (bundles carry CRLs, OpenSSL's TRUSTED CERTIFICATE blocks, and old
	// CAs Go refuses, such as EC-ACC's negative serial).
	// A byte order mark (Windows editors write one) hides the first
	// block from pem.Decode, which wants "-----BEGIN" at a line's start.
	b = bytes.TrimPrefix(b, []byte("\ufeff"))
	pool := x509.NewCertPool()
	var skipped []string
	n, certs := 0, 0
	for rest := b; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		n++
		if strings.Contains(block.Type, "PRIVATE KEY") {
			return nil, nil, fmt.Errorf("PEM block %d is %q: a private key does not belong in a file of trusted CAs", n, block.Type)
		}
		if block.Type != "CERTIFICATE" {
			skipped = append(skipped, fmt.Sprintf("PEM block %d is %q, not a CERTIFICATE", n, block.Type))
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("PEM block %d is a CERTIFICATE that does not parse (%v)", n, err))
			continue
		}
		pool.AddCert(cert)
		certs++
	}
	if begun := bytes.Count(b, []byte("-----BEGIN ")); begun > n {
		skipped = append(skipped, fmt.Sprintf("%d PEM block(s) could not be decoded (bad base64 or no END line)", begun-n))
	}
	switch {
	case n == 0:
		return nil, nil, errors.New("holds no PEM certificate")
	case certs == 0:
		return nil, nil, fmt.Errorf("holds no certificate that can be used: %s", strings.Join(skipped, "; "))
	}
	return pool, skipped, nil
}

func isIPLiteral(h string) bool { return net.ParseIP(strings.Trim(h, "[]")) != nil }

type parser struct {
	lookup   func(string) (string, bool)
	problems []Problem
	// listenPorts are the listen ports given validly (or LISTEN_PORT's
	// default), also of a forward whose target is refused: the admin port
	// is checked against them in the same run.
	listenPorts []int
}

func (p *parser) get(name string) (string, bool) {
	v, ok := p.lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

// reported is whether a problem names the variable already.
func (p *parser) reported(name string) bool {
	for _, pr := range p.problems {
		if pr.Variable == name {
			return true
		}
	}
	return false
}

// getRaw is get without trimming, for a value taken as written; blanks
// alone are unset all the same.
func (p *parser) getRaw(name string) (string, bool) {
	v, ok := p.lookup(name)
	return v, ok && strings.TrimSpace(v) != ""
}

func (p *parser) bad(name, value, accepted string) {
	p.problems = append(p.problems, Problem{Variable: name, Value: shownAs(name, value), Set: true, Accepted: accepted})
}

func (p *parser) badBecause(name, value, reason, accepted string) {
	p.problems = append(p.problems, Problem{Variable: name, Value: shownAs(name, value), Set: true, Reason: reason, Accepted: accepted})
}

// shownAs is the refused value of the variable name fit for the log.
func shownAs(name, v string) string {
	if name == "FORWARDS" {
		return shownForwards(v)
	}
	return shown(v)
}

// shown is a refused value fit for the log: a connection URL or user:pass@
// pasted where a host belongs keeps its shape, not its credentials. Not
// split at commas: a password may hold one.
func shown(v string) string {
	return redact.KeyedWith(v, userinfo)
}

// userinfo masks the credentials of a URL or user:password@host.
func userinfo(v string) string {
	if strings.Contains(v, "://") {
		return redact.Query(v)
	}
	if at := strings.LastIndexByte(v, '@'); at >= 0 && strings.Contains(v[:at], ":") {
		return redact.Userinfo(v) // user:password@host; app@% is a name
	}
	return v
}

// shownForwards is a FORWARDS list fit for the log: the entries as given,
// with only credentials masked. A password may hold commas, @ and =, so
// the list is not cut at every comma: an entry starts at a piece that
// starts LISTEN_PORT=, and a piece that does not (",x@db:3306") belongs
// to the entry before it. From the first entry that may start
// credentials (user:password@, a URL's user, or a piece that is no whole
// LISTEN_PORT=HOST:PORT entry: a password's start, cut at a ",PORT="
// inside it) to the last with an @, everything after LISTEN_PORT= is
// masked up to the entry's last @. A URL's query or fragment may run on
// to the end of the list: all of that is masked. What no rule can tell
// from an entry is a password holding ",PORT=" after a part that reads as
// HOST:PORT (user:3306,3307=x@db): that part is shown. So are the
// leading entries the sidecar accepts, whole, where a key's word is only
// inside the host's name (8080=token_service:3306, which the masker reads
// as a key's): the start line logs them so. A host a key's name ends
// (password, db-secret) may be a pasted key, and from the first entry
// that is one or is refused on, a key's word masks what follows it, as a
// password may run on past commas.
func shownForwards(list string) string {
	entries := forwardEntries(list)
	n := 0
	for n < len(entries) && !parseForwardErr(entries[n]) && !redact.EnvKey(entryHost(entries[n])) {
		n++
	}
	switch head := strings.Join(entries[:n], ","); n {
	case 0:
		return redact.KeyedWith(list, shownEntries)
	case len(entries):
		return list
	default:
		return head + "," + redact.KeyedWith(strings.Join(entries[n:], ","), shownEntries)
	}
}

// shownEntries is shownForwards' masking of each entry's credentials.
func shownEntries(list string) string {
	if !strings.Contains(list, "@") && !strings.Contains(list, "://") {
		return redact.Keyed(list)
	}
	entries := forwardEntries(list)
	first, last := -1, -1 // the entries that may hold credentials
	for i, e := range entries {
		if strings.Contains(e, "@") {
			last = i
		}
	}
	for i, e := range entries[:last+1] {
		if _, target := cutListenPort(e); shown(target) != target || !strings.Contains(target, "@") && parseForwardErr(e) {
			first = i
			break
		}
	}
	out := make([]string, 0, len(entries))
	for i, e := range entries {
		listen, target := cutListenPort(e)
		switch {
		case first >= 0 && i >= first && i <= last:
			target = maskedTarget(target)
		case strings.Contains(target, "://"):
			target = redact.Query(target)
		}
		out = append(out, listen+target)
		if queryRunsOn(e) {
			break // the rest of the list may be the query's: masked with it
		}
	}
	return redact.Keyed(strings.Join(out, ","))
}

// queryRunsOn reports whether entry has a URL whose query or fragment
// (or all of it, where redact cannot tell where its credentials end) may
// go on past the entry's end.
func queryRunsOn(entry string) bool {
	_, target := cutListenPort(entry)
	if !strings.Contains(target, "://") {
		return false
	}
	q := redact.Query(target)
	return strings.ContainsAny(q, "?#") || strings.HasSuffix(q, "://xxxxx")
}

// maskedTarget is an entry's target that may hold credentials, masked up
// to its last @ (a URL's as redact shows it), or whole without an @.
func maskedTarget(target string) string {
	rest := strings.TrimLeft(target, " \t")
	lead := target[:len(target)-len(rest)] // as given, like LISTEN_PORT=
	at := strings.LastIndexByte(rest, '@')
	switch {
	case redact.HasScheme(rest) && at >= 0:
		return lead + redact.Query(rest)
	case at >= 0:
		return lead + redact.Mask + rest[at:]
	}
	return lead + redact.Mask
}

// credentialsIn reports whether the entries of list that are no whole
// forward, together, hold something shownForwards masks. A whole forward
// is a host and a port as the user wrote them, even where the masker
// reads a key in it (8080=db-secret:3306, 8080=TokenService:3306): not
// refused for that (a refusal's value may show its port masked:
// shownForwards). But where keys says so, one spelled as a key is taken
// as a pasted key:secret (keyTarget). Entries are cut as shownForwards
// cuts them (forwardEntries): a piece
// that reads as a forward but runs on into one that starts no entry
// (user:4711,pwB@db) is a password's start, and forwardList's reasons
// would quote the pieces after it. Blank pieces hide nothing: a stray
// comma after a whole forward is reported as an empty entry.
func credentialsIn(list string, keys bool) bool {
	var broken []string
	for _, e := range forwardEntries(list) {
		if parseForwardErr(withoutBlankPieces(e)) || keys && keyTarget(e) {
			broken = append(broken, e)
		}
	}
	rest := strings.Join(broken, ",")
	return shownForwards(rest) != rest
}

// keyTarget reports whether entry's target is a credential's key and its
// value as an environment or a properties file spells them
// (DB_PASSWORD:48213, db.password:4711): the masker reads a key in it,
// a key's name ends its host (redact.EnvKey: not token_service), and
// its host has a _ (in no DNS host name, RFC 1123) or a dot (a DNS
// name, which the masker takes for a key only where its last label names
// a password, as no zone is named). Accepted, the "port" would show in
// every log line that names the target.
func keyTarget(entry string) bool {
	_, target := cutListenPort(entry)
	target = strings.TrimSpace(target)
	host := entryHost(entry)
	return strings.ContainsAny(host, "_.") && redact.EnvKey(host) && redact.Keyed(target) != target
}

// entryHost is the host of entry's HOST:PORT, or "" if it has none.
func entryHost(entry string) string {
	_, target := cutListenPort(entry)
	host, _, err := net.SplitHostPort(strings.TrimSpace(target))
	if err != nil {
		return ""
	}
	return host
}

// keyHostReason is why the n-th entry, a keyTarget, is refused: its
// host's name, which is shown (only its "port" may be a secret), and
// another name for the host that the sidecar accepts.
func keyHostReason(n int, entry string) string {
	host := entryHost(entry)
	alias := strings.NewReplacer("_", "-", ".", "-").Replace(host)
	return fmt.Sprintf(": entry %d (%s) is refused: its host %s is spelled as a credential's key (a _ or dot, and a key's name at the end), "+
		"so the entry reads as a pasted key and its secret, not a host and port; if that is the host's name, "+
		"give its IP address or a name for it with no _ or dot (%s: a network alias or Service Connect name)", n, shownForwards(entry), host, alias)
}

// withoutBlankPieces is entry without its blank comma-separated pieces.
func withoutBlankPieces(entry string) string {
	pieces := strings.Split(entry, ",")
	return strings.Join(slices.DeleteFunc(pieces, func(p string) bool { return strings.TrimSpace(p) == "" }), ",")
}

// parseForwardErr reports whether entry is no whole forward.
func parseForwardErr(entry string) bool {
	_, err := parseForward(strings.TrimSpace(entry))
	return err != nil
}

// forwardEntries cuts list at the commas that start an entry (a piece
// that starts LISTEN_PORT=); other commas are a password's or a user's.
func forwardEntries(list string) []string {
	var entries []string
	start, end := 0, 0 // list[start:end] is the entry so far
	for i, piece := range strings.Split(list, ",") {
		// Sliced from list, not joined piece by piece: that copied the
		// entry once per comma, and a run of commas took seconds.
		if listen, _ := cutListenPort(piece); i > 0 && listen != "" {
			entries = append(entries, list[start:end])
			start = end + 1
		}
		end += len(piece)
		if i > 0 {
			end++
		}
	}
	return append(entries, list[start:end])
}

// cutListenPort splits an entry into its LISTEN_PORT= part (digits and
// spaces before the first =; "" if none) and the rest.
func cutListenPort(entry string) (listen, rest string) {
	port, _, ok := strings.Cut(entry, "=")
	if p := strings.TrimSpace(port); !ok || p == "" || strings.Trim(p, "0123456789") != "" {
		return "", entry
	}
	return entry[:len(port)+1], entry[len(port)+1:]
}

func (p *parser) unset(name, accepted string) {
	p.problems = append(p.problems, Problem{Variable: name, Accepted: accepted})
}

func parsePort(v string) (int, error) {
	n, ok := parseInt(v, 1, 65535)
	if !ok {
		return 0, fmt.Errorf("port %q: want 1-65535", v)
	}
	return n, nil
}

// parseInt reads every integer setting (ports, MAX_CONNECTIONS): decimal
// digits only, from lo to hi. strconv.Atoi alone also takes a sign, and
// +8080 is not how anyone writes a port: refused like any other typo.
func parseInt(v string, lo, hi int) (int, bool) {
	if v == "" || strings.Trim(v, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	return n, err == nil && n >= lo && n <= hi
}

// durationRule is what a duration variable accepts: 0 if zero says what
// it means, else from min to max (0 = no upper bound), whole seconds if
// wholeSeconds. The variable's accepted text is made from it, so the
// limits are written once.
type durationRule struct {
	min, max     time.Duration
	zero         string // what 0 means ("off"); "" = 0 is refused unless min is 0
	wholeSeconds bool
	maxWhy       string // shown beside max, in parentheses; "" = none
	example      string
}

func (r durationRule) ok(d time.Duration) bool {
	if d == 0 && r.zero != "" {
		return true
	}
	return d >= r.min && (r.max == 0 || d <= r.max) && (!r.wholeSeconds || d%time.Second == 0)
}

// accepted is the rule in words, as the README and refusals give it.
func (r durationRule) accepted() string {
	var b strings.Builder
	if r.zero != "" {
		fmt.Fprintf(&b, "0 (%s) or ", r.zero)
	}
	unit := "a duration"
	if r.wholeSeconds {
		unit = "whole seconds"
	}
	b.WriteString(unit)
	switch {
	case r.min > 0 && r.max > 0:
		fmt.Fprintf(&b, " from %s to %s", r.text(r.min), r.text(r.max))
	case r.min > 0:
		fmt.Fprintf(&b, " of at least %s", r.text(r.min))
	case r.max > 0:
		fmt.Fprintf(&b, " of at most %s", r.text(r.max))
	}
	if r.maxWhy != "" {
		fmt.Fprintf(&b, " (%s)", r.maxWhy)
	}
	fmt.Fprintf(&b, ", such as %s", r.example)
	return b.String()
}

// refused says why v is refused when "is invalid" and the range would
// not.
func (r durationRule) refused(v string) string {
	if signed(v) {
		return ": has a sign" // else "+5s is invalid" reads as a contradiction
	}
	return ""
}

// signed reports whether a duration is written with a sign, which
// time.ParseDuration takes and durationSetting refuses.
func signed(v string) bool { return strings.HasPrefix(v, "+") || strings.HasPrefix(v, "-") }

// text writes d as a person would (1h, 2m, 8760h; not 1h0m0s), in seconds
// for a rule of whole seconds.
func (r durationRule) text(d time.Duration) string {
	if r.wholeSeconds {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
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
				p.badBecause(name, v, " is set together with FORWARDS",
					"either FORWARDS alone, or TARGET_HOST, TARGET_PORT and optionally LISTEN_PORT")
			}
		}
		return p.forwardList(list)
	}

	var f Forward
	if !setPort(&f.ListenPort, Default("LISTEN_PORT")) {
		panic("config: bad LISTEN_PORT default")
	}
	ok := true
	if hasListen {
		n, err := parsePort(listen)
		if err != nil {
			p.bad("LISTEN_PORT", listen, setting("LISTEN_PORT").Accepted)
			ok = false
		}
		f.ListenPort = n
	}
	if ok {
		p.listenPorts = []int{f.ListenPort}
	}
	// A refused MODE leaves the mode unknown (a typo of sleep, maybe): a
	// target is checked when set, but not required.
	required := !p.reported("MODE")
	if !hasHost {
		if required {
			p.unset("TARGET_HOST", setting("TARGET_HOST").Accepted+requiredSuffix)
		}
		ok = false
	} else if h, err := checkHost(host); err != nil {
		p.badBecause("TARGET_HOST", host, ": "+err.Error(), hostAccepted)
		ok = false
	} else {
		f.TargetHost = h
	}
	if !hasPort {
		if required {
			p.unset("TARGET_PORT", setting("TARGET_PORT").Accepted+requiredSuffix)
		}
		ok = false
	} else if n, err := parsePort(port); err != nil {
		p.bad("TARGET_PORT", port, setting("TARGET_PORT").Accepted)
		ok = false
	} else {
		f.TargetPort = n
	}
	if !ok {
		return nil
	}
	return []Forward{f}
}

// loops refuses forwards whose targets lead back to the sidecar's own
// listeners in a circle (TARGET_HOST=localhost with TARGET_PORT equal to
// LISTEN_PORT): each connection would open another until MAX_CONNECTIONS
// or the file limit, and no byte would reach a database. Only addresses
// known without a lookup count: loopback, localhost and LISTEN_ADDR.
func (p *parser) loops(c *Config) {
	p.toAdmin(c)
	if p.reported("LISTEN_ADDR") {
		return
	}
	next := map[int]int{} // listen port -> the own listen port its target is
	for _, f := range c.Forwards {
		if reachesListener(c.ListenAddr, f.TargetHost) {
			next[f.ListenPort] = f.TargetPort
		}
	}
	for _, f := range c.Forwards {
		path := []int{f.ListenPort}
		for port, ok := next[f.ListenPort]; ok; port, ok = next[port] {
			if port == f.ListenPort {
				p.loop(c, path)
				break
			}
			if slices.Contains(path, port) || port < f.ListenPort {
				break // a circle reported from its lowest port, or none through f
			}
			path = append(path, port)
		}
	}
}

func (p *parser) loop(c *Config, path []int) {
	const accepted = "a target that is the database (such as the Aurora cluster endpoint), not one of the sidecar's own listen ports"
	why := fmt.Sprintf("every connection would come back into the sidecar (LISTEN_ADDR=%s) and open another, and none would reach a database", c.ListenAddr)
	if c.ListenPortVar != "FORWARDS" {
		host, _ := p.get("TARGET_HOST")
		p.badBecause("TARGET_HOST", host, fmt.Sprintf(": with TARGET_PORT=%d this is the sidecar's own listener (LISTEN_PORT=%d): %s", path[0], path[0], why), accepted)
		return
	}
	list, _ := p.get("FORWARDS")
	steps := make([]string, 0, len(path)+1)
	for _, port := range append(path, path[0]) {
		steps = append(steps, strconv.Itoa(port))
	}
	p.badBecause("FORWARDS", list, fmt.Sprintf(": listen ports %s form a loop: %s", strings.Join(steps, " -> "), why), accepted)
}

// toAdmin refuses forwards whose target is the sidecar's own admin
// listener (TARGET_HOST=127.0.0.1 with TARGET_PORT equal to ADMIN_PORT):
// the app's MySQL would go to an HTTP server, which answers no greeting,
// and no byte would reach a database. Known without a lookup, as in loops.
func (p *parser) toAdmin(c *Config) {
	if p.reported("ADMIN_ADDR") || p.reported("ADMIN_PORT") || slices.Contains(p.listenPorts, c.AdminPort) {
		return // a refused value is not checked as its default; a listen port on the admin port is reported as that
	}
	const accepted = "a target that is the database (such as the Aurora cluster endpoint), not the sidecar's own admin listener"
	what := fmt.Sprintf("the sidecar's own admin listener (ADMIN_ADDR=%s, ADMIN_PORT=%d): the app's MySQL connections would reach its HTTP server, and none a database",
		c.AdminAddr, c.AdminPort)
	for _, f := range c.Forwards {
		if f.TargetPort != c.AdminPort || !reachesListener(c.AdminAddr, f.TargetHost) {
			continue
		}
		if c.ListenPortVar != "FORWARDS" {
			host, _ := p.get("TARGET_HOST")
			p.badBecause("TARGET_HOST", host, fmt.Sprintf(": with TARGET_PORT=%d this is %s", f.TargetPort, what), accepted)
			return
		}
		list, _ := p.get("FORWARDS")
		p.badBecause("FORWARDS", list, fmt.Sprintf(": listen port %d forwards to %s", f.ListenPort, what), accepted)
	}
}

// reachesListener is whether a connection to host lands on a listener
// bound to listenAddr in this network namespace.
func reachesListener(listenAddr, host string) bool {
	la := net.ParseIP(listenAddr)
	if la == nil {
		return false
	}
	targets := []net.IP{net.ParseIP(host)}
	if ip := targets[0]; ip != nil && ip.IsUnspecified() { // Linux connects 0.0.0.0 and :: to this host
		targets[0] = net.IPv6loopback
		if ip.To4() != nil {
			targets[0] = net.IPv4(127, 0, 0, 1)
		}
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		targets = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	for _, ip := range targets {
		switch {
		case ip == nil:
		case la.Equal(ip):
			return true
		case la.Equal(net.IPv6unspecified): // :: takes IPv4 too
			return ip.IsLoopback()
		case la.Equal(net.IPv4zero):
			return ip.IsLoopback() && ip.To4() != nil
		}
	}
	return false
}

func (p *parser) forwardList(list string) []Forward {
	if strings.Contains(list, "://") || credentialsIn(list, false) {
		// One problem for the whole list: a password may hold a comma, so
		// its entries, cut at commas, could each show part of it.
		p.badBecause("FORWARDS", list, ": has a URL or credentials in it: give each entry as LISTEN_PORT=HOST:PORT, with no user or password", forwardsAccepted)
		return nil
	}
	var listed []string // the reasons reported, each once
	unlisted := 0
	refuse := func(reason, accepted string) {
		switch {
		case slices.Contains(listed, reason):
		case len(listed) == maxEntryProblems:
			unlisted++
		default:
			listed = append(listed, reason)
			p.badBecause("FORWARDS", list, reason, accepted)
		}
	}
	if credentialsIn(list, true) {
		// Whole forwards but for their host's name, which the user must
		// learn is the reason. Other entries' reasons are not given: a
		// password pasted after the key may hold ",PORT=", and they would
		// quote its rest.
		for i, e := range forwardEntries(list) {
			if keyTarget(e) {
				refuse(keyHostReason(i+1, strings.TrimSpace(e)), forwardsAccepted)
			}
		}
		p.moreRefused(list, unlisted)
		return nil
	}
	var out []Forward
	seen := map[int]bool{}
	for _, raw := range strings.Split(list, ",") {
		entry := strings.TrimSpace(raw)
		f, err := parseForward(entry)
		if err != nil {
			refuse(fmt.Sprintf(": entry %q %v", entry, err), forwardsAccepted)
			continue
		}
		if seen[f.ListenPort] {
			refuse(fmt.Sprintf(": listen port %d appears more than once", f.ListenPort), "each listen port once")
			continue
		}
		seen[f.ListenPort] = true
		out = append(out, f)
		p.listenPorts = append(p.listenPorts, f.ListenPort)
	}
	p.moreRefused(list, unlisted)
	return out
}

// moreRefused reports the n refused entries of list that have no line of
// their own, if any.
func (p *parser) moreRefused(list string, n int) {
	if n > 0 {
		p.badBecause("FORWARDS", list, fmt.Sprintf(": %d more entries are refused, not listed here (fix the ones above first)", n), forwardsAccepted)
	}
}

// maxEntryProblems bounds the lines a bad FORWARDS gets. Each line
// repeats the whole list, so one per entry of a list of thousands (a
// stray run of commas) would log gigabytes.
const maxEntryProblems = 10

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
	target = strings.TrimSpace(target)
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return Forward{}, fmt.Errorf("has target %q, want HOST:PORT ([IPv6]:PORT for IPv6)", target)
	}
	h, err := checkHost(host)
	if err != nil {
		return Forward{}, fmt.Errorf("has target host %q (%v), want %s", host, err, hostAccepted)
	}
	tp, err := parsePort(port)
	if err != nil {
		return Forward{}, fmt.Errorf("has target port %q, want 1-65535", port)
	}
	return Forward{ListenPort: lp, TargetHost: h, TargetPort: tp}, nil
}

// checkHost accepts an IP literal or a DNS name (letters, digits, '-', '_',
// dots between labels of 1-63 bytes, at most 253 bytes, optional final dot,
// a last label that is not all digits).
func checkHost(h string) (string, error) {
	if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil && !strings.Contains(h, "%") {
		if why := unreachedAddr(ip); why != "" {
			return "", errors.New(why)
		}
		return ip.String(), nil
	}
	// Before any reason that quotes a part of h: the part may be a secret.
	if strings.Contains(h, "://") || strings.Contains(h, "@") || redact.Keyed(h) != h {
		return "", fmt.Errorf("is a URL or a connection string, or has a user or password in it: give the host name alone (db.cluster-abc.eu-west-1.rds.amazonaws.com), the port apart, and no credentials")
	}
	if host, port, err := net.SplitHostPort(h); err == nil && host != "" && port != "" && strings.Trim(port, "0123456789") == "" {
		return "", fmt.Errorf("has a port in it: give the host alone (%s), and %s as the port", host, port)
	}
	if addr, zone, ok := strings.Cut(strings.Trim(h, "[]"), "%"); ok && net.ParseIP(addr) != nil {
		return "", fmt.Errorf("is an IPv6 address with a zone (%%%s): zones are not supported, a database is not on a link-local address", zone)
	}
	name := strings.TrimSuffix(h, ".")
	switch {
	case name == "":
		return "", fmt.Errorf("is neither a DNS name nor an IP address")
	case len(name) > 253:
		return "", fmt.Errorf("is neither a DNS name nor an IP address: %d bytes, more than a DNS name's 253", len(name))
	}
	labels := strings.Split(name, ".")
	for _, label := range labels {
		// Why, too: a label's limits are not in the accepted text.
		switch {
		case label == "":
			return "", fmt.Errorf("has a bad label %q (empty: two dots in a row, or a dot first)", label)
		case len(label) > 63:
			return "", fmt.Errorf("has a bad label %q (%d bytes, more than a label's 63)", label, len(label))
		case label[0] == '-' || label[len(label)-1] == '-':
			return "", fmt.Errorf("has a bad label %q (a label neither starts nor ends with '-')", label)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return "", fmt.Errorf("has a bad character %q", r)
			}
		}
	}
	// No top-level domain is all digits (RFC 3696 section 2), so such a
	// name is an IP address in a short or padded form (127.1,
	// 127.000.000.002) that Go's resolver does not parse as one: every
	// lookup would fail with "no such host".
	if last := labels[len(labels)-1]; strings.Trim(last, "0123456789") == "" {
		if strings.Trim(name, "0123456789.") == "" {
			return "", fmt.Errorf("is all-numeric: not a DNS name, and not an IP address in standard form")
		}
		return "", fmt.Errorf("ends in the all-numeric label %q: not a DNS name (a top-level domain is never all digits), and not an IP address in standard form", last)
	}
	return h, nil
}

// Proxy is the configuration as proxy.Config values, final: a setting that
// is off in the environment (KEEPALIVE=0, DRAIN_TIMEOUT=0) is off here too,
// never left at zero for the proxy to read as "its default". The caller
// adds the logger and the data path.
func (c Config) Proxy() proxy.Config {
	pc := proxy.Config{
		ListenAddr:         c.ListenAddr,
		ConnectTimeout:     c.ConnectTimeout,
		IdleTimeout:        c.IdleTimeout,
		Keepalive:          c.Keepalive,
		MaxConnections:     c.MaxConnections,
		DrainTimeout:       c.DrainTimeout,
		StaleCheckInterval: c.StaleCheckInterval,
		DNSCacheTTL:        c.DNSCacheTTL,
		CheckTargets:       true,
	}
	if pc.Keepalive == 0 {
		pc.Keepalive = -1 // proxy: negative = off
	}
	if pc.DrainTimeout == 0 {
		pc.DrainTimeout = -1 // proxy: negative = close at once
	}
	if pc.DNSCacheTTL == 0 {
		pc.DNSCacheTTL = -1 // proxy: negative = a lookup per connection
	}
	key := mysqltls.NewPasswordKey() // made on first use
	bufs := mysqltls.NewBuffers()
	for _, f := range c.Forwards {
		pf := proxy.Forward{ListenPort: f.ListenPort, TargetHost: f.TargetHost, TargetPort: f.TargetPort}
		if c.TLS != TLSDisabled && c.TLS != "" {
			pf.TLS = &mysqltls.Target{Mode: mysqltls.Mode(c.TLS), Roots: c.TLSCA, RootsFrom: c.TLSCAFrom,
				ServerName: c.ServerName(f), HandshakeTimeout: c.ConnectTimeout, Sessions: tls.NewLRUClientSessionCache(0), PasswordKey: key,
				Buffers: bufs}
			if c.IAM != nil {
				pf.TLS.IAM = c.authority(f)
			}
		}
		pc.Forwards = append(pc.Forwards, pf)
	}
	return pc
}

// authority is f's IAM login: tokens are signed for the name the server
// knows itself by, never the IP dialed (iam's rules require a name).
func (c Config) authority(f Forward) *iamauth.Authority {
	a := &iamauth.Authority{Tokens: c.IAM, Endpoint: net.JoinHostPort(c.ServerName(f), strconv.Itoa(f.TargetPort))}
	if c.IAMUsers != nil {
		a.Users = map[string]bool{}
		for _, u := range c.IAMUsers {
			a.Users[u] = true
		}
	}
	if c.LocalPassword != "" {
		a.LocalPassword = []byte(c.LocalPassword)
	}
	return a
}

// LocalPasswordSpace names a blank at an end of LOCAL_PASSWORD ("ends in
// a newline"), or "". The password is used as written: a password may end
// in a blank, and an app reading the same secret sends the same bytes. But
// a newline there is most often a secret file's, which an app that trims
// it does not send: then the start-up warning is the only clue.
func (c Config) LocalPasswordSpace() string {
	name := func(r rune) string {
		switch r {
		case '\n':
			return "a newline"
		case '\r':
			return "a carriage return"
		case ' ':
			return "a space"
		case '\t':
			return "a tab"
		}
		return fmt.Sprintf("a blank (%U)", r)
	}
	pw := c.LocalPassword
	if strings.HasSuffix(pw, "\r\n") { // Windows' line end
		return "ends in a newline"
	}
	if last, _ := utf8.DecodeLastRuneInString(pw); pw != "" && unicode.IsSpace(last) {
		return "ends in " + name(last)
	}
	if first, _ := utf8.DecodeRuneInString(pw); pw != "" && unicode.IsSpace(first) {
		return "starts with " + name(first)
	}
	return ""
}

// LogAttrs is the effective configuration for the startup log line. Nothing
// here is secret.
func (c Config) LogAttrs() []slog.Attr {
	attrs := []slog.Attr{
		slog.String("mode", string(c.Mode)),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("admin_addr", c.AdminAddr),
		slog.Int("admin_port", c.AdminPort),
	}
	if c.Mode == ModeSleep {
		return attrs
	}
	fw := make([]string, len(c.Forwards))
	for i, f := range c.Forwards {
		fw[i] = fmt.Sprintf("%s=%s", net.JoinHostPort(c.ListenAddr, strconv.Itoa(f.ListenPort)), f.Target())
	}
	attrs = append(attrs,
		slog.Any("forwards", fw),
		slog.Int64("drain_timeout_ms", c.DrainTimeout.Milliseconds()),
		slog.Int64("connect_timeout_ms", c.ConnectTimeout.Milliseconds()),
		slog.Int64("idle_timeout_ms", c.IdleTimeout.Milliseconds()),
		slog.Int("max_connections", c.MaxConnections),
		slog.Int64("keepalive_ms", c.Keepalive.Milliseconds()),
		slog.Int64("stale_check_interval_ms", c.StaleCheckInterval.Milliseconds()),
		slog.Int64("dns_cache_ttl_ms", c.DNSCacheTTL.Milliseconds()),
		slog.String("data_path", string(c.DataPath)),
		slog.String("target_tls", string(c.TLS)),
	)
	if c.TLS != TLSDisabled {
		names := make([]string, len(c.Forwards))
		for i, f := range c.Forwards {
			names[i] = c.ServerName(f)
		}
		attrs = append(attrs, slog.String("target_tls_ca", c.TLSCAFrom), slog.Any("server_names", names))
	}
	attrs = append(attrs, slog.String("target_auth", string(c.Auth)))
	if c.IAM != nil {
		users := any("any")
		if c.IAMUsers != nil {
			users = c.IAMUsers
		}
		attrs = append(attrs, slog.String("aws_region", c.AWSRegion), slog.String("credential_source", c.IAM.Source.Name),
			slog.Any("iam_users", users), slog.Bool("local_password", c.LocalPassword != ""))
	}
	return attrs
}

// AdminEndpoint reads only ADMIN_ADDR and ADMIN_PORT: the healthcheck
// subcommand needs nothing else, and must not fail over variables the
// running sidecar already checked. A wildcard ADMIN_ADDR is reached on
// loopback.
func AdminEndpoint(lookup func(string) (string, bool)) (string, error) {
	var c Config
	p := &parser{lookup: lookup}
	for _, name := range []string{"ADMIN_ADDR", "ADMIN_PORT"} {
		st := setting(name)
		if !st.set(&c, st.Default) {
			panic("config: bad " + name + " default")
		}
		if v, ok := p.get(st.Name); ok && !st.set(&c, v) {
			reason := ""
			if st.refused != nil {
				reason = st.refused(v)
			}
			p.badBecause(st.Name, v, reason, st.Accepted)
		}
	}
	if len(p.problems) > 0 {
		return "", &Error{Problems: p.problems}
	}
	host := c.AdminAddr
	if ip := net.ParseIP(host); ip.IsUnspecified() {
		// Also for ::, whose listener is dual-stack: ::1 may be missing
		// where IPv6 is off on loopback, 127.0.0.1 never is.
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(c.AdminPort)), nil
}

// AdminListen is where the admin listener binds.
func (c Config) AdminListen() string {
	return net.JoinHostPort(c.AdminAddr, strconv.Itoa(c.AdminPort))
}
