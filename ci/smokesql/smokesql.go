// Package smokesql holds the SQL round trip that proves a sidecar image forwards
// real MySQL traffic, and the check of its result. The Dagger smoke pipeline
// and the Docker image tests both run it through the `mysql` (or `mariadb`)
// command-line client in batch mode, so both paths check the same thing.
package smokesql

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"strings"
)

// payload is large enough to span many TCP segments and MySQL packets.
const (
	payloadUnit  = "sidecar-smoke:"
	payloadCount = 16384
)

// SQL writes a row of a few hundred KB, then reads back its length and MD5.
// The client must be run with --batch --skip-column-names (-N -B).
const SQL = `CREATE DATABASE IF NOT EXISTS sidecar_smoke;
CREATE TABLE IF NOT EXISTS sidecar_smoke.roundtrip (id INT PRIMARY KEY, v LONGTEXT NOT NULL);
REPLACE INTO sidecar_smoke.roundtrip VALUES (1, REPEAT('sidecar-smoke:', 16384));
SELECT CONCAT('smoke ', LENGTH(v), ' ', MD5(v)) FROM sidecar_smoke.roundtrip WHERE id = 1;`

// ClientArgs returns the batch-mode client command line (without host,
// port and credentials) that runs SQL: `mysql ClientArgs()... -e SQL`. A
// new slice each call, so callers may append to it.
func ClientArgs() []string { return []string{"--batch", "--skip-column-names"} }

// Expected is the line the final SELECT prints when the row came back intact.
func Expected() string {
	v := strings.Repeat(payloadUnit, payloadCount)
	sum := md5.Sum([]byte(v))
	return fmt.Sprintf("smoke %d %s", len(v), hex.EncodeToString(sum[:]))
}

// Check returns nil when the client output contains the expected line, and
// otherwise an error quoting what came back.
func Check(output string) error {
	want := Expected()
	for _, line := range strings.Split(output, "\n") {
		if strings.TrimSpace(line) == want {
			return nil
		}
	}
	got := strings.TrimSpace(output)
	if len(got) > 500 {
		got = got[:500] + "…"
	}
	return fmt.Errorf("smoke check: want line %q from the SQL round trip, got %q", want, got)
}
