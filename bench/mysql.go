//go:build linux

package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/go-sql-driver/mysql"
)

// sysbenchArgs are the connection arguments for sysbench. They hold the
// throwaway server's password, so they are never logged.
func (r *runner) sysbenchArgs(port int) []string {
	return []string{
		"oltp_point_select", "--db-driver=mysql",
		"--mysql-host=127.0.0.1", "--mysql-port=" + strconv.Itoa(port),
		"--mysql-user=" + r.db.User, "--mysql-password=" + r.db.Password, "--mysql-db=test",
		"--tables=1", "--table-size=" + strconv.Itoa(r.cfg.tableSize),
	}
}

// prepareMySQL creates the sbtest1 table, directly (no forwarder).
func (r *runner) prepareMySQL(ctx context.Context) error {
	if r.sysbenchPath != "" {
		out, err := runTool(ctx, r.sysbenchPath, append(r.sysbenchArgs(r.db.Port), "prepare")...)
		if err != nil {
			return fmt.Errorf("sysbench prepare: %w\n%s", err, tail(out, 800))
		}
		return nil
	}
	return goPrepare(ctx, r.db.DSN(r.db.Addr, "test"), r.cfg.tableSize)
}

// pointSelects runs one measurement at the given concurrency through l.
func (r *runner) pointSelects(ctx context.Context, l *live, threads int) (sysbenchResult, error) {
	secs := int(math.Max(1, math.Round(r.cfg.mysqlTime.Seconds())))
	if r.sysbenchPath != "" {
		args := append(r.sysbenchArgs(l.port), "--threads="+strconv.Itoa(threads),
			"--time="+strconv.Itoa(secs), "--percentile=99", "run")
		dir := ""
		if l.c.clientTLS {
			args, dir = append(args, "--mysql-ssl=on"), r.sysbenchDir
		}
		out, cpu, err := runToolIn(ctx, dir, r.sysbenchPath, args...)
		if ctx.Err() != nil {
			return sysbenchResult{}, ctx.Err()
		}
		res, perr := parseSysbench(out)
		res.ClientCPU = cpu
		if perr != nil {
			return res, fmt.Errorf("sysbench run (exit %v): %w", err, perr)
		}
		if err != nil {
			return res, fmt.Errorf("sysbench run: %w\n%s", err, tail(out, 800))
		}
		return res, nil
	}
	conn, err := r.connector(l.c, l.port)
	if err != nil {
		return sysbenchResult{}, err
	}
	return goPointSelects(ctx, conn, threads, time.Duration(secs)*time.Second, r.cfg.tableSize)
}

// goPrepare creates sysbench's sbtest1 schema and rows, for machines
// without sysbench.
func goPrepare(ctx context.Context, dsn string, rows int) error {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE sbtest1 (
		id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
		k INT NOT NULL DEFAULT 0,
		c CHAR(120) NOT NULL DEFAULT '',
		pad CHAR(60) NOT NULL DEFAULT '',
		KEY k_1 (k)) ENGINE=InnoDB`); err != nil {
		return fmt.Errorf("create sbtest1: %w", err)
	}
	const batch = 1000
	for start := 1; start <= rows; start += batch {
		var q strings.Builder
		q.WriteString("INSERT INTO sbtest1 (id, k, c, pad) VALUES ")
		for id := start; id < start+batch && id <= rows; id++ {
			if id > start {
				q.WriteByte(',')
			}
			fmt.Fprintf(&q, "(%d,%d,'%0119d','%059d')", id, rand.IntN(rows)+1, rand.Int64(), rand.Int64())
		}
		if _, err := db.ExecContext(ctx, q.String()); err != nil {
			return fmt.Errorf("fill sbtest1: %w", err)
		}
	}
	return nil
}

// goPointSelects is the Go stand-in for sysbench oltp_point_select: a pool
// of threads connections, each worker running a prepared
// "SELECT c FROM sbtest1 WHERE id=?" with a random id.
func goPointSelects(ctx context.Context, conn driver.Connector, threads int, d time.Duration, rows int) (sysbenchResult, error) {
	res := sysbenchResult{Threads: threads}
	db := sql.OpenDB(conn)
	defer db.Close()
	db.SetMaxOpenConns(threads)
	db.SetMaxIdleConns(threads)
	stmt, err := db.PrepareContext(ctx, "SELECT c FROM sbtest1 WHERE id=?")
	if err != nil {
		return res, fmt.Errorf("prepare point select: %w", err)
	}
	defer stmt.Close()
	// Open every connection before the clock starts, as sysbench does.
	var warm sync.WaitGroup
	warmErr := make([]error, threads)
	for i := range threads {
		warm.Add(1)
		go func() { defer warm.Done(); warmErr[i] = pointSelect(ctx, stmt, rows) }()
	}
	warm.Wait()
	if err := errors.Join(warmErr...); err != nil {
		return res, err
	}
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	lat := make([][]time.Duration, threads)
	errs := make([]error, threads)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat[i], errs[i] = pointSelectWorker(runCtx, stmt, rows)
		}()
	}
	wg.Wait()
	res.TotalTime = time.Since(start)
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return res, errors.New("no queries completed")
	}
	slices.Sort(all)
	res.Queries = int64(len(all))
	res.QPS = float64(len(all)) / res.TotalTime.Seconds()
	res.P99 = all[(len(all)*99+99)/100-1]
	return res, nil
}

func pointSelect(ctx context.Context, stmt *sql.Stmt, rows int) error {
	var c string
	return stmt.QueryRowContext(ctx, rand.IntN(rows)+1).Scan(&c)
}

// pointSelectWorker runs queries until ctx ends. Its latencies slice is
// bounded by the run time (about 100 k entries per second at most).
func pointSelectWorker(ctx context.Context, stmt *sql.Stmt, rows int) ([]time.Duration, error) {
	var lat []time.Duration
	for ctx.Err() == nil {
		t := time.Now()
		if err := pointSelect(ctx, stmt, rows); err != nil {
			if ctx.Err() != nil {
				break // the run ended mid-query: not an error
			}
			return lat, err
		}
		lat = append(lat, time.Since(t))
	}
	return lat, nil
}

// mysqlWorkload measures point selects through every contestant, thread
// count by thread count, contestants in rotated order.
func (r *runner) mysqlWorkload(ctx context.Context, round int, order []contestant) error {
	lives, err := r.launchAll(ctx, order, r.db.Port)
	defer r.shutdownAll(lives)
	if err != nil {
		return err
	}
	lives = r.provenTLS(ctx, round, lives)
	for _, threads := range r.cfg.threads {
		for _, l := range lives {
			res, before, after, err := r.pointSelectsWithCPU(ctx, round, l, threads)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				r.fail(round, l.c, fmt.Sprintf("mysql %d threads", threads), err)
				continue
			}
			t := strconv.Itoa(threads)
			m := map[string]float64{
				"mysql.qps." + t: res.QPS,
				"mysql.p99." + t: float64(res.P99) / float64(time.Millisecond),
			}
			// CPU per query of each party, and of the three together; the
			// forwarder's is zero for direct.
			fwd := after.CPU - before.CPU
			cpu := ""
			for _, part := range []struct {
				key, log string // log "": recorded, not logged
				used     time.Duration
				measured bool
			}{
				{"cpu", "cpu", fwd, l.c.isForwarder()},
				{"clientcpu", "client", res.ClientCPU, res.ClientCPU > 0},
				{"servercpu", "server", res.ServerCPU, res.ServerCPU > 0},
				{"allcpu", "", fwd + res.ClientCPU + res.ServerCPU, res.ClientCPU > 0 && res.ServerCPU > 0},
			} {
				if !part.measured {
					continue
				}
				perQuery := float64(part.used) / float64(time.Microsecond) / float64(res.Queries)
				m["mysql."+part.key+"."+t] = perQuery
				if part.log != "" {
					cpu += fmt.Sprintf(" %s=%.1fµs/query", part.log, perQuery)
				}
			}
			if r.cfg.place != nil && res.ClientCPU > 0 && res.ServerCPU > 0 {
				// Which side's CPUs limited qps: the one near 100%.
				m["mysql.dbbusy."+t] = busyPercent(res.ServerCPU, res.Elapsed, r.cfg.place.db.Count())
				m["mysql.taskbusy."+t] = busyPercent(fwd+res.ClientCPU, res.Elapsed, r.cfg.place.task.Count())
			}
			if res.Errors > 0 || res.Reconnect > 0 {
				r.note(fmt.Sprintf("round %d, %s, %d threads: %d ignored errors, %d reconnects", round, l.c.name, threads, res.Errors, res.Reconnect))
			}
			r.record(round, l.c, m)
			r.progress("mysql round %d %-16s threads=%-2d qps=%.0f p99=%.2fms%s", round, l.c.name, threads, res.QPS, float64(res.P99)/1e6, cpu)
		}
	}
	return nil
}

// pointSelectsWithCPU runs one measurement, bracketed by readings of the
// forwarder's CPU. A failed run is retried once: socat listens with a
// backlog of 5, and when 32 clients connect at once the overflowing
// handshakes can stall past sysbench's 30 s thread start-up limit (each
// stall costs 30 s, so only once). Each retry is noted in the report.
func (r *runner) pointSelectsWithCPU(ctx context.Context, round int, l *live, threads int) (res sysbenchResult, before, after treeUsage, err error) {
	const attempts = 2
	for attempt := 1; attempt <= attempts; attempt++ {
		if before, err = l.usage(ctx); err != nil {
			return
		}
		server, serr := readProcStat("/proc", r.db.Pid())
		start := time.Now()
		res, err = r.pointSelects(ctx, l, threads)
		if ctx.Err() != nil {
			return res, before, after, ctx.Err()
		}
		if err == nil {
			if server2, serr2 := readProcStat("/proc", r.db.Pid()); serr == nil && serr2 == nil {
				res.ServerCPU = time.Duration(server2.OwnAndReaped()-server.OwnAndReaped()) * time.Second / clockTicks
				res.Elapsed = time.Since(start)
			}
			after, err = l.usage(ctx)
			return
		}
		if attempt < attempts {
			r.note(fmt.Sprintf("round %d, %s, %d threads: attempt %d failed, retried: %v", round, l.c.name, threads, attempt, err))
			r.log.Warn("retrying MySQL measurement", "round", round, "contestant", l.c.name, "threads", threads, "err", err)
		}
	}
	return
}
