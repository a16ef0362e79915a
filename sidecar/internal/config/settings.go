package config

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/example/sidecar/internal/redact"
	"github.com/example/sidecar/sidecar/internal/proxy"
)

// Setting is one environment variable: the one place its default, what it
// accepts and what it means are written. Parse reads it, error messages
// and `sidecar --help` quote it, and a test ties the README's
// configuration table to it.
type Setting struct {
	Name     string
	Default  string // as written in the environment; "" = none
	Unset    string // with no Default, what applies when unset, in words ("" = nothing)
	Accepted string // what is accepted, as error messages say it
	Meaning  string // one line, for sidecar --help

	sleep   bool // read in sleep mode too
	iamOnly bool // read only with TARGET_AUTH=iam, so a task definition can keep it while switching back
	raw     bool // taken as written, spaces included (a password)
	// set parses a value into c and reports whether it is acceptable; nil
	// for the forward variables, which forwards() reads together.
	set func(c *Config, v string) bool
	// refused, for a value set refuses, says why, naming the part that is
	// wrong (": entry …"); nil says "is invalid", enough for one word.
	refused func(v string) string
}

const (
	portAccepted     = "a port number from 1 to 65535"
	forwardsAccepted = "a comma-separated list of LISTEN_PORT=HOST:PORT, such as 8080=writer.example:3306,8081=reader.example:3306 (IPv6 as [::1]:3306)"
	hostAccepted     = "a hostname or IP address"
	requiredSuffix   = " (required when MODE=proxy, unless FORWARDS is set)"
	tlsAccepted      = "disabled, verify-ca or verify-identity (MySQL's --ssl-mode names, VERIFY_IDENTITY too; any case); no mode encrypts without verifying (docs/tls.md)"
)

// maxUserName is MariaDB's limit on a user name, in characters (MySQL's
// is 32): a longer name can be no database's user.
const maxUserName = 80

// Settings lists every variable, in the README's order.
var Settings = []Setting{
	{Name: "MODE", Default: string(ModeProxy), Accepted: "proxy or sleep (any case)", sleep: true,
		Meaning: "proxy forwards; sleep forwards nothing and waits for SIGTERM/SIGINT (for ECS Exec)",
		set: func(c *Config, v string) bool {
			m := Mode(strings.ToLower(v))
			c.Mode = m
			return m == ModeProxy || m == ModeSleep
		}},
	{Name: "TARGET_HOST", Accepted: hostAccepted,
		Meaning: "where connections go; a name is looked up again once its answer is DNS_CACHE_TTL old"},
	{Name: "TARGET_PORT", Accepted: portAccepted,
		Meaning: "the target's port"},
	{Name: "TARGET_TLS", Default: string(TLSDisabled), Accepted: tlsAccepted,
		Meaning: "verified TLS from the sidecar to the database; the app connects in plaintext on loopback (docs/tls.md)",
		set: func(c *Config, v string) bool {
			m := TLSMode(strings.ReplaceAll(strings.ToLower(v), "_", "-")) // VERIFY_IDENTITY, as MySQL writes it
			c.TLS = m
			return m == TLSDisabled || m == TLSVerifyCA || m == TLSVerifyIdentity
		}},
	{Name: "TARGET_TLS_CA", Unset: "the Amazon RDS CA bundle, embedded", Accepted: fmt.Sprintf("a path to a PEM file of at most %d MiB with at least one CA certificate and no private key", MaxCAFileSize>>20),
		Meaning: "the CAs trusted for the database's certificate"},
	{Name: "TARGET_SERVER_NAME", Unset: "each target's host when it is a DNS name", Accepted: "a DNS name, such as mydb.cluster-abc123.us-east-1.rds.amazonaws.com",
		Meaning: "the name verify-identity checks in the certificate and sends as SNI; required with verify-identity when a target is an IP address"},
	{Name: "TARGET_AUTH", Default: string(AuthPassthrough), Accepted: "passthrough or iam (any case)",
		Meaning: "iam: the sidecar logs the app in with an IAM token, so the app holds no database password (docs/iam.md)",
		set: func(c *Config, v string) bool {
			m := AuthMode(strings.ToLower(v))
			c.Auth = m
			return m == AuthPassthrough || m == AuthIAM
		}},
	{Name: "IAM_USERS", iamOnly: true, Accepted: fmt.Sprintf("a comma-separated list of database user names of at most %d characters, such as app,report: "+
		"no quotes, spaces, ; or *, and no account host (app@%% or app@localhost; unset for any user)", maxUserName),
		Meaning: "with TARGET_AUTH=iam, the users the sidecar signs tokens for; unset = any user the app names",
		set: func(c *Config, v string) bool {
			users, refused := iamUsers(v)
			c.IAMUsers = users
			return refused == ""
		},
		refused: func(v string) string { _, refused := iamUsers(v); return refused }},
	{Name: "LOCAL_PASSWORD", iamOnly: true, raw: true, Accepted: "any text, used as written (a newline or space at an end too, with a warning); never logged",
		Meaning: "with TARGET_AUTH=iam, a password the app must send the sidecar (mysql_native_password); required unless LISTEN_ADDR is loopback",
		set: func(c *Config, v string) bool {
			c.LocalPassword = v
			return true
		}},
	{Name: "AWS_REGION", iamOnly: true, Accepted: "an AWS region, such as us-east-1",
		Meaning: "with TARGET_AUTH=iam, the region tokens are signed for (required; AWS_DEFAULT_REGION when unset, as in the AWS SDKs)",
		set: func(c *Config, v string) bool {
			c.AWSRegion = v
			return regionPattern(v)
		}},
	{Name: "LISTEN_PORT", Default: "8080", Accepted: portAccepted,
		Meaning: "the port the app connects to"},
	{Name: "LISTEN_ADDR", Default: "0.0.0.0", Accepted: "an IP address to bind, such as 0.0.0.0 (IPv4 only), 127.0.0.1 or :: (IPv4 and IPv6)",
		Meaning: "the address the forward listeners bind",
		set: func(c *Config, v string) bool {
			ip := net.ParseIP(v)
			if ip == nil || unreachedAddr(ip) != "" {
				return false
			}
			c.ListenAddr = ip.String()
			return true
		},
		refused: bindRefused},
	{Name: "FORWARDS", Accepted: forwardsAccepted,
		Meaning: "several forwards in one sidecar, instead of TARGET_HOST, TARGET_PORT and LISTEN_PORT"},
	{Name: "LOG_LEVEL", Default: "info", Accepted: "error, warn (or warning), info or debug (any case)", sleep: true,
		Meaning: "debug adds one line per connection",
		set: func(c *Config, v string) bool {
			l, ok := map[string]slog.Level{"error": slog.LevelError, "warn": slog.LevelWarn, "warning": slog.LevelWarn, "info": slog.LevelInfo,
				"debug": slog.LevelDebug}[strings.ToLower(v)]
			c.LogLevel = l
			return ok
		}},
	{Name: "LOG_FORMAT", Default: string(LogJSON), Accepted: "json or text (any case)", sleep: true,
		Meaning: "json: one JSON object per line (CloudWatch Logs Insights); text: key=value lines for a terminal",
		set: func(c *Config, v string) bool {
			f := LogFormat(strings.ToLower(v))
			c.LogFormat = f
			return f == LogJSON || f == LogText
		}},
	{Name: "ADMIN_ADDR", Default: "127.0.0.1", Accepted: "an IP address to bind, such as 127.0.0.1 (the task only) or 0.0.0.0 (reachable from other tasks)", sleep: true,
		Meaning: "the address the admin HTTP listener binds; beyond loopback, whoever reaches it reads /metrics",
		set: func(c *Config, v string) bool {
			ip := net.ParseIP(v)
			c.AdminAddr = ip.String()
			return ip != nil && unreachedAddr(ip) == ""
		},
		refused: bindRefused},
	{Name: "ADMIN_PORT", Default: "9911", // not 9901/9902: ECS Service Connect's ports (ServiceConnectPorts)
		Accepted: portAccepted + ", different from every listen port", sleep: true,
		Meaning: "admin HTTP port on ADMIN_ADDR (/livez, /readyz, /metrics); sidecar healthcheck asks it",
		set:     func(c *Config, v string) bool { return setPort(&c.AdminPort, v) }},
	durationSetting(Setting{Name: "DRAIN_TIMEOUT", Default: proxy.DefaultDrainTimeout.String(), // below ECS's default 30 s stopTimeout
		Meaning: "after SIGTERM/SIGINT, how long in-flight connections may finish"},
		func(c *Config) *time.Duration { return &c.DrainTimeout },
		durationRule{max: MaxDrainTimeout, zero: "closes connections at once", example: "20s or 1m"}),
	durationSetting(Setting{Name: "CONNECT_TIMEOUT", Default: proxy.DefaultConnectTimeout.String(),
		Meaning: "per address tried when dialing the target, and for the DNS lookup; with TARGET_TLS also for the database's greeting and for the TLS handshake, each (at most 30 s, the login's bound)"},
		func(c *Config) *time.Duration { return &c.ConnectTimeout },
		durationRule{min: MinConnectTimeout, max: MaxConnectTimeout, example: "5s or 500ms"}),
	durationSetting(Setting{Name: "IDLE_TIMEOUT", Default: "0",
		Meaning: "close a connection when no byte moved either way for this long"},
		func(c *Config) *time.Duration { return &c.IdleTimeout },
		durationRule{min: MinIdleTimeout, max: MaxIdleTimeout, zero: "off", maxWhy: "MySQL's largest wait_timeout", example: "30m"}),
	durationSetting(Setting{Name: "KEEPALIVE", Default: proxy.DefaultKeepalive.String(),
		Meaning: "TCP keepalive on both sides: first probe after this much silence, then every third of it rounded up to whole seconds (at least 1s), 3 probes"},
		func(c *Config) *time.Duration { return &c.Keepalive },
		durationRule{min: time.Second, max: MaxKeepalive, zero: "off", wholeSeconds: true,
			maxWhy: MaxKeepalive.String() + ", the kernel's TCP_KEEPIDLE limit", example: "30s"}),
	durationSetting(Setting{Name: "STALE_CHECK_INTERVAL", Default: "0",
		Meaning: "re-resolve each target this often and close connections to addresses gone from DNS"},
		func(c *Config) *time.Duration { return &c.StaleCheckInterval },
		durationRule{min: MinStaleCheckInterval, max: MaxStaleCheckInterval, zero: "off", example: "10s"}),
	durationSetting(Setting{Name: "DNS_CACHE_TTL", Default: proxy.DefaultDNSCacheTTL.String(),
		Meaning: "reuse a target's DNS answer for new connections this long, so a reconnect storm stays under the VPC resolver's 1024 packets a second; a failed lookup keeps the last answer another TTL"},
		func(c *Config) *time.Duration { return &c.DNSCacheTTL },
		durationRule{min: time.Millisecond, max: MaxDNSCacheTTL, zero: "a lookup for every connection", example: "1s"}),
	{Name: "DATA_PATH", Default: string(DataPathAuto), Accepted: "auto, epoll or portable (any case)",
		Meaning: "how bytes move: auto uses epoll where supported, else portable",
		set: func(c *Config, v string) bool {
			d := DataPath(strings.ToLower(v))
			c.DataPath = d
			return d == DataPathAuto || d == DataPathEpoll || d == DataPathPortable
		}},
	{Name: "MAX_CONNECTIONS", Default: strconv.Itoa(proxy.DefaultMaxConnections),
		Accepted: fmt.Sprintf("an integer from 1 to %d", maxConnectionsLimit),
		Meaning:  "concurrent connections across all forwards; beyond it a new one is closed at once (with TARGET_TLS, after a MySQL error 1040 that names the limit)",
		set: func(c *Config, v string) bool {
			n, ok := parseInt(v, 1, maxConnectionsLimit)
			c.MaxConnections = n
			return ok
		}},
}

// unreachedAddr says why no TCP connection reaches ip, or "": Linux binds
// a listener to a multicast or the broadcast address, and the sidecar
// would start, while every connect fails (ENETUNREACH).
func unreachedAddr(ip net.IP) string {
	switch {
	case ip.IsMulticast():
		return "is a multicast address, which no TCP connection reaches"
	case ip.Equal(net.IPv4bcast):
		return "is the broadcast address, which no TCP connection reaches"
	}
	return ""
}

// bindRefused is why an address variable's value v is refused, when it is
// an IP address.
func bindRefused(v string) string {
	if ip := net.ParseIP(v); ip != nil && unreachedAddr(ip) != "" {
		return ": " + unreachedAddr(ip)
	}
	return ""
}

// Names are the variables Parse reads.
var Names = func() []string {
	out := make([]string, len(Settings))
	for i, s := range Settings {
		out[i] = s.Name
	}
	return out
}()

// setting returns the named setting; the name is a constant of this
// package, so a miss is a bug.
func setting(name string) Setting {
	for _, s := range Settings {
		if s.Name == name {
			return s
		}
	}
	panic("config: no setting " + name)
}

// Default returns a variable's default as written in the environment.
func Default(name string) string { return setting(name).Default }

func setPort(dst *int, v string) bool {
	n, err := parsePort(v)
	*dst = n
	return err == nil
}

// durationSetting completes s, a duration variable, from its rule: what
// it accepts, how it is read and why a value is refused. A sign is
// refused, as in ports: +30s is no one's way to write a duration, nor -0s
// a way to write 0.
func durationSetting(s Setting, field func(*Config) *time.Duration, r durationRule) Setting {
	s.Accepted = r.accepted()
	s.set = func(c *Config, v string) bool {
		d, err := time.ParseDuration(v)
		*field(c) = d
		return err == nil && !signed(v) && r.ok(d)
	}
	s.refused = r.refused
	return s
}

// DefaultText is the default as --help shows it: the value, what applies
// when unset in parentheses, or none.
func (s Setting) DefaultText() string {
	switch {
	case s.Default != "":
		return s.Default
	case s.Unset != "":
		return "(" + s.Unset + ")"
	}
	return "none"
}

// Help describes every variable with its default, for sidecar --help.
func Help() string {
	var b strings.Builder
	for _, s := range Settings {
		fmt.Fprintf(&b, "  %-21s default: %s\n      %s\n      accepted: %s\n", s.Name, s.DefaultText(), s.Meaning, s.Accepted)
	}
	return b.String()
}

// iamUsers reads an IAM_USERS list, or says which entries are no user
// name the app sends, the way FORWARDS names its bad entries. When the
// list is shown masked (a password pasted in, which may run over commas),
// its entries are named by their place, never quoted.
func iamUsers(list string) (users []string, refused string) {
	var bad, places []string
	for i, u := range strings.Split(list, ",") {
		u = strings.TrimSpace(u)
		if why := userNameProblem(u); why != "" {
			bad = append(bad, fmt.Sprintf("entry %q %s", u, why))
			places = append(places, strconv.Itoa(i+1))
			continue
		}
		users = append(users, u)
	}
	if len(bad) == 0 {
		return users, ""
	}
	switch masked := shown(list) != list; {
	case masked && len(places) == 1:
		return nil, ": entry " + places[0] + " is not a user name"
	case masked:
		return nil, ": entries " + strings.Join(places[:len(places)-1], ", ") + " and " + places[len(places)-1] + " are not user names"
	}
	return nil, ": " + strings.Join(bad, "; ")
}

// userNameProblem is why u is no user name as the app sends it, or "".
// Quotes, 'app'@'%' and a wildcard are SQL's, and would match no login. A
// name may hold an @ (jane@example.com), but not an account's host.
func userNameProblem(u string) string {
	if u == "" {
		return "is empty"
	}
	if n := utf8.RuneCountInString(u); n > maxUserName {
		return fmt.Sprintf("has %d characters, more than %d", n, maxUserName)
	}
	if i := strings.IndexAny(u, "'\"`;* \t"); i >= 0 {
		return fmt.Sprintf("has the character %q", u[i])
	}
	if redact.Keyed(u) != u {
		// A secret pasted (password=…, a token's ?…, -p…), which the start
		// line would log: legal in a quoted MySQL name, but no one's.
		return "is a credential, not a user name"
	}
	if accountHost(u) {
		return fmt.Sprintf("ends in an account host (%s)", u[strings.LastIndexByte(u, '@'):])
	}
	return ""
}

// accountHost reports whether u ends in a MySQL account's host part
// (app@%, app@localhost, app@10.0.%), which the app never sends.
func accountHost(u string) bool {
	at := strings.LastIndexByte(u, '@')
	if at < 0 {
		return false
	}
	host := u[at+1:]
	return host == "" || strings.Contains(host, "%") || strings.EqualFold(host, "localhost") || net.ParseIP(host) != nil
}
