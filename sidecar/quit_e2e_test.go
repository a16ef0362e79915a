package main

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/internal/testmysql"
)

// An app that logs out (COM_QUIT, then close: what a pool does) ends its
// connection cleanly, with TLS to the database too. MariaDB closes on
// COM_QUIT, and the sidecar's close_notify that follows the app's close
// can meet a socket already closed, which answers with a reset.
func TestAppQuitThroughTLSIsClean(t *testing.T) {
	t.Parallel()
	srv, files := testmysql.StartTLS(t, testmysql.TLSOptions{})
	for _, dataPath := range []string{"epoll", "portable"} {
		t.Run(dataPath, func(t *testing.T) {
			if dataPath == "epoll" && runtime.GOOS != "linux" {
				t.Skip("the epoll data path is Linux's")
			}
			appQuits(t, srv, map[string]string{"TARGET_TLS": "verify-identity", "TARGET_SERVER_NAME": testmysql.ClusterName,
				"TARGET_TLS_CA": files.CA, "DATA_PATH": dataPath})
		})
	}
}

// appQuits logs 30 apps in and out through a sidecar with settings and
// checks that every connection ended as eof.
func appQuits(t *testing.T, srv *testmysql.Server, settings map[string]string) {
	listen, admin := strconv.Itoa(testkit.FreePort(t)), strconv.Itoa(testkit.FreePort(t))
	env := map[string]string{
		"TARGET_HOST": "127.0.0.1", "TARGET_PORT": strconv.Itoa(srv.Port),
		"LISTEN_ADDR": "127.0.0.1", "LISTEN_PORT": listen, "ADMIN_PORT": admin,
	}
	for k, v := range settings {
		env[k] = v
	}
	_, _, logs := runAsync(t, env)
	waitHealthy(t, env, true)
	const n = 30
	for range n {
		db := openVia(t, srv, "127.0.0.1:"+listen, "", nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		_ = db.Close() // COM_QUIT, then close
	}
	sample := func(reason string) string {
		return fmt.Sprintf(`sidecar_connections_closed_total{listen_port="%s",target="127.0.0.1:%d",reason="%s"}`, listen, srv.Port, reason)
	}
	for deadline := time.Now().Add(10 * time.Second); metric(t, env, sample("eof"))+metric(t, env, sample("upstream_error")) < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the sidecar did not count %d closed connections:\n%s", n, logs)
		}
	}
	if bad := metric(t, env, sample("upstream_error")); bad != 0 {
		t.Errorf("%v of %d app logouts counted as upstream_error:\n%s", bad, n, logs)
	}
}
