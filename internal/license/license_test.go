// Package license holds the test that ties the image's license label and the
// README to the LICENSE file, so the three cannot disagree.
package license

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

func TestLicenseFileLabelAndReadmeAgree(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile("../../" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	lic := read("LICENSE")
	if !strings.Contains(lic, "Apache License\n                           Version 2.0, January 2004") ||
		!strings.Contains(lic, "END OF TERMS AND CONDITIONS") {
		t.Fatal("LICENSE is not the full Apache License 2.0 text")
	}
	m := regexp.MustCompile(`org\.opencontainers\.image\.licenses="([^"]*)"`).FindStringSubmatch(read("Dockerfile"))
	if m == nil || m[1] != "Apache-2.0" {
		t.Errorf("Dockerfile licenses label = %v; want the SPDX id Apache-2.0 of LICENSE", m)
	}
	if !strings.Contains(read("README.md"), "Apache License 2.0: see [LICENSE](LICENSE)") {
		t.Error("README does not name the license")
	}
}
