// Package testopenssl runs `openssl s_server` for TLS 1.3 on loopback, for
// tests of what only a real peer can do: Go's TLS server cannot send a
// KeyUpdate.
package testopenssl

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testenv"
	"github.com/example/sidecar/internal/testkit"
)

// safety bounds every wait; reaching it means a hang.
const safety = 30 * time.Second

// Server is s_server serving one connection, with a certificate for the
// name "db".
type Server struct {
	Addr  string
	Roots *x509.CertPool // trusts it as "db"
	p     *testkit.Process
	stdin io.Writer
}

// Start starts the server; without openssl the test skips, or fails in CI.
func Start(t *testing.T) *Server {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		testenv.Unavailable(t, "openssl not found (install Debian's openssl package)")
	}
	cert, roots := testkit.ServerTLS(t, "db")
	dir := t.TempDir()
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for file, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: cert.Certificate[0]}, keyFile: {Type: "PRIVATE KEY", Bytes: key}} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("openssl", "s_server", "-tls1_3", "-accept", "127.0.0.1:0", "-naccept", "1", "-cert", certFile, "-key", keyFile)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{p: testkit.Start(t, cmd), stdin: stdin, Roots: roots}
	s.WaitFor(t, "ACCEPT")
	m := regexp.MustCompile(`ACCEPT (127\.0\.0\.1:[0-9]+)`).FindStringSubmatch(s.p.Output.String())
	if m == nil || strings.HasSuffix(m[1], ":0") {
		t.Fatalf("openssl s_server's address not found in:\n%s", s.p.Output)
	}
	s.Addr = m[1]
	return s
}

// Say has the server act on line: K sends a KeyUpdate with
// update_requested, Q closes, any other line is sent as data. The server
// takes what one read of its stdin returns as one line, so a caller waits
// for a line's effect before saying the next.
func (s *Server) Say(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(s.stdin, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

// WaitFor waits until the server's output holds text.
func (s *Server) WaitFor(t *testing.T, text string) {
	t.Helper()
	for deadline := time.Now().Add(safety); !strings.Contains(s.p.Output.String(), text); time.Sleep(5 * time.Millisecond) {
		select {
		case <-s.p.Done():
			t.Fatalf("openssl s_server exited (%v) before printing %q:\n%s", s.p.Err(), text, s.p.Output)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("openssl s_server did not print %q within %v:\n%s", text, safety, s.p.Output)
		}
	}
}
