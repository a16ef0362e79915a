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

// driverSuiteSkip is go-sql-driver's test left out of both runs: it dials
// a public address.
const driverSuiteSkip = "^TestConnectorReturnsTimeout$"

// tlsFromTheApp are the suite's tests that ask for TLS from the client,
// which the sidecar does not offer the app (docs/tls.md): they pass
// directly and fail through the sidecar, by design.
var tlsFromTheApp = map[string]suiteDifference{
	"TestTLS":       {direct: "pass", sidecar: "fail", why: "the driver asks the sidecar for TLS"},
	"TestIssue1567": {direct: "pass", sidecar: "fail", why: "the driver asks the sidecar for TLS"},
}

// go-sql-driver/mysql's own test suite gives the same pass/fail set against
// the TLS-only MariaDB directly (with TLS) and through the sidecar in
// verify-identity mode (the driver in plaintext).
func TestGoSQLDriverSuiteThroughTLSSidecar(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: go-sql-driver's whole suite, directly and through the sidecar (about a minute); TestTLSThroughSidecar and TestChangeUserAndResetConnectionThroughTLS still use go-sql-driver through it")
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
	suite := driverSuiteBinary(t)
	via := tlsSidecar(t, srv, map[string]string{"TARGET_TLS_CA": files.CA})

	// The suite builds its DSN as user:pass@tcp(addr)/dbname?timeout=30s;
	// parameters ride in dbname, and connectionAttributes swallows the
	// trailing "?timeout=30s" harmlessly. Both runs go at once, each in
	// its own database.
	compareDriverSuites(t, suite,
		suiteRun{user: srv.User, password: srv.Password, addr: srv.Addr, dbname: "gotest?tls=skip-verify&connectionAttributes=suite:direct"},
		suiteRun{user: srv.User, password: srv.Password, addr: via, dbname: "gotest_sidecar?tls=false&connectionAttributes=suite:sidecar"}, tlsFromTheApp)
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

// The driver suite's test binary, built once for both suites (building
// it takes longer than some of its runs).
var (
	suiteOnce  sync.Once
	suiteBin   string
	suiteError error
)

// driverSuiteBinary builds go-sql-driver's tests (go test -c) at the
// version this module requires, and returns the binary. Built in place in
// the module cache, where its sources never move, the compiled package
// stays in the build cache from one run to the next.
func driverSuiteBinary(t *testing.T) string {
	t.Helper()
	suiteOnce.Do(func() {
		bin := filepath.Join(binDir, "go-sql-driver.test")
		out, err := exec.Command("go", "test", "-c", "-o", bin, "github.com/go-sql-driver/mysql").CombinedOutput()
		if err != nil {
			suiteError = fmt.Errorf("go test -c github.com/go-sql-driver/mysql: %w\n%s", err, out)
			return
		}
		suiteBin = bin
	})
	if suiteError != nil {
		t.Fatal(suiteError)
	}
	return suiteBin
}

// suiteRun is one run of the suite: who logs in where.
type suiteRun struct {
	user, password, addr, dbname string
	only                         []string // run just these tests; nil = all
}

// compareDriverSuites runs the suite directly and through the sidecar and
// compares the outcomes (compareSuites). Tests whose outcomes differ are
// run once more, one run after the other, and their second outcomes
// count: some of the suite's tests time cancellations and go wrong on a
// loaded machine, directly as well as through the sidecar. A real
// difference differs twice.
func compareDriverSuites(t *testing.T, bin string, direct, sidecar suiteRun, differ map[string]suiteDifference) {
	t.Helper()
	got := runDriverSuites(t, bin, direct, sidecar)
	var again []string
	for name, d := range got[0] {
		if _, expected := differ[name]; !expected && got[1][name] != d {
			again = append(again, name)
		}
	}
	if len(again) > 0 && len(again) <= 5 {
		sort.Strings(again)
		t.Logf("outcomes differ for %v: running them again, one run after the other", again)
		direct.only, sidecar.only = again, again
		for i, r := range []suiteRun{direct, sidecar} {
			second, err := driverSuite(bin, r)
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range again {
				got[i][name] = second[name]
			}
		}
	}
	compareSuites(t, got[0], got[1], differ)
}

// runDriverSuites runs the suite once per run, at the same time (each
// against its own database), and returns each run's top-level outcomes
// (pass, fail or skip), in order.
func runDriverSuites(t *testing.T, bin string, runs ...suiteRun) []map[string]string {
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
			outs[i].got, outs[i].err = driverSuite(bin, r)
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

// driverSuite runs the suite's binary bin (driverSuiteBinary) through
// test2json, as go test -json would.
func driverSuite(bin string, r suiteRun) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := []string{"tool", "test2json", "-t", bin, "-test.v=test2json", "-test.count=1", "-test.skip", driverSuiteSkip}
	if r.only != nil {
		args = append(args, "-test.run", "^("+strings.Join(r.only, "|")+")$")
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = filepath.Dir(bin)
	cmd.Env = append(os.Environ(), "MYSQL_TEST_USER="+r.user, "MYSQL_TEST_PASS="+r.password,
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
