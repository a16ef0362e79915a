package smokesql

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	good := Expected()
	for _, tc := range []struct {
		name, out string
		ok        bool
	}{
		{"exact", good + "\n", true},
		{"with warnings around", "mysql: [Warning] Using a password\n" + good + "\n", true},
		{"empty", "", false},
		{"wrong length", strings.Replace(good, "smoke 229376", "smoke 229375", 1), false},
		{"truncated md5", good[:len(good)-1], false},
		{"error text", "ERROR 2013 (HY000): Lost connection", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.out)
			if (err == nil) != tc.ok {
				t.Fatalf("Check(%q) = %v, want ok=%v", tc.out, err, tc.ok)
			}
		})
	}
}

func TestSQLMatchesExpected(t *testing.T) {
	// The SQL builds the payload server-side; keep it in step with Expected.
	if !strings.Contains(SQL, "REPEAT('"+payloadUnit+"', 16384)") || payloadCount != 16384 {
		t.Fatal("SQL payload and Expected payload differ")
	}
	if !strings.HasPrefix(Expected(), "smoke 229376 ") {
		t.Fatalf("Expected() = %q", Expected())
	}
}

func TestClientArgsIsACopy(t *testing.T) {
	a := ClientArgs()
	a[0] = "--changed"
	if b := ClientArgs(); b[0] != "--batch" || b[1] != "--skip-column-names" {
		t.Fatalf("ClientArgs() = %v after a caller changed its copy", b)
	}
}
