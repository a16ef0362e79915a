//go:build linux

// Command bench measures the sidecar against direct connections and socat on
// loopback, in one run, with contestants interleaved and repeated:
//
//	go run ./bench            # full run, about 10 minutes (5 with -tls=false)
//	go run ./bench -quick     # about 1-2 minutes
//	go run ./bench -sidecar-env 'portable:DATA_PATH=portable' -o bench/RESULTS.md
//
// Workloads: MySQL point selects (sysbench, or a Go client), new MySQL
// sessions per second and large MySQL results (Go), bulk throughput
// (iperf3, or Go), new connections per second (Go), and the forwarder's
// memory with idle connections. The TLS pair (sidecar-tls, app-tls) runs
// the MySQL workloads only. Progress goes to stderr, the Markdown report
// to stdout (and -o).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/example/sidecar/internal/testmysql"
)

type config struct {
	quick        bool
	rounds       int
	mysqlTime    time.Duration
	threads      []int
	tableSize    int
	mysqlClient  string // auto | sysbench | go
	bulkTime     time.Duration
	bulkTool     string // auto | iperf3 | go
	connTime     time.Duration
	connDialers  int
	idleFirst    int
	idleMax      int // 0: as many as the descriptor limit allows
	workloads    []string
	noSocat      bool
	socatBacklog int // 0: socat's default (5)
	sidecarPkg   string
	sidecarBin   string
	baselineBin  string        // optional older sidecar binary, run as contestant sidecar-baseline
	burstSettle  time.Duration // how long after closing the idle connections RSS is read again
	variants     sidecarFlags
	tls          bool       // add the TLS pair (sidecar-tls, app-tls)
	place        *placement // -db-cpus; nil: every process may run on every CPU
	flood        floodConfig
	out          string
}

var (
	allWorkloads = []string{"mysql", "mysql-conns", "mysql-bulk", "bulk", "conns", "idle", "flood"}
	// The flood workload (several minutes: 10 floods and a minute's quiet
	// per forwarder) runs when asked for.
	defaultWorkloads = allWorkloads[:len(allWorkloads)-1]
)

// needsMySQL reports whether the workloads need the throwaway MariaDB.
func (c config) needsMySQL() bool {
	return slices.ContainsFunc(c.workloads, func(w string) bool { return strings.HasPrefix(w, "mysql") || w == "flood" })
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&cfg.quick, "quick", false, "short run (about 1-2 minutes): 2 rounds, 2s per measurement, at most 2000 idle connections; explicit flags still win")
	fs.IntVar(&cfg.rounds, "rounds", 5, "rounds; each round runs every contestant, in rotated order")
	fs.DurationVar(&cfg.mysqlTime, "mysql-time", 3*time.Second, "duration of each point-select measurement (whole seconds)")
	threads := fs.String("threads", "1,8,32", "comma-separated MySQL client connection counts")
	fs.IntVar(&cfg.tableSize, "table-size", 10000, "rows in sbtest1")
	fs.StringVar(&cfg.mysqlClient, "mysql-client", "auto", "auto (sysbench when on PATH), sysbench or go")
	fs.DurationVar(&cfg.bulkTime, "bulk-time", 3*time.Second, "duration of each bulk transfer (whole seconds with iperf3)")
	fs.StringVar(&cfg.bulkTool, "bulk-tool", "auto", "auto (iperf3 when on PATH), iperf3 or go")
	fs.DurationVar(&cfg.connTime, "conn-time", 3*time.Second, "duration of each new-connections measurement")
	fs.IntVar(&cfg.connDialers, "conn-dialers", 8, "concurrent dialers for new connections")
	fs.IntVar(&cfg.idleFirst, "idle", 1000, "idle connections for the first memory reading")
	fs.IntVar(&cfg.idleMax, "idle-max", 0, "idle connections for the second memory reading (0: as many as the descriptor limit allows)")
	work := fs.String("workloads", strings.Join(defaultWorkloads, ","), "comma-separated subset of "+strings.Join(allWorkloads, ","))
	fs.BoolVar(&cfg.noSocat, "no-socat", false, "leave socat out even when it is on PATH")
	fs.IntVar(&cfg.socatBacklog, "socat-backlog", 0, "socat's listen backlog (0: socat's default of 5, as users run it; 32 clients connecting at once can then stall for 15-31 s)")
	fs.StringVar(&cfg.sidecarPkg, "sidecar-pkg", "./sidecar", "package to build the sidecar from (go build -trimpath)")
	fs.StringVar(&cfg.sidecarBin, "sidecar-bin", "", "use this sidecar binary instead of building -sidecar-pkg")
	fs.StringVar(&cfg.baselineBin, "baseline-bin", "", "also run this (older) sidecar binary, as contestant sidecar-baseline, for before/after ratios in one run")
	fs.DurationVar(&cfg.burstSettle, "burst-settle", 30*time.Second, "after the idle connections close, wait this long and read the forwarder's RSS again (0: skip)")
	fs.Var(&cfg.variants, "sidecar-env", "extra sidecar contestant NAME:KEY=VAL[,KEY=VAL...] (repeatable), e.g. portable:DATA_PATH=portable")
	fs.BoolVar(&cfg.tls, "tls", true, "also run the TLS pair on the MySQL workloads: "+nameSidecarTLS+" (TARGET_TLS=verify-identity, plaintext client) and "+nameAppTLS+" (the client does TLS through the plain relay)")
	dbCPUs := fs.String("db-cpus", "", "run MariaDB on these CPUs (e.g. 1) and everything else on the others, as in production, where the database is another machine and the app and the sidecar share their task's CPUs (default: no placement)")
	floodFlags(fs, &cfg.flood)
	fs.StringVar(&cfg.out, "o", "", "also write the Markdown report to this file")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q: all options are flags (see -h)", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if cfg.quick {
		for name, apply := range map[string]func(){
			"rounds":     func() { cfg.rounds = 2 },
			"mysql-time": func() { cfg.mysqlTime = 2 * time.Second },
			"bulk-time":  func() { cfg.bulkTime = 2 * time.Second },
			"conn-time":  func() { cfg.connTime = 2 * time.Second },
			"idle-max":   func() { cfg.idleMax = 2000 },
		} {
			if !set[name] {
				apply()
			}
		}
	}
	var errs []error
	for _, t := range strings.Split(*threads, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(t))
		if err != nil || n < 1 || n > 1024 {
			errs = append(errs, fmt.Errorf("-threads %q: %q is not a count between 1 and 1024", *threads, t))
			continue
		}
		cfg.threads = append(cfg.threads, n)
	}
	for _, w := range strings.Split(*work, ",") {
		w = strings.TrimSpace(w)
		if !slices.Contains(allWorkloads, w) {
			errs = append(errs, fmt.Errorf("-workloads %q: %q is not one of %s", *work, w, strings.Join(allWorkloads, ", ")))
			continue
		}
		cfg.workloads = append(cfg.workloads, w)
	}
	check := func(ok bool, format string, a ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, a...))
		}
	}
	check(cfg.rounds >= 1 && cfg.rounds <= 20, "-rounds %d: want 1 to 20", cfg.rounds)
	for name, d := range map[string]time.Duration{"-mysql-time": cfg.mysqlTime, "-bulk-time": cfg.bulkTime, "-conn-time": cfg.connTime} {
		check(d >= time.Second && d <= 10*time.Minute, "%s %v: want 1s to 10m", name, d)
	}
	check(cfg.tableSize >= 100 && cfg.tableSize <= 10_000_000, "-table-size %d: want 100 to 10000000", cfg.tableSize)
	check(slices.Contains([]string{"auto", "sysbench", "go"}, cfg.mysqlClient), "-mysql-client %q: want auto, sysbench or go", cfg.mysqlClient)
	check(slices.Contains([]string{"auto", "iperf3", "go"}, cfg.bulkTool), "-bulk-tool %q: want auto, iperf3 or go", cfg.bulkTool)
	check(cfg.connDialers >= 1 && cfg.connDialers <= 256, "-conn-dialers %d: want 1 to 256", cfg.connDialers)
	check(cfg.socatBacklog >= 0 && cfg.socatBacklog <= 65535, "-socat-backlog %d: want 0 (socat's default) to 65535", cfg.socatBacklog)
	check(cfg.idleFirst >= 1 && cfg.idleFirst <= 100_000, "-idle %d: want 1 to 100000", cfg.idleFirst)
	check(cfg.idleMax >= 0 && cfg.idleMax <= 1_000_000, "-idle-max %d: want 0 (descriptor limit) up to 1000000", cfg.idleMax)
	errs = append(errs, cfg.flood.check()...)
	if *dbCPUs != "" {
		var allowed unix.CPUSet
		if err := unix.SchedGetaffinity(0, &allowed); err != nil {
			errs = append(errs, fmt.Errorf("-db-cpus: read this process's CPUs: %w", err))
		} else if p, err := parsePlacement(*dbCPUs, allowed); err != nil {
			errs = append(errs, err)
		} else {
			cfg.place = &p
		}
		check(cfg.needsMySQL(), "-db-cpus %q: the workloads %s have no database to place; add a MySQL workload (mysql, mysql-conns, mysql-bulk or flood)", *dbCPUs, strings.Join(cfg.workloads, ","))
	}
	check(cfg.burstSettle >= 0 && cfg.burstSettle <= 10*time.Minute, "-burst-settle %v: want 0 (skip) up to 10m", cfg.burstSettle)
	return cfg, errors.Join(errs...)
}

// runner holds one benchmark run's tools, processes and results.
type runner struct {
	cfg         config
	log         *slog.Logger
	procs       *procGroup
	contestants []contestant
	socatPath   string
	sysbench    string // the MySQL client used, for the report
	sysbenchPath,
	iperfPath string
	sidecarPath string
	maxConnEnv  int // MAX_CONNECTIONS given to the sidecar
	idleMax     int // resolved second idle step
	nofile      uint64
	loadStart   string // /proc/loadavg: other work on the machine skews figures
	loadEnd     string
	// Share of the machine's CPU that other processes used, per round and
	// over the run: this machine is shared, and that skews every figure.
	othersRounds []float64
	othersRun    float64
	db           *testmysql.Server
	tlsFiles     testmysql.TLSFiles
	tlsClient    *tls.Config // the app-tls client's: verify-identity against tlsFiles.CA
	sysbenchDir  string      // sysbench --mysql-ssl=on reads its PEM files from its working directory
	res          *results
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills at once
	}()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, cfg, log, os.Stdout); err != nil {
		log.Error("bench failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer) error {
	r := &runner{cfg: cfg, log: log, procs: newProcGroup(), res: newResults()}
	defer r.procs.killAll()
	start := time.Now()
	if cfg.place != nil {
		// Before any child starts: each inherits the CPUs of the thread that made it.
		if err := pinProcess(os.Getpid(), &cfg.place.task); err != nil {
			return err
		}
		r.progress("placement: %s", cfg.place)
	}

	if err := r.raiseNoFile(); err != nil {
		return err
	}
	if err := r.findTools(); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "sidecar-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	r.contestants = []contestant{{name: "direct", kind: kindDirect}}
	if r.socatPath != "" {
		r.contestants = append(r.contestants, contestant{name: "socat", kind: kindSocat})
	}
	r.sidecarPath = cfg.sidecarBin
	if r.sidecarPath == "" {
		r.progress("building the sidecar from %s", cfg.sidecarPkg)
		r.sidecarPath, err = buildSidecar(ctx, cfg.sidecarPkg, tmp)
		if err != nil {
			r.note("sidecar left out: " + err.Error())
			r.log.Warn("sidecar left out", "err", err)
		}
	}
	if r.sidecarPath != "" {
		r.contestants = append(r.contestants, contestant{name: "sidecar", kind: kindSidecar})
		r.contestants = append(r.contestants, cfg.variants...)
	}
	if cfg.baselineBin != "" {
		r.contestants = append(r.contestants, contestant{name: "sidecar-baseline", kind: kindSidecar, bin: cfg.baselineBin})
	}

	if cfg.needsMySQL() {
		var serverArgs []string
		if cfg.tls && r.sidecarPath != "" {
			if serverArgs, err = r.setUpTLS(tmp); err != nil {
				return err
			}
			r.contestants = append(r.contestants, tlsPair(r.tlsFiles.CA)...)
		}
		r.progress("starting a throwaway MariaDB")
		dbCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		r.db, err = testmysql.StartServer(dbCtx, serverArgs...)
		cancel()
		if err != nil {
			return fmt.Errorf("start MariaDB (needs mariadb-server): %w", err)
		}
		defer r.db.Stop()
		if cfg.place != nil {
			if err := pinProcess(r.db.Pid(), &cfg.place.db); err != nil {
				return err
			}
		}
	}
	if slices.ContainsFunc(cfg.workloads, func(w string) bool { return strings.HasPrefix(w, "mysql") }) {
		r.progress("preparing sbtest1 (%d rows) with %s", cfg.tableSize, r.sysbench)
		if err := r.prepareMySQL(ctx); err != nil {
			return err
		}
	}

	r.loadStart = strings.TrimSpace(readFile("/proc/loadavg"))
	runSnap, snapErr := takeBusySnapshot()
	var interrupted error
rounds:
	for round := 1; round <= cfg.rounds; round++ {
		roundSnap, roundErr := takeBusySnapshot()
		endRound := func() {
			if end, err := takeBusySnapshot(); err == nil && roundErr == nil {
				r.othersRounds = append(r.othersRounds, othersShare(roundSnap, end))
				r.progress("round %d: other processes used %.0f%% of the machine's CPU", round, 100*othersShare(roundSnap, end))
			}
		}
		order := rotate(r.contestants, round-1)
		r.progress("round %d of %d: order %s", round, cfg.rounds, names(order))
		for _, w := range cfg.workloads {
			var err error
			switch w {
			case "mysql":
				err = r.mysqlWorkload(ctx, round, order)
			case "mysql-conns":
				err = r.mysqlConnWorkload(ctx, round, order)
			case "mysql-bulk":
				err = r.mysqlBulkWorkload(ctx, round, order)
			case "bulk":
				err = r.bulkWorkload(ctx, round, withoutMySQLOnly(order))
			case "conns":
				err = r.connWorkload(ctx, round, withoutMySQLOnly(order))
			case "idle":
				if round == 1 {
					err = r.idleWorkload(ctx, withoutMySQLOnly(order))
				}
			case "flood":
				if round == 1 {
					err = r.floodWorkload(ctx, withoutMySQLOnly(order))
				}
			}
			if ctx.Err() != nil {
				interrupted = fmt.Errorf("interrupted in round %d, %s workload: %w", round, w, ctx.Err())
				r.note(interrupted.Error() + ": the figures below are partial")
				break rounds
			}
			if err != nil {
				r.note(fmt.Sprintf("round %d, %s workload: %v", round, w, err))
				r.log.Warn("workload failed", "round", round, "workload", w, "err", err)
			}
		}
		endRound()
	}
	if end, err := takeBusySnapshot(); err == nil && snapErr == nil {
		r.othersRun = othersShare(runSnap, end)
	}

	r.loadEnd = strings.TrimSpace(readFile("/proc/loadavg"))
	rep := r.report(start, time.Now())
	if _, err := io.WriteString(stdout, rep); err != nil {
		return err
	}
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(rep), 0o644); err != nil {
			return fmt.Errorf("write -o %s: %w", cfg.out, err)
		}
	}
	if interrupted != nil {
		return interrupted
	}
	r.progress("done in %v", time.Since(start).Round(time.Second))
	return nil
}

// raiseNoFile raises the descriptor limit to the hard limit; children
// (socat, the sidecar) inherit it. The bench holds two descriptors per idle
// connection (client and server end), as does a forwarder, so the idle
// workload can reach about half the limit.
func (r *runner) raiseNoFile() error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("getrlimit NOFILE: %w", err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise NOFILE to %d: %w", lim.Max, err)
	}
	r.nofile = lim.Cur
	const reserve = 256 // MariaDB client, iperf3, pipes, the runtime
	fdCap := 0
	if lim.Cur > 2*reserve {
		fdCap = int(min(lim.Cur, 1<<22)-reserve) / 2
	}
	r.idleMax = r.cfg.idleMax
	if r.idleMax == 0 || r.idleMax > fdCap {
		r.idleMax = fdCap
	}
	r.maxConnEnv = max(int(min(lim.Cur, 1<<22)), 1024)
	r.progress("RLIMIT_NOFILE %d: idle connections up to %d", lim.Cur, r.idleMax)
	return nil
}

func (r *runner) findTools() error {
	if !r.cfg.noSocat {
		if p, err := exec.LookPath("socat"); err == nil {
			r.socatPath = p
		} else {
			r.note("socat is not on PATH: socat left out, and with it every sidecar/socat ratio")
		}
	}
	switch r.cfg.mysqlClient {
	case "auto", "sysbench":
		if p, err := exec.LookPath("sysbench"); err == nil {
			r.sysbenchPath, r.sysbench = p, "sysbench oltp_point_select"
		} else if r.cfg.mysqlClient == "sysbench" {
			return errors.New("-mysql-client sysbench: sysbench is not on PATH (install Debian's sysbench package)")
		} else {
			r.note("sysbench is not on PATH: MySQL figures come from the Go client (prepared point select by random id)")
		}
	}
	if r.sysbench == "" {
		r.sysbench = "Go client (go-sql-driver/mysql, prepared point select by random id)"
	}
	switch r.cfg.bulkTool {
	case "auto", "iperf3":
		if p, err := exec.LookPath("iperf3"); err == nil {
			r.iperfPath = p
		} else if r.cfg.bulkTool == "iperf3" {
			return errors.New("-bulk-tool iperf3: iperf3 is not on PATH (install Debian's iperf3 package)")
		} else {
			r.note("iperf3 is not on PATH: bulk figures come from a Go sender and receiver")
		}
	}
	return nil
}

func (r *runner) launchAll(ctx context.Context, order []contestant, target int) ([]*live, error) {
	var lives []*live
	for _, c := range order {
		l, err := r.launch(ctx, c, target)
		if err != nil {
			if ctx.Err() != nil {
				return lives, ctx.Err()
			}
			r.note(fmt.Sprintf("%s: %v", c.name, err))
			r.log.Warn("contestant did not start", "contestant", c.name, "err", err)
			continue
		}
		lives = append(lives, l)
	}
	return lives, nil
}

func (r *runner) shutdownAll(lives []*live) {
	for _, l := range lives {
		r.shutdown(l)
	}
}

func (r *runner) progress(format string, a ...any) {
	r.log.Info(fmt.Sprintf(format, a...))
}

func (r *runner) note(s string) { r.res.addNote(s) }

func (r *runner) fail(round int, c contestant, what string, err error) {
	r.log.Warn("measurement failed", "round", round, "contestant", c.name, "workload", what, "err", err)
	r.note(fmt.Sprintf("round %d, %s, %s: %v", round, c.name, what, err))
}

func (r *runner) record(round int, c contestant, m map[string]float64) {
	r.res.add(c.name, round, m)
}

func names(cs []contestant) string {
	var n []string
	for _, c := range cs {
		n = append(n, c.name)
	}
	return strings.Join(n, ", ")
}

// results collects every measurement by contestant and metric, one value
// per round, in round order.
type results struct {
	mu     sync.Mutex
	values map[string]map[string][]sample
	notes  []string
}

type sample struct {
	round int
	v     float64
}

func newResults() *results { return &results{values: map[string]map[string][]sample{}} }

func (r *results) add(contestant string, round int, m map[string]float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.values[contestant] == nil {
		r.values[contestant] = map[string][]sample{}
	}
	for k, v := range m {
		r.values[contestant][k] = append(r.values[contestant][k], sample{round, v})
	}
}

func (r *results) addNote(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.notes) < 200 && !slices.Contains(r.notes, s) {
		r.notes = append(r.notes, s)
	}
}

// get returns the median over rounds and all values, ok false when absent.
func (r *results) get(contestant, metric string) (float64, []float64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var v []float64
	for _, s := range r.values[contestant][metric] {
		v = append(v, s.v)
	}
	if len(v) == 0 {
		return 0, nil, false
	}
	return median(v), v, true
}

// paired returns a's value ÷ b's for each round in which both have the
// metric. Contestants run back to back within a round, so these ratios
// are not moved by the machine's speed drifting between rounds, as a
// ratio of two medians (often from different rounds) is.
func (r *results) paired(a, b, metric string) []float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ratios []float64
	for _, sa := range r.values[a][metric] {
		for _, sb := range r.values[b][metric] {
			if sa.round == sb.round && sb.v != 0 {
				ratios = append(ratios, sa.v/sb.v)
			}
		}
	}
	return ratios
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
