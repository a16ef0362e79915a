package testmysql

import (
	"context"
	"database/sql"
	"testing"
)

func TestStartAndQuery(t *testing.T) {
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
