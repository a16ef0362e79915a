//go:build linux

package main

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testenv"
	"github.com/example/sidecar/internal/testmysql"
)

func TestTLSPair(t *testing.T) {
	pair := tlsPair("/x/ca.pem")
	if len(pair) != 2 || pair[0].name != nameSidecarTLS || pair[1].name != nameAppTLS {
		t.Fatalf("pair %+v", pair)
	}
	for _, want := range []string{"TARGET_TLS=verify-identity", "TARGET_TLS_CA=/x/ca.pem", "TARGET_SERVER_NAME=" + testmysql.ClusterName} {
		if !slices.Contains(pair[0].env, want) {
			t.Errorf("%s env %v lacks %s", pair[0].name, pair[0].env, want)
		}
	}
	// app-tls is the plain relay: no TLS setting of the sidecar's.
	if len(pair[1].env) != 0 || !pair[1].clientTLS || pair[1].sidecarTLS {
		t.Errorf("%s: %+v", pair[1].name, pair[1])
	}
	all := append([]contestant{{name: "direct"}, {name: "sidecar", kind: kindSidecar}}, pair...)
	if got := names(withoutMySQLOnly(all)); got != "direct, sidecar" {
		t.Errorf("withoutMySQLOnly = %s", got)
	}
}

func TestTLSGoals(t *testing.T) {
	r := &runner{cfg: config{threads: []int{1, 8}}, res: newResults()}
	r.res.add("sidecar", 1, map[string]float64{"mysql.cpu.1": 40, "mysql.cpu.8": 30})
	r.res.add(nameAppTLS, 1, map[string]float64{"mysql.qps.1": 5000, "mysql.qps.8": 10000, "mconn.rate": 800, "mbulk.gbps": 2})
	r.res.add(nameSidecarTLS, 1, map[string]float64{"mysql.qps.1": 5500, "mysql.qps.8": 9000, "mysql.cpu.1": 60, "mysql.cpu.8": 48, "mconn.rate": 1000, "mbulk.gbps": 1.5})
	want := map[string]struct {
		fig float64
		met bool
	}{
		"mysql.qps.1": {1.1, true},
		"mysql.qps.8": {0.9, false},
		"mysql.cpu.1": {1.5, true},
		"mysql.cpu.8": {1.6, false},
		"mconn.rate":  {1.25, true},
		"mbulk.gbps":  {0.75, true}, // reported, no bound
	}
	gs := r.tlsGoals()
	if len(gs) != len(want) {
		t.Fatalf("%d goals, want %d", len(gs), len(want))
	}
	for _, g := range gs {
		fig, met, ok := r.evaluate(g, nameSidecarTLS)
		w := want[g.metric]
		if !ok || met != w.met || fig < w.fig-1e-9 || fig > w.fig+1e-9 {
			t.Errorf("%s: figure %v met %v ok %v, want %v %v", g.text, fig, met, ok, w.fig, w.met)
		}
	}
}

func TestReportTLS(t *testing.T) {
	r := &runner{cfg: config{threads: []int{1}, idleFirst: 1000, rounds: 1, connDialers: 8}, res: newResults(), idleMax: 9000,
		contestants: append([]contestant{{name: "direct"}, {name: "sidecar", kind: kindSidecar}}, tlsPair("/x/ca.pem")...)}
	r.res.add("sidecar", 1, map[string]float64{"mysql.qps.1": 4000, "mysql.cpu.1": 40, "mconn.rate": 2000, "mbulk.gbps": 3})
	r.res.add(nameAppTLS, 1, map[string]float64{"mysql.qps.1": 3000, "mysql.cpu.1": 41, "mysql.clientcpu.1": 23, "mysql.servercpu.1": 36, "mysql.allcpu.1": 100, "mconn.rate": 800, "mbulk.gbps": 2})
	r.res.add(nameSidecarTLS, 1, map[string]float64{"mysql.qps.1": 3300, "mysql.cpu.1": 70, "mysql.clientcpu.1": 20, "mysql.servercpu.1": 36, "mysql.allcpu.1": 126, "mconn.rate": 1000, "mbulk.gbps": 1.5})
	// A second round on a faster machine: the ratio of the medians (0.97)
	// mixes rounds; round by round the ratios are 1.10 and 0.90.
	r.res.add(nameAppTLS, 2, map[string]float64{"mysql.qps.1": 6000})
	r.res.add(nameSidecarTLS, 2, map[string]float64{"mysql.qps.1": 5400})
	rep := r.report(time.Unix(0, 0), time.Unix(90, 0))
	for _, want := range []string{
		"## TLS to the database (issue 15): sidecar-tls against app-tls and the plaintext relay",
		"| MySQL point selects, 1 conn | 4350 qps | 4500 qps | 4000 qps | 0.97× | 1.00× (0.90–1.10×) | 1.09× | qps ≥ app-tls at 1 conn | not judged (1.00×; 2 of the 5 rounds needed) |",
		"| forwarder CPU per query, 1 conn | 70.0 µs | 41.0 µs | 40.0 µs | 1.71× | 1.71× (1.71–1.71×) | 1.75× | CPU per query ≤ 1.5× plaintext sidecar at 1 conn | not judged (1.75×; 1 of the 5 rounds needed) |",
		"| client (sysbench) CPU per query, 1 conn | 20.0 µs | 23.0 µs | n/a | 0.87× | 0.87× (0.87–0.87×) | n/a | | |",
		"| server (MariaDB) CPU per query, 1 conn | 36.0 µs | 36.0 µs | n/a | 1.00× | 1.00× (1.00–1.00×) | n/a | | |",
		"| client + forwarder + server CPU per query, 1 conn | 126.0 µs | 100.0 µs | n/a | 1.26× | 1.26× (1.26–1.26×) | n/a | | |",
		"| new MySQL sessions (connect, log in, quit), 8 clients | 1000 sessions/s | 800 sessions/s | 2000 sessions/s | 1.25× | 1.25× (1.25–1.25×) | 0.50× | new MySQL sessions/s ≥ app-tls | not judged (1.25×; 1 of the 5 rounds needed) |",
		"| MySQL bulk: 4 MiB results, 1 session | 1.50 Gbit/s | 2.00 Gbit/s | 3.00 Gbit/s | 0.75× | 0.75× (0.75–0.75×) | 0.50× | MySQL bulk throughput (reported) | reported (0.75×) |",
		// The issue-5 goals table has the plain sidecar's column only.
		"| goal | sidecar |\n",
	} {
		if !strings.Contains(rep, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(rep, "## sidecar-tls: ratios and goals") {
		t.Error("the TLS pair got an issue-5 ratio section")
	}
	if t.Failed() {
		t.Log(rep)
	}
}

// The TLS goals are judged on the interval of the round-by-round ratios'
// median, not on the ratio of two medians.
func TestPairedVerdict(t *testing.T) {
	qps := goal{metric: "mysql.qps.1", against: nameAppTLS, atLeast: true, bound: 1}
	cpu := goal{metric: "mysql.cpu.1", against: "sidecar", bound: 1.5}
	bulk := goal{metric: "mysql.qps.1", against: nameAppTLS, reportOnly: true}
	for _, tt := range []struct {
		name   string
		g      goal
		ratios []float64 // sidecar-tls ÷ the baseline, one per round
		want   string
	}{
		{"ahead in every round", qps, []float64{1.04, 1.05, 1.06, 1.03, 1.05, 1.07}, "met (1.05×, 95%: "},
		{"behind in every round", qps, []float64{0.96, 0.97, 0.95, 0.98, 0.96, 0.97}, "**not met** (0.96×, 95%: "},
		{"level", qps, []float64{0.98, 1.02, 1.01, 0.99, 1.03, 0.97}, "**not shown** (1.00×, 95%: "},
		// A median over the bound is not enough when the interval holds it.
		{"median ahead, interval not", qps, []float64{0.90, 1.10, 1.02, 0.95, 1.04, 1.01, 0.97}, "**not shown** (1.01×, 95%: "},
		{"too few rounds", qps, []float64{1.2, 1.3}, "not judged (1.25×; 2 of the 5 rounds needed)"},
		{"at most: met", cpu, []float64{1.1, 1.2, 1.1, 1.15, 1.2}, "met (1.15×, 95%: "},
		{"at most: not met", cpu, []float64{1.6, 1.7, 1.65, 1.6, 1.8}, "**not met** (1.65×, 95%: "},
		{"reported", bulk, []float64{0.9, 0.8}, "reported (0.85×)"},
	} {
		r := &runner{res: newResults()}
		for i, ratio := range tt.ratios {
			r.res.add(tt.g.against, i+1, map[string]float64{tt.g.metric: 1000})
			r.res.add(nameSidecarTLS, i+1, map[string]float64{tt.g.metric: 1000 * ratio})
		}
		if got := r.pairedVerdict(tt.g, nameSidecarTLS); got != tt.want && !(strings.HasSuffix(tt.want, "95%: ") && strings.HasPrefix(got, tt.want)) {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
	if got := (&runner{res: newResults()}).pairedVerdict(qps, nameSidecarTLS); got != "no data" {
		t.Errorf("no rounds: %s", got)
	}
}

func TestMedianInterval(t *testing.T) {
	v := []float64{0.90, 1.10, 1.02, 0.95, 1.04, 1.01, 0.97, 1.03, 0.99}
	med, lo, hi := medianInterval(v)
	if med != 1.01 || lo > med || hi < med || lo < slices.Min(v) || hi > slices.Max(v) || lo == hi {
		t.Errorf("medianInterval(%v) = %v, %v–%v", v, med, lo, hi)
	}
	if m2, lo2, hi2 := medianInterval(v); m2 != med || lo2 != lo || hi2 != hi {
		t.Errorf("a second call gave %v, %v–%v: the interval must be reproducible", m2, lo2, hi2)
	}
	if med, lo, hi := medianInterval([]float64{1.2, 1.2, 1.2}); med != 1.2 || lo != 1.2 || hi != 1.2 {
		t.Errorf("constant ratios: %v, %v–%v", med, lo, hi)
	}
}

// The MySQL session and bulk clients and the TLS check, against a real
// MariaDB that has TLS on and still takes plaintext logins (as in the
// bench), with and without client TLS.
func TestMySQLWorkloadsWithTLS(t *testing.T) {
	if ok, missing := testmysql.Available(); !ok {
		testenv.Unavailable(t, "MariaDB: %s", missing)
	}
	r := &runner{res: newResults()}
	args, err := r.setUpTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"cacert.pem", "client-cert.pem", "client-key.pem"} {
		if _, err := os.Stat(r.sysbenchDir + "/" + name); err != nil {
			t.Errorf("sysbench's %s: %v", name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r.db, err = testmysql.StartServer(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer r.db.Stop()
	plain := contestant{name: "direct"}
	appTLS := contestant{name: nameAppTLS, clientTLS: true}
	for _, c := range []contestant{plain, appTLS} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := r.connector(c, r.db.Port)
			if err != nil {
				t.Fatal(err)
			}
			res := mysqlConnRate(ctx, conn, 2, 300*time.Millisecond)
			if res.Errors != 0 || res.Conns == 0 {
				t.Errorf("sessions: %+v", res)
			}
			b, err := mysqlBulk(ctx, conn, 200*time.Millisecond)
			if err != nil || b.Bytes < bulkValue || b.Bytes%bulkValue != 0 || b.Gbps <= 0 {
				t.Errorf("bulk: %+v, %v", b, err)
			}
		})
	}
	// The Go stand-in for sysbench, doing TLS itself.
	if err := goPrepare(ctx, r.db.DSN(r.db.Addr, "test"), 100); err != nil {
		t.Fatal(err)
	}
	conn, err := r.connector(appTLS, r.db.Port)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := goPointSelects(ctx, conn, 2, 200*time.Millisecond, 100); err != nil || res.Queries == 0 {
		t.Errorf("point selects with client TLS: %+v, %v", res, err)
	}
	// The server's CPU is read around a measurement (a second of it).
	r.cfg.tableSize = 100
	if res, _, _, err := r.pointSelectsWithCPU(ctx, 1, &live{c: appTLS, port: r.db.Port}, 2); err != nil || res.Queries == 0 || res.ServerCPU <= 0 {
		t.Errorf("point selects with the server's CPU: %+v, %v", res, err)
	}
	if err := r.checkTLS(ctx, &live{c: appTLS, port: r.db.Port}); err != nil {
		t.Errorf("client TLS straight to the server: %v", err)
	}
	// A TLS contestant whose session reaches the server in plaintext must
	// fail the check: here, the sidecar-tls contestant's client without a
	// sidecar in front.
	err = r.checkTLS(ctx, &live{c: contestant{name: nameSidecarTLS, sidecarTLS: true}, port: r.db.Port})
	if err == nil || !strings.Contains(err.Error(), "plaintext") {
		t.Errorf("plaintext session passed the TLS check: %v", err)
	}
}
