package ecr

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestRegionNames(t *testing.T) {
	for _, r := range []string{"us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1", "cn-northwest-1", "il-central-1", "mx-central-1"} {
		if !regionRE.MatchString(r) {
			t.Errorf("%q refused; it is a region", r)
		}
	}
	for _, r := range []string{"us-east", "US-EAST-1", "us_east_1", "useast1", "eu-west-1 ", "eu-west-1/"} {
		if regionRE.MatchString(r) {
			t.Errorf("%q accepted as a region", r)
		}
	}
}

// Every region in the AWS SDK's partition table (the SDK this module
// builds with) passes the preflight's check.
func TestRegionNamesOfTheSDK(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/aws/aws-sdk-go-v2").Output()
	if err != nil {
		t.Fatalf("go list the AWS SDK: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "internal", "endpoints", "awsrulesfn", "partitions.json"))
	if err != nil {
		t.Fatal(err)
	}
	var table struct {
		Partitions []struct {
			ID      string                     `json:"id"`
			Regions map[string]json.RawMessage `json:"regions"`
		} `json:"partitions"`
	}
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range table.Partitions {
		for r := range p.Regions {
			if strings.HasSuffix(r, "-global") {
				continue // a signing scope, not a region a client names
			}
			n++
			if !regionRE.MatchString(r) {
				t.Errorf("%q (partition %s) refused; it is a region", r, p.ID)
			}
		}
	}
	if n < 30 {
		t.Fatalf("read %d regions from partitions.json; want the whole table", n)
	}
}
