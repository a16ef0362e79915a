package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"
)

// mysqlConnRate opens and closes MySQL sessions with workers concurrent
// clients for d: each connects, logs in (TLS included, for a TLS
// contestant) and quits.
func mysqlConnRate(ctx context.Context, conn driver.Connector, workers int, d time.Duration) connRateResult {
	return repeatFor(ctx, workers, d, func(ctx context.Context, _ []byte) error {
		c, err := conn.Connect(ctx)
		if err != nil {
			return err
		}
		return c.Close() // COM_QUIT, then the socket closes
	})
}

// mysqlConnWorkload measures new MySQL sessions per second (connect,
// authenticate, quit) through every contestant.
func (r *runner) mysqlConnWorkload(ctx context.Context, round int, order []contestant) error {
	lives, err := r.launchAll(ctx, order, r.db.Port)
	defer r.shutdownAll(lives)
	if err != nil {
		return err
	}
	for _, l := range lives {
		conn, err := r.connector(l.c, l.port)
		if err != nil {
			return err
		}
		before, err := l.usage(ctx)
		if err != nil {
			r.fail(round, l.c, "mysql-conns", err)
			continue
		}
		res := mysqlConnRate(ctx, conn, r.cfg.connDialers, r.cfg.connTime)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		after, err := l.usage(ctx)
		if err != nil {
			r.fail(round, l.c, "mysql-conns", err)
			continue
		}
		if res.Errors > 0 {
			r.note(fmt.Sprintf("round %d, %s, new MySQL sessions: %d of %d failed, first: %v", round, l.c.name, res.Errors, res.Errors+res.Conns, res.First))
		}
		if res.Conns == 0 {
			r.fail(round, l.c, "mysql-conns", fmt.Errorf("no session completed: %v", res.First))
			continue
		}
		m := map[string]float64{"mconn.rate": res.Rate}
		extra := ""
		if l.c.isForwarder() {
			m["mconn.cpu"] = float64(after.CPU-before.CPU) / float64(time.Microsecond) / float64(res.Conns)
			extra = fmt.Sprintf(" cpu=%.0fµs/session", m["mconn.cpu"])
		}
		r.record(round, l.c, m)
		r.progress("mysql-conns round %d %-16s %.0f sessions/s errors=%d%s", round, l.c.name, res.Rate, res.Errors, extra)
	}
	return nil
}

// bulkValue is the size of each value the MySQL bulk workload reads: big
// enough that the bytes, not the round trips, set the pace; below the
// server's max_allowed_packet (64 MiB in testmysql).
const bulkValue = 4 << 20

// mysqlBulk reads bulkValue-byte results over one session for d and
// returns the bytes received.
func mysqlBulk(ctx context.Context, conn driver.Connector, d time.Duration) (bulkResult, error) {
	db := sql.OpenDB(conn)
	defer db.Close()
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil { // log in before the clock starts
		return bulkResult{}, err
	}
	q := fmt.Sprintf("SELECT REPEAT('x', %d)", bulkValue)
	var total int64
	start := time.Now()
	for time.Since(start) < d {
		rows, err := db.QueryContext(ctx, q)
		if err != nil {
			return bulkResult{}, err
		}
		for rows.Next() {
			var v sql.RawBytes
			if err := rows.Scan(&v); err != nil {
				rows.Close()
				return bulkResult{}, err
			}
			total += int64(len(v))
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return bulkResult{}, err
		}
	}
	secs := time.Since(start).Seconds()
	return bulkResult{Bytes: total, Seconds: secs, Gbps: float64(total) * 8 / secs / 1e9}, nil
}

// mysqlBulkWorkload measures large results (server to app) through every
// contestant: the bulk figure that TLS contestants can run too.
func (r *runner) mysqlBulkWorkload(ctx context.Context, round int, order []contestant) error {
	lives, err := r.launchAll(ctx, order, r.db.Port)
	defer r.shutdownAll(lives)
	if err != nil {
		return err
	}
	for _, l := range lives {
		conn, err := r.connector(l.c, l.port)
		if err != nil {
			return err
		}
		before, err := l.usage(ctx)
		if err != nil {
			r.fail(round, l.c, "mysql-bulk", err)
			continue
		}
		res, err := mysqlBulk(ctx, conn, r.cfg.bulkTime)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			r.fail(round, l.c, "mysql-bulk", err)
			continue
		}
		after, err := l.usage(ctx)
		if err != nil {
			r.fail(round, l.c, "mysql-bulk", err)
			continue
		}
		m := map[string]float64{"mbulk.gbps": res.Gbps}
		cpu := ""
		if l.c.isForwarder() {
			m["mbulk.cpu"] = (after.CPU - before.CPU).Seconds() / (float64(res.Bytes) / 1e9)
			cpu = fmt.Sprintf(" cpu=%.3fs/GB", m["mbulk.cpu"])
		}
		r.record(round, l.c, m)
		r.progress("mysql-bulk round %d %-16s %.2f Gbit/s%s", round, l.c.name, res.Gbps, cpu)
	}
	return nil
}
