package config

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/internal/envbool"
)

func env(kv map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
}

func defaults(fw ...Forward) Config {
	c := Config{
		Mode: ModeProxy, ListenAddr: "0.0.0.0", Forwards: fw, LogLevel: slog.LevelInfo,
		AdminAddr: "127.0.0.1", AdminPort: 9911, DrainTimeout: 20 * time.Second, ConnectTimeout: 5 * time.Second,
		MaxConnections: 1024, Keepalive: 30 * time.Second, DataPath: DataPathAuto, TLS: TLSDisabled, Auth: AuthPassthrough,
		LogFormat: LogJSON, DNSCacheTTL: time.Second,
	}
	if len(fw) > 0 {
		c.ListenPortVar = "LISTEN_PORT"
	}
	return c
}

// viaForwards is c with its forwards set by FORWARDS.
func viaForwards(c Config) Config {
	c.ListenPortVar = "FORWARDS"
	return c
}

// DNS limits: a label of 63 bytes and a name of 253 are the largest allowed.
var (
	label63 = strings.Repeat("a", 63)
	label64 = strings.Repeat("a", 64)
	name253 = label63 + "." + label63 + "." + label63 + "." + strings.Repeat("b", 61)
	name254 = name253 + "b"
)

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want func() Config
	}{
		{
			name: "single target with defaults",
			env:  map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306"},
			want: func() Config { return defaults(Forward{8080, "db.example", 3306}) },
		},
		{
			name: "empty values count as unset",
			env: map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306", "MODE": "", "LISTEN_PORT": "",
				"LOG_LEVEL": " ", "FORWARDS": ""},
			want: func() Config { return defaults(Forward{8080, "db.example", 3306}) },
		},
		{
			name: "every variable set",
			env: map[string]string{"MODE": "proxy", "TARGET_HOST": "10.0.0.5", "TARGET_PORT": "3307",
				"LISTEN_PORT": "13306", "LISTEN_ADDR": "127.0.0.1", "LOG_LEVEL": "DEBUG", "ADMIN_PORT": "9000",
				"DRAIN_TIMEOUT": "5s", "CONNECT_TIMEOUT": "750ms", "IDLE_TIMEOUT": "30m", "MAX_CONNECTIONS": "10",
				"KEEPALIVE": "0", "STALE_CHECK_INTERVAL": "10s", "DATA_PATH": "portable"},
			want: func() Config {
				c := defaults(Forward{13306, "10.0.0.5", 3307})
				c.ListenAddr, c.LogLevel, c.AdminPort = "127.0.0.1", slog.LevelDebug, 9000
				c.DrainTimeout, c.ConnectTimeout, c.IdleTimeout = 5*time.Second, 750*time.Millisecond, 30*time.Minute
				c.MaxConnections, c.Keepalive, c.StaleCheckInterval = 10, 0, 10*time.Second
				c.DataPath = DataPathPortable
				return c
			},
		},
		{
			name: "forwards list, sorted by listen port, spaces tolerated",
			env:  map[string]string{"FORWARDS": " 8081=reader.example:3306 , 8080=writer.example:3306,9000=[::1]:3306"},
			want: func() Config {
				return viaForwards(defaults(Forward{8080, "writer.example", 3306}, Forward{8081, "reader.example", 3306}, Forward{9000, "::1", 3306}))
			},
		},
		{
			name: "sleep mode ignores forwarding variables, even broken ones",
			env:  map[string]string{"MODE": "sleep", "TARGET_PORT": "nope", "FORWARDS": "x", "LOG_LEVEL": "warn"},
			want: func() Config {
				c := defaults()
				c.Mode, c.LogLevel = ModeSleep, slog.LevelWarn
				return c
			},
		},
		{
			name: "LOG_LEVEL=warning, as people write it",
			env:  map[string]string{"MODE": "sleep", "LOG_LEVEL": "Warning"},
			want: func() Config {
				c := defaults()
				c.Mode, c.LogLevel = ModeSleep, slog.LevelWarn
				return c
			},
		},
		{
			name: "MODE and DATA_PATH in any case, like LOG_LEVEL",
			env:  map[string]string{"MODE": "Proxy", "DATA_PATH": "EPOLL", "TARGET_HOST": "db.example", "TARGET_PORT": "3306"},
			want: func() Config {
				c := defaults(Forward{8080, "db.example", 3306})
				c.DataPath = DataPathEpoll
				return c
			},
		},
		{
			name: "LOG_FORMAT=Text for a terminal",
			env:  map[string]string{"MODE": "sleep", "LOG_FORMAT": "Text"},
			want: func() Config {
				c := defaults()
				c.Mode, c.LogFormat = ModeSleep, LogText
				return c
			},
		},
		{
			name: "MODE=SLEEP",
			env:  map[string]string{"MODE": "SLEEP"},
			want: func() Config {
				c := defaults()
				c.Mode = ModeSleep
				return c
			},
		},
		{
			name: "limits of the duration variables are accepted",
			env: map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306", "KEEPALIVE": "32767s",
				"IDLE_TIMEOUT": "1s", "CONNECT_TIMEOUT": "1ms", "STALE_CHECK_INTERVAL": "100ms", "DNS_CACHE_TTL": "5s"},
			want: func() Config {
				c := defaults(Forward{8080, "db.example", 3306})
				c.Keepalive, c.IdleTimeout, c.ConnectTimeout, c.StaleCheckInterval = 32767*time.Second, time.Second, time.Millisecond, 100*time.Millisecond
				c.DNSCacheTTL = 5 * time.Second
				return c
			},
		},
		{
			name: "upper limits of the duration variables are accepted",
			env: map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306", "DRAIN_TIMEOUT": "1h",
				"CONNECT_TIMEOUT": "2m", "IDLE_TIMEOUT": "8760h", "STALE_CHECK_INTERVAL": "1h"},
			want: func() Config {
				c := defaults(Forward{8080, "db.example", 3306})
				c.DrainTimeout, c.ConnectTimeout, c.IdleTimeout, c.StaleCheckInterval = time.Hour, 2*time.Minute, 8760*time.Hour, time.Hour
				return c
			},
		},
		{
			name: "names with digits, and a final dot",
			env:  map[string]string{"FORWARDS": "8080=db1.example:3306,8081=123.example.:3306,8082=1e100.net:3306"},
			want: func() Config {
				return viaForwards(defaults(Forward{8080, "db1.example", 3306}, Forward{8081, "123.example.", 3306}, Forward{8082, "1e100.net", 3306}))
			},
		},
		// Whole forwards are taken as given, though the masker reads a
		// key in their host and shows the port masked.
		{
			name: "hosts that hold a credential's word",
			env:  map[string]string{"FORWARDS": "8080=db-secret:3306,8081=TokenService:3307,8082=my-token:3308,8083=password:3309"},
			want: func() Config {
				return viaForwards(defaults(Forward{8080, "db-secret", 3306}, Forward{8081, "TokenService", 3307},
					Forward{8082, "my-token", 3308}, Forward{8083, "password", 3309}))
			},
		},
		{
			name: "largest port, label and name",
			env:  map[string]string{"FORWARDS": "65535=" + label63 + ".example:65535,8081=" + name253 + ":3306"},
			want: func() Config {
				return viaForwards(defaults(Forward{8081, name253, 3306}, Forward{65535, label63 + ".example", 65535}))
			},
		},
		{
			name: "IPv6 listen address and target",
			env:  map[string]string{"TARGET_HOST": "::1", "TARGET_PORT": "3306", "LISTEN_ADDR": "::"},
			want: func() Config {
				c := defaults(Forward{8080, "::1", 3306})
				c.ListenAddr = "::"
				return c
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(env(tc.env))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if want := tc.want(); !reflect.DeepEqual(got, want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		// want holds one substring per expected problem line, in order.
		want []string
	}{
		{
			name: "nothing set",
			env:  map[string]string{},
			want: []string{"TARGET_HOST is not set", "TARGET_PORT is not set"},
		},
		// A refused value is not checked again as its default.
		{
			name: "bad ADMIN_PORT with a listener on its default",
			env:  map[string]string{"TARGET_HOST": "db.example.com", "TARGET_PORT": "3306", "LISTEN_PORT": "9911", "ADMIN_PORT": "abc"},
			want: []string{`ADMIN_PORT="abc"`},
		},
		{
			name: "TARGET_TLS typo with iam",
			env: map[string]string{"TARGET_HOST": "db.example.com", "TARGET_PORT": "3306", "LISTEN_ADDR": "127.0.0.1",
				"TARGET_TLS": "verify", "TARGET_AUTH": "iam", "AWS_REGION": "us-east-1"},
			want: []string{`TARGET_TLS="verify"`},
		},
		{
			name: "LISTEN_ADDR typo with iam",
			env: map[string]string{"TARGET_HOST": "db.example.com", "TARGET_PORT": "3306", "LISTEN_ADDR": "127.0.0.l",
				"TARGET_TLS": "verify-identity", "TARGET_AUTH": "iam", "AWS_REGION": "us-east-1"},
			want: []string{`LISTEN_ADDR="127.0.0.l"`},
		},
		{
			name: "every value bad at once",
			env: map[string]string{"MODE": "proxy", "TARGET_HOST": "bad host", "TARGET_PORT": "0", "LISTEN_PORT": "70000",
				"LISTEN_ADDR": "localhost", "LOG_LEVEL": "verbose", "ADMIN_PORT": "-1", "DRAIN_TIMEOUT": "20",
				"CONNECT_TIMEOUT": "0s", "IDLE_TIMEOUT": "-1s", "MAX_CONNECTIONS": "0", "KEEPALIVE": "forever",
				"STALE_CHECK_INTERVAL": "1ms", "DATA_PATH": "fast", "DNS_CACHE_TTL": "6s"},
			want: []string{
				`LOG_LEVEL="verbose" is invalid; accepted: error, warn (or warning), info or debug`,
				`ADMIN_PORT="-1" is invalid; accepted: a port number from 1 to 65535`,
				`LISTEN_ADDR="localhost" is invalid; accepted: an IP address`,
				`DRAIN_TIMEOUT="20" is invalid; accepted: 0 (closes connections at once) or a duration`,
				`CONNECT_TIMEOUT="0s" is invalid; accepted: a duration from 1ms to 2m`,
				`IDLE_TIMEOUT="-1s": has a sign`,
				`KEEPALIVE="forever" is invalid`,
				`STALE_CHECK_INTERVAL="1ms" is invalid; accepted: 0 (off) or a duration from 100ms to 1h`,
				`DNS_CACHE_TTL="6s" is invalid; accepted: 0 (a lookup for every connection) or a duration from 1ms to 5s`,
				`DATA_PATH="fast" is invalid; accepted: auto, epoll or portable`,
				`MAX_CONNECTIONS="0" is invalid; accepted: an integer from 1 to 1048576`,
				`LISTEN_PORT="70000" is invalid`,
				`TARGET_HOST="bad host": has a bad character ' '; accepted: a hostname`,
				`TARGET_PORT="0" is invalid; accepted: a port number from 1 to 65535`,
			},
		},
		// strconv.Atoi takes a sign; a port or a count is digits only.
		{
			name: "a sign before a number",
			env: map[string]string{"TARGET_HOST": "db", "TARGET_PORT": "+3306", "LISTEN_PORT": "+8080", "ADMIN_PORT": "+9000",
				"MAX_CONNECTIONS": "+10"},
			want: []string{
				`ADMIN_PORT="+9000" is invalid; accepted: a port number from 1 to 65535`,
				`MAX_CONNECTIONS="+10" is invalid; accepted: an integer from 1 to 1048576`,
				`LISTEN_PORT="+8080" is invalid; accepted: a port number from 1 to 65535`,
				`TARGET_PORT="+3306" is invalid; accepted: a port number from 1 to 65535`,
			},
		},
		{
			name: "a sign before a port in FORWARDS",
			env:  map[string]string{"FORWARDS": "+8080=db:3306,8081=db:+3306,8082=db:-0"},
			want: []string{
				`entry "+8080=db:3306" has listen port "+8080", want 1-65535`,
				`entry "8081=db:+3306" has target port "+3306", want 1-65535`,
				`entry "8082=db:-0" has target port "-0", want 1-65535`,
			},
		},
		// A refused value is not checked again as its default, and a
		// listen port on the admin port is reported as that alone.
		{
			name: "a bad ADMIN_PORT is not checked as its default against a target",
			env:  map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": "9911", "ADMIN_PORT": "9911x"},
			want: []string{`ADMIN_PORT="9911x" is invalid`},
		},
		{
			name: "a bad ADMIN_ADDR is not checked as its default against a target",
			env:  map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": "9911", "ADMIN_ADDR": "127.0.0.l"},
			want: []string{`ADMIN_ADDR="127.0.0.l" is invalid`},
		},
		{
			name: "a target on a listen port that is also the admin port",
			env:  map[string]string{"TARGET_HOST": "localhost", "TARGET_PORT": "9911", "LISTEN_PORT": "9911"},
			want: []string{`TARGET_HOST="localhost": with TARGET_PORT=9911 this is the sidecar's own listener (LISTEN_PORT=9911)`,
				`LISTEN_PORT="9911": port 9911 is also the admin port`},
		},
		{
			name: "bad mode",
			env:  map[string]string{"MODE": "Sleepy", "TARGET_HOST": "db", "TARGET_PORT": "3306"},
			want: []string{`MODE="Sleepy" is invalid; accepted: proxy or sleep`},
		},
		// A refused MODE leaves the mode unknown: a target is not
		// required (the task may have meant sleep), but a set one is
		// checked, so every problem shows.
		{
			name: "bad mode without a target",
			env:  map[string]string{"MODE": "slep"},
			want: []string{`MODE="slep" is invalid; accepted: proxy or sleep`},
		},
		{
			name: "bad mode with half a target",
			env:  map[string]string{"MODE": "proxi", "TARGET_HOST": "db", "TARGET_PORT": "http"},
			want: []string{`MODE="proxi" is invalid`, `TARGET_PORT="http" is invalid`},
		},
		{
			// The kernel caps TCP_KEEPIDLE at 32767 s: beyond it setsockopt
			// fails and the socket keeps the 2 h default.
			name: "keepalive the kernel cannot honour",
			env:  map[string]string{"TARGET_HOST": "db", "TARGET_PORT": "3306", "KEEPALIVE": "10h"},
			want: []string{`KEEPALIVE="10h" is invalid; accepted: 0 (off) or whole seconds from 1s to 32767s`},
		},
		{
			name: "keepalive below a second or not whole seconds",
			env:  map[string]string{"FORWARDS": "8080=db:3306", "KEEPALIVE": "500ms", "IDLE_TIMEOUT": "1ms"},
			want: []string{`IDLE_TIMEOUT="1ms" is invalid; accepted: 0 (off) or a duration from 1s to 8760h`, `KEEPALIVE="500ms" is invalid`},
		},
		{
			name: "keepalive with a fraction of a second",
			env:  map[string]string{"FORWARDS": "8080=db:3306", "KEEPALIVE": "1.5s"},
			want: []string{`KEEPALIVE="1.5s" is invalid`},
		},
		{
			// A unit typo (10h for 10s) waits hours where seconds were meant.
			name: "durations beyond their upper limits",
			env: map[string]string{"FORWARDS": "8080=db:3306", "DRAIN_TIMEOUT": "61m", "CONNECT_TIMEOUT": "10h",
				"IDLE_TIMEOUT": "8761h", "STALE_CHECK_INTERVAL": "2h"},
			want: []string{
				`DRAIN_TIMEOUT="61m" is invalid; accepted: 0 (closes connections at once) or a duration of at most 1h, such as 20s or 1m`,
				`CONNECT_TIMEOUT="10h" is invalid; accepted: a duration from 1ms to 2m, such as 5s or 500ms`,
				`IDLE_TIMEOUT="8761h" is invalid; accepted: 0 (off) or a duration from 1s to 8760h (MySQL's largest wait_timeout), such as 30m`,
				`STALE_CHECK_INTERVAL="2h" is invalid; accepted: 0 (off) or a duration from 100ms to 1h, such as 10s`,
			},
		},
		{
			// As ports: +5s is no one's way to write a duration, and -0s no
			// way to write 0.
			name: "durations with a sign",
			env:  map[string]string{"FORWARDS": "8080=db:3306", "CONNECT_TIMEOUT": "+5s", "DRAIN_TIMEOUT": "-5s", "IDLE_TIMEOUT": "-0s", "DNS_CACHE_TTL": "+0"},
			want: []string{
				`DRAIN_TIMEOUT="-5s": has a sign; accepted:`,
				`CONNECT_TIMEOUT="+5s": has a sign; accepted: a duration from 1ms to 2m`,
				`IDLE_TIMEOUT="-0s": has a sign; accepted:`,
				`DNS_CACHE_TTL="+0": has a sign; accepted:`,
			},
		},
		{
			name: "connect timeout below 1ms",
			env:  map[string]string{"FORWARDS": "8080=db:3306", "CONNECT_TIMEOUT": "999us"},
			want: []string{`CONNECT_TIMEOUT="999us" is invalid; accepted: a duration from 1ms to 2m`},
		},
		{
			name: "all-numeric host names are not DNS names",
			env:  map[string]string{"TARGET_HOST": "127.1", "TARGET_PORT": "3306"},
			want: []string{`TARGET_HOST="127.1": is all-numeric`},
		},
		{
			name: "padded IPv4 address",
			env:  map[string]string{"TARGET_HOST": "127.000.000.002", "TARGET_PORT": "3306"},
			want: []string{`TARGET_HOST="127.000.000.002": is all-numeric`},
		},
		{
			name: "all-numeric host names in FORWARDS",
			env:  map[string]string{"FORWARDS": "8080=127.1:3306,8081=3306:3306,8082=10.0.0.01:3306"},
			want: []string{`entry "8080=127.1:3306" has target host "127.1" (is all-numeric`,
				`entry "8081=3306:3306" has target host "3306" (is all-numeric`,
				`entry "8082=10.0.0.01:3306" has target host "10.0.0.01" (is all-numeric`},
		},
		{
			name: "hex-looking name with a numeric last label",
			env:  map[string]string{"TARGET_HOST": "0x7f.1", "TARGET_PORT": "3306"},
			want: []string{`TARGET_HOST="0x7f.1": ends in the all-numeric label "1"`},
		},
		{
			name: "IPv6 address with a zone",
			env:  map[string]string{"TARGET_HOST": "fe80::1%eth0", "TARGET_PORT": "3306"},
			want: []string{`TARGET_HOST="fe80::1%eth0": is an IPv6 address with a zone (%eth0): zones are not supported`},
		},
		{
			name: "both forms",
			env:  map[string]string{"FORWARDS": "8080=a:1", "TARGET_HOST": "db", "LISTEN_PORT": "8080"},
			want: []string{`TARGET_HOST="db" is set together with FORWARDS`, `LISTEN_PORT="8080" is set together with FORWARDS`},
		},
		{
			name: "a bad entry beside a host that holds a credential's word",
			env:  map[string]string{"FORWARDS": "8080=db-secret:3306,8081=db:0"},
			want: []string{`entry "8081=db:0" has target port "0"`},
		},
		{
			name: "forwards entries each reported",
			env:  map[string]string{"FORWARDS": "8080=a:1,,8080=b:2,x=c:3,8082=d,8083=e:0,8084=-bad-:1,8085"},
			want: []string{
				`entry "" is empty`,
				`listen port 8080 appears more than once`,
				`entry "x=c:3" has listen port "x"`,
				`entry "8082=d" has target "d", want HOST:PORT`,
				`entry "8083=e:0" has target port "0"`,
				`entry "8084=-bad-:1" has target host "-bad-"`,
				`entry "8085" has no '='`,
			},
		},
		{
			name: "one past the largest port, label and name; a hyphen at one end",
			env: map[string]string{"FORWARDS": "65536=a:1,8081=a:65536,8082=" + label64 + ".example:1,8083=" + name254 + ":1," +
				"8084=-bad:1,8085=bad-:1", "ADMIN_PORT": "65536"},
			want: []string{
				`ADMIN_PORT="65536" is invalid`,
				`entry "65536=a:1" has listen port "65536"`,
				`entry "8081=a:65536" has target port "65536"`,
				`has target host "` + label64 + `.example" (has a bad label`,
				`has target host "` + name254 + `" (is neither a DNS name nor an IP address: 254 bytes, more than a DNS name's 253)`,
				`entry "8084=-bad:1" has target host "-bad" (has a bad label`,
				`entry "8085=bad-:1" has target host "bad-" (has a bad label`,
			},
		},
		{
			name: "admin port collides with a listen port",
			env:  map[string]string{"TARGET_HOST": "db", "TARGET_PORT": "3306", "LISTEN_PORT": "9911"},
			want: []string{`LISTEN_PORT="9911": port 9911 is also the admin port (ADMIN_PORT's default)`},
		},
		{
			name: "admin port set onto a listen port",
			env:  map[string]string{"TARGET_HOST": "db", "TARGET_PORT": "3306", "ADMIN_PORT": "8080"},
			want: []string{`ADMIN_PORT="8080": the admin port is also a listen port (LISTEN_PORT)`},
		},
		{
			name: "a missing TARGET_HOST does not hide a listen port on the admin port",
			env:  map[string]string{"TARGET_PORT": "3306", "LISTEN_PORT": "9911"},
			want: []string{`TARGET_HOST is not set`, `LISTEN_PORT="9911": port 9911 is also the admin port`},
		},
		{
			name: "a bad TARGET_PORT does not hide ADMIN_PORT on the default listen port",
			env:  map[string]string{"TARGET_HOST": "db", "TARGET_PORT": "99999", "ADMIN_PORT": "8080"},
			want: []string{`TARGET_PORT="99999" is invalid`, `ADMIN_PORT="8080": the admin port is also a listen port (LISTEN_PORT)`},
		},
		{
			name: "a FORWARDS problem does not hide ADMIN_PORT on another forward's listen port",
			env:  map[string]string{"FORWARDS": "8080=127.0.0.1:8080,8081=10.0.0.1:3306,8082", "ADMIN_PORT": "8081"},
			want: []string{`entry "8082" has no '='`, `FORWARDS="8080=127.0.0.1:8080,8081=10.0.0.1:3306,8082"`,
				`ADMIN_PORT="8081": the admin port is also a listen port (FORWARDS)`},
		},
		{
			name: "an invalid LISTEN_PORT is not checked against the admin port as its default",
			env:  map[string]string{"TARGET_HOST": "db", "TARGET_PORT": "3306", "LISTEN_PORT": "99999", "ADMIN_PORT": "8080"},
			want: []string{`LISTEN_PORT="99999" is invalid`},
		},
		{
			name: "an invalid server name is not also reported unset",
			env:  map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": "3306", "TARGET_TLS": "verify-identity", "TARGET_SERVER_NAME": "10.0.0.1"},
			want: []string{`TARGET_SERVER_NAME="10.0.0.1": is an IP address`},
		},
		{
			name: "a missing server name is reported once with iam",
			env: map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": "3306", "TARGET_TLS": "verify-identity", "TARGET_AUTH": "iam",
				"AWS_REGION": "eu-west-1", "LISTEN_ADDR": "127.0.0.1"},
			want: []string{`TARGET_SERVER_NAME is not set`},
		},
		{
			name: "a mistyped TARGET_TLS does not hide the other TLS settings' problems",
			env:  map[string]string{"TARGET_HOST": "db", "TARGET_PORT": "3306", "TARGET_TLS": "verify-identiy", "TARGET_TLS_CA": "/nonexistent.pem"},
			want: []string{`TARGET_TLS="verify-identiy" is invalid`, `TARGET_TLS_CA="/nonexistent.pem": cannot be read`},
		},
		{
			name: "a mistyped TARGET_AUTH does not hide the iam settings' problems",
			env:  map[string]string{"TARGET_HOST": "db", "TARGET_PORT": "3306", "TARGET_AUTH": "IAMM", "AWS_REGION": "eu west 1"},
			want: []string{`TARGET_AUTH="IAMM" is invalid`, `AWS_REGION="eu west 1" is invalid`},
		},
		{
			name: "iam without TARGET_TLS set",
			env:  map[string]string{"TARGET_HOST": "db", "TARGET_PORT": "3306", "TARGET_AUTH": "iam", "AWS_REGION": "eu-west-1", "LISTEN_ADDR": "127.0.0.1"},
			want: []string{`TARGET_TLS is not set; accepted: verify-ca or verify-identity with TARGET_AUTH=iam`},
		},
		{
			name: "an encrypt-only ssl-mode",
			env:  map[string]string{"TARGET_HOST": "db", "TARGET_PORT": "3306", "TARGET_TLS": "REQUIRED"},
			want: []string{`TARGET_TLS="REQUIRED" is invalid; accepted: disabled, verify-ca or verify-identity (MySQL's --ssl-mode names, VERIFY_IDENTITY too; any case); no mode encrypts without verifying (docs/tls.md)`},
		},
		{
			name: "a connection URL as TARGET_HOST: a hint, and no password in the log",
			env:  map[string]string{"TARGET_HOST": "mysql://app:s3cret@db.example:3306/orders?password=s3cret", "TARGET_PORT": "3306"},
			want: []string{`TARGET_HOST="mysql://xxxxx@db.example:3306/orders?xxxxx": is a URL or a connection string, or has a user or password in it: give the host name alone`},
		},
		{
			name: "user:password@host as TARGET_HOST",
			env:  map[string]string{"TARGET_HOST": "app:s3cret@db.example", "TARGET_PORT": "3306"},
			want: []string{`TARGET_HOST="xxxxx@db.example": is a URL or a connection string, or has a user or password in it`},
		},
		{
			name: "a password with a comma",
			env:  map[string]string{"TARGET_HOST": "mysql://app:s3cret,x@db.example:3306/orders", "TARGET_PORT": "3306"},
			want: []string{`TARGET_HOST="mysql://xxxxx@db.example:3306/orders"`},
		},
		{
			name: "user:password@host, the password with a comma",
			env:  map[string]string{"TARGET_HOST": "app:s3cret,x@db.example", "TARGET_PORT": "3306"},
			want: []string{`TARGET_HOST="xxxxx@db.example"`},
		},
		{
			name: "a multi-host JDBC URL with the password in its query",
			env:  map[string]string{"TARGET_HOST": "jdbc:mysql://h1,h2:3306/orders?user=app&password=s3cret", "TARGET_PORT": "3306"},
			want: []string{`TARGET_HOST="jdbc:mysql://h1,h2:3306/orders?xxxxx"`},
		},
		{
			name: "FORWARDS, a user without a password",
			env:  map[string]string{"FORWARDS": "8080=app@db.example:3306"},
			want: []string{`entry "8080=app@db.example:3306" has target host "app@db.example" (is a URL or a connection string, or has a user or password in it`},
		},
		{
			name: "FORWARDS, a password with a comma",
			env:  map[string]string{"FORWARDS": "8080=mysql://app:s3cret,x@db.example:3306"},
			want: []string{`FORWARDS="8080=mysql://xxxxx@db.example:3306": has a URL or credentials in it`},
		},
		{
			name: "FORWARDS, user:password@ with a comma in the second entry",
			env:  map[string]string{"FORWARDS": "8080=db.example:3306,8081=app:s3cret,x@db.example:3306"},
			want: []string{`FORWARDS="8080=db.example:3306,8081=xxxxx@db.example:3306": has a URL or credentials in it`},
		},
		{
			name: "a colon and no port",
			env:  map[string]string{"TARGET_HOST": "db.example:abc", "TARGET_PORT": "3306"},
			want: []string{`TARGET_HOST="db.example:abc": has a bad character ':'`},
		},
		{
			name: "HOST:PORT as TARGET_HOST",
			env:  map[string]string{"TARGET_HOST": "db.example:3306", "TARGET_PORT": "3306"},
			want: []string{`TARGET_HOST="db.example:3306": has a port in it: give the host alone (db.example), and 3306 as the port`},
		},
		{
			name: "connection URLs in FORWARDS",
			env:  map[string]string{"FORWARDS": "8080=mysql://app:s3cret@db.example:3306,8081=app:s3cret@db.example:3306"},
			want: []string{`FORWARDS="8080=mysql://xxxxx@db.example:3306,8081=xxxxx@db.example:3306": has a URL or credentials in it`},
		},
		{
			name: "sleep mode still checks its own variables",
			env:  map[string]string{"MODE": "sleep", "ADMIN_PORT": "http", "LOG_LEVEL": "trace"},
			want: []string{`LOG_LEVEL="trace" is invalid`, `ADMIN_PORT="http" is invalid`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(env(tc.env))
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("Parse error = %v, want *Error", err)
			}
			if len(cerr.Problems) != len(tc.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(cerr.Problems), len(tc.want), err)
			}
			for i, w := range tc.want {
				line := cerr.Problems[i].String()
				if !strings.Contains(line, w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, line, w)
				}
				if strings.Contains(line, "\n") {
					t.Errorf("problem %d spans lines: %q", i, line)
				}
				if strings.Contains(line, "s3cret") {
					t.Errorf("problem %d shows the password: %q", i, line)
				}
				if p := cerr.Problems[i]; !strings.HasPrefix(line, p.Variable) || p.Accepted == "" || !strings.HasSuffix(line, "accepted: "+p.Accepted) {
					t.Errorf("problem %d fields %+v do not match its line %q", i, p, line)
				}
			}
		})
	}
}

var variables = Names

// FuzzParse checks that no environment makes Parse panic, that every
// problem line names a variable, and that an accepted configuration holds
// the invariants the forwarder relies on.
func FuzzParse(f *testing.F) {
	f.Add("", "db.example", "3306", "", "", "", "", "")
	f.Add("proxy", "", "", "", "", "8080=a:1,8081=[::1]:2", "debug", "5s")
	f.Add("sleep", "x y", "0", "8080", "::", "8080=a:1,8080=b:2", "trace", "-1s")
	f.Add("proxy", "10.0.0.1", "65535", "65535", "127.0.0.1", "", "ERROR", "1h")
	f.Fuzz(func(t *testing.T, mode, host, port, listenPort, listenAddr, forwards, level, dur string) {
		e := map[string]string{"MODE": mode, "TARGET_HOST": host, "TARGET_PORT": port, "LISTEN_PORT": listenPort,
			"LISTEN_ADDR": listenAddr, "FORWARDS": forwards, "LOG_LEVEL": level, "DRAIN_TIMEOUT": dur,
			"IDLE_TIMEOUT": dur, "STALE_CHECK_INTERVAL": dur}
		c, err := Parse(env(e))
		if err != nil {
			var cerr *Error
			if !errors.As(err, &cerr) || len(cerr.Problems) == 0 {
				t.Fatalf("error %v is not a non-empty *Error", err)
			}
			for _, p := range cerr.Problems {
				named := false
				for _, v := range variables {
					named = named || strings.HasPrefix(p.String(), v) && p.Variable == v
				}
				if !named {
					t.Errorf("problem %q (variable %q) does not start with a variable name", p, p.Variable)
				}
			}
			return
		}
		if c.Mode == ModeSleep {
			if len(c.Forwards) != 0 {
				t.Errorf("sleep mode with forwards %v", c.Forwards)
			}
			return
		}
		if len(c.Forwards) == 0 {
			t.Fatal("proxy mode accepted without forwards")
		}
		seen := map[int]bool{}
		for _, fw := range c.Forwards {
			if fw.ListenPort < 1 || fw.ListenPort > 65535 || fw.TargetPort < 1 || fw.TargetPort > 65535 {
				t.Errorf("port out of range in %+v", fw)
			}
			if fw.TargetHost == "" || strings.ContainsAny(fw.TargetHost, " ,=\t\n") {
				t.Errorf("bad target host accepted in %+v", fw)
			}
			if seen[fw.ListenPort] || fw.ListenPort == c.AdminPort {
				t.Errorf("listen port %d used twice", fw.ListenPort)
			}
			seen[fw.ListenPort] = true
		}
		if c.DrainTimeout < 0 || c.IdleTimeout < 0 || c.ConnectTimeout <= 0 || c.StaleCheckInterval < 0 {
			t.Errorf("negative duration accepted: %+v", c)
		}
	})
}

func TestTypos(t *testing.T) {
	environ := []string{
		"LISTN_PORT=13306",         // one deletion
		"TARGET_HOTS=db",           // neighbours swapped
		"TARGET_POTR=3306",         // neighbours swapped
		"listen_addr=127.0.0.1",    // wrong case
		"IDLE_TIMOUT=5m",           // one deletion
		"MAX_CONECTIONS=10",        // one deletion
		"STALE_CHECK_INTERVALS=1s", // one insertion
		"KEEP_ALIVE=30s",           // one insertion
		"MDOE=sleep",               // short name: one swap is one edit
		"TARGET_HOST=db",           // ours
		"HOME=/root",               // two edits from MODE, too many for a short name
		"PATH=/usr/bin",
		"HOSTNAME=ip-10-0-0-1",
		"AWS_REGION=eu-west-1",
		"ECS_CONTAINER_METADATA_URI_V4=http://169.254.170.2/v4/x",
		"TARGET_PASSWORD=secret", // far from every name
		"NODE=1", "CODE=1", "GOGC=100", "TERM=xterm", "LANG=C",
	}
	want := []Typo{
		{"IDLE_TIMOUT", "IDLE_TIMEOUT"}, {"KEEP_ALIVE", "KEEPALIVE"}, {"LISTN_PORT", "LISTEN_PORT"},
		{"MAX_CONECTIONS", "MAX_CONNECTIONS"}, {"MDOE", "MODE"}, {"NODE", "MODE"}, {"CODE", "MODE"},
		{"STALE_CHECK_INTERVALS", "STALE_CHECK_INTERVAL"}, {"TARGET_HOTS", "TARGET_HOST"},
		{"TARGET_POTR", "TARGET_PORT"}, {"listen_addr", "LISTEN_ADDR"},
	}
	sortTypos(want)
	if got := Typos(environ); !reflect.DeepEqual(got, want) {
		t.Errorf("Typos =\n%v\nwant\n%v", got, want)
	}
}

func sortTypos(ts []Typo) {
	for i := range ts {
		for j := i + 1; j < len(ts); j++ {
			if ts[j].Variable < ts[i].Variable {
				ts[i], ts[j] = ts[j], ts[i]
			}
		}
	}
}

// Next to ECS Service Connect the sidecar shares the task's network
// namespace with Envoy and its agent: no default port may be one of theirs.
func TestDefaultPortsAvoidServiceConnect(t *testing.T) {
	for _, name := range []string{"ADMIN_PORT", "LISTEN_PORT"} {
		port, err := strconv.Atoi(Default(name))
		if err != nil {
			t.Fatalf("%s default %q: %v", name, Default(name), err)
		}
		if what, ok := ServiceConnectPorts[port]; ok {
			t.Errorf("default %s=%d is the %s", name, port, what)
		}
	}
	c, err := Parse(env(map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306"}))
	if err != nil {
		t.Fatal(err)
	}
	if strconv.Itoa(c.AdminPort) != Default("ADMIN_PORT") {
		t.Errorf("AdminPort = %d, want the default %s", c.AdminPort, Default("ADMIN_PORT"))
	}
}

// Proxy hands the proxy final values: "off" in the environment is "off"
// for the proxy (negative), never a zero it would read as its default.
func TestProxyConfigIsFinal(t *testing.T) {
	c, err := Parse(env(map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306", "KEEPALIVE": "0",
		"DRAIN_TIMEOUT": "0", "DNS_CACHE_TTL": "0", "LISTEN_ADDR": "127.0.0.1"}))
	if err != nil {
		t.Fatal(err)
	}
	pc := c.Proxy()
	if pc.Keepalive >= 0 || pc.DrainTimeout >= 0 || pc.DNSCacheTTL >= 0 {
		t.Errorf("KEEPALIVE=0, DRAIN_TIMEOUT=0, DNS_CACHE_TTL=0 gave Keepalive %v, DrainTimeout %v, DNSCacheTTL %v; want all negative (off)",
			pc.Keepalive, pc.DrainTimeout, pc.DNSCacheTTL)
	}
	if !pc.CheckTargets {
		t.Error("Proxy() does not look the targets up at start: a mistyped TARGET_HOST would show only at the first connection")
	}
	if pc.ConnectTimeout != 5*time.Second || pc.MaxConnections != 1024 || pc.ListenAddr != "127.0.0.1" ||
		len(pc.Forwards) != 1 || pc.Forwards[0].TargetHost != "db.example" || pc.Forwards[0].ListenPort != 8080 {
		t.Errorf("Proxy() = %+v", pc)
	}
	d, err := Parse(env(map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306"}))
	if err != nil {
		t.Fatal(err)
	}
	if pd := d.Proxy(); pd.Keepalive != 30*time.Second || pd.DrainTimeout != 20*time.Second || pd.DNSCacheTTL != time.Second {
		t.Errorf("defaults gave Keepalive %v, DrainTimeout %v, DNSCacheTTL %v; want 30s, 20s and 1s", pd.Keepalive, pd.DrainTimeout, pd.DNSCacheTTL)
	}
}

// Every default in the table is accepted by its own setter.
func TestDefaultsAreAccepted(t *testing.T) {
	for _, st := range Settings {
		if st.set == nil || st.Default == "" {
			continue
		}
		var c Config
		if !st.set(&c, st.Default) {
			t.Errorf("%s default %q is rejected by its own parser", st.Name, st.Default)
		}
	}
}

// EarlyLogFormat reads LOG_FORMAT alone, before the rest is checked; a bad
// value falls back to JSON (Parse reports it with the rest).
func TestEarlyLogFormat(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want LogFormat
	}{
		{nil, LogJSON},
		{map[string]string{"LOG_FORMAT": "TEXT", "TARGET_PORT": "bad"}, LogText},
		{map[string]string{"LOG_FORMAT": " json "}, LogJSON},
		{map[string]string{"LOG_FORMAT": "logfmt"}, LogJSON},
	} {
		if got := EarlyLogFormat(env(tc.env)); got != tc.want {
			t.Errorf("EarlyLogFormat(%v) = %q, want %q", tc.env, got, tc.want)
		}
	}
	_, err := Parse(env(map[string]string{"MODE": "sleep", "LOG_FORMAT": "logfmt"}))
	if err == nil || !strings.Contains(err.Error(), `LOG_FORMAT="logfmt" is invalid; accepted: json or text`) {
		t.Errorf("Parse with LOG_FORMAT=logfmt: %v", err)
	}
}

// A boolean setting (one that takes "true") reads every spelling through
// envbool and says so, as the pipeline's do. The sidecar has none today;
// this catches the first one added with its own parser.
func TestBooleanSettingsUseEnvbool(t *testing.T) {
	spellings := []string{"true", "false", "TRUE", "1", "0", "yes", "no", "on", "off"}
	for _, st := range Settings {
		if st.set == nil {
			continue
		}
		var c Config
		if !st.set(&c, "true") && !st.set(&c, "false") || st.set(&c, "app-password,report") {
			continue // not boolean, or free text (IAM_USERS, LOCAL_PASSWORD)
		}
		if st.Accepted != envbool.Accepted {
			t.Errorf("%s takes true/false but says it accepts %q, not envbool.Accepted", st.Name, st.Accepted)
		}
		for _, v := range spellings {
			if _, err := envbool.Parse(v); err == nil && !st.set(&c, v) {
				t.Errorf("%s refuses %q, which envbool accepts", st.Name, v)
			}
		}
		if st.set(&c, "maybe") {
			t.Errorf("%s accepts %q, which envbool refuses", st.Name, "maybe")
		}
	}
}

// A TLS or IAM setting given without its switch is listed as unused (the
// sidecar warns of it), not refused; with the switch on, or in sleep mode
// (which reads no forwarding setting), it is not; AWS_REGION never is.
func TestUnused(t *testing.T) {
	base := map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306"}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string // "VARIABLE off-setting"
	}{
		{"nothing extra", nil, nil},
		{"TLS settings without TARGET_TLS", map[string]string{"TARGET_TLS_CA": "/nonexistent.pem", "TARGET_SERVER_NAME": "x.example"},
			[]string{"TARGET_TLS_CA TARGET_TLS=disabled", "TARGET_SERVER_NAME TARGET_TLS=disabled"}},
		{"TLS disabled explicitly", map[string]string{"TARGET_TLS": "DISABLED", "TARGET_SERVER_NAME": "x.example"},
			[]string{"TARGET_SERVER_NAME TARGET_TLS=disabled"}},
		{"TLS on", map[string]string{"TARGET_TLS": "verify-ca", "TARGET_SERVER_NAME": "x.example"}, nil},
		{"IAM settings without TARGET_AUTH", map[string]string{"IAM_USERS": "app", "LOCAL_PASSWORD": "s3cret", "AWS_REGION": "us-east-1"},
			[]string{"IAM_USERS TARGET_AUTH=passthrough", "LOCAL_PASSWORD TARGET_AUTH=passthrough"}},
		{"an empty value counts as unset", map[string]string{"TARGET_TLS_CA": " ", "IAM_USERS": ""}, nil},
		{"sleep mode", map[string]string{"MODE": "sleep", "TARGET_TLS_CA": "/x.pem", "IAM_USERS": "app"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kv := maps.Clone(base)
			maps.Copy(kv, tc.env)
			c, err := Parse(env(kv))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, u := range c.Unused {
				got = append(got, u.Variable+" "+u.Off)
				if u.Fix == "" {
					t.Errorf("%s: no fix given", u.Variable)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("unused %q, want %q", got, tc.want)
			}
		})
	}
}

// TestForwardLoops: a forward whose target is the sidecar's own listener,
// directly or through other forwards, is refused; near misses are not.
func TestForwardLoops(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string // the problem; "" for accepted
	}{
		{"localhost to its own port", map[string]string{"TARGET_HOST": "localhost", "TARGET_PORT": "8080"},
			`TARGET_HOST="localhost": with TARGET_PORT=8080 this is the sidecar's own listener (LISTEN_PORT=8080): every connection would come back into the sidecar (LISTEN_ADDR=0.0.0.0)`},
		{"LOCALHOST. to its own port", map[string]string{"TARGET_HOST": "LOCALHOST.", "TARGET_PORT": "8080"}, `TARGET_HOST="LOCALHOST.": with TARGET_PORT=8080`},
		{"127.0.0.2 with the wildcard", map[string]string{"TARGET_HOST": "127.0.0.2", "TARGET_PORT": "3306", "LISTEN_PORT": "3306"}, `TARGET_HOST="127.0.0.2": with TARGET_PORT=3306`},
		{"0.0.0.0 is 127.0.0.1", map[string]string{"TARGET_HOST": "0.0.0.0", "TARGET_PORT": "8080", "LISTEN_ADDR": "127.0.0.1"}, `TARGET_HOST="0.0.0.0"`},
		{":: is ::1", map[string]string{"TARGET_HOST": "::", "TARGET_PORT": "8080", "LISTEN_ADDR": "::1"}, `TARGET_HOST="::"`},
		{"::1 with ::", map[string]string{"TARGET_HOST": "::1", "TARGET_PORT": "8080", "LISTEN_ADDR": "::"}, `TARGET_HOST="::1"`},
		{"127.0.0.1 with ::", map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": "8080", "LISTEN_ADDR": "::"}, `TARGET_HOST="127.0.0.1"`},
		{"its own LISTEN_ADDR", map[string]string{"TARGET_HOST": "10.1.2.3", "TARGET_PORT": "8080", "LISTEN_ADDR": "10.1.2.3"}, `(LISTEN_ADDR=10.1.2.3)`},
		{"forwards in a circle", map[string]string{"FORWARDS": "8082=db.example:3306,8081=localhost:8080,8080=127.0.0.1:8081"},
			`FORWARDS="8082=db.example:3306,8081=localhost:8080,8080=127.0.0.1:8081": listen ports 8080 -> 8081 -> 8080 form a loop`},
		{"a forward to itself in a list", map[string]string{"FORWARDS": "8080=db.example:3306,8081=localhost:8081"}, `listen ports 8081 -> 8081 form a loop`},
		{"a tail into a circle is reported once, from the circle", map[string]string{"FORWARDS": "8080=localhost:8082,8081=localhost:8082,8082=localhost:8081"},
			`listen ports 8081 -> 8082 -> 8081 form a loop`},

		// The admin listener speaks HTTP: the app's MySQL would never reach a database.
		{"127.0.0.1 to the admin port", map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": "9911"},
			`TARGET_HOST="127.0.0.1": with TARGET_PORT=9911 this is the sidecar's own admin listener (ADMIN_ADDR=127.0.0.1, ADMIN_PORT=9911)`},
		{"localhost to a set ADMIN_PORT", map[string]string{"TARGET_HOST": "localhost", "TARGET_PORT": "9000", "ADMIN_PORT": "9000"},
			`TARGET_HOST="localhost": with TARGET_PORT=9000 this is the sidecar's own admin listener (ADMIN_ADDR=127.0.0.1, ADMIN_PORT=9000)`},
		{"another loopback address with the admin wildcard", map[string]string{"TARGET_HOST": "127.0.0.2", "TARGET_PORT": "9911", "ADMIN_ADDR": "0.0.0.0"},
			`(ADMIN_ADDR=0.0.0.0, ADMIN_PORT=9911)`},
		{"::1 with the admin on ::", map[string]string{"TARGET_HOST": "::1", "TARGET_PORT": "9911", "ADMIN_ADDR": "::"}, `TARGET_HOST="::1": with TARGET_PORT=9911`},
		{"a forward to the admin port in a list", map[string]string{"FORWARDS": "8080=db.example:3306,8081=localhost:9911"},
			`FORWARDS="8080=db.example:3306,8081=localhost:9911": listen port 8081 forwards to the sidecar's own admin listener (ADMIN_ADDR=127.0.0.1, ADMIN_PORT=9911)`},

		{"loopback to another port", map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": "3306"}, ""},
		{"another loopback address than ADMIN_ADDR", map[string]string{"TARGET_HOST": "127.0.0.2", "TARGET_PORT": "9911"}, ""},
		{"::1 is not the admin's 127.0.0.1", map[string]string{"TARGET_HOST": "::1", "TARGET_PORT": "9911"}, ""},
		{"loopback is not an ADMIN_ADDR beyond it", map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": "9911", "ADMIN_ADDR": "10.0.0.9"}, ""},
		{"another loopback address than LISTEN_ADDR", map[string]string{"TARGET_HOST": "127.0.0.2", "TARGET_PORT": "8080", "LISTEN_ADDR": "127.0.0.1"}, ""},
		{"::1 is not 0.0.0.0", map[string]string{"TARGET_HOST": "::1", "TARGET_PORT": "8080"}, ""},
		{"a name is not looked up", map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "8080"}, ""},
		{"a chain that ends at a database", map[string]string{"FORWARDS": "8080=localhost:8081,8081=db.example:3306"}, ""},
		{"a target port no forward listens on", map[string]string{"FORWARDS": "8080=localhost:8081,8082=localhost:8080"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(env(tt.env))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var cerr *Error
			if !errors.As(err, &cerr) || len(cerr.Problems) != 1 {
				t.Fatalf("want one problem %q, got %v", tt.want, err)
			}
			if got := cerr.Problems[0].String(); !strings.Contains(got, tt.want) || !strings.Contains(got, "accepted: a target that is the database") {
				t.Errorf("problem %q\nwant it to contain %q and what is accepted", got, tt.want)
			}
		})
	}
}

// A FORWARDS value with credentials keeps the entries that hold none and
// masks only the credentials, wherever they are in the list and whatever
// the password holds (commas, @, =, a ",PORT=", ://, a query). Every piece
// of a password here starts "pw", so that no part of one is shown.
func TestForwardsShownMasksOnlyCredentials(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ val, want string }{
		{"3306=db1:3306,3307=user:pwA@db2:3306", "3306=db1:3306,3307=xxxxx@db2:3306"},
		{"3307=user:pwA@db2:3306,3306=db1:3306", "3307=xxxxx@db2:3306,3306=db1:3306"},
		{"3306=db1:3306,3307=user:pwA,pwB@db2:3306,3308=db3:3306", "3306=db1:3306,3307=xxxxx@db2:3306,3308=db3:3306"},
		{"3306=db1:3306,3307=user:pwA@pwB@db2:3306", "3306=db1:3306,3307=xxxxx@db2:3306"},
		{"3307=user:pwA,@pwB@db2:3306", "3307=xxxxx@db2:3306"},
		{"3307=user:pwA@,pwB@db2:3306", "3307=xxxxx@db2:3306"},
		{"3307=user:pwA,=pwB@db2:3306", "3307=xxxxx@db2:3306"},
		{"3307=user:pw?A#,pwB@db2:3306", "3307=xxxxx@db2:3306"},
		{"3307=user:pwA,,pwB@db2:3306", "3307=xxxxx@db2:3306"},
		// A ",PORT=" in the password: the piece before it is no whole entry.
		{"3306=db1:3306,3307=user:pwA,3308=pwB@db2:3306", "3306=db1:3306,3307=xxxxx,3308=xxxxx@db2:3306"},
		{"3307=user:pwA,3308=db:3306,pwB@db2:3306", "3307=xxxxx,3308=xxxxx@db2:3306"},
		{"3307=user:pwA@x,3308=pwB@db2:3306", "3307=xxxxx@x,3308=xxxxx@db2:3306"},
		{"3307=user:pwA,://pwB@db2:3306", "3307=xxxxx@db2:3306"},
		{"3307=user:pwA,3308=mysql://pwB@db2:3306", "3307=xxxxx,3308=mysql://xxxxx@db2:3306"},
		{" 3306 = db1:3306 , 3307 = user:pwA,pwB@db2:3306", "3306 = db1:3306 , 3307 = xxxxx@db2:3306"}, // Parse trims the whole value
		{"user:pwA,pwB@db2:3306", "xxxxx@db2:3306"},
		{"8080=mysql://app:pwA,pwB@db.example:3306,8081=db2:3306", "8080=mysql://xxxxx@db.example:3306,8081=db2:3306"},
		{"8080=mysql://app:pw/A,pwB@db.example:3306", "8080=mysql://xxxxx@db.example:3306"},
		// A query may run on past commas: the rest of the list is masked.
		{"8080=db0:3306,8081=mysql://db.example:3306/x?password=pwA,8082=pwB,8083=db2:3306", "8080=db0:3306,8081=mysql://db.example:3306/x?xxxxx"},
		{"3307=mysql://user:pw?A,pwB@db2:3306,3308=db3:3306", "3307=mysql://xxxxx@db2:3306,3308=db3:3306"},
		{"8080=mysql://db.example/x?t=pwA,8081=u:pwB@db:3306,8082=pwC", "8080=xxxxx"},
		// A user alone is a name, as in TARGET_HOST.
		{"8080=db1:3306,8081=app@db2:3306", "8080=db1:3306,8081=app@db2:3306"},
	} {
		checkForwardsShown(t, tc.val, tc.want)
	}
}

// The leading entries the sidecar accepts are shown in a refusal as the
// start line would log them, even where the masker reads a key's word in
// the host's name (token_service:3306 was token_service:xxxxx, and the
// entries after it were dropped); from the first entry it refuses, the
// list is masked as before. No secret after a key shows either way.
func TestForwardsShownKeepsAcceptedEntries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ val, want string }{
		{"8080=token_service:3306,8080=db:3306", "8080=token_service:3306,8080=db:3306"},
		{"8080=TokenService:3306,8081=secrets_db_1:3306,8082=db:33o6", "8080=TokenService:3306,8081=secrets_db_1:3306,8082=db:33o6"},
		{"8080=auth_token_db:3306,8081=user:pwA@db:3306", "8080=auth_token_db:3306,8081=xxxxx@db:3306"},
		{" 8080 = token_service:3306 ,8081=user:pwA,pwB@db:3306", "8080 = token_service:3306 ,8081=xxxxx@db:3306"},
		{"8080=token_service:3306,8081=DB_PASSWORD:4711", "8080=token_service:3306,8081=DB_PASSWORD:xxxxx"},
		{"8080=token_service:3306,8081=db:3306?password=pwA,8082=pwB", "8080=token_service:3306,8081=db:3306?xxxxx"},
		{"8080=token_service:3306,8081=user:pwA,8082=token_service:3306@db:3306", "8080=token_service:3306,8081=xxxxx,8082=xxxxx@"},
		// From the first refused entry on, or one whose host a key's name
		// ends (accepted, but it may be a pasted key), a key's word masks
		// what follows.
		{"8080=db:33o6,8081=token_service:3306", "8080=db:33o6,8081=token_service:xxxxx"},
		{"3307=password:4711,3308=db:33o6", "3307=password:xxxxx"},
		{"8080=token_service:3306,8081=db-secret:4711,8082=db:33o6", "8080=token_service:3306,8081=db-secret:xxxxx"},
	} {
		checkForwardsShown(t, tc.val, tc.want)
	}
}

// checkForwardsShown checks that FORWARDS=val is refused, shown as want,
// and that no password of the tests (each piece starts "pw", or is 4711)
// shows in the refusal.
func checkForwardsShown(t *testing.T, val, want string) {
	t.Helper()
	_, err := Parse(env(map[string]string{"FORWARDS": val}))
	var cerr *Error
	if !errors.As(err, &cerr) || len(cerr.Problems) == 0 {
		t.Fatalf("FORWARDS=%s: %v; want a problem", val, err)
	}
	for _, p := range cerr.Problems {
		if p.Variable == "FORWARDS" && p.Value != want {
			t.Errorf("FORWARDS=%s shown as %q; want %q", val, p.Value, want)
		}
	}
	if strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), "4711") {
		t.Errorf("FORWARDS=%s: a password shows: %v", val, err)
	}
}

// Wherever in the list an entry with credentials stands, the entries
// around it are shown as given and no piece of its password is.
func TestForwardsShownNeverShowsAPassword(t *testing.T) {
	t.Parallel()
	passwords := []string{"pwA", "pwA,pwB", "pwA@pwB", "pwA,@pwB", "pwA@,pwB", "pwA,3309=pwB", "pwA,3309=db9:3306,pwB",
		"pw=A", "pwA:pwB", "pw/A,pwB", "pw?A,pwB", "pw#A", "pwA,,pwB", "pwA, pwB", "pwA,://pwB", "pwA,3309=mysql://pwB", "pw%2CA"}
	clean := []string{"3306=db1:3306", "3308=[::1]:3306"}
	for _, pw := range passwords {
		for _, secret := range []string{"3307=user:" + pw + "@db2:3306", "3307=mysql://user:" + pw + "@db2:3306"} {
			for _, list := range [][]string{{secret}, {clean[0], secret}, {secret, clean[1]}, {clean[0], secret, clean[1]}} {
				val := strings.Join(list, ",")
				got := shownForwards(val)
				if strings.Contains(got, "pw") {
					t.Errorf("FORWARDS=%s shown as %q: a piece of the password shows", val, got)
				}
				for _, e := range list {
					if e != secret && !strings.Contains(got, e) {
						t.Errorf("FORWARDS=%s shown as %q: the entry %s without credentials is masked", val, got, e)
					}
				}
			}
		}
	}
}

// A password whose start reads as a port (user:4711,pwB@db) makes a
// piece that parses as a forward: the whole list is refused, and no
// problem's reason quotes the pieces after it. A blank piece beside a
// whole forward is reported as empty, not as credentials.
func TestForwardsRefusalNeverQuotesAPassword(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ val, want string }{
		{"3307=user:4711,pwB@db2:3306", "has a URL or credentials in it"},
		{"3306=db1:3306,3307=user:4711,pwB@db2:3306", "has a URL or credentials in it"},
		{"3307=user:4711,pwB@db2:3306,3308=[::1]:3306", "has a URL or credentials in it"},
		{"3307=user:4711,pwB,pwC@db2:3306", "has a URL or credentials in it"},
		{"3307=user:4711,,pwB@db2:3306", "has a URL or credentials in it"},
		{"3307=user:4711,pwB@[::1]:3306", "has a URL or credentials in it"},
		{"3307=mysql://user:4711,pwB@db2:3306", "has a URL or credentials in it"},
		{"3306=db1:3306,3307=password:4711,pwB", "has a URL or credentials in it"},
		{"3306=db-secret:3306,", `entry "" is empty`},
		{"3306=db-secret:3306,,3307=db2:3306", `entry "" is empty`},
	} {
		_, err := Parse(env(map[string]string{"FORWARDS": tc.val}))
		if err == nil {
			t.Errorf("FORWARDS=%s accepted", tc.val)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("FORWARDS=%s: %v; want %q", tc.val, err, tc.want)
		}
		if strings.Contains(err.Error(), "pw") {
			t.Errorf("FORWARDS=%s: a piece of the password shows: %v", tc.val, err)
		}
	}
}

// A credential's key and value as an environment or a properties file
// spells them (DB_PASSWORD:48213, db.password:48213) reads as HOST:PORT,
// but no DNS host name has a _, and no zone is named password: refused for
// the host's name, the value never shown. A container's name with a _ and no
// key's name is a host, and so is a DNS name with a key's word elsewhere.
func TestForwardsRefuseAnEnvironmentsKey(t *testing.T) {
	t.Parallel()
	for _, val := range []string{"3307=DB_PASSWORD:48213", "3306=db:3306,3307=MYSQL_PWD:48213", "3307= db_password_old:48213",
		"3307=spring.datasource.password:48213"} {
		_, err := Parse(env(map[string]string{"FORWARDS": val}))
		if err == nil || !strings.Contains(err.Error(), "is spelled as a credential's key") || strings.Contains(err.Error(), "48213") {
			t.Errorf("FORWARDS=%s: %v; want it refused for its host's name, without 48213", val, err)
		}
	}
	for _, target := range []string{"secrets_db_1:48213", "db.secret:48213", "tokens.example.com:48213",
		"token_service:3306", "auth_token_db:3306", "password_reset_db:3306", "api_key_store:3306", "secret_store_db:3306"} {
		c, err := Parse(env(map[string]string{"FORWARDS": "3307=" + target}))
		if err != nil || len(c.Forwards) != 1 || c.Forwards[0].Target() != target {
			t.Errorf("FORWARDS=3307=%s: %v, %v; want it accepted", target, c.Forwards, err)
		}
	}
}

// A FORWARDS host spelled as a credential's key (db_password) is refused
// for its name, and the reason says so and what to give instead, naming
// the host but never the "port" after it; with credentials elsewhere in
// the list, the reason is those credentials'.
func TestForwardsKeyHostReason(t *testing.T) {
	t.Parallel()
	const why = "is spelled as a credential's key"
	for _, tc := range []struct {
		val  string
		want []string // in the problems, in order; none says why for a key host
	}{
		{"3307=db_password:48213", []string{`entry 1 (3307=db_password:xxxxx)`, "host db_password " + why, "(db-password: "}},
		{"3306=db:3306,3307= MYSQL_PWD:48213", []string{`entry 2 (3307= MYSQL_PWD:xxxxx)`, "host MYSQL_PWD " + why, "(MYSQL-PWD: "}},
		{"3307=spring.datasource.password:48213", []string{"host spring.datasource.password " + why, "(spring-datasource-password: "}},
		{"3307=DB_PASSWORD:48213,3308=api_key:48213", []string{"entry 1 (3307=DB_PASSWORD:xxxxx)", "host DB_PASSWORD", "entry 2 (3308=api_key:xxxxx)", "host api_key"}},
		{"3307=DB_PASSWORD:48213,3308=user:48213@db:3306", []string{"has a URL or credentials in it"}},
		{"3307=DB_PASSWORD:48213,3308=mysql://db:3306", []string{"has a URL or credentials in it"}},
		// The rest of the list is not quoted: it may be the password's
		// (48213,3308=pw48213).
		{"3307=db_password:48213,3308=pw48213", []string{"entry 1 (3307=db_password:xxxxx)", "host db_password " + why}},
	} {
		_, err := Parse(env(map[string]string{"FORWARDS": tc.val}))
		if err == nil {
			t.Errorf("FORWARDS=%s accepted", tc.val)
			continue
		}
		msg, at := err.Error(), 0
		for _, w := range tc.want {
			i := strings.Index(msg[at:], w)
			if i < 0 {
				t.Errorf("FORWARDS=%s: %v\nwant %q (in order)", tc.val, err, w)
				break
			}
			at += i + len(w)
		}
		if strings.Contains(msg, "48213") || strings.Contains(tc.want[0], "URL") == strings.Contains(msg, why) {
			t.Errorf("FORWARDS=%s: %v\nwant no 48213, and the host named as the reason only with no other credentials", tc.val, err)
		}
	}
}

// A connection string, a query or an IAM token pasted where a host or a
// port belongs is refused without its secret in any line: a refused value
// is shown up to the first credential's key, and the reason quotes no
// part of it. A value without one is shown as given.
func TestRefusedValuesHideCredentials(t *testing.T) {
	t.Parallel()
	const secret = "S3CRET"
	iamToken := "db.example.com:3306/?Action=connect&DBUser=app&X-Amz-Algorithm=AWS4-HMAC-SHA256" +
		"&X-Amz-Credential=AKIDEXAMPLE%2F20260101%2Fus-east-1%2Frds-db%2Faws4_request&X-Amz-Date=20260101T000000Z" +
		"&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Security-Token=" + secret + "&X-Amz-Signature=" + secret
	for _, tc := range []struct {
		name, variable, value string
		shown                 string // the problem's value; "" = only: no secret in it
	}{
		{"ADO.NET connection string", "TARGET_HOST", "Server=db;Uid=app;Pwd=" + secret + ";", "Server=db;Uid=app;Pwd=xxxxx"},
		{"libpq keywords", "TARGET_HOST", "host=db user=app password = " + secret, "host=db user=app password =xxxxx"},
		{"a query without a scheme", "TARGET_HOST", "db.example.com:3306/orders?user=app&password=" + secret, "db.example.com:3306/orders?xxxxx"},
		{"an IAM token", "TARGET_HOST", iamToken, "db.example.com:3306/?xxxxx"},
		{"a label too long, with a password", "TARGET_HOST", "db;pwd=" + secret + strings.Repeat("x", 60), ""},
		{"a port with a query", "TARGET_PORT", "3306?password=" + secret, "3306?xxxxx"},
		{"a listen port with a password", "LISTEN_PORT", "8080;passwd=" + secret, "8080;passwd=xxxxx"},
		{"a server name with a password", "TARGET_SERVER_NAME", "db.example.com;Password=" + secret, "db.example.com;Password=xxxxx"},
		{"FORWARDS with a query", "FORWARDS", "8080=db.example.com:3306?password=" + secret, "8080=db.example.com:3306?xxxxx"},
		{"FORWARDS with a connection string", "FORWARDS", "8080=db.example.com:3306,8081=Server=db;Pwd=" + secret, "8080=db.example.com:3306,8081=Server=db;Pwd=xxxxx"},
		// A password with letters whose lower case is longer or shorter in
		// UTF-8 (Ⱥ, the Kelvin sign): refused whole, not a crash or a
		// glimpse of its first bytes.
		{"a password with \u023A", "TARGET_HOST", "Server=db;Pwd=" + strings.Repeat("\u023A", 12), "Server=db;Pwd=xxxxx"},
		{"a password with the Kelvin sign", "TARGET_HOST", "Server=db;Pwd=" + secret + "\u212A", "Server=db;Pwd=xxxxx"},
		// Pasted as YAML, JSON or a mysql command line.
		{"a YAML password", "TARGET_HOST", "password: " + secret, "password:xxxxx"},
		{"a JSON password", "TARGET_SERVER_NAME", `{"host":"db.example.com","password":"` + secret + `"}`, `{"host":"db.example.com","password":xxxxx`},
		{"a mysql command line", "TARGET_HOST", "mysql -h db.example.com -u app -p" + secret, "mysql -h db.example.com -u app -pxxxxx"},
		{"FORWARDS with a YAML password", "FORWARDS", "8080=db.example.com:3306,pwd: " + secret, "8080=db.example.com:3306,pwd:xxxxx"},
		// A password with an @ after its key: the credentials the @ ends may
		// start before the key (app:pwd=x@…), so all of them are masked.
		{"a YAML password with an @", "TARGET_HOST", "password: pw@" + secret, "xxxxx@"},
		{"a JSON password with an @", "TARGET_SERVER_NAME", `{"host":"db","password":"pw@` + secret + `"}`, "xxxxx@"},
		{"a connection string with a port and an @", "TARGET_HOST", "Server=db:3306;Pwd=pw@" + secret, "xxxxx@"},
		{"user:password@host with a key in the password", "TARGET_HOST", "app:pwd=x@" + secret + "@db", "xxxxx@"},
		{"FORWARDS with a YAML password with an @", "FORWARDS", "8080=db.example.com:3306,pwd: pw@" + secret, ""},
		{"FORWARDS with a connection string with an @", "FORWARDS", "8080=Server=db:3306;Pwd=pw@" + secret, ""},
		// No credential's key: shown as given.
		{"a bad host", "TARGET_HOST", "bad host", "bad host"},
		{"a name with token in it", "TARGET_HOST", "tokens.example.com:3306", "tokens.example.com:3306"},
		{"FORWARDS with pwd in a name", "FORWARDS", "8080=pwd-db.example.com:3306:1", "8080=pwd-db.example.com:3306:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cerr, err := refusedWith(t, tc.variable, tc.value)
			found := false
			for _, p := range cerr.Problems {
				if p.Variable == tc.variable {
					found = true
					if tc.shown != "" && p.Value != tc.shown {
						t.Errorf("shown as %q, want %q", p.Value, tc.shown)
					}
				}
			}
			if !found {
				t.Errorf("no problem names %s: %v", tc.variable, err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the secret shows: %v", err)
			}
		})
	}
}

// refusedWith parses a valid TLS configuration with variable set to
// value (FORWARDS in place of TARGET_HOST and TARGET_PORT), which must
// be refused.
func refusedWith(t *testing.T, variable, value string) (*Error, error) {
	t.Helper()
	e := map[string]string{"TARGET_HOST": "db.example.com", "TARGET_PORT": "3306", "TARGET_TLS": "verify-identity"}
	if variable == "FORWARDS" {
		delete(e, "TARGET_HOST")
		delete(e, "TARGET_PORT")
	}
	e[variable] = value
	_, err := Parse(env(e))
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("%s=%s accepted (%v)", variable, value, err)
	}
	return cerr, err
}

// A password of digits alone after its key reads like a port
// (DB_PASSWORD:48213, passphrase:48213): refused without it, in the
// value and the reason. A host and port whose name holds a key (tokens,
// PASSPORT-DB) is shown.
func TestRefusedNumericPasswordHidden(t *testing.T) {
	t.Parallel()
	const digits = "48213"
	for _, tc := range []struct{ variable, value, shown string }{
		{"TARGET_HOST", "DB_PASSWORD:" + digits, "DB_PASSWORD:xxxxx"},
		{"TARGET_HOST", "password:" + digits, "password:xxxxx"},
		{"TARGET_PORT", `"password":` + digits, `"password":xxxxx`},
		{"TARGET_SERVER_NAME", "db.example.com;Pwd:" + digits, "db.example.com;Pwd:xxxxx"},
		{"FORWARDS", "8080=db.example.com:3306,token:" + digits, "8080=db.example.com:3306,token:xxxxx"},
		{"TARGET_HOST", "passphrase:" + digits, "passphrase:xxxxx"},
		{"TARGET_HOST", "db-password:" + digits, "db-password:xxxxx"},
		{"TARGET_HOST", "tokens:" + digits, "tokens:" + digits},
		{"TARGET_HOST", "PASSPORT-DB:" + digits, "PASSPORT-DB:" + digits},
		{"TARGET_HOST", "API_KEY_1:" + digits, "API_KEY_1:xxxxx"},
		{"TARGET_HOST", "SECRET_KEY:" + digits, "SECRET_KEY:xxxxx"},
		{"TARGET_HOST", "DB_PASSWORD_2=" + digits, "DB_PASSWORD_2=xxxxx"},
		{"TARGET_HOST", "DB_PASSWORD2:" + digits, "DB_PASSWORD2:xxxxx"},
		{"TARGET_HOST", "dbPasswordOld:" + digits, "dbPasswordOld:xxxxx"},
		{"FORWARDS", "8080=db.example.com:3306,SecretAccessKey:" + digits, "8080=db.example.com:3306,SecretAccessKey:xxxxx"},
		{"TARGET_HOST", `"password" = "` + digits + `"`, `"password" =xxxxx`},
		{"TARGET_HOST", "tokens2:" + digits, "tokens2:" + digits},
	} {
		t.Run(tc.variable+"="+tc.value, func(t *testing.T) {
			cerr, err := refusedWith(t, tc.variable, tc.value)
			var got []string
			for _, p := range cerr.Problems {
				if p.Variable == tc.variable {
					got = append(got, p.Value)
				}
			}
			if len(got) != 1 || got[0] != tc.shown {
				t.Errorf("shown as %q, want [%q]", got, tc.shown)
			}
			if masked := tc.shown != tc.value; masked && strings.Contains(err.Error(), digits) {
				t.Errorf("the password shows: %v", err)
			}
		})
	}
}

// Every FORWARDS problem line repeats the whole list: a list of thousands
// of bad entries (a run of commas) gets a bounded number of lines, each
// reason once, not one line per entry.
func TestForwardsProblemsBounded(t *testing.T) {
	t.Parallel()
	var distinct []string
	for i := range 2000 {
		distinct = append(distinct, fmt.Sprintf("x%d=db:3306", i))
	}
	for _, tc := range []struct {
		name, list string
		want       []string // one substring per problem line
	}{
		{"commas", strings.Repeat(",", 2000), []string{`entry "" is empty`}},
		{"one empty entry twice", "8080=db:3306,,8081=db:3307,", []string{`entry "" is empty`}},
		{"a listen port many times", strings.Repeat("8080=db:3306,", 500) + "8080=db:3306",
			[]string{`listen port 8080 appears more than once`}},
		{"hosts spelled as keys", strings.Repeat("8080=DB_PASSWORD:48213,", 1999) + "8080=DB_PASSWORD:48213",
			append(slices.Repeat([]string{"is spelled as a credential's key"}, maxEntryProblems),
				fmt.Sprintf(": %d more entries are refused, not listed here", 2000-maxEntryProblems))},
		{"distinct bad entries", strings.Join(distinct, ","), append(slices.Repeat([]string{`has listen port "x`}, maxEntryProblems),
			fmt.Sprintf(": %d more entries are refused, not listed here", 2000-maxEntryProblems))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cerr, _ := refusedWith(t, "FORWARDS", tc.list)
			if len(cerr.Problems) != len(tc.want) {
				t.Fatalf("got %d problems, want %d; the first: %.300s", len(cerr.Problems), len(tc.want), cerr.Problems[0])
			}
			for i, w := range tc.want {
				if line := cerr.Problems[i].String(); !strings.Contains(line, w) {
					t.Errorf("problem %d = %.300q, want it to contain %q", i, line, w)
				}
			}
		})
	}
}

// A refused host name says what is wrong with it, beyond "bad": the
// limits of a label and a name are in no accepted text.
func TestHostRefusalSaysWhy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ host, want string }{
		{label64 + ".example", `has a bad label "` + label64 + `" (64 bytes, more than a label's 63)`},
		{"db..example", `has a bad label "" (empty: two dots in a row, or a dot first)`},
		{".db.example", `has a bad label "" (empty`},
		{"-db.example", `has a bad label "-db" (a label neither starts nor ends with '-')`},
		{"db-.example", `has a bad label "db-" (a label neither starts`},
		{name254, "is neither a DNS name nor an IP address: 254 bytes, more than a DNS name's 253"},
	} {
		t.Run(tc.host, func(t *testing.T) {
			cerr, _ := refusedWith(t, "TARGET_HOST", tc.host)
			if len(cerr.Problems) != 1 || !strings.Contains(cerr.Problems[0].String(), tc.want) {
				t.Errorf("problems %v, want one containing %q", cerr.Problems, tc.want)
			}
		})
	}
}

// Linux binds a listener to a multicast or the broadcast address, but no
// TCP connection reaches it: the sidecar would start and serve no one
// (and sidecar healthcheck would never pass). Refused, saying why.
func TestUnreachableListenAddressesRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ addr, want string }{
		{"224.0.0.1", "is a multicast address"},
		{"239.255.255.250", "is a multicast address"},
		{"ff02::1", "is a multicast address"},
		{"::ffff:224.0.0.1", "is a multicast address"},
		{"255.255.255.255", "is the broadcast address"},
	} {
		for _, variable := range []string{"LISTEN_ADDR", "ADMIN_ADDR"} {
			t.Run(variable+"="+tc.addr, func(t *testing.T) {
				want := variable + `="` + tc.addr + `": ` + tc.want + ", which no TCP connection reaches; accepted: an IP address to bind"
				_, err := Parse(env(map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306", variable: tc.addr}))
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("Parse: %v; want %q", err, want)
				}
				if variable != "ADMIN_ADDR" {
					return
				}
				// sidecar healthcheck reads it alone, and says the same.
				if _, err := AdminEndpoint(env(map[string]string{variable: tc.addr})); err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("AdminEndpoint: %v; want %q", err, want)
				}
			})
		}
	}
}

// A target at a multicast or the broadcast address fails every
// connection (ENETUNREACH) while the sidecar looks healthy.
func TestUnreachableTargetsRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ variable, value, want string }{
		{"TARGET_HOST", "224.0.0.1", `TARGET_HOST="224.0.0.1": is a multicast address, which no TCP connection reaches`},
		{"TARGET_HOST", "ff02::1", "is a multicast address"},
		{"TARGET_HOST", "255.255.255.255", `TARGET_HOST="255.255.255.255": is the broadcast address`},
		{"FORWARDS", "8080=[ff05::2]:3306", `entry "8080=[ff05::2]:3306" has target host "ff05::2" (is a multicast address, which no TCP connection reaches)`},
	} {
		t.Run(tc.variable+"="+tc.value, func(t *testing.T) {
			_, err := refusedWith(t, tc.variable, tc.value)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v; want %q", err, tc.want)
			}
		})
	}
}

// forwardEntries cuts a list as it was, and without copying it once per
// piece: a FORWARDS of 120000 commas (an environment value's size) took
// seconds to refuse when each comma copied the entry so far.
func TestForwardEntriesCutsWithoutCopying(t *testing.T) {
	for _, tc := range []struct {
		list string
		want []string
	}{
		{"", []string{""}},
		{"8080=a:1", []string{"8080=a:1"}},
		{"8080=a:1,8081=b:2", []string{"8080=a:1", "8081=b:2"}},
		{"8080=u:p,w@a:1, 8081 =b:2,", []string{"8080=u:p,w@a:1", " 8081 =b:2,"}},
		{",,8080=a:1", []string{",", "8080=a:1"}},
	} {
		if got := forwardEntries(tc.list); !slices.Equal(got, tc.want) {
			t.Errorf("forwardEntries(%q) = %q, want %q", tc.list, got, tc.want)
		}
	}
	commas := strings.Repeat(",", 10000)
	if n := testing.AllocsPerRun(3, func() { forwardEntries(commas) }); n > 50 {
		t.Errorf("forwardEntries of %d commas made %.0f allocations; want a few, not one per comma", len(commas), n)
	}
}
