//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/internal/testmysql"
)

type kind int

const (
	kindDirect kind = iota
	kindSocat
	kindSidecar
)

// contestant is one way for a client to reach a target: directly, through
// socat, or through the sidecar with a given extra environment.
type contestant struct {
	name string
	kind kind
	env  []string // sidecar only: KEY=VAL added to (and overriding) the base env
	bin  string   // sidecar only: this binary instead of the one built (a baseline)
	// The TLS pair (issue 15) runs the MySQL workloads only: sidecarTLS
	// makes the sidecar open verified TLS to the server (it then speaks
	// MySQL, not bytes), clientTLS makes the client do TLS itself through
	// the plain relay.
	sidecarTLS bool
	clientTLS  bool
}

func (c contestant) isForwarder() bool { return c.kind != kindDirect }

// mysqlOnly is true for the TLS pair: their other workloads would repeat
// the plain sidecar's (app-tls) or cannot run (sidecar-tls needs a MySQL
// server behind it).
func (c contestant) mysqlOnly() bool { return c.sidecarTLS || c.clientTLS }

// Names of the TLS pair.
const (
	nameSidecarTLS = "sidecar-tls"
	nameAppTLS     = "app-tls"
)

// tlsPair is the TLS contestants: the sidecar doing verify-identity TLS
// to the server with a plaintext client, and the client doing TLS itself
// through the plain relay. The server's certificate names only
// testmysql.ClusterName; both connect to 127.0.0.1 and name it, so no
// name is ever resolved.
func tlsPair(caFile string) []contestant {
	return []contestant{
		{name: nameSidecarTLS, kind: kindSidecar, sidecarTLS: true, env: []string{
			"TARGET_TLS=verify-identity", "TARGET_TLS_CA=" + caFile, "TARGET_SERVER_NAME=" + testmysql.ClusterName}},
		{name: nameAppTLS, kind: kindSidecar, clientTLS: true},
	}
}

// withoutMySQLOnly drops the TLS pair, for the workloads that are not MySQL.
func withoutMySQLOnly(cs []contestant) []contestant {
	var out []contestant
	for _, c := range cs {
		if !c.mysqlOnly() {
			out = append(out, c)
		}
	}
	return out
}

// live is a contestant set up in front of one target.
type live struct {
	c    contestant
	port int    // where clients connect
	proc *child // nil for direct
}

// sidecarVariant parses a -sidecar-env value "name:KEY=VAL,KEY=VAL".
func parseSidecarVariant(v string) (contestant, error) {
	name, kvs, ok := strings.Cut(v, ":")
	if !ok || !validName.MatchString(name) {
		return contestant{}, fmt.Errorf("-sidecar-env %q: want NAME:KEY=VAL[,KEY=VAL...] with NAME of letters, digits, - or _ (e.g. epoll:DATA_PATH=epoll)", v)
	}
	c := contestant{name: "sidecar-" + name, kind: kindSidecar}
	for _, kv := range strings.Split(kvs, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || !validEnvKey.MatchString(k) {
			return contestant{}, fmt.Errorf("-sidecar-env %q: %q is not KEY=VAL with KEY of A-Z, 0-9 and _", v, kv)
		}
		c.env = append(c.env, k+"="+val)
	}
	return c, nil
}

var (
	validName   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)
	validEnvKey = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)
)

// sidecarFlags collects repeated -sidecar-env flags.
type sidecarFlags []contestant

func (s *sidecarFlags) String() string {
	var n []string
	for _, c := range *s {
		n = append(n, c.name)
	}
	return strings.Join(n, ",")
}

func (s *sidecarFlags) Set(v string) error {
	c, err := parseSidecarVariant(v)
	if err != nil {
		return err
	}
	for _, o := range *s {
		if o.name == c.name {
			return fmt.Errorf("-sidecar-env: variant %q given twice", strings.TrimPrefix(c.name, "sidecar-"))
		}
	}
	*s = append(*s, c)
	return nil
}

// buildSidecar builds the real binary the way the image does.
func buildSidecar(ctx context.Context, pkg, dir string) (string, error) {
	if st, err := os.Stat(pkg); err != nil || !st.IsDir() {
		return "", fmt.Errorf("sidecar package %s not found (run from the repository root, or set -sidecar-pkg)", pkg)
	}
	out := filepath.Join(dir, "sidecar")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

// launch puts contestant c in front of 127.0.0.1:target.
func (r *runner) launch(ctx context.Context, c contestant, target int) (*live, error) {
	if c.kind == kindDirect {
		return &live{c: c, port: target}, nil
	}
	port, err := testkit.LoopbackPort()
	if err != nil {
		return nil, err
	}
	var proc *child
	switch c.kind {
	case kindSocat:
		// The command users run today (see the issue), bound to loopback.
		proc, err = r.procs.start(c.name, []string{"PATH=" + os.Getenv("PATH")}, r.socatPath,
			socatListen(port, r.cfg.socatBacklog), fmt.Sprintf("TCP:127.0.0.1:%d", target))
	case kindSidecar:
		admin, perr := testkit.LoopbackPort()
		if perr != nil {
			return nil, perr
		}
		env := []string{
			"PATH=" + os.Getenv("PATH"),
			"TARGET_HOST=127.0.0.1",
			"TARGET_PORT=" + strconv.Itoa(target),
			"LISTEN_ADDR=127.0.0.1",
			"LISTEN_PORT=" + strconv.Itoa(port),
			"ADMIN_PORT=" + strconv.Itoa(admin),
			"LOG_LEVEL=warn",
			// The default (1024) would cap the idle-connection workload.
			"MAX_CONNECTIONS=" + strconv.Itoa(r.maxConnEnv),
		}
		env = mergeEnv(env, c.env)
		bin := r.sidecarPath
		if c.bin != "" {
			bin = c.bin
		}
		proc, err = r.procs.start(c.name, env, bin)
	}
	if err != nil {
		return nil, err
	}
	if err := waitListening(ctx, proc, port, 10*time.Second); err != nil {
		r.procs.stop(proc, time.Second)
		return nil, fmt.Errorf("%s did not start: %w", c.name, err)
	}
	return &live{c: c, port: port, proc: proc}, nil
}

func (r *runner) shutdown(l *live) {
	if l != nil && l.proc != nil {
		r.procs.stop(l.proc, 3*time.Second)
	}
}

// mergeEnv returns base with overrides applied (later KEY= wins).
func mergeEnv(base, overrides []string) []string {
	out := append([]string(nil), base...)
	for _, kv := range overrides {
		k, _, _ := strings.Cut(kv, "=")
		replaced := false
		for i, b := range out {
			if strings.HasPrefix(b, k+"=") {
				out[i], replaced = kv, true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out
}

// usage reads the forwarder's CPU (own + reaped children + live children)
// once its tree is quiet. Direct has no forwarder: zero usage.
func (l *live) usage(ctx context.Context) (treeUsage, error) {
	if l.proc == nil {
		return treeUsage{}, nil
	}
	if gone, why := l.proc.exited(); gone {
		return treeUsage{}, fmt.Errorf("forwarder died: %s", why)
	}
	return waitQuiet(ctx, l.proc.pid(), 10*time.Second)
}

func listenLoopback() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func rotate[T any](s []T, by int) []T {
	if len(s) == 0 {
		return s
	}
	by %= len(s)
	return append(append([]T(nil), s[by:]...), s[:by]...)
}

// socatListen is socat's listen address: the command users run, bound to
// loopback, with an optional larger backlog.
func socatListen(port, backlog int) string {
	a := fmt.Sprintf("TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr", port)
	if backlog > 0 {
		a += fmt.Sprintf(",backlog=%d", backlog)
	}
	return a
}
