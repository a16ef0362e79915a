package sbom

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/github/go-spdx/v2/spdxexp"
	"github.com/spdx/tools-golang/spdx"
)

// apkLicense is what the SBOM says of one apk package's L: field. SPDX 2.3
// allows in licenseDeclared only a license expression over the SPDX
// License List, NONE, NOASSERTION, or LicenseRef- identifiers the
// document defines (clause 10); one field that is none of these makes the
// whole document invalid to a validator.
type apkLicense struct {
	declared  string             // the package's licenseDeclared
	comment   string             // its licenseComments: the field as written, when declared spells it otherwise
	extracted *spdx.OtherLicense // what declared names when the field is no SPDX expression; nil otherwise
}

// licenseOf maps an L: field to licenseDeclared: an SPDX expression in
// go-spdx's normal form, or else a LicenseRef whose extracted text is the
// field as written, so that no field is lost.
func licenseOf(field string) apkLicense {
	trimmed := strings.TrimSpace(field)
	switch trimmed {
	case "":
		return apkLicense{declared: noAssertion}
	case "NONE", noAssertion:
		// Valid as the whole value only, and go-spdx does not parse them.
		return apkLicense{declared: trimmed}
	}
	if expr, ok := spdxExpression(trimmed); ok {
		l := apkLicense{declared: expr}
		if expr != trimmed {
			l.comment = fmt.Sprintf("The apk database's L: field reads %q; this is its SPDX normal form.", field)
		}
		return l
	}
	ref := licenseRef(field)
	return apkLicense{declared: ref, extracted: &spdx.OtherLicense{
		LicenseIdentifier: ref, ExtractedText: field, LicenseName: field,
		LicenseComment: "An apk package's L: field as written: it is not an SPDX license expression.",
	}}
}

// spdxExpression is s in the normal form go-spdx writes (identifiers in
// their listed case, "MIT" for "MIT-only" and "Apache-2.0+" for
// "Apache-2.0-or-later", which the List does not have, parentheses only
// where precedence needs them), or false when s is not an SPDX license
// expression over the License List.
func spdxExpression(s string) (string, bool) {
	words := strings.Fields(s) // a tab is no separator to go-spdx, only a space
	for i, w := range words {
		// go-spdx's parser reads operators in upper case only. No identifier on the
		// License List is and, or or with in any case
		// (TestOperatorWordsAreNoIdentifiers), so a word that is one of
		// them can only mean the operator.
		if u := strings.ToUpper(w); u == "AND" || u == "OR" || u == "WITH" {
			words[i] = u
		}
	}
	norm, invalid := spdxexp.ValidateAndNormalizeLicensesWithOptions([]string{strings.Join(words, " ")}, spdxexp.ValidateLicensesOptions{})
	if len(invalid) != 0 || len(norm) != 1 {
		return "", false
	}
	// go-spdx accepts any LicenseRef- and DocumentRef-, but this document
	// defines only its own and refers to no other document.
	if strings.Contains(norm[0], "LicenseRef-") || strings.Contains(norm[0], "DocumentRef-") {
		return "", false
	}
	return norm[0], true
}

// licenseRef names a field that is no SPDX expression: readable from the
// field's own letters, digits, dots and dashes (the only characters an
// idstring may hold), and kept apart from another field that reads alike
// ("GPL2+", "GPL2-") by the SHA-256 of the field. The same field gets the
// same name in every document.
func licenseRef(field string) string {
	const maxReadable = 40
	sum := sha256.Sum256([]byte(field))
	id := hex.EncodeToString(sum[:8])
	readable := strings.Trim(idUnsafe.ReplaceAllString(field, "-"), "-")
	if len(readable) > maxReadable {
		readable = strings.TrimRight(readable[:maxReadable], "-")
	}
	if readable != "" {
		id = readable + "-" + id
	}
	return "LicenseRef-" + id
}

// extractedLicenses is the document's hasExtractedLicensingInfos: each
// LicenseRef once, sorted by identifier, since the same image must give
// the same SBOM bytes.
func extractedLicenses(byRef map[string]*spdx.OtherLicense) []*spdx.OtherLicense {
	out := make([]*spdx.OtherLicense, 0, len(byRef))
	for _, l := range byRef {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LicenseIdentifier < out[j].LicenseIdentifier })
	return out
}

// licenseRefSyntax is a LicenseRef- as SPDX 2.3 clause 10.1 allows it.
var licenseRefSyntax = regexp.MustCompile(`^LicenseRef-[A-Za-z0-9.-]+$`)

// checkLicenses is an error naming the first license an SPDX 2.3
// validator would refuse: a package's licenseDeclared or
// licenseConcluded that is not NONE, NOASSERTION, a LicenseRef- the
// document defines or an SPDX expression in go-spdx's normal form (the
// only expressions Build writes), or an extracted licence that is no
// LicenseRef- or is defined twice.
func checkLicenses(doc *spdx.Document) error {
	defined := map[string]bool{}
	for _, l := range doc.OtherLicenses {
		if !licenseRefSyntax.MatchString(l.LicenseIdentifier) || defined[l.LicenseIdentifier] {
			return fmt.Errorf("hasExtractedLicensingInfos: %q is not a LicenseRef- identifier, or is defined twice", l.LicenseIdentifier)
		}
		defined[l.LicenseIdentifier] = true
	}
	for _, p := range doc.Packages {
		for _, lic := range []string{p.PackageLicenseDeclared, p.PackageLicenseConcluded} {
			if lic == "NONE" || lic == noAssertion || defined[lic] {
				continue
			}
			if norm, ok := spdxExpression(lic); !ok || norm != lic {
				return fmt.Errorf("package %s: license %q is not an SPDX license expression, NONE, NOASSERTION or a LicenseRef- the document defines", p.PackageName, lic)
			}
		}
	}
	return nil
}
