// Package testmysql starts a throwaway MariaDB server for tests and
// benchmarks: its own data directory, a free loopback port, a user with a
// random password, and nothing shared with any system-wide server.
//
//	srv := testmysql.Start(t) // skips (fails in CI) without mariadbd
//	db, _ := sql.Open("mysql", srv.DSN(srv.Addr, "test"))
package testmysql

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/example/sidecar/internal/testenv"
	"github.com/example/sidecar/internal/testkit"
)

// Server is a running MariaDB server on loopback.
type Server struct {
	Addr     string // 127.0.0.1:port
	Port     int
	User     string // has all privileges
	Password string
	Socket   string // unix socket; connections through it bypass any forwarder

	dir  string
	proc *testkit.Process // mariadbd; nil until it started
}

// Available reports whether the MariaDB server binaries are on this machine,
// and if not, what is missing.
func Available() (ok bool, missing string) {
	for _, bin := range []string{"mariadbd", "mariadb-install-db"} {
		if _, err := lookPath(bin); err != nil {
			return false, fmt.Sprintf("%s not found (install Debian's mariadb-server package)", bin)
		}
	}
	return true, ""
}

// Start starts a server without TLS for the test and stops it when the
// test ends. Without MariaDB the test is skipped, or fails when CI is set.
func Start(t testing.TB) *Server {
	t.Helper()
	if ok, missing := Available(); !ok {
		testenv.Unavailable(t, "MariaDB: %s", missing)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// Without TLS whatever the version's default: MariaDB 11.4 and later
	// turn TLS on with a generated certificate, and the tests of a server
	// without TLS need one.
	s, err := StartServer(ctx, "--skip-ssl")
	if err != nil {
		t.Fatalf("start MariaDB: %v", err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// StartServer starts a server in a new temporary directory, with extra
// mariadbd options. Call Stop.
func StartServer(ctx context.Context, extra ...string) (*Server, error) {
	mariadbd, err := lookPath("mariadbd")
	if err != nil {
		return nil, err
	}
	installDB, err := lookPath("mariadb-install-db")
	if err != nil {
		return nil, err
	}
	// Short path: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "testmysql")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, User: "sidecar_test", Socket: filepath.Join(dir, "sock")}
	fail := func(err error) (*Server, error) {
		s.Stop()
		return nil, err
	}
	data := filepath.Join(dir, "data")
	// A temporary directory of its own: with the shared /tmp, servers that
	// several test packages start at once have failed to bootstrap
	// ("Error on delete of '/tmp/#sql-temptable-…'").
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fail(err)
	}
	template, err := dataTemplate(ctx, installDB, mariadbd)
	if err != nil {
		return fail(err)
	}
	if out, err := exec.CommandContext(ctx, "cp", "-a", template, data).CombinedOutput(); err != nil {
		return fail(fmt.Errorf("copy the data directory template %s: %w\n%s", template, err, out))
	}
	s.Port, err = testkit.LoopbackPort()
	if err != nil {
		return fail(err)
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
	cmd := exec.Command(mariadbd, "--no-defaults", "--user=root",
		"--datadir="+data, "--tmpdir="+tmp, "--socket="+s.Socket, "--pid-file="+filepath.Join(dir, "pid"),
		"--bind-address=127.0.0.1", "--port="+strconv.Itoa(s.Port),
		"--skip-name-resolve", "--skip-log-bin", "--max-connections=2000",
		"--max-allowed-packet=64M", "--innodb-buffer-pool-size=64M",
		"--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0")
	cmd.Args = append(cmd.Args, extra...)
	// Its output is read for error messages while it still writes.
	if s.proc, err = testkit.StartProcess(cmd); err != nil {
		return fail(fmt.Errorf("start mariadbd: %w", err))
	}

	pw := make([]byte, 12)
	_, _ = rand.Read(pw)
	s.Password = hex.EncodeToString(pw)
	root, err := sql.Open("mysql", "root@unix("+s.Socket+")/")
	if err != nil {
		return fail(err)
	}
	defer root.Close()
	for {
		err = root.PingContext(ctx)
		if err == nil {
			break
		}
		select {
		case <-s.proc.Done():
			return fail(fmt.Errorf("mariadbd exited: %v\n%s", s.proc.Err(), s.proc.Output))
		case <-ctx.Done():
			return fail(fmt.Errorf("mariadbd not ready: %v (last error %v)\n%s", ctx.Err(), err, s.proc.Output))
		case <-time.After(100 * time.Millisecond):
		}
	}
	for _, q := range []string{
		fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", s.User, s.Password),
		fmt.Sprintf("GRANT ALL ON *.* TO '%s'@'%%'", s.User),
		"CREATE DATABASE test",
	} {
		if _, err := root.ExecContext(ctx, q); err != nil {
			return fail(fmt.Errorf("set up MariaDB: %w", err))
		}
	}
	return s, nil
}

// DSN is a go-sql-driver/mysql DSN for the test user that connects over TCP
// to addr (the server itself, or a forwarder in front of it).
func (s *Server) DSN(addr, database string) string {
	c := mysql.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr, c.DBName = s.User, s.Password, "tcp", addr, database
	c.Timeout = 10 * time.Second
	return c.FormatDSN()
}

// GlobalStatus reads a counter from SHOW GLOBAL STATUS over the unix socket.
// Reading it opens one connection of its own, which counts in "Connections".
func (s *Server) GlobalStatus(ctx context.Context, name string) (int64, error) {
	for _, r := range name {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return 0, fmt.Errorf("status variable %q: want letters, digits and _", name)
		}
	}
	db, err := sql.Open("mysql", "root@unix("+s.Socket+")/")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var k string
	var v int64
	err = db.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE '"+name+"'").Scan(&k, &v)
	return v, err
}

// Pid is mariadbd's process id, for reading the CPU it uses.
func (s *Server) Pid() int { return s.proc.Cmd.Process.Pid }

// Stop kills the server and removes its directory.
func (s *Server) Stop() {
	if s.proc != nil {
		s.proc.Kill(10 * time.Second)
	}
	_ = os.RemoveAll(s.dir)
}

// dataTemplate returns a data directory that mariadb-install-db made for
// this MariaDB, to be copied (never used in place). mariadb-install-db
// takes seconds, most of them syncing files, and would run for every
// server; a copy takes a fraction of that. The template lives in the
// temporary directory under a name that changes with the MariaDB binaries,
// so servers started by other test processes share it; it is made aside
// and renamed into place, so nobody copies a half-made one.
func dataTemplate(ctx context.Context, installDB, mariadbd string) (string, error) {
	h := sha256.New()
	for _, bin := range []string{installDB, mariadbd} {
		st, err := os.Stat(bin)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d %d\n", bin, st.Size(), st.ModTime().UnixNano())
	}
	fmt.Fprintln(h, installOptions)
	dir := filepath.Join(os.TempDir(), "testmysql-datadir-"+hex.EncodeToString(h.Sum(nil))[:16])
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		return dir, nil
	}
	work, err := os.MkdirTemp("", "testmysql-install")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	tmp := filepath.Join(work, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return "", err
	}
	data := filepath.Join(work, "data")
	args := append([]string{"--no-defaults", "--datadir=" + data, "--tmpdir=" + tmp}, strings.Fields(installOptions)...)
	if out, err := exec.CommandContext(ctx, installDB, args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("mariadb-install-db: %w\n%s", err, out)
	}
	if err := os.Rename(data, dir); err != nil {
		// Another process made it first: use theirs.
		if st, serr := os.Stat(dir); serr == nil && st.IsDir() {
			return dir, nil
		}
		return "", fmt.Errorf("keep the data directory template: %w", err)
	}
	return dir, nil
}

// installOptions are mariadb-install-db's options besides the directories.
const installOptions = "--user=root --auth-root-authentication-method=normal --skip-test-db"

// lookPath also looks in sbin directories, which a non-root PATH may lack.
func lookPath(bin string) (string, error) {
	if p, err := exec.LookPath(bin); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(d, bin)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", errors.New(bin + " not found")
}
