//go:build linux

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
	var res connRateResult
	return r.eachMySQL(ctx, round, order, "mysql-conns", func(l *live, conn driver.Connector) error {
		res = mysqlConnRate(ctx, conn, r.cfg.connDialers, r.cfg.connTime)
		return nil
	}, func(l *live, used time.Duration) error {
		return r.recordRate(round, l, res, used, "mysql-conns", "mconn", "session")
	})
}

// eachMySQL puts every contestant in front of the MySQL server and runs
// eachLive with a connector for each one's client.
func (r *runner) eachMySQL(ctx context.Context, round int, order []contestant, what string,
	measure func(l *live, conn driver.Connector) error, result func(l *live, cpu time.Duration) error) error {
	lives, err := r.launchAll(ctx, order, r.db.Port)
	defer r.shutdownAll(lives)
	if err != nil {
		return err
	}
	return r.eachLive(ctx, round, lives, what, func(l *live) error {
		conn, err := r.connector(l.c, l.port)
		if err != nil {
			return err
		}
		return measure(l, conn)
	}, result)
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
	var res bulkResult
	return r.eachMySQL(ctx, round, order, "mysql-bulk", func(l *live, conn driver.Connector) (err error) {
		res, err = mysqlBulk(ctx, conn, r.cfg.bulkTime)
		return err
	}, func(l *live, used time.Duration) error {
		return r.recordBulk(round, l, res, used, "mysql-bulk", "mbulk")
	})
}
