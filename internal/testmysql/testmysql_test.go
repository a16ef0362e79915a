package testmysql

import (
	"context"
	"database/sql"
	"testing"
)

func TestStartAndQuery(t *testing.T) {
	t.Parallel() // each test has servers of its own
	s := Start(t)
	db, err := sql.Open("mysql", s.DSN(s.Addr, "test"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT 40 + 2").Scan(&n); err != nil || n != 42 {
		t.Fatalf("SELECT 40 + 2 = %d, %v", n, err)
	}
	before, err := s.GlobalStatus(context.Background(), "Connections")
	if err != nil {
		t.Fatal(err)
	}
	after, err := s.GlobalStatus(context.Background(), "Connections")
	if err != nil {
		t.Fatal(err)
	}
	if after != before+1 {
		t.Fatalf("Connections went %d -> %d; each GlobalStatus call should add exactly one", before, after)
	}
}

// Servers start from copies of one data directory template: what one
// server writes, another never sees.
func TestServersDoNotShareData(t *testing.T) {
	t.Parallel()
	a, b := Start(t), Start(t)
	dbA, err := sql.Open("mysql", "root@unix("+a.Socket+")/")
	if err != nil {
		t.Fatal(err)
	}
	defer dbA.Close()
	if _, err := dbA.Exec("CREATE DATABASE only_in_a"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Server{b, Start(t)} {
		db, err := sql.Open("mysql", "root@unix("+s.Socket+")/")
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n int
		if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'only_in_a'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("a database created on one server shows on another (%s)", s.Addr)
		}
	}
}
