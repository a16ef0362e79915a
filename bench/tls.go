//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-sql-driver/mysql"

	"github.com/example/sidecar/internal/testmysql"
)

// setUpTLS writes the test CA and certificates, the app-tls client's
// configuration and sysbench's working directory, and returns the mariadbd
// options that enable TLS. The server still takes plaintext logins, so
// every contestant measures against the same server and table.
func (r *runner) setUpTLS(tmp string) ([]string, error) {
	dir := filepath.Join(tmp, "tls")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	files, err := testmysql.WriteTLSFiles(dir, testmysql.TLSOptions{})
	if err != nil {
		return nil, fmt.Errorf("write the TLS test certificates: %w", err)
	}
	r.tlsFiles = files
	r.tlsClient, err = appTLSConfig(files.CA)
	if err != nil {
		return nil, err
	}
	// sysbench 1.0's --mysql-ssl=on loads these fixed names from its
	// working directory; it sends the client certificate, which MariaDB
	// accepts (no user requires X509).
	r.sysbenchDir = filepath.Join(tmp, "sysbench-tls")
	if err := os.Mkdir(r.sysbenchDir, 0o700); err != nil {
		return nil, err
	}
	for name, from := range map[string]string{"cacert.pem": files.CA, "client-cert.pem": files.ClientCert, "client-key.pem": files.ClientKey} {
		if err := os.Symlink(from, filepath.Join(r.sysbenchDir, name)); err != nil {
			return nil, err
		}
	}
	return files.ServerArgs(), nil
}

// appTLSConfig is what an app doing its own TLS uses: verify-identity
// against the test CA, for the certificate's name (127.0.0.1 is dialed, so
// nothing is resolved). Like go-sql-driver's tls=true and libmysqlclient's
// defaults, it keeps no session cache: every connection is a full handshake.
func appTLSConfig(caFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate", caFile)
	}
	return &tls.Config{RootCAs: pool, ServerName: testmysql.ClusterName, MinVersion: tls.VersionTLS12}, nil
}

// connector is a go-sql-driver connector to database test through port,
// doing TLS itself for a clientTLS contestant.
func (r *runner) connector(c contestant, port int) (driver.Connector, error) {
	cfg, err := mysql.ParseDSN(r.db.DSN(fmt.Sprintf("127.0.0.1:%d", port), "test"))
	if err != nil {
		return nil, err
	}
	if c.clientTLS {
		if r.tlsClient == nil {
			return nil, fmt.Errorf("%s: no TLS client configuration", c.name)
		}
		cfg.TLS = r.tlsClient
	}
	return mysql.NewConnector(cfg)
}

// checkTLS proves that a TLS contestant's session reaches the server over
// TLS (the server reports its TLS version), so a misconfiguration cannot
// pass for a fast TLS figure.
func (r *runner) checkTLS(ctx context.Context, l *live) error {
	if !l.c.mysqlOnly() {
		return nil
	}
	conn, err := r.connector(l.c, l.port)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	var name, version string
	if err := db.QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Ssl_version'").Scan(&name, &version); err != nil {
		return fmt.Errorf("check TLS through %s: %w", l.c.name, err)
	}
	if version == "" {
		return fmt.Errorf("%s: the server saw a plaintext session (empty Ssl_version)", l.c.name)
	}
	return nil
}

// provenTLS keeps the contestants whose TLS checks out; the others are
// noted and left out of this workload.
func (r *runner) provenTLS(ctx context.Context, round int, lives []*live) []*live {
	var ok []*live
	for _, l := range lives {
		if err := r.checkTLS(ctx, l); err != nil {
			r.fail(round, l.c, "TLS check", err)
			continue
		}
		ok = append(ok, l)
	}
	return ok
}
