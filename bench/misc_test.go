//go:build linux

package main

import (
	"context"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseIperf3(t *testing.T) {
	tests := []struct {
		file    string
		want    bulkResult
		wantErr string
	}{
		// Captured from iperf3 3.12 -J on this machine (1 s, loopback).
		{file: "iperf3-1s.json", want: bulkResult{Bytes: 1245970432, Seconds: 1.000164, Gbps: 9.96612901084222}},
		{file: "iperf3-refused.json", wantErr: "Connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := parseIperf3([]byte(readTestdata(t, tt.file)))
			checkParsed(t, got, err, tt.want, tt.wantErr)
		})
	}
	for _, bad := range []string{"", "not json", `{"end":{}}`, `{"end":{"sum_received":{"seconds":0,"bytes":0}}}`} {
		if _, err := parseIperf3([]byte(bad)); err == nil {
			t.Errorf("parseIperf3(%q): no error", bad)
		}
	}
}

// proc-net-tcp.txt was captured with MariaDB listening on 127.0.0.1:33999,
// a socket listening on 0.0.0.0:41357 and one client connection to 33999
// from port 36434.
func TestParseNetTCPListening(t *testing.T) {
	b := []byte(readTestdata(t, "proc-net-tcp.txt"))
	tests := []struct {
		port int
		want bool
	}{
		{33999, true},  // 127.0.0.1 LISTEN
		{41357, true},  // 0.0.0.0 LISTEN
		{36434, false}, // only an established client socket
		{1, false},
	}
	for _, tt := range tests {
		got, err := parseNetTCPListening(b, tt.port)
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("port %d: listening = %v, want %v", tt.port, got, tt.want)
		}
	}
}

func TestParseSidecarVariant(t *testing.T) {
	tests := []struct {
		in      string
		want    contestant
		wantErr string
	}{
		{in: "epoll:DATA_PATH=epoll", want: contestant{name: "sidecar-epoll", kind: kindSidecar, env: []string{"DATA_PATH=epoll"}}},
		{in: "p2:DATA_PATH=portable,GOMAXPROCS=1,GOGC=off", want: contestant{name: "sidecar-p2", kind: kindSidecar,
			env: []string{"DATA_PATH=portable", "GOMAXPROCS=1", "GOGC=off"}}},
		{in: "x:EMPTY=", want: contestant{name: "sidecar-x", kind: kindSidecar, env: []string{"EMPTY="}}},
		{in: "DATA_PATH=epoll", wantErr: "want NAME:KEY=VAL"},
		{in: ":DATA_PATH=epoll", wantErr: "want NAME:KEY=VAL"},
		{in: "a b:DATA_PATH=epoll", wantErr: "want NAME:KEY=VAL"},
		{in: "epoll:", wantErr: `"" is not KEY=VAL`},
		{in: "epoll:data_path=epoll", wantErr: `"data_path=epoll" is not KEY=VAL`},
		{in: "epoll:DATA_PATH", wantErr: `"DATA_PATH" is not KEY=VAL`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSidecarVariant(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "-sidecar-env") {
					t.Fatalf("err = %v, want one naming -sidecar-env and containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.name != tt.want.name || got.kind != tt.want.kind || !slices.Equal(got.env, tt.want.env) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		check   func(t *testing.T, c config)
		wantErr []string
	}{
		{name: "defaults", check: func(t *testing.T, c config) {
			if c.rounds != 5 || c.mysqlTime != 3*time.Second || !slices.Equal(c.threads, []int{1, 8, 32}) ||
				c.idleFirst != 1000 || c.idleMax != 0 || !slices.Equal(c.workloads, defaultWorkloads) {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{name: "quick", args: []string{"-quick"}, check: func(t *testing.T, c config) {
			if c.rounds != 2 || c.mysqlTime != 2*time.Second || c.bulkTime != 2*time.Second || c.idleMax != 2000 {
				t.Errorf("quick: %+v", c)
			}
		}},
		{name: "quick keeps explicit flags", args: []string{"-quick", "-rounds", "5", "-idle-max", "0"}, check: func(t *testing.T, c config) {
			if c.rounds != 5 || c.idleMax != 0 || c.mysqlTime != 2*time.Second {
				t.Errorf("quick with explicit: %+v", c)
			}
		}},
		{name: "variants", args: []string{"-sidecar-env", "epoll:DATA_PATH=epoll", "-sidecar-env", "portable:DATA_PATH=portable"},
			check: func(t *testing.T, c config) {
				if len(c.variants) != 2 || c.variants[1].name != "sidecar-portable" {
					t.Errorf("variants: %+v", c.variants)
				}
			}},
		{name: "baseline and settle", args: []string{"-baseline-bin", "/tmp/old-sidecar", "-burst-settle", "5s"},
			check: func(t *testing.T, c config) {
				if c.baselineBin != "/tmp/old-sidecar" || c.burstSettle != 5*time.Second {
					t.Errorf("baseline: %+v", c)
				}
			}},
		{name: "settle out of range", args: []string{"-burst-settle", "-1s"}, wantErr: []string{"-burst-settle -1s"}},
		{name: "duplicate variant", args: []string{"-sidecar-env", "e:A=1", "-sidecar-env", "e:A=2"}, wantErr: []string{`variant "e" given twice`}},
		{name: "every problem listed", args: []string{"-threads", "1,x,0", "-rounds", "0", "-mysql-time", "10ms", "-workloads", "mysql,disk", "-mysql-client", "jdbc"},
			wantErr: []string{`-threads "1,x,0": "x"`, `"0" is not a count`, "-rounds 0", "-mysql-time 10ms", `"disk" is not one of`, `-mysql-client "jdbc"`}},
		{name: "stray argument", args: []string{"quick"}, wantErr: []string{`unexpected arguments ["quick"]`}},
		{name: "TLS pair on by default", check: func(t *testing.T, c config) {
			if !c.tls || !c.needsMySQL() {
				t.Errorf("tls %v needsMySQL %v", c.tls, c.needsMySQL())
			}
		}},
		{name: "TLS pair off, MySQL sessions only", args: []string{"-tls=false", "-workloads", "mysql-conns,bulk"}, check: func(t *testing.T, c config) {
			if c.tls || !c.needsMySQL() || !slices.Equal(c.workloads, []string{"mysql-conns", "bulk"}) {
				t.Errorf("tls %v needsMySQL %v workloads %v", c.tls, c.needsMySQL(), c.workloads)
			}
		}},
		{name: "no MySQL workload", args: []string{"-workloads", "bulk,conns,idle"}, check: func(t *testing.T, c config) {
			if c.needsMySQL() {
				t.Error("needsMySQL without a MySQL workload")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseFlags(tt.args, io.Discard)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestGoals(t *testing.T) {
	r := &runner{cfg: config{threads: []int{1}, idleFirst: 1000}, res: newResults()}
	r.res.add("direct", 1, map[string]float64{"mysql.qps.1": 6000, "bulk.gbps": 10})
	r.res.add("socat", 1, map[string]float64{"mysql.qps.1": 3000, "mysql.p99.1": 1, "mysql.cpu.1": 70, "conn.rate": 1000})
	r.res.add("sidecar", 1, map[string]float64{"mysql.qps.1": 3300, "mysql.p99.1": 1.2, "mysql.cpu.1": 56, "bulk.gbps": 5.9, "conn.rate": 3000, "idle.rss.first": 12})
	// Rounds: the median decides.
	r.res.add("sidecar", 2, map[string]float64{"mysql.qps.1": 2000, "conn.rate": 3100})
	r.res.add("sidecar", 3, map[string]float64{"mysql.qps.1": 3400, "conn.rate": 2900})
	want := map[string]struct {
		fig float64
		met bool
	}{
		"mysql.qps.1":    {3300.0 / 3000, true},
		"mysql.p99.1":    {1.2, false},
		"mysql.cpu.1":    {0.8, true},
		"bulk.gbps":      {0.59, false},
		"conn.rate":      {3, true},
		"idle.rss.first": {12, true},
	}
	for _, g := range r.goals() {
		fig, met, ok := r.evaluate(g, "sidecar")
		w := want[g.metric]
		if !ok || met != w.met || fig < w.fig-1e-9 || fig > w.fig+1e-9 {
			t.Errorf("%s: figure %v met %v ok %v, want %v %v", g.text, fig, met, ok, w.fig, w.met)
		}
	}
	r.res = newResults()
	if _, _, ok := r.evaluate(r.goals()[0], "sidecar"); ok {
		t.Error("goal judged without data")
	}
}

func TestRotateAndMergeEnv(t *testing.T) {
	s := []int{1, 2, 3}
	for by, want := range [][]int{{1, 2, 3}, {2, 3, 1}, {3, 1, 2}, {1, 2, 3}} {
		if got := rotate(s, by); !slices.Equal(got, want) {
			t.Errorf("rotate by %d = %v, want %v", by, got, want)
		}
	}
	got := mergeEnv([]string{"A=1", "LOG_LEVEL=warn"}, []string{"LOG_LEVEL=debug", "B=2"})
	if want := []string{"A=1", "LOG_LEVEL=debug", "B=2"}; !slices.Equal(got, want) {
		t.Errorf("mergeEnv = %v, want %v", got, want)
	}
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median odd = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median even = %v", m)
	}
}

func TestParseProcStatBusy(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		// Captured on the bench machine.
		{in: "cpu  85835 0 41068 83245 1292 0 4454 2498 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n", want: 85835 + 41068 + 4454 + 2498},
		{in: "cpu0 1 2 3 4 5 6 7 8 0 0\n", wantErr: true},
		{in: "cpu  1 2 3\n", wantErr: true},
		{in: "cpu  1 2 x 4 5 6 7 8 0 0\n", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseProcStatBusy(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseProcStatBusy(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	a := busySnapshot{at: time.Unix(0, 0), machineBusy: 1000, ours: 500}
	b := busySnapshot{at: time.Unix(10, 0), machineBusy: 1000 + 1500, ours: 500 + 1000}
	// 1500 ticks busy, 1000 ours: others used 500 of 10 s × 100 × NumCPU.
	if got, want := othersShare(a, b), 500/(10*100*float64(runtime.NumCPU())); got != want {
		t.Errorf("othersShare = %v, want %v", got, want)
	}
}

func TestReportTables(t *testing.T) {
	r := &runner{cfg: config{threads: []int{1}, idleFirst: 1000, rounds: 1, connDialers: 8}, res: newResults(), idleMax: 9000,
		contestants: []contestant{{name: "direct"}, {name: "socat", kind: kindSocat}, {name: "sidecar", kind: kindSidecar},
			{name: "sidecar-rw", kind: kindSidecar, env: []string{"IDLE_TIMEOUT=1h"}}}}
	r.res.add("direct", 1, map[string]float64{"mysql.qps.1": 6000})
	r.res.add("socat", 1, map[string]float64{"mysql.qps.1": 3000, "mysql.cpu.1": 70})
	r.res.add("sidecar", 1, map[string]float64{"mysql.qps.1": 3300, "mysql.cpu.1": 63, "idle.rss.first": 37.3})
	r.res.add("sidecar-rw", 1, map[string]float64{"mysql.qps.1": 2700})
	r.note("a note\nover two lines")
	rep := r.report(time.Unix(0, 0), time.Unix(90, 0))
	for _, want := range []string{
		"| goal | sidecar | sidecar-rw |",
		"| MySQL qps ≥ socat at 1 conn | met (1.10×) | **not met** (0.90×) |",
		"| CPU per query ≤ 0.8× socat at 1 conn | **not met** (0.90×) | no data |",
		"| ≤ 30 MiB RSS at 1000 idle conns | **not met** (37.3 MiB) | no data |",
		"| MySQL point selects, 1 conn | qps | 6000 | 3000 | 3300 | 2700 |",
		"| forwarder CPU per query, 1 conn | µs | — | 70.0 | 63.0 | n/a |",
		"| MySQL point selects, 1 conn | 2700 qps | 0.45× | 0.90× | 0.82× | MySQL qps ≥ socat at 1 conn | **not met** (0.90×) |",
		"sidecar-rw adds IDLE_TIMEOUT=1h",
		"- a note over two lines",
		"- Placement: none; the database, the clients and the forwarders share every CPU",
	} {
		if !strings.Contains(rep, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(rep, "CPUs busy") {
		t.Errorf("report without -db-cpus has CPUs-busy rows")
	}
	p, err := parsePlacement("1", cpuSet(0, 1, 2))
	if err != nil {
		t.Fatal(err)
	}
	r.cfg.place = &p
	r.res.add("sidecar", 1, map[string]float64{"mysql.taskbusy.1": 97.4, "mysql.dbbusy.1": 61.2})
	rep = r.report(time.Unix(0, 0), time.Unix(90, 0))
	for _, want := range []string{
		"- Placement (`-db-cpus`): MariaDB on CPU 1; the clients and forwarders on CPU 0,2, as in production",
		"| task CPUs busy (client + forwarder), 1 conn | % | n/a | n/a | 97 | n/a |",
		"| database CPUs busy (server), 1 conn | % | n/a | n/a | 61 | n/a |",
	} {
		if !strings.Contains(rep, want) {
			t.Errorf("report with -db-cpus 1 lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(rep)
	}
}

func TestSocatListen(t *testing.T) {
	if got, want := socatListen(5000, 0), "TCP-LISTEN:5000,bind=127.0.0.1,fork,reuseaddr"; got != want {
		t.Errorf("default backlog: %q, want %q", got, want)
	}
	if got, want := socatListen(5000, 128), "TCP-LISTEN:5000,bind=127.0.0.1,fork,reuseaddr,backlog=128"; got != want {
		t.Errorf("backlog 128: %q, want %q", got, want)
	}
	if _, err := parseFlags([]string{"-socat-backlog", "-1"}, io.Discard); err == nil || !strings.Contains(err.Error(), "-socat-backlog -1") {
		t.Errorf("negative backlog: err = %v", err)
	}
}

// runToolIn reports the CPU the tool used, which the bench divides into
// the client's CPU per query.
func TestRunToolCountsCPU(t *testing.T) {
	out, cpu, err := runToolIn(context.Background(), "", "/bin/sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo done")
	if err != nil || strings.TrimSpace(out) != "done" {
		t.Fatalf("runToolIn = %q, %v", out, err)
	}
	if cpu < 10*time.Millisecond {
		t.Errorf("CPU = %v for a shell counting to 200000; want the child's user and system time", cpu)
	}
}
