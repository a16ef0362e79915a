package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/internal/testmysql"
)

// End to end: the built binary, configured only by environment, in front of
// a real MariaDB, used by a real MySQL client, on each data path.
func TestEndToEndMariaDB(t *testing.T) {
	t.Parallel() // its own server; the data paths run one after the other, as the counters need
	srv := testmysql.Start(t)
	for _, dataPath := range []string{"epoll", "portable"} {
		t.Run(dataPath, func(t *testing.T) { endToEnd(t, srv, dataPath) })
	}
}

func endToEnd(t *testing.T, srv *testmysql.Server, dataPath string) {
	listen := strconv.Itoa(testkit.FreePort(t))
	env := map[string]string{
		"TARGET_HOST": "localhost", // resolved through /etc/hosts, like a DNS name
		"TARGET_PORT": strconv.Itoa(srv.Port),
		"LISTEN_ADDR": "127.0.0.1",
		"LISTEN_PORT": listen,
		"ADMIN_PORT":  strconv.Itoa(testkit.FreePort(t)),
		"DATA_PATH":   dataPath,
	}
	if _, err := net.DefaultResolver.LookupHost(context.Background(), "localhost"); err != nil {
		env["TARGET_HOST"] = "127.0.0.1"
	}
	p := startBinary(t, env)
	waitHealthyBinary(t, env, p, 0)
	want := `"msg":"data path","data_path":"` + dataPath + `"`
	if !p.OutputHas(want, 10*time.Second) {
		t.Fatalf("DATA_PATH=%s: no %s log line:\n%s", dataPath, want, p.Output.String())
	}
	via := net.JoinHostPort("127.0.0.1", listen)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// A database of its own per data path; created directly, not through the sidecar.
	direct, err := sql.Open("mysql", srv.DSN(srv.Addr, ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := direct.ExecContext(ctx, "CREATE DATABASE e2e_"+dataPath); err != nil {
		t.Fatal(err)
	}
	_ = direct.Close()
	db, err := sql.Open("mysql", srv.DSN(via, "e2e_"+dataPath))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	t.Run("large row round trip", func(t *testing.T) {
		blob := make([]byte, 400<<10)
		if _, err := rand.Read(blob); err != nil {
			t.Fatal(err)
		}
		for _, q := range []string{
			"CREATE TABLE blobs (id INT PRIMARY KEY, data LONGBLOB)",
		} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO blobs VALUES (1, ?)", blob); err != nil {
			t.Fatalf("insert through the sidecar: %v", err)
		}
		var got []byte
		if err := db.QueryRowContext(ctx, "SELECT data FROM blobs WHERE id = 1").Scan(&got); err != nil {
			t.Fatalf("select through the sidecar: %v", err)
		}
		if !bytes.Equal(got, blob) {
			t.Fatalf("row read back differs: %d bytes, want %d", len(got), len(blob))
		}
	})

	t.Run("50 clients in parallel", func(t *testing.T) {
		const clients = 50
		db.SetMaxOpenConns(clients)
		if _, err := db.ExecContext(ctx, "CREATE TABLE hits (client INT, n INT)"); err != nil {
			t.Fatal(err)
		}
		var ready, wg sync.WaitGroup
		ready.Add(clients)
		errs := make(chan error, clients)
		ids := make(chan int64, clients)
		for i := range clients {
			wg.Add(1)
			go client(ctx, db, i, &ready, &wg, errs, ids)
		}
		wg.Wait()
		close(errs)
		close(ids)
		for err := range errs {
			t.Error(err)
		}
		distinct := map[int64]bool{}
		for id := range ids {
			distinct[id] = true
		}
		if len(distinct) != clients {
			t.Errorf("%d distinct server connections, want %d (all clients at once)", len(distinct), clients)
		}
		var rows int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM hits").Scan(&rows); err != nil || rows != clients*10 {
			t.Errorf("hits rows = %d (err %v), want %d", rows, err, clients*10)
		}
	})

	_ = db.Close() // no pooled connection may open or close during the count below

	t.Run("health checks never reach the database", func(t *testing.T) {
		before, err := srv.GlobalStatus(ctx, "Connections")
		if err != nil {
			t.Fatal(err)
		}
		for range 20 {
			if code := healthcheckBinary(t, env); code != 0 {
				t.Fatalf("healthcheck exit %d", code)
			}
		}
		after, err := srv.GlobalStatus(ctx, "Connections")
		if err != nil {
			t.Fatal(err)
		}
		// The second GlobalStatus call itself connects once.
		if after-before != 1 {
			t.Errorf("Connections went from %d to %d over 20 health checks; want +1 (the status query's own)", before, after)
		}
	})

	sendSignal(t, p, syscall.SIGTERM)
	if code := p.ExitCode(t, safety); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}

// client holds its own connection, waits until every client has one, then
// runs a few statements.
func client(ctx context.Context, db *sql.DB, i int, ready, wg *sync.WaitGroup, errs chan<- error, ids chan<- int64) {
	defer wg.Done()
	conn, err := db.Conn(ctx)
	ready.Done()
	if err != nil {
		errs <- fmt.Errorf("client %d: %w", i, err)
		return
	}
	defer conn.Close()
	ready.Wait()
	var id int64
	if err := conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id); err != nil {
		errs <- fmt.Errorf("client %d: %w", i, err)
		return
	}
	ids <- id
	for n := range 10 {
		if _, err := conn.ExecContext(ctx, "INSERT INTO hits VALUES (?, ?)", i, n); err != nil {
			errs <- fmt.Errorf("client %d insert %d: %w", i, n, err)
			return
		}
	}
}
