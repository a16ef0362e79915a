package testkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"
)

// CA is a throwaway certificate authority for tests.
type CA struct {
	Cert *x509.Certificate
	Pool *x509.CertPool // trusts this CA only
	key  *ecdsa.PrivateKey
}

// NewCA makes a CA named cn, valid for an hour either side of now.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	return NewCAUntil(t, cn, time.Now().Add(time.Hour))
}

// NewCAUntil makes a CA named cn, valid from an hour ago to notAfter: one
// that expires before the certificates it issues, or has.
func NewCAUntil(t testing.TB, cn string, notAfter time.Time) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Pool: pool, key: key}
}

// Leaf issues a server certificate for names (the first is also its
// common name), valid from notBefore to notAfter.
func (ca *CA) Leaf(t testing.TB, notBefore, notAfter time.Time, names ...string) tls.Certificate {
	t.Helper()
	return ca.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: notBefore, NotAfter: notAfter})
}

// Issue issues a server certificate from tmpl's subject, names and dates
// (a certificate Leaf does not make: a name in the common name alone).
func (ca *CA) Issue(t testing.TB, tmpl *x509.Certificate) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(2)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// ServerTLS returns a throwaway server certificate for name, valid for an
// hour either side of now, and the pool that trusts it: a TLS peer for
// tests that need one but no CA of their own.
func ServerTLS(t testing.TB, name string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	ca := NewCA(t, name+" CA")
	return ca.Leaf(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), name), ca.Pool
}

// Handshake runs a TLS client's and server's handshakes, which each wait
// for the other, and fails t if either fails.
func Handshake(t testing.TB, client, server *tls.Conn) {
	t.Helper()
	served := make(chan error, 1)
	go func() { served <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
}
