package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testmysql"
)

// driverSuiteSkip are go-sql-driver's tests left out of both runs:
// TestConnectorReturnsTimeout dials a public address; TestTLS and
// TestIssue1567 ask for TLS from the client, which the sidecar does not
// offer to the app (docs/tls.md), so they differ by design.
const driverSuiteSkip = "^(TestConnectorReturnsTimeout|TestTLS|TestIssue1567)$"

// go-sql-driver/mysql's own test suite gives the same pass/fail set against
// the TLS-only MariaDB directly (with TLS) and through the sidecar in
// verify-identity mode (the driver in plaintext).
func TestGoSQLDriverSuiteThroughTLSSidecar(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: go-sql-driver's suite runs twice (about a minute)")
	}
	t.Parallel()
	srv, files := testmysql.StartTLS(t, testmysql.TLSOptions{})
	root, err := sql.Open("mysql", "root@unix("+srv.Socket+")/")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"CREATE DATABASE gotest", "CREATE DATABASE gotest_sidecar"} {
		if _, err := root.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	_ = root.Close()
	suite := copyDriverSource(t)
	via := tlsSidecar(t, srv, map[string]string{"TARGET_TLS_CA": files.CA})

	// The suite builds its DSN as user:pass@tcp(addr)/dbname?timeout=30s;
	// parameters ride in dbname, and connectionAttributes swallows the
	// trailing "?timeout=30s" harmlessly. Both runs go at once, each in
	// its own database.
	got := runDriverSuites(t, suite,
		suiteRun{srv.User, srv.Password, srv.Addr, "gotest?tls=skip-verify&connectionAttributes=suite:direct"},
		suiteRun{srv.User, srv.Password, via, "gotest_sidecar?tls=false&connectionAttributes=suite:sidecar"})
	direct, sidecar := got[0], got[1]
	compareSuites(t, direct, sidecar, nil)
}

// suiteDifference is an outcome that must differ, and why.
type suiteDifference struct{ direct, sidecar, why string }

// compareSuites fails unless both runs have the same tests with the same
// outcomes, except the differences listed (which must occur exactly), and
// enough passed to show the suite really ran.
func compareSuites(t *testing.T, direct, sidecar map[string]string, differ map[string]suiteDifference) {
	t.Helper()
	passed := 0
	for name, d := range direct {
		if d == "pass" {
			passed++
		}
		if want, ok := differ[name]; ok {
			if d != want.direct || sidecar[name] != want.sidecar {
				t.Errorf("%s: %s directly, %s through the sidecar; expected %s and %s (%s)", name, d, sidecar[name], want.direct, want.sidecar, want.why)
			}
			continue
		}
		if s := sidecar[name]; s != d {
			t.Errorf("%s: %s directly, %s through the sidecar", name, d, s)
		}
	}
	for name, s := range sidecar {
		if _, ok := direct[name]; !ok {
			t.Errorf("%s ran only through the sidecar (%s)", name, s)
		}
	}
	if passed < 100 {
		t.Fatalf("only %d of go-sql-driver's tests passed directly: the suite did not really run against the server", passed)
	}
	t.Logf("go-sql-driver suite: %d tests, %d passed, the same directly and through the sidecar (%d expected differences)", len(direct), passed, len(differ))
}

// copyDriverSource copies go-sql-driver's module (read-only in the module
// cache) to a directory where its tests can build.
func copyDriverSource(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/go-sql-driver/mysql").Output()
	if err != nil {
		t.Fatalf("go list -m github.com/go-sql-driver/mysql: %v", err)
	}
	dst := filepath.Join(t.TempDir(), "mysql")
	if out, err := exec.Command("cp", "-r", strings.TrimSpace(string(out)), dst).CombinedOutput(); err != nil {
		t.Fatalf("copy go-sql-driver: %v\n%s", err, out)
	}
	if out, err := exec.Command("chmod", "-R", "u+w", dst).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v\n%s", err, out)
	}
	return dst
}

// suiteRun is one run of the suite: who logs in where.
type suiteRun struct{ user, password, addr, dbname string }

// runDriverSuites runs the suite once per run, at the same time (each
// against its own database), and returns each run's top-level outcomes
// (pass, fail or skip), in order.
func runDriverSuites(t *testing.T, dir string, runs ...suiteRun) []map[string]string {
	t.Helper()
	type outcome struct {
		got map[string]string
		err error
	}
	outs := make([]outcome, len(runs))
	var wg sync.WaitGroup
	for i, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i].got, outs[i].err = driverSuite(dir, r)
		}()
	}
	wg.Wait()
	var all []map[string]string
	for i, o := range outs {
		if o.err != nil {
			t.Fatal(o.err)
		}
		var failed []string
		for name, r := range o.got {
			if r == "fail" {
				failed = append(failed, name)
			}
		}
		sort.Strings(failed)
		t.Logf("suite against %s: %d tests, failed: %v", runs[i].addr, len(o.got), failed)
		all = append(all, o.got)
	}
	return all
}

func driverSuite(dir string, r suiteRun) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-json", "-count=1", "-skip", driverSuiteSkip, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "MYSQL_TEST_USER="+r.user, "MYSQL_TEST_PASS="+r.password,
		"MYSQL_TEST_PROT=tcp", "MYSQL_TEST_ADDR="+r.addr, "MYSQL_TEST_DBNAME="+r.dbname)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, _ := cmd.Output() // failing tests are an outcome, not an error
	got := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev struct{ Action, Test string }
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Test == "" || strings.Contains(ev.Test, "/") {
			continue
		}
		switch ev.Action {
		case "pass", "fail", "skip":
			got[ev.Test] = ev.Action
		}
	}
	if len(got) == 0 {
		return nil, fmt.Errorf("go-sql-driver's suite against %s reported no tests:\n%s\n%s", r.addr, stderr.String(), out)
	}
	return got, nil
}
