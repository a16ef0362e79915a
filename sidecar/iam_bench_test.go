package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/example/sidecar/internal/testiam"
	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/internal/testmysql"
)

// BenchmarkIAMNewConnections compares, in one run, new IAM connections
// per second (connect, log in, one query, close) through the sidecar with
// the app doing it itself: go-sql-driver signing a token per connection
// and doing its own TLS to the server. It prints both rates, their ratio,
// and the sidecar's CPU time per login. The fixture's server checks each
// token by running a verifier process, which costs both contestants the
// same; Aurora's own check is not measured here.
//
//	go test -run '^$' -bench IAMNewConnections -benchtime 1x ./sidecar/
func BenchmarkIAMNewConnections(b *testing.B) {
	f := testiam.Start(b)
	env := iamEnv(b, f, map[string]string{"LOG_LEVEL": "warning",
		"AWS_ACCESS_KEY_ID": f.Creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY": f.Creds.SecretAccessKey, "AWS_SESSION_TOKEN": f.Creds.SessionToken})
	listen := env["LISTEN_PORT"]
	cmd := exec.Command(sidecarBinary(b))
	cmd.Env = environ(env)
	p := testkit.Start(b, cmd)
	testkit.WaitListening(b, "127.0.0.1:"+listen, 10*time.Second)

	roots := x509.NewCertPool()
	pem, _ := os.ReadFile(f.TLS.CA)
	roots.AppendCertsFromPEM(pem)
	viaSidecar := func(ctx context.Context) error {
		return loginOnce(ctx, "127.0.0.1:"+listen, testiam.User, "", nil)
	}
	appSigns := func(ctx context.Context) error {
		token := f.Token(b, f.Endpoint, testiam.User, f.Creds)
		return loginOnce(ctx, f.Server.Addr, testiam.User, token, &tls.Config{RootCAs: roots, ServerName: testmysql.ClusterName})
	}
	const window, workers = 5 * time.Second, 4
	for range b.N {
		cpu0 := cpuTicks(b, p.Cmd.Process.Pid)
		sidecarRate, sidecarN := loginRate(b, viaSidecar, window, workers)
		cpu1 := cpuTicks(b, p.Cmd.Process.Pid)
		appRate, _ := loginRate(b, appSigns, window, workers)
		cpuPerLogin := time.Duration(float64(cpu1-cpu0) / clockTicks * float64(time.Second) / float64(sidecarN))
		b.ReportMetric(sidecarRate, "sidecar-logins/s")
		b.ReportMetric(appRate, "app-signs-logins/s")
		b.ReportMetric(sidecarRate/appRate, "ratio")
		b.ReportMetric(float64(cpuPerLogin.Microseconds()), "sidecar-cpu-µs/login")
		fmt.Printf("IAM new connections, %d workers, %v each: through the sidecar %.0f/s, app signing per connection %.0f/s (ratio %.2f); sidecar CPU %v per login\n",
			workers, window, sidecarRate, appRate, sidecarRate/appRate, cpuPerLogin)
	}
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times on Linux.
const clockTicks = 100

func cpuTicks(b *testing.B, pid int) int64 {
	b.Helper()
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which ends with ")": state is 3rd,
	// utime 14th, stime 15th.
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	u, _ := strconv.ParseInt(fields[11], 10, 64)
	s, _ := strconv.ParseInt(fields[12], 10, 64)
	return u + s
}

func loginOnce(ctx context.Context, addr, user, password string, tlsCfg *tls.Config) error {
	c := mysql.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr, c.DBName = user, password, "tcp", addr, testiam.Database
	c.AllowCleartextPasswords = tlsCfg != nil
	c.TLS = tlsCfg
	conn, err := mysql.NewConnector(c)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	var one int
	return db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

// loginRate runs login in workers goroutines for window and returns logins
// per second and their count; any failure fails the benchmark.
func loginRate(b *testing.B, login func(context.Context) error, window time.Duration, workers int) (float64, int64) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	var n atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := login(context.Background()); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		b.Fatal(err)
	}
	return float64(n.Load()) / time.Since(start).Seconds(), n.Load()
}
