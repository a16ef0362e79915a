package testmysql

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testenv"
)

// Aurora-like names: the only names in the TLS server's certificate. Tests
// connect to 127.0.0.1 and name these; nothing ever resolves them.
const (
	ClusterName   = "x.cluster-abc.us-east-1.rds.amazonaws.com"
	ClusterROName = "x.cluster-ro-abc.us-east-1.rds.amazonaws.com"
)

// TLSFiles are the PEM files of a server started by StartTLS.
type TLSFiles struct {
	CA         string // the CA that issued the server certificate
	OtherCA    string // a CA unrelated to the server
	ServerCert string
	ServerKey  string
	// A client certificate from CA, for clients that insist on sending one
	// (sysbench 1.0 with --mysql-ssl=on reads client-cert.pem and
	// client-key.pem from its working directory).
	ClientCert string
	ClientKey  string
}

// TLSOptions shape the server's certificate.
type TLSOptions struct {
	Expired bool     // the certificate expired yesterday
	Extra   []string // more mariadbd options
}

// StartTLS starts a server that requires TLS on TCP
// (require_secure_transport=ON), with a certificate for ClusterName and
// ClusterROName only (no IP address) from a CA made for the test. The
// unix socket stays open without TLS for set-up and status queries.
func StartTLS(t testing.TB, o TLSOptions) (*Server, TLSFiles) {
	t.Helper()
	if ok, missing := Available(); !ok {
		testenv.Unavailable(t, "MariaDB: %s", missing)
	}
	dir := t.TempDir()
	files, err := WriteTLSFiles(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append(append(files.ServerArgs(), "--require-secure-transport=ON"), o.Extra...)
	s, err := StartServer(ctx, args...)
	if err != nil {
		t.Fatalf("start MariaDB with TLS: %v", err)
	}
	t.Cleanup(func() { s.Stop() })
	return s, files
}

// ServerArgs are the mariadbd options that enable TLS with these files.
// Without --require-secure-transport=ON the server also takes plaintext
// logins.
func (f TLSFiles) ServerArgs() []string {
	return []string{"--ssl-ca=" + f.CA, "--ssl-cert=" + f.ServerCert, "--ssl-key=" + f.ServerKey}
}

// WriteTLSFiles writes a test CA, an unrelated CA and a server certificate
// for ClusterName and ClusterROName (no IP address) into dir.
func WriteTLSFiles(dir string, o TLSOptions) (TLSFiles, error) {
	f := TLSFiles{CA: filepath.Join(dir, "ca.pem"), OtherCA: filepath.Join(dir, "other-ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"), ServerKey: filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"), ClientKey: filepath.Join(dir, "client-key.pem")}
	now := time.Now()
	caKey, caDER, err := selfSigned("sidecar test CA", now)
	if err != nil {
		return f, err
	}
	_, otherDER, err := selfSigned("unrelated test CA", now)
	if err != nil {
		return f, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	notBefore, notAfter := now.Add(-time.Hour), now.Add(24*time.Hour)
	if o.Expired {
		notBefore, notAfter = now.Add(-48*time.Hour), now.Add(-24*time.Hour)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ClusterName},
		DNSNames: []string{ClusterName, ClusterROName}, NotBefore: notBefore, NotAfter: notAfter,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return f, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return f, err
	}
	clientKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	client := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "sidecar test client"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	clientDER, err := x509.CreateCertificate(rand.Reader, client, ca, &clientKey.PublicKey, caKey)
	if err != nil {
		return f, err
	}
	clientKeyDER, err := x509.MarshalPKCS8PrivateKey(clientKey)
	if err != nil {
		return f, err
	}
	for _, w := range []struct {
		path, typ string
		der       []byte
	}{{f.CA, "CERTIFICATE", caDER}, {f.OtherCA, "CERTIFICATE", otherDER}, {f.ServerCert, "CERTIFICATE", leafDER}, {f.ServerKey, "PRIVATE KEY", keyDER},
		{f.ClientCert, "CERTIFICATE", clientDER}, {f.ClientKey, "PRIVATE KEY", clientKeyDER}} {
		if err := os.WriteFile(w.path, pem.EncodeToMemory(&pem.Block{Type: w.typ, Bytes: w.der}), 0o644); err != nil {
			return f, err
		}
	}
	return f, nil
}

func selfSigned(cn string, now time.Time) (*ecdsa.PrivateKey, []byte, error) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	return key, der, err
}
