package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/internal/testmysql"
)

// A failover through a verify-identity sidecar, against MariaDB: the
// writer behind the endpoint changes (another server, key and CA) and the
// old one dies with sessions open. The open sessions end at once rather
// than hang, and new ones reach the new writer, verified, with no refusal.
// The fixture's MariaDB resumes no TLS session (Ssl_sessions_reused stays
// 0): the cached session's part is mysqltls's
// TestSessionOfTheOldWriterAfterFailover, on a server that does.
func TestFailoverToAnotherWriterThroughTLS(t *testing.T) {
	t.Parallel()
	oldW, oldFiles := testmysql.StartTLS(t, testmysql.TLSOptions{})
	newW, newFiles := testmysql.StartTLS(t, testmysql.TLSOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The app's credentials work on either writer, as on one cluster.
	root, err := sql.Open("mysql", "root@unix("+newW.Socket+")/")
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, err := root.ExecContext(ctx, fmt.Sprintf("ALTER USER '%s'@'%%' IDENTIFIED BY '%s'", newW.User, oldW.Password)); err != nil {
		t.Fatal(err)
	}
	cas := filepath.Join(t.TempDir(), "cas.pem")
	var pem []byte
	for _, f := range []string{oldFiles.CA, newFiles.CA} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pem = append(pem, b...)
	}
	if err := os.WriteFile(cas, pem, 0o600); err != nil {
		t.Fatal(err)
	}

	var writer atomic.Value // the endpoint: where a new connection lands
	writer.Store(oldW.Addr)
	endpoint := testkit.Serve(t, func(c net.Conn) {
		defer c.Close()
		up, err := net.Dial("tcp", writer.Load().(string))
		if err != nil {
			return // refused, as a dead writer's address is
		}
		defer up.Close()
		done := make(chan struct{}, 2)
		go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
		go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
		<-done // either side ending ends both, as a dead host's connection does
	})
	port := strconv.Itoa(endpoint.Addr().(*net.TCPAddr).Port)
	listen := strconv.Itoa(testkit.FreePort(t))
	env := map[string]string{
		"TARGET_HOST": "127.0.0.1", "TARGET_PORT": port, "LISTEN_ADDR": "127.0.0.1", "LISTEN_PORT": listen,
		"ADMIN_PORT": strconv.Itoa(testkit.FreePort(t)), "TARGET_TLS": "verify-identity",
		"TARGET_SERVER_NAME": testmysql.ClusterName, "TARGET_TLS_CA": cas,
	}
	_, _, logs := runAsync(t, env)
	waitHealthy(t, env, true)
	pool := openVia(t, oldW, "127.0.0.1:"+listen, "", nil)

	serverPort := func(ctx context.Context, c *sql.Conn) (int, error) {
		var p int
		err := c.QueryRowContext(ctx, "SELECT @@port").Scan(&p)
		return p, err
	}
	var held []*sql.Conn
	for range 3 {
		c, err := pool.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if p, err := serverPort(ctx, c); err != nil || p != oldW.Port {
			t.Fatalf("before the failover: @@port %d, %v; want the old writer's %d", p, err, oldW.Port)
		}
		held = append(held, c)
	}

	writer.Store(newW.Addr)
	oldW.Stop()
	for i, c := range held {
		qctx, qcancel := context.WithTimeout(ctx, 20*time.Second)
		_, err := serverPort(qctx, c)
		qcancel()
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("held connection %d after its writer died: %v; want the session ended, not hung or alive", i, err)
		}
	}
	for i := range 4 {
		c, err := pool.Conn(ctx)
		if err != nil {
			t.Fatalf("new connection %d after the failover: %v\n%s", i, err, logs)
		}
		p, err := serverPort(ctx, c)
		var v string
		verr := c.QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Ssl_version'").Scan(new(string), &v)
		_ = c.Close()
		if err != nil || p != newW.Port || verr != nil || !strings.HasPrefix(v, "TLSv1.") {
			t.Fatalf("new connection %d: @@port %d, %v, Ssl_version %q, %v; want the new writer's %d over TLS\n%s", i, p, err, v, verr, newW.Port, logs)
		}
	}
	if lines := testkit.JSONLogLines(logs.String(), "TLS login refused"); len(lines) != 0 {
		t.Errorf("logins refused during the failover: %v", lines)
	}
}
