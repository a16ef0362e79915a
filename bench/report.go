//go:build linux

package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/example/sidecar/internal/testmysql"
)

// metric is one row of the report.
type metric struct {
	key       string
	label     string
	unit      string
	higher    bool // higher is better
	prec      int
	forwarder bool // only forwarders have it (direct has no process)
}

// goal is one of the targets, as a ratio against a baseline
// contestant or as an absolute bound.
type goal struct {
	metric  string
	against string  // "socat", "direct", or "" for an absolute bound
	atLeast bool    // ratio/value must be >= bound (else <=)
	bound   float64 // ratio or absolute value
	text    string
	// reportOnly goals have no bound: the issue asks for the figure only.
	reportOnly bool
}

func (r *runner) metrics() []metric {
	var ms []metric
	for _, t := range r.cfg.threads {
		ms = append(ms, metric{key: fmt.Sprintf("mysql.qps.%d", t), label: fmt.Sprintf("MySQL point selects, %d conn", t), unit: "qps", higher: true})
	}
	for _, t := range r.cfg.threads {
		ms = append(ms, metric{key: fmt.Sprintf("mysql.p99.%d", t), label: fmt.Sprintf("MySQL p99 latency, %d conn", t), unit: "ms", prec: 2})
	}
	for _, t := range r.cfg.threads {
		ms = append(ms, metric{key: fmt.Sprintf("mysql.cpu.%d", t), label: fmt.Sprintf("forwarder CPU per query, %d conn", t), unit: "µs", prec: 1, forwarder: true})
	}
	for _, t := range r.cfg.threads {
		ms = append(ms, metric{key: fmt.Sprintf("mysql.clientcpu.%d", t), label: fmt.Sprintf("client (sysbench) CPU per query, %d conn", t), unit: "µs", prec: 1})
	}
	for _, t := range r.cfg.threads {
		ms = append(ms, metric{key: fmt.Sprintf("mysql.servercpu.%d", t), label: fmt.Sprintf("server (MariaDB) CPU per query, %d conn", t), unit: "µs", prec: 1})
	}
	for _, t := range r.cfg.threads {
		ms = append(ms, metric{key: fmt.Sprintf("mysql.allcpu.%d", t), label: fmt.Sprintf("client + forwarder + server CPU per query, %d conn", t), unit: "µs", prec: 1})
	}
	if r.cfg.place != nil {
		for _, t := range r.cfg.threads {
			ms = append(ms, metric{key: fmt.Sprintf("mysql.taskbusy.%d", t), label: fmt.Sprintf("task CPUs busy (client + forwarder), %d conn", t), unit: "%", prec: 0})
		}
		for _, t := range r.cfg.threads {
			ms = append(ms, metric{key: fmt.Sprintf("mysql.dbbusy.%d", t), label: fmt.Sprintf("database CPUs busy (server), %d conn", t), unit: "%", prec: 0})
		}
	}
	ms = append(ms,
		metric{key: "bulk.gbps", label: "bulk throughput, 1 stream", unit: "Gbit/s", higher: true, prec: 2},
		metric{key: "bulk.cpu", label: "forwarder CPU per GB moved", unit: "s", prec: 3, forwarder: true},
		metric{key: "conn.rate", label: fmt.Sprintf("new connections, %d dialers", r.cfg.connDialers), unit: "conn/s", higher: true},
		metric{key: "conn.cpu", label: "forwarder CPU per new connection", unit: "µs", prec: 1, forwarder: true},
		metric{key: "mconn.rate", label: fmt.Sprintf("new MySQL sessions (connect, log in, quit), %d clients", r.cfg.connDialers), unit: "sessions/s", higher: true},
		metric{key: "mconn.cpu", label: "forwarder CPU per new MySQL session", unit: "µs", prec: 1, forwarder: true},
		metric{key: "mbulk.gbps", label: "MySQL bulk: 4 MiB results, 1 session", unit: "Gbit/s", higher: true, prec: 2},
		metric{key: "mbulk.cpu", label: "forwarder CPU per GB of MySQL results", unit: "s", prec: 3, forwarder: true},
		metric{key: "idle.rss.0", label: "forwarder RSS, no connections", unit: "MiB", prec: 1, forwarder: true},
		metric{key: "idle.rss.first", label: fmt.Sprintf("forwarder RSS, %d idle conns", r.cfg.idleFirst), unit: "MiB", prec: 1, forwarder: true},
		metric{key: "idle.pss.first", label: fmt.Sprintf("forwarder PSS, %d idle conns", r.cfg.idleFirst), unit: "MiB", prec: 1, forwarder: true},
		metric{key: "idle.fds.first", label: "forwarder descriptors per idle conn", unit: "fds", prec: 2, forwarder: true},
		metric{key: "idle.n.max", label: fmt.Sprintf("idle conns reached (of %d tried)", r.idleMax), unit: "conns", higher: true, forwarder: true},
		metric{key: "idle.rss.max", label: "forwarder RSS at that count", unit: "MiB", prec: 1, forwarder: true},
		metric{key: "idle.pss.max", label: "forwarder PSS at that count", unit: "MiB", prec: 1, forwarder: true},
		metric{key: "idle.rss.after", label: fmt.Sprintf("forwarder RSS %v after they all closed", r.cfg.burstSettle), unit: "MiB", prec: 1, forwarder: true},
	)
	return append(ms, r.floodMetrics()...)
}

func (r *runner) goals() []goal {
	var gs []goal
	for _, t := range r.cfg.threads {
		gs = append(gs, goal{metric: fmt.Sprintf("mysql.qps.%d", t), against: "socat", atLeast: true, bound: 1, text: fmt.Sprintf("MySQL qps ≥ socat at %d conn", t)})
	}
	for _, t := range r.cfg.threads {
		gs = append(gs, goal{metric: fmt.Sprintf("mysql.p99.%d", t), against: "socat", bound: 1, text: fmt.Sprintf("MySQL p99 ≤ socat at %d conn", t)})
	}
	for _, t := range r.cfg.threads {
		gs = append(gs, goal{metric: fmt.Sprintf("mysql.cpu.%d", t), against: "socat", bound: 0.8, text: fmt.Sprintf("CPU per query ≤ 0.8× socat at %d conn", t)})
	}
	return append(gs,
		goal{metric: "bulk.gbps", against: "direct", atLeast: true, bound: 0.6, text: "bulk ≥ 0.6× direct"},
		goal{metric: "conn.rate", against: "socat", atLeast: true, bound: 3, text: "new connections/s ≥ 3× socat"},
		goal{metric: "idle.rss.first", atLeast: false, bound: 30, text: fmt.Sprintf("≤ 30 MiB RSS at %d idle conns", r.cfg.idleFirst)},
	)
}

// tlsGoals are issue 15's speed goals for sidecar-tls.
func (r *runner) tlsGoals() []goal {
	var gs []goal
	for _, t := range r.cfg.threads {
		gs = append(gs, goal{metric: fmt.Sprintf("mysql.qps.%d", t), against: nameAppTLS, atLeast: true, bound: 1, text: fmt.Sprintf("qps ≥ %s at %d conn", nameAppTLS, t)})
	}
	for _, t := range r.cfg.threads {
		gs = append(gs, goal{metric: fmt.Sprintf("mysql.cpu.%d", t), against: "sidecar", bound: 1.5, text: fmt.Sprintf("CPU per query ≤ 1.5× plaintext sidecar at %d conn", t)})
	}
	return append(gs,
		goal{metric: "mconn.rate", against: nameAppTLS, atLeast: true, bound: 1, text: "new MySQL sessions/s ≥ " + nameAppTLS},
		goal{metric: "mbulk.gbps", against: nameAppTLS, reportOnly: true, text: "MySQL bulk throughput (reported)"},
	)
}

// evaluate returns the figure the goal is judged on (a ratio, or the
// absolute value) and whether it is met; ok false when a figure is missing.
func (r *runner) evaluate(g goal, sidecar string) (figure float64, met, ok bool) {
	v, _, ok := r.res.get(sidecar, g.metric)
	if !ok {
		return 0, false, false
	}
	if g.against != "" {
		base, _, ok := r.res.get(g.against, g.metric)
		if !ok || base == 0 {
			return 0, false, false
		}
		v /= base
	}
	return v, g.reportOnly || g.meets(v), true
}

// meets reports whether figure v is on the goal's side of its bound.
func (g goal) meets(v float64) bool {
	if g.atLeast {
		return v >= g.bound
	}
	return v <= g.bound
}

func (r *runner) report(start, end time.Time) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# Sidecar benchmark results\n\n")
	p("Produced by `%s` on %s, in %v.\n\n", commandLine(), end.UTC().Format("2006-01-02 15:04 UTC"), end.Sub(start).Round(time.Second))
	p("## Machine\n\n")
	for _, kv := range r.machine() {
		p("- %s: %s\n", kv[0], kv[1])
	}
	r.reportGoals(p)
	r.reportAbsolute(p)
	for _, sc := range r.contestants {
		if sc.kind == kindSidecar && !sc.mysqlOnly() {
			r.reportRatios(p, sc)
		}
	}
	r.reportTLS(p)
	r.reportMethod(p)
	r.reportRounds(p)
	return b.String()
}

type printf func(format string, a ...any)

// reportGoals is the goals at a glance, one column per sidecar.
func (r *runner) reportGoals(p printf) {
	var sidecars []contestant
	for _, c := range r.contestants {
		if c.kind == kindSidecar && !c.mysqlOnly() {
			sidecars = append(sidecars, c)
		}
	}
	if len(sidecars) == 0 {
		return
	}
	p("\n## Goals (issue 5), medians of this run\n\n| goal |")
	for _, c := range sidecars {
		p(" %s |", c.name)
	}
	p("\n|---|")
	for range sidecars {
		p("---|")
	}
	p("\n")
	for _, g := range r.goals() {
		p("| %s |", g.text)
		for _, c := range sidecars {
			p(" %s |", r.verdict(g, c.name))
		}
		p("\n")
	}
}

// verdict is "met (1.05×)", "**not met** (37.3 MiB)" or "no data".
func (r *runner) verdict(g goal, sidecar string) string {
	fig, met, ok := r.evaluate(g, sidecar)
	if !ok {
		return "no data"
	}
	v := "**not met**"
	switch {
	case g.reportOnly:
		v = "reported"
	case met:
		v = "met"
	}
	if g.against == "" {
		return v + fmt.Sprintf(" (%.1f %s)", fig, r.metricByKey(g.metric).unit)
	}
	return v + fmt.Sprintf(" (%.2f×)", fig)
}

func (r *runner) metricByKey(key string) metric {
	for _, m := range r.metrics() {
		if m.key == key {
			return m
		}
	}
	return metric{key: key}
}

func (r *runner) reportAbsolute(p printf) {
	p("\n## Absolute figures (median over rounds)\n\n")
	p("| metric | unit |")
	for _, c := range r.contestants {
		p(" %s |", c.name)
	}
	p("\n|---|---|")
	for range r.contestants {
		p("---:|")
	}
	p("\n")
	for _, m := range r.metrics() {
		p("| %s | %s |", m.label, m.unit)
		for _, c := range r.contestants {
			v, _, ok := r.res.get(c.name, m.key)
			switch {
			case ok:
				p(" %s |", strconv.FormatFloat(v, 'f', m.prec, 64))
			case m.forwarder && !c.isForwarder():
				p(" — |")
			default:
				p(" n/a |")
			}
		}
		p("\n")
	}
}

func (r *runner) reportRatios(p printf, sc contestant) {
	variant := sc.name != "sidecar"
	p("\n## %s: ratios and goals\n\n", sc.name)
	p("Ratio = %s ÷ other, medians. For qps, Gbit/s and conn/s higher is better; for latency, CPU, memory and descriptors lower is better.\n\n", sc.name)
	p("| metric | %s | ÷ direct | ÷ socat |", sc.name)
	if variant {
		p(" ÷ sidecar |")
	}
	p(" goal | met? |\n|---|---:|---:|---:|")
	if variant {
		p("---:|")
	}
	p("---|---|\n")
	goals := map[string]goal{}
	for _, g := range r.goals() {
		goals[g.metric] = g
	}
	for _, m := range r.metrics() {
		v, _, ok := r.res.get(sc.name, m.key)
		val := "n/a"
		if ok {
			val = strconv.FormatFloat(v, 'f', m.prec, 64) + " " + m.unit
		}
		p("| %s | %s | %s | %s |", m.label, val, r.ratio(sc.name, "direct", m), r.ratio(sc.name, "socat", m))
		if variant {
			p(" %s |", r.ratio(sc.name, "sidecar", m))
		}
		if g, isGoal := goals[m.key]; isGoal {
			p(" %s | %s |\n", g.text, r.verdict(g, sc.name))
		} else {
			p(" | |\n")
		}
	}
}

// reportTLS compares sidecar-tls with app-tls (the app doing TLS itself
// through the plain relay) and with the plaintext sidecar, on the MySQL
// metrics, with issue 15's goals.
func (r *runner) reportTLS(p printf) {
	if !slices.ContainsFunc(r.contestants, func(c contestant) bool { return c.name == nameSidecarTLS }) {
		return
	}
	p("\n## TLS to the database (issue 15): %s against %s and the plaintext relay\n\n", nameSidecarTLS, nameAppTLS)
	p("%s: the client speaks plaintext to the sidecar, which does `TARGET_TLS=verify-identity` TLS to MariaDB. "+
		"%s: the client does TLS itself (verified) through the sidecar's plain relay (`TARGET_TLS=disabled`). "+
		"sidecar: plaintext end to end. Medians; forwarder CPU is the sidecar process only; "+
		"the client's (sysbench's) and the server's (MariaDB's) CPU are their own rows, %s's TLS work being done in the client, "+
		"and the three add up to the machine's CPU per query, which sets qps once the machine's cores are busy. "+
		"The per-round column divides the two contestants' values round by round (they run back to back) and gives the median and the range: "+
		"on a machine whose speed drifts between rounds it is the steadier comparison. "+
		"So the goals are judged on those ratios: met when a 95%% bootstrap interval of their median lies wholly on the goal's side, "+
		"**not met** when it lies wholly on the other side, **not shown** when it holds the bound.\n\n", nameSidecarTLS, nameAppTLS, nameAppTLS)
	p("| metric | %s | %s | sidecar | %s ÷ %s | per round: median (range) | %s ÷ sidecar | goal | met? |\n|---|---:|---:|---:|---:|---:|---:|---|---|\n",
		nameSidecarTLS, nameAppTLS, nameSidecarTLS, nameAppTLS, nameSidecarTLS)
	goals := map[string]goal{}
	for _, g := range r.tlsGoals() {
		goals[g.metric] = g
	}
	for _, m := range r.metrics() {
		if !strings.HasPrefix(m.key, "mysql.") && !strings.HasPrefix(m.key, "mconn.") && !strings.HasPrefix(m.key, "mbulk.") {
			continue
		}
		p("| %s |", m.label)
		for _, c := range []string{nameSidecarTLS, nameAppTLS, "sidecar"} {
			if v, _, ok := r.res.get(c, m.key); ok {
				p(" %s %s |", strconv.FormatFloat(v, 'f', m.prec, 64), m.unit)
			} else {
				p(" n/a |")
			}
		}
		p(" %s | %s | %s |", r.ratio(nameSidecarTLS, nameAppTLS, m), r.pairedRatio(nameSidecarTLS, nameAppTLS, m), r.ratio(nameSidecarTLS, "sidecar", m))
		if g, ok := goals[m.key]; ok {
			p(" %s | %s |\n", g.text, r.pairedVerdict(g, nameSidecarTLS))
		} else {
			p(" | |\n")
		}
	}
}

func (r *runner) reportMethod(p printf) {
	p("\n## Method\n\n")
	p("- Everything on loopback. Contestants: %s. ", names(r.contestants))
	if r.cfg.socatBacklog > 0 {
		p("socat runs as `socat %s TCP:127.0.0.1:<target>`: the command users run with a larger listen backlog than its default of 5, because with 5 the 32 sysbench connections opening at once overflow it and their SYN retries (1, 3, 7, 15, 31 s) often outlast sysbench's 30 s start-up limit; ", socatListen(0, r.cfg.socatBacklog))
	} else {
		p("socat runs as `socat TCP-LISTEN:<port>,bind=127.0.0.1,fork,reuseaddr TCP:127.0.0.1:<target>`, as users run it, with its default listen backlog of 5: 32 clients connecting at once overflow it, their SYN retries (1, 3, 7, 15, 31 s) can outlast sysbench's 30 s start-up limit, and such a measurement is retried once and noted; ")
	}
	p("the sidecar is the real binary (`go build -trimpath ./sidecar`) configured by environment (LOG_LEVEL=warn, MAX_CONNECTIONS=%d)", r.maxConnEnv)
	for _, c := range r.contestants {
		if len(c.env) > 0 {
			p("; %s adds %s", c.name, strings.Join(c.env, " "))
		}
	}
	p(".\n")
	if r.cfg.place != nil {
		p("- Placement (`-db-cpus`): %s, as in production, where the database is another machine and the app and the sidecar share their task's CPUs.\n", r.cfg.place)
	} else {
		p("- Placement: none; the database, the clients and the forwarders share every CPU (`-db-cpus` gives the database CPUs of its own).\n")
	}
	p("- %d rounds; in each round every workload runs every contestant, the order rotated by one per round. Figures are medians over rounds; per-round values are at the end.\n", r.cfg.rounds)
	p("- MySQL: %s against a throwaway MariaDB, table of %d rows, %v per measurement at %s connections. qps and p99 as the client reports them.\n",
		r.sysbench, r.cfg.tableSize, r.cfg.mysqlTime, joinInts(r.cfg.threads))
	p("- Forwarder CPU: utime+stime+cutime+cstime from /proc/<pid>/stat of the forwarder plus every live descendant, read before and after each measurement once the forwarder has no children left (socat's per-connection children are counted once reaped; any still alive are summed from their own /proc entries). Divided by the queries, bytes or connections of that measurement. Direct has no forwarder.\n")
	p("- Client and server CPU per query: sysbench's own rusage, and mariadbd's utime+stime from /proc/<pid>/stat read before and after each point-select measurement (the server also serves the connection set-up, as the client does).\n")
	bulkTool := "iperf3, one stream"
	if r.iperfPath == "" {
		bulkTool = "a Go sender and receiver, one stream"
	}
	p("- Bulk: %s, %v per measurement, receiver's rate.\n", bulkTool, r.cfg.bulkTime)
	p("- MySQL sessions: %d Go clients (go-sql-driver/mysql) for %v, each opening a session (connect, log in), then quitting (COM_QUIT, close). MySQL bulk: one session reading `SELECT REPEAT('x', %d)` over and over for %v; the client's rate.\n", r.cfg.connDialers, r.cfg.connTime, bulkValue, r.cfg.bulkTime)
	if r.tlsClient != nil {
		p("- TLS: MariaDB has a certificate from a CA made for the run, naming only `%s` (no IP address); everyone connects to 127.0.0.1, and the TLS clients check that name, so nothing is resolved. MariaDB also takes plaintext logins, so every contestant uses the same server and table; each TLS contestant is checked once per round (the server reports a TLS version for its session). %s's client is sysbench `--mysql-ssl=on` (which also sends a client certificate, and does not check the server's name) or go-sql-driver with a verify-identity `tls.Config` without a session cache, as go-sql-driver's `tls=true` and libmysqlclient do by default; the sidecar keeps a client session cache and resumes TLS sessions. %s and %s run only the MySQL workloads.\n", testmysql.ClusterName, nameAppTLS, nameSidecarTLS, nameAppTLS)
	}
	p("- New connections: %d Go dialers for %v against a small Go server; each connection sends a 22-byte request, reads a 38-byte response and the server's close, then closes.\n", r.cfg.connDialers, r.cfg.connTime)
	p("- Memory: each forwarder fresh, once per run; connections opened 8 at a time, each proven end to end by a 1-byte echo, then idle; read 1 s after the last one opened. RSS sums resident pages over the forwarder and its children (socat's shared pages count once per process); PSS (from smaps_rollup) splits shared pages, so it is the fairer figure for socat. The second step opens as many as RLIMIT_NOFILE allows the bench process (two descriptors per connection): %d; a forwarder that needs more than two descriptors per connection (it inherits the same limit) stops earlier, and the count it reached is reported. Descriptors per connection are counted in /proc/<pid>/fd (summed over socat's children) at the first step.\n", r.idleMax)
}

func (r *runner) reportRounds(p printf) {
	p("\n## Per-round values\n\n")
	p("| metric | contestant | values (in round order) |\n|---|---|---|\n")
	for _, m := range r.metrics() {
		for _, c := range r.contestants {
			if _, vals, ok := r.res.get(c.name, m.key); ok {
				var s []string
				for _, v := range vals {
					s = append(s, strconv.FormatFloat(v, 'f', m.prec, 64))
				}
				p("| %s | %s | %s |\n", m.label, c.name, strings.Join(s, ", "))
			}
		}
	}
	r.res.mu.Lock()
	notes := append([]string(nil), r.res.notes...)
	r.res.mu.Unlock()
	if len(notes) > 0 {
		p("\n## Notes\n\n")
		for _, n := range notes {
			p("- %s\n", strings.ReplaceAll(n, "\n", " "))
		}
	}
}

// ratio formats a/b for metric m, or "—" where it has no meaning.
func (r *runner) ratio(a, b string, m metric) string {
	if m.forwarder && b == "direct" {
		return "—"
	}
	va, _, okA := r.res.get(a, m.key)
	vb, _, okB := r.res.get(b, m.key)
	if !okA || !okB || vb == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", va/vb)
}

// minJudgedRounds is how many rounds a TLS goal needs before the bench
// judges it: fewer give an interval too wide to say anything.
const minJudgedRounds = 5

// pairedVerdict judges a goal on the round-by-round ratios of sidecar to
// the goal's baseline, which the machine's drift between rounds does not
// move: met when the 95% interval of their median is wholly on the goal's
// side of the bound, **not met** when it is wholly on the other side,
// **not shown** when it holds the bound.
func (r *runner) pairedVerdict(g goal, sidecar string) string {
	ratios := r.res.paired(sidecar, g.against, g.metric)
	if len(ratios) == 0 {
		return "no data"
	}
	med, lo, hi := medianInterval(ratios)
	switch {
	case g.reportOnly:
		return fmt.Sprintf("reported (%.2f×)", med)
	case len(ratios) < minJudgedRounds:
		return fmt.Sprintf("not judged (%.2f×; %d of the %d rounds needed)", med, len(ratios), minJudgedRounds)
	}
	v := "**not shown**"
	switch {
	case g.meets(lo) && g.meets(hi):
		v = "met"
	case !g.meets(lo) && !g.meets(hi):
		v = "**not met**"
	}
	return fmt.Sprintf("%s (%.2f×, 95%%: %.2f–%.2f×)", v, med, lo, hi)
}

// medianInterval is v's median and a 95% percentile-bootstrap interval
// for it, from 10,000 resamples with a fixed seed, so a report's verdicts
// can be reproduced from its own per-round values.
func medianInterval(v []float64) (med, lo, hi float64) {
	const resamples = 10000
	rng := rand.New(rand.NewPCG(1, 1))
	meds := make([]float64, resamples)
	s := make([]float64, len(v))
	for i := range meds {
		for j := range s {
			s[j] = v[rng.IntN(len(v))]
		}
		meds[i] = median(s)
	}
	slices.Sort(meds)
	return median(v), meds[resamples*25/1000], meds[resamples*975/1000-1]
}

// pairedRatio is "1.02× (0.95–1.08×)": the median and range of a ÷ b
// within each round.
func (r *runner) pairedRatio(a, b string, m metric) string {
	ratios := r.res.paired(a, b, m.key)
	if len(ratios) == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f× (%.2f–%.2f×)", median(ratios), slices.Min(ratios), slices.Max(ratios))
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, "/")
}

func commandLine() string {
	parts := []string{"go run ./bench"}
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " '\"$`\\*?") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// machine describes where the run happened.
func (r *runner) machine() [][2]string {
	out := [][2]string{
		{"CPU", cpuModel("/proc/cpuinfo")},
		{"cores", strconv.Itoa(runtime.NumCPU())},
		{"kernel", strings.TrimSpace(readFile("/proc/sys/kernel/osrelease"))},
		{"Go", runtime.Version() + " (bench and sidecar build)"},
		{"RLIMIT_NOFILE", strconv.FormatUint(r.nofile, 10)},
		{"load average (1/5/15 min) at start, end", fmt.Sprintf("%s; %s", loadFields(r.loadStart), loadFields(r.loadEnd))},
		{"CPU used by other processes during the run", r.othersText()},
	}
	if r.socatPath != "" {
		out = append(out, [2]string{"socat", toolVersion(r.socatPath, "-V", "socat version")})
	}
	if r.sysbenchPath != "" {
		out = append(out, [2]string{"sysbench", toolVersion(r.sysbenchPath, "--version", "sysbench")})
	}
	if r.iperfPath != "" {
		out = append(out, [2]string{"iperf3", toolVersion(r.iperfPath, "--version", "iperf")})
	}
	if p, err := exec.LookPath("mariadbd"); err == nil {
		out = append(out, [2]string{"MariaDB", toolVersion(p, "--version", "")})
	} else if _, err := os.Stat("/usr/sbin/mariadbd"); err == nil {
		out = append(out, [2]string{"MariaDB", toolVersion("/usr/sbin/mariadbd", "--version", "")})
	}
	if rev := gitRevision(); rev != "" {
		out = append(out, [2]string{"repository", rev})
	}
	return out
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// cpuModel returns "model name" from /proc/cpuinfo.
func cpuModel(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// toolVersion runs "bin flag" and returns the first line containing prefix.
func toolVersion(bin, flag, prefix string) string {
	out, err := exec.Command(bin, flag).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "unknown (" + err.Error() + ")"
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, prefix) && strings.TrimSpace(l) != "" {
			return strings.TrimSpace(l)
		}
	}
	return "unknown"
}

func gitRevision() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// loadFields keeps the three load averages of a /proc/loadavg line.
func loadFields(s string) string {
	f := strings.Fields(s)
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func (r *runner) othersText() string {
	var per []string
	for _, o := range r.othersRounds {
		per = append(per, fmt.Sprintf("%.0f%%", 100*o))
	}
	return fmt.Sprintf("%.0f%% of the machine (per round: %s); figures from a busy machine are lower and noisier", 100*r.othersRun, strings.Join(per, ", "))
}
