package ecr

import "testing"

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
