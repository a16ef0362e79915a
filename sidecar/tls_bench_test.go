package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/internal/testmysql"
)

// BenchmarkTLSModes compares, in one run, the ways an app can reach a
// TLS-only MariaDB on loopback:
//
//   - sidecar-tls: the app speaks plaintext to the sidecar, which does
//     verify-identity TLS (TARGET_TLS=verify-identity);
//   - app-tls: the app does TLS itself through the sidecar's plain relay
//     (TARGET_TLS=disabled), the realistic alternative;
//
// and, against a plaintext MariaDB, the plain relay (the CPU baseline).
// It prints point-select queries per second at 1, 8 and 32 connections,
// the sidecar process's CPU time per query, new connections per second
// (connect, log in, one query, close), and bulk throughput, with ratios.
// MariaDB's own CPU is not counted.
//
//	go test -run '^$' -bench TLSModes -benchtime 1x ./sidecar/
func BenchmarkTLSModes(b *testing.B) {
	tlsSrv, files := testmysql.StartTLS(b, testmysql.TLSOptions{})
	plainSrv := testmysql.Start(b)
	roots := x509.NewCertPool()
	pem, _ := os.ReadFile(files.CA)
	roots.AppendCertsFromPEM(pem)
	appTLS := &tls.Config{RootCAs: roots, ServerName: testmysql.ClusterName}

	type mode struct {
		name string
		srv  *testmysql.Server
		env  map[string]string
		tls  *tls.Config // the app's own TLS; nil = plaintext to the sidecar
	}
	modes := []mode{
		{"sidecar-tls", tlsSrv, map[string]string{"TARGET_TLS": "verify-identity", "TARGET_SERVER_NAME": testmysql.ClusterName, "TARGET_TLS_CA": files.CA}, nil},
		{"app-tls", tlsSrv, nil, appTLS},
		{"plain-relay", plainSrv, nil, nil},
	}
	const rows = 10000
	for _, srv := range []*testmysql.Server{tlsSrv, plainSrv} {
		if err := benchTable(srv, rows); err != nil {
			b.Fatal(err)
		}
	}
	type result struct {
		qps, cpuPerQuery map[int]float64
		connsPerSec      float64
		bulkMBps         float64
	}
	results := map[string]*result{}
	const window = 3 * time.Second
	for range b.N {
		for _, m := range modes {
			addr, pid := benchSidecar(b, m.srv, m.env)
			dsn := func() *mysql.Config {
				c := mysql.NewConfig()
				c.User, c.Passwd, c.Net, c.Addr, c.DBName = m.srv.User, m.srv.Password, "tcp", addr, "test"
				c.TLS = m.tls
				return c
			}
			r := &result{qps: map[int]float64{}, cpuPerQuery: map[int]float64{}}
			for _, conns := range []int{1, 8, 32} {
				cpu0 := cpuTicks(b, pid)
				n := pointSelects(b, dsn(), conns, rows, window)
				cpu1 := cpuTicks(b, pid)
				r.qps[conns] = float64(n) / window.Seconds()
				r.cpuPerQuery[conns] = float64(cpu1-cpu0) / clockTicks * 1e6 / float64(n) // µs
			}
			if m.name != "plain-relay" {
				rate, _ := loginRate(b, func(ctx context.Context) error { return pingOnce(ctx, dsn()) }, window, 4)
				r.connsPerSec = rate
				r.bulkMBps = bulk(b, dsn(), window)
			}
			results[m.name] = r
		}
		s, a, p := results["sidecar-tls"], results["app-tls"], results["plain-relay"]
		var out strings.Builder
		fmt.Fprintf(&out, "TLS modes, %v per measurement (sidecar CPU only; MariaDB's not counted):\n", window)
		fmt.Fprintf(&out, "%-28s %12s %12s %12s %s\n", "", "sidecar-tls", "app-tls", "plain-relay", "ratios")
		for _, c := range []int{1, 8, 32} {
			fmt.Fprintf(&out, "%-28s %12.0f %12.0f %12.0f sidecar-tls/app-tls %.2f (goal ≥ 1)\n", fmt.Sprintf("point selects/s, %d conns", c),
				s.qps[c], a.qps[c], p.qps[c], s.qps[c]/a.qps[c])
		}
		for _, c := range []int{1, 8, 32} {
			fmt.Fprintf(&out, "%-28s %12.1f %12.1f %12.1f sidecar-tls/plain-relay %.2f (goal ≤ 1.5)\n", fmt.Sprintf("sidecar CPU µs/query, %d", c),
				s.cpuPerQuery[c], a.cpuPerQuery[c], p.cpuPerQuery[c], s.cpuPerQuery[c]/p.cpuPerQuery[c])
		}
		fmt.Fprintf(&out, "%-28s %12.0f %12.0f %12s sidecar-tls/app-tls %.2f (goal ≥ 1)\n", "new connections/s, 4 conns", s.connsPerSec, a.connsPerSec, "-", s.connsPerSec/a.connsPerSec)
		fmt.Fprintf(&out, "%-28s %12.1f %12.1f %12s sidecar-tls/app-tls %.2f\n", "bulk MB/s (16 MiB rows)", s.bulkMBps, a.bulkMBps, "-", s.bulkMBps/a.bulkMBps)
		fmt.Print(out.String())
		b.ReportMetric(s.qps[8]/a.qps[8], "qps8-ratio")
		b.ReportMetric(s.cpuPerQuery[8]/p.cpuPerQuery[8], "cpu8-ratio")
		b.ReportMetric(s.connsPerSec/a.connsPerSec, "conns-ratio")
	}
}

// benchSidecar starts the sidecar binary in front of srv and returns its
// address and pid.
func benchSidecar(b testing.TB, srv *testmysql.Server, extra map[string]string) (string, int) {
	b.Helper()
	listen := strconv.Itoa(testkit.FreePort(b))
	env := map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": strconv.Itoa(srv.Port), "LISTEN_ADDR": "127.0.0.1",
		"LISTEN_PORT": listen, "ADMIN_PORT": strconv.Itoa(testkit.FreePort(b)), "LOG_LEVEL": "warning", "MAX_CONNECTIONS": "4096"}
	for k, v := range extra {
		env[k] = v
	}
	cmd := exec.Command(sidecarBinary(b))
	cmd.Env = environ(env)
	p := testkit.Start(b, cmd)
	testkit.WaitListening(b, "127.0.0.1:"+listen, 10*time.Second)
	return "127.0.0.1:" + listen, p.Cmd.Process.Pid
}

func benchTable(srv *testmysql.Server, rows int) error {
	db, err := sql.Open("mysql", "root@unix("+srv.Socket+")/test")
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE IF NOT EXISTS bench (id INT PRIMARY KEY, c CHAR(120) NOT NULL)"); err != nil {
		return err
	}
	for start := 1; start <= rows; start += 1000 {
		var vals []string
		for id := start; id < start+1000 && id <= rows; id++ {
			vals = append(vals, fmt.Sprintf("(%d, REPEAT('c', 120))", id))
		}
		if _, err := db.Exec("INSERT IGNORE INTO bench VALUES " + strings.Join(vals, ",")); err != nil {
			return err
		}
	}
	return nil
}

// pointSelects runs prepared point selects on conns connections for d
// and returns how many completed.
func pointSelects(b testing.TB, c *mysql.Config, conns, rows int, d time.Duration) int64 {
	b.Helper()
	conn, err := mysql.NewConnector(c)
	if err != nil {
		b.Fatal(err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	stmt, err := db.Prepare("SELECT c FROM bench WHERE id = ?")
	if err != nil {
		b.Fatal(err)
	}
	defer stmt.Close()
	// Warm every connection first, so logins are not measured.
	var warm sync.WaitGroup
	for range conns {
		warm.Add(1)
		go func() { defer warm.Done(); var s string; _ = stmt.QueryRow(1).Scan(&s) }()
	}
	warm.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var n atomic.Int64
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s string
			for ctx.Err() == nil {
				if err := stmt.QueryRowContext(ctx, 1+rand.IntN(rows)).Scan(&s); err != nil {
					if ctx.Err() == nil {
						b.Error(err)
					}
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return n.Load()
}

func pingOnce(ctx context.Context, c *mysql.Config) error {
	conn, err := mysql.NewConnector(c)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	var one int
	return db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// bulk reads 16 MiB rows over one connection for d and returns MB/s.
func bulk(b *testing.B, c *mysql.Config, d time.Duration) float64 {
	b.Helper()
	conn, err := mysql.NewConnector(c)
	if err != nil {
		b.Fatal(err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	var total int64
	start := time.Now()
	for time.Since(start) < d {
		var s []byte
		if err := db.QueryRow("SELECT REPEAT('x', 16777216)").Scan(&s); err != nil {
			b.Fatal(err)
		}
		total += int64(len(s))
	}
	return float64(total) / 1e6 / time.Since(start).Seconds()
}
