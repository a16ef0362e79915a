package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/example/sidecar/internal/redact"
	"github.com/example/sidecar/sidecar/internal/admin"
	"github.com/example/sidecar/sidecar/internal/config"
	"github.com/example/sidecar/sidecar/internal/epollrelay"
	"github.com/example/sidecar/sidecar/internal/iamauth"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/proxy"
	"github.com/example/sidecar/sidecar/internal/relay"
	"github.com/example/sidecar/sidecar/internal/splicepipe"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // could not start (port in use, …) or unhealthy
	exitUsage   = 2 // bad configuration or command line
)

const usage = `usage: sidecar [healthcheck | version | help]  (also --version, -h, --help)
  sidecar              forward (MODE=proxy) or idle (MODE=sleep); configured by environment, see README
  sidecar healthcheck  exit 0 if the sidecar running with this environment is ready; never contacts the target
  sidecar version      print version and commit
  sidecar help         this text and every environment variable with its default
`

const commands = "healthcheck, version, help (or none)"

// configArgs are the arguments spelled NAME=value or --name=value, shown
// as shownArg shows them.
func configArgs(args []string) []string {
	var cfg []string
	for _, a := range args {
		if name, _, ok := strings.Cut(a, "="); ok && name != "" {
			cfg = append(cfg, shownArg(a))
		}
	}
	return cfg
}

// shownArg is a command-line argument fit for stderr, which ECS sends to
// CloudWatch: an argument may be a password (LOCAL_PASSWORD=…, a URL
// with credentials), so a value after = is masked, as are credentials.
func shownArg(a string) string {
	if name, _, ok := strings.Cut(a, "="); ok {
		return redact.Keyed(redact.Query(name)) + "=" + redact.Mask
	}
	return redact.Keyed(redact.Query(a))
}

func shownArgs(args []string) []string {
	shown := make([]string, len(args))
	for i, a := range args {
		shown[i] = shownArg(a)
	}
	return shown
}

// run is the whole program minus process setup: main passes a context that
// ends on SIGTERM/SIGINT, the environment (os.Environ) and the standard
// streams, so tests drive it in-process.
func run(ctx context.Context, args []string, environ []string, stdout, stderr io.Writer) int {
	lookup := lookupIn(environ)
	cmd := ""
	if len(args) > 0 {
		cmd = args[0]
	}
	// Configuration given as arguments (docker run IMAGE TARGET_HOST=db,
	// an ECS "command") is refused by name: the first of them would
	// otherwise be taken for an unknown command and the rest called extra.
	if cfg := configArgs(args); len(cfg) > 0 {
		fmt.Fprintf(stderr, "sidecar: %s: configuration is read from environment variables only, not from arguments; "+
			"accepted: %s; set each in the environment (docker run -e NAME=value, the task definition's \"environment\")\n%s",
			strings.Join(cfg, " "), commands, usage)
		return exitUsage
	}
	if len(args) > 1 {
		fmt.Fprintf(stderr, "sidecar: unexpected arguments %q; accepted: one command at most: %s\n%s", shownArgs(args[1:]), commands, usage)
		return exitUsage
	}
	switch cmd {
	case "":
		return serve(ctx, environ, lookup, stderr)
	case "healthcheck":
		return healthcheck(ctx, lookup, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "sidecar %s (commit %s, %s)\n", version, commit, runtime.Version())
		return exitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage+"\nEnvironment variables ("+config.UnsetRule+"):\n"+config.Help())
		return exitOK
	default:
		fmt.Fprintf(stderr, "sidecar: unknown command %q; accepted: %s\n%s", shownArg(cmd), commands, usage)
		return exitUsage
	}
}

// healthcheckTimeout bounds `sidecar healthcheck`. It stays below the
// health check timeouts of ECS (5 s by default) and of the Dockerfile, so
// a hung admin port is reported in the sidecar's own words.
const healthcheckTimeout = 3 * time.Second

func healthcheck(ctx context.Context, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	addr, err := config.AdminEndpoint(lookup)
	if err != nil {
		// A line per problem, each saying whose it is.
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "sidecar healthcheck: %s\n", line)
		}
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	if err := admin.Check(ctx, addr); err != nil {
		fmt.Fprintf(stderr, "unhealthy: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(stdout, "healthy")
	return exitOK
}

// lookupIn looks a variable up in environ as os.LookupEnv does (the first
// of duplicates wins).
func lookupIn(environ []string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		for _, kv := range environ {
			if k, v, ok := strings.Cut(kv, "="); ok && k == name {
				return v, true
			}
		}
		return "", false
	}
}

func serve(ctx context.Context, environ []string, lookup func(string) (string, bool), stderr io.Writer) int {
	cfg, err := config.Parse(lookup)
	if err != nil {
		log := config.NewLogger(stderr, config.EarlyLogFormat(lookup), slog.LevelInfo)
		warnTypos(ctx, log, environ)
		var cerr *config.Error
		if errors.As(err, &cerr) {
			for _, p := range cerr.Problems {
				attrs := []slog.Attr{slog.String("variable", p.Variable)}
				if p.Set {
					attrs = append(attrs, slog.String("value", p.Value))
				}
				attrs = append(attrs, slog.String("accepted", p.Accepted))
				log.LogAttrs(ctx, slog.LevelError, "invalid configuration: "+p.String(), attrs...)
			}
		} else {
			log.Error("invalid configuration", "err", err)
		}
		log.Error("not started: fix the configuration above", "exit_code", exitUsage)
		return exitUsage
	}
	log := config.NewLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	warnTypos(ctx, log, environ)
	warnServiceConnectPorts(ctx, log, cfg)
	warnPlaintextOnTheNetwork(ctx, log, cfg)
	warnTokensWithoutName(ctx, log, cfg)
	warnSkippedCAs(ctx, log, cfg)
	warnLocalPasswordSpace(ctx, log, cfg)
	warnDrainPastFargateStop(ctx, log, cfg, lookup)
	warnStaleCheckOnReader(ctx, log, cfg)
	if limit, ok := openFilesLimit(); ok {
		warnOpenFilesLimit(ctx, log, cfg, limit)
	}
	warnUnused(ctx, log, cfg)
	attrs := append([]slog.Attr{slog.String("version", version), slog.String("commit", commit)}, cfg.LogAttrs()...)
	log.LogAttrs(ctx, slog.LevelInfo, "starting", attrs...)

	adminCfg := admin.Config{
		Addr:    cfg.AdminListen(),
		Mode:    string(cfg.Mode),
		Version: version,
		Commit:  commit,
		Logger:  log,
	}
	if cfg.Mode == config.ModeSleep {
		return sleep(ctx, adminCfg, log)
	}

	pc := cfg.Proxy()
	pc.Logger = log
	engine, err := dataPath(cfg.DataPath, log)
	if err != nil {
		log.Error("not started", "err", err)
		return exitFailure
	}
	if engine != nil {
		// Closed after Serve returns, when every relay has ended.
		defer engine.Close()
		pc.Relay, pc.RelayCodec = engine.Relay, engine.RelayCodec
	}
	srv, err := proxy.New(pc)
	if err != nil {
		log.Error("not started", "err", err)
		return exitFailure
	}
	// Every listener opens before anything reports ready; a failure closes
	// what was opened.
	if err := srv.Listen(ctx); err != nil {
		log.Error("not started", "err", err, "variable", listenVariable(err, "LISTEN_ADDR", cfg.ListenPortVar))
		return exitFailure
	}
	adminCfg.Ready, adminCfg.Snapshot, adminCfg.IAM = srv.Ready, srv.Snapshot, cfg.IAM
	adm, err := admin.Listen(ctx, adminCfg)
	if err != nil {
		srv.Close()
		log.Error("not started", "err", err, "variable", listenVariable(err, "ADMIN_ADDR", "ADMIN_PORT"))
		return exitFailure
	}
	if cfg.IAM != nil { // only now: a process that did not start must not log "ready for IAM logins"
		go warmIAM(ctx, cfg.IAM, log)
	}
	go serveAdmin(adm, log)

	cut, err := srv.Serve(ctx)
	stopAdmin(adm)
	if err != nil {
		log.Error("stopped with an error", "err", err)
		return exitFailure
	}
	log.Info("stopped", "connections_cut", cut)
	return exitOK
}

// warmIAM gets AWS credentials once, so /readyz can hold traffic until
// they work and the first login does not wait for them. It says at once
// what it waits for, and while an answer is due, every
// iamauth.WaitReport: a silent endpoint would leave the log silent.
func warmIAM(ctx context.Context, tokens *iamauth.Tokens, log *slog.Logger) {
	src := slog.String("credential_source", tokens.Source.Name)
	log.LogAttrs(ctx, slog.LevelInfo, "getting AWS credentials for IAM authentication; not ready until they come", src)
	tokens.Warm(ctx, func(attempt int, waited time.Duration) {
		log.LogAttrs(ctx, slog.LevelWarn, "still waiting for AWS credentials for IAM authentication; no answer yet, not ready", src,
			slog.Int("attempt", attempt), slog.Int64("waited_ms", waited.Milliseconds()))
	}, func(attempt int, err error, retryIn time.Duration) {
		log.LogAttrs(ctx, slog.LevelWarn, "cannot get AWS credentials for IAM authentication; not ready, retrying", src,
			slog.Int("attempt", attempt), slog.Int64("retry_in_ms", retryIn.Milliseconds()), slog.String("err", err.Error()))
	})
	if ok, _ := tokens.Ready(); ok {
		log.LogAttrs(ctx, slog.LevelInfo, "AWS credentials obtained; ready for IAM logins", src)
	}
}

// warnTypos logs one warning per variable that looks like a misspelling of
// one of ours. Never an error: the name may belong to the app or the
// platform. The value is not logged; it may be a secret.
func warnTypos(ctx context.Context, log *slog.Logger, environ []string) {
	for _, t := range config.Typos(environ) {
		log.LogAttrs(ctx, slog.LevelWarn, fmt.Sprintf("unknown variable %s ignored; did you mean %s?", t.Variable, t.Meant),
			slog.String("variable", t.Variable), slog.String("did_you_mean", t.Meant))
	}
}

// warnServiceConnectPorts warns when a port the sidecar binds is one the
// ECS Service Connect proxy binds in the same task: harmless without
// Service Connect, a failed start (for one of the two) with it. Earlier
// builds defaulted ADMIN_PORT to 9901, so task definitions may pin it.
func warnServiceConnectPorts(ctx context.Context, log *slog.Logger, cfg config.Config) {
	vars, ports := []string{"ADMIN_PORT"}, []int{cfg.AdminPort}
	for _, f := range cfg.Forwards {
		vars, ports = append(vars, cfg.ListenPortVar), append(ports, f.ListenPort)
	}
	for i, port := range ports {
		if what, ok := config.ServiceConnectPorts[port]; ok {
			log.LogAttrs(ctx, slog.LevelWarn, fmt.Sprintf("port %d (%s) is also the %s: in a task that uses ECS Service Connect "+
				"one of them cannot bind it; see docs/ecs.md", port, vars[i], what),
				slog.String("variable", vars[i]), slog.Int("port", port))
		}
	}
}

// warnPlaintextOnTheNetwork warns when the sidecar makes the TLS but its
// listeners take plaintext from other hosts too: their passwords and
// queries would cross the network in the clear before it. Never an error:
// a bridge-mode task needs it, and then the warning is the point.
func warnPlaintextOnTheNetwork(ctx context.Context, log *slog.Logger, cfg config.Config) {
	if ip := net.ParseIP(cfg.ListenAddr); cfg.TLS == config.TLSDisabled || ip == nil || ip.IsLoopback() {
		return
	}
	log.LogAttrs(ctx, slog.LevelWarn, fmt.Sprintf("LISTEN_ADDR=%s is not loopback: with TARGET_TLS=%s, clients on other hosts "+
		"send their passwords and queries to the sidecar unencrypted; set LISTEN_ADDR=127.0.0.1 "+
		"(the containers of an awsvpc task share it)", cfg.ListenAddr, cfg.TLS),
		slog.String("variable", "LISTEN_ADDR"), slog.String("value", cfg.ListenAddr))
}

// warnTokensWithoutName warns when IAM tokens go over verify-ca: the name
// is not checked, so any server with a certificate from the trusted CAs
// (with the embedded bundle, any RDS database in the region) would be sent
// the tokens, which it could replay to the real endpoint for 15 minutes.
// Not an error: the docs allow it, and a custom name may need it.
func warnTokensWithoutName(ctx context.Context, log *slog.Logger, cfg config.Config) {
	if cfg.Auth != config.AuthIAM || cfg.TLS != config.TLSVerifyCA {
		return
	}
	log.LogAttrs(ctx, slog.LevelWarn, "TARGET_AUTH=iam with TARGET_TLS=verify-ca: the database's name is not checked, so any server "+
		"with a certificate from the trusted CAs would be sent the IAM tokens; set TARGET_TLS=verify-identity",
		slog.String("variable", "TARGET_TLS"), slog.String("value", string(cfg.TLS)))
}

// warnLocalPasswordSpace says that a LOCAL_PASSWORD with a blank at an
// end (a secret file's newline) is used as written, never the password:
// an app whose copy lacks the newline is refused, and this is the clue.
func warnLocalPasswordSpace(ctx context.Context, log *slog.Logger, cfg config.Config) {
	what := cfg.LocalPasswordSpace()
	if what == "" {
		return
	}
	log.LogAttrs(ctx, slog.LevelWarn, "LOCAL_PASSWORD "+what+"; it is used as written, so the app must send that too: "+
		"if the app's password has no such character, remove it from the secret", slog.String("variable", "LOCAL_PASSWORD"))
}

// warnSkippedCAs names each block of TARGET_TLS_CA that is not trusted (a
// CRL, a certificate Go cannot parse): the file's other CAs are.
func warnSkippedCAs(ctx context.Context, log *slog.Logger, cfg config.Config) {
	for _, why := range cfg.TLSCASkipped {
		log.LogAttrs(ctx, slog.LevelWarn, "TARGET_TLS_CA: "+why+"; skipped, the file's other certificates are trusted",
			slog.String("variable", "TARGET_TLS_CA"), slog.String("value", cfg.TLSCAFrom))
	}
}

// warnUnused warns of each TLS or IAM setting given without its switch
// on: its author expected TLS or IAM, and gets neither. The value stays
// out of the line (LOCAL_PASSWORD is a secret).
func warnUnused(ctx context.Context, log *slog.Logger, cfg config.Config) {
	for _, u := range cfg.Unused {
		log.LogAttrs(ctx, slog.LevelWarn, fmt.Sprintf("%s is set but %s, so it is ignored: %s, or remove %s", u.Variable, u.Off, u.Fix, u.Variable),
			slog.String("variable", u.Variable))
	}
}

// warnDrainPastFargateStop warns when, on Fargate (ECS sets
// AWS_EXECUTION_ENV), DRAIN_TIMEOUT is longer than any stopTimeout allows:
// a drain that runs that long ends in SIGKILL with connections still
// open. EC2 allows longer stopTimeouts, and sleep mode does not drain.
func warnDrainPastFargateStop(ctx context.Context, log *slog.Logger, cfg config.Config, lookup func(string) (string, bool)) {
	limit := config.FargateMaxStopTimeout - config.StopMargin
	env, _ := lookup("AWS_EXECUTION_ENV")
	if env != "AWS_ECS_FARGATE" || cfg.Mode == config.ModeSleep || cfg.DrainTimeout <= limit {
		return
	}
	log.LogAttrs(ctx, slog.LevelWarn, fmt.Sprintf("DRAIN_TIMEOUT=%s is longer than Fargate lets a container stop (stopTimeout %s at most): "+
		"a drain that long ends in SIGKILL; set DRAIN_TIMEOUT to %s or less", cfg.DrainTimeout, config.FargateMaxStopTimeout, limit),
		slog.String("variable", "DRAIN_TIMEOUT"), slog.String("value", cfg.DrainTimeout.String()))
}

// warnStaleCheckOnReader warns of each forward whose stale check would
// watch a reader or custom endpoint: its answer names one instance after
// another, so the check closes connections to healthy instances it did not
// name lately. An alias is known by TARGET_SERVER_NAME. A warning, not an
// error: with a single replica the answer does not rotate. IP targets are
// never checked.
func warnStaleCheckOnReader(ctx context.Context, log *slog.Logger, cfg config.Config) {
	if cfg.StaleCheckInterval <= 0 {
		return
	}
	for _, f := range cfg.Forwards {
		if net.ParseIP(f.TargetHost) != nil || !config.RotatingEndpoint(f.TargetHost) && !config.RotatingEndpoint(cfg.TLSServerName) {
			continue
		}
		log.LogAttrs(ctx, slog.LevelWarn, fmt.Sprintf("STALE_CHECK_INTERVAL=%s with %s, a reader or custom endpoint: its DNS answer rotates among "+
			"instances, so the stale check closes connections to healthy instances; forward it from a second sidecar without "+
			"STALE_CHECK_INTERVAL (docs/operations.md)", cfg.StaleCheckInterval, f.Target()),
			slog.String("variable", "STALE_CHECK_INTERVAL"), slog.String("value", cfg.StaleCheckInterval.String()), slog.String("target", f.Target()))
	}
}

// The open-files limit MAX_CONNECTIONS needs. A connection holds its client
// and upstream sockets and, without TARGET_TLS, while a direction carries
// bulk data, a splice pipe for it (until a read shows the burst over, so a
// pooled connection whose last result ended on a full read keeps it).
// Pipes are taken while descriptors last, leaving none for new
// connections' sockets (fd_limit), so they are counted. Beside the
// connections: stdio, the runtime's and the engine's epoll and eventfd,
// the admin port (13 at rest with one forward, measured), and per forward
// its listener and its lookups' UDP sockets (A and AAAA at once, a stale
// check's beside them).
const (
	fdsSockets    = 2
	fdsBase       = 16
	fdsPerForward = 5
)

// fdsPerConnection is what a connection holds at most under cfg. TLS
// sessions pass their bytes through user space (mysqltls.Relay) and
// never take a splice pipe.
func fdsPerConnection(cfg config.Config) uint64 {
	if cfg.TLS == config.TLSVerifyCA || cfg.TLS == config.TLSVerifyIdentity {
		return fdsSockets
	}
	return fdsSockets + 2*splicepipe.FDs
}

// warnOpenFilesLimit warns when the open-files limit cannot hold
// MAX_CONNECTIONS connections: past it, connections fail as fd_limit,
// below the setting the operator sees.
func warnOpenFilesLimit(ctx context.Context, log *slog.Logger, cfg config.Config, limit uint64) {
	need := openFilesNeeded(cfg)
	if cfg.Mode == config.ModeSleep || limit >= need {
		return
	}
	base := fdsBeside(cfg)
	possible := uint64(0)
	if limit > base {
		possible = (limit - base) / fdsPerConnection(cfg)
	}
	log.LogAttrs(ctx, slog.LevelWarn, fmt.Sprintf("the open-files limit (%d) holds about %d connections, fewer than MAX_CONNECTIONS=%d: "+
		"past that, connections fail (dial reason fd_limit); raise ulimits nofile in the task definition to %d or more, or lower MAX_CONNECTIONS",
		limit, possible, cfg.MaxConnections, need),
		slog.String("variable", "MAX_CONNECTIONS"), slog.Int("value", cfg.MaxConnections), slog.Uint64("open_files_limit", limit))
}

// openFilesNeeded is the open-files limit cfg's MAX_CONNECTIONS needs.
func openFilesNeeded(cfg config.Config) uint64 {
	return uint64(cfg.MaxConnections)*fdsPerConnection(cfg) + fdsBeside(cfg)
}

// fdsBeside is what cfg holds open beside its connections.
func fdsBeside(cfg config.Config) uint64 {
	return fdsBase + fdsPerForward*uint64(len(cfg.Forwards))
}

// sleep is MODE=sleep: nothing but the admin listener, until a signal.
func sleep(ctx context.Context, adminCfg admin.Config, log *slog.Logger) int {
	adm, err := admin.Listen(ctx, adminCfg)
	if err != nil {
		log.Error("not started", "err", err, "variable", listenVariable(err, "ADMIN_ADDR", "ADMIN_PORT"))
		return exitFailure
	}
	go serveAdmin(adm, log)
	log.Info("sleeping: MODE=sleep forwards nothing; stop with SIGTERM or SIGINT")
	<-ctx.Done()
	stopAdmin(adm)
	log.Info("stopped")
	return exitOK
}

func serveAdmin(adm *admin.Server, log *slog.Logger) {
	if err := adm.Serve(); err != nil {
		log.Error("admin listener failed", "err", err)
	}
}

func stopAdmin(adm *admin.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = adm.Shutdown(ctx)
}

// dataPath starts the epoll engine unless DATA_PATH asks for the portable
// path; with "auto" an unsupported system falls back to the portable path.
// A nil engine means the portable path.
func dataPath(choice config.DataPath, log *slog.Logger) (*epollrelay.Engine, error) {
	if choice == config.DataPathPortable {
		log.Info("data path", "data_path", "portable")
		return nil, nil
	}
	engine, err := epollrelay.New(epollrelay.Options{Fallback: relay.Copy, CodecFallback: mysqltls.RelayCodec})
	if err != nil {
		if choice == config.DataPathEpoll {
			return nil, fmt.Errorf("DATA_PATH=epoll: %w (use DATA_PATH=auto or portable)", err)
		}
		log.Warn("epoll data path unavailable; using the portable one", "err", err)
		return nil, nil
	}
	log.Info("data path", "data_path", "epoll")
	return engine, nil
}

// listenVariable is the setting to change when a listener cannot open: the
// address's when this host has no such address (or, as ::1 on a kernel
// without IPv6, no such address family), else the port's.
func listenVariable(err error, addrVar, portVar string) string {
	if errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT) {
		return addrVar
	}
	return portVar
}
