package sbom

import (
	"bytes"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/github/go-spdx/v2/spdxexp"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx"
)

// refSyntax is a LicenseRef as SPDX 2.3 clause 10.1 allows it.
var refSyntax = regexp.MustCompile(`^LicenseRef-[A-Za-z0-9.-]+$`)

func TestLicenseOf(t *testing.T) {
	for _, tc := range []struct {
		name, field string
		want        string // licenseDeclared; "" for a LicenseRef
		wantComment bool   // licenseComments quotes the field
		wantRef     string // the LicenseRef's readable part, before its hash
	}{
		// Valid SPDX expressions, kept as they are.
		{"an identifier", "MIT", "MIT", false, ""},
		{"-only", "GPL-2.0-only", "GPL-2.0-only", false, ""},
		{"AND", "MPL-2.0 AND MIT", "MPL-2.0 AND MIT", false, ""},
		{"WITH an exception", "GPL-2.0-or-later WITH Bison-exception-2.2", "GPL-2.0-or-later WITH Bison-exception-2.2", false, ""},
		{"parentheses precedence needs", "(MIT OR Apache-2.0) AND BSD-3-Clause", "(MIT OR Apache-2.0) AND BSD-3-Clause", false, ""},
		{"a deprecated identifier", "GPL-2.0", "GPL-2.0", false, ""},
		{"+", "GPL-2.0+", "GPL-2.0+", false, ""},
		{"spaces around", "  MIT  ", "MIT", false, ""},
		// Valid in intent, written in the normal form, the field in the comment.
		{"lower-case identifiers", "mit OR apache-2.0", "MIT OR Apache-2.0", true, ""},
		{"lower-case and", "MIT and Apache-2.0", "MIT AND Apache-2.0", true, ""},
		{"lower-case or, mixed-case and", "MIT or (Zlib And BSD-3-Clause)", "MIT OR Zlib AND BSD-3-Clause", true, ""},
		{"lower-case with", "GPL-2.0-only with classpath-exception-2.0", "GPL-2.0-only WITH Classpath-exception-2.0", true, ""},
		{"a tab between words", "MIT\tOR Zlib", "MIT OR Zlib", true, ""},
		{"-only on a license without versions", "MIT-only", "MIT", true, ""},
		{"-or-later the List does not have", "Apache-2.0-or-later", "Apache-2.0+", true, ""},
		// SPDX's own values for the whole field.
		{"NONE", "NONE", "NONE", false, ""},
		{"NOASSERTION", "NOASSERTION", "NOASSERTION", false, ""},
		{"empty", "", "NOASSERTION", false, ""},
		{"spaces only", "   ", "NOASSERTION", false, ""},
		// Not SPDX expressions: a LicenseRef with the field as its text.
		{"custom", "custom", "", false, "custom"},
		{"Public-Domain", "Public-Domain", "", false, "Public-Domain"},
		{"GPL2+", "GPL2+", "", false, "GPL2"},
		{"none in lower case", "none", "", false, "none"},
		{"space before +", "GPL-2.0 +", "", false, "GPL-2.0"},
		{"a dangling operator", "MIT OR", "", false, "MIT-OR"},
		{"an operator alone", "and", "", false, "and"},
		{"a license after WITH", "MIT WITH Apache-2.0", "", false, "MIT-WITH-Apache-2.0"},
		{"commas", "MIT, BSD-3-Clause", "", false, "MIT-BSD-3-Clause"},
		{"a LicenseRef this document does not define", "LicenseRef-foo", "", false, "LicenseRef-foo"},
		{"another document's LicenseRef", "DocumentRef-a:LicenseRef-b", "", false, "DocumentRef-a-LicenseRef-b"},
		{"NONE inside an expression", "MIT OR NONE", "", false, "MIT-OR-NONE"},
		{"no letter or digit", "+++", "", false, ""},
		{"long", strings.Repeat("custom ", 20), "", false, "custom-custom-custom-custom-custom-custo"}, // 40 characters
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := licenseOf(tc.field)
			if tc.want != "" {
				if l.declared != tc.want || l.extracted != nil {
					t.Fatalf("licenseOf(%q) = %q, extracted %+v; want %q and none", tc.field, l.declared, l.extracted, tc.want)
				}
				if (l.comment != "") != tc.wantComment || tc.wantComment && !strings.Contains(l.comment, strconv.Quote(tc.field)) {
					t.Errorf("licenseOf(%q) comment %q: want one quoting the field: %v", tc.field, l.comment, tc.wantComment)
				}
				return
			}
			x := l.extracted
			if x == nil || l.declared != x.LicenseIdentifier || !refSyntax.MatchString(l.declared) || l.comment != "" {
				t.Fatalf("licenseOf(%q) = %+v: want a LicenseRef defined by its extracted licence", tc.field, l)
			}
			if x.ExtractedText != tc.field || x.LicenseName != tc.field {
				t.Errorf("extracted text %q, name %q: want the field %q", x.ExtractedText, x.LicenseName, tc.field)
			}
			readable := regexp.QuoteMeta(tc.wantRef)
			if readable != "" {
				readable += "-"
			}
			if hash := regexp.MustCompile(`^LicenseRef-` + readable + `[0-9a-f]{16}$`); !hash.MatchString(l.declared) {
				t.Errorf("licenseOf(%q) = %q: want LicenseRef-%s then a 16-digit hash", tc.field, l.declared, tc.wantRef)
			}
			if again := licenseOf(tc.field); again.declared != l.declared {
				t.Errorf("licenseOf(%q) named it %q, then %q", tc.field, l.declared, again.declared)
			}
		})
	}
}

// Fields that read alike once cut down to an idstring's characters are
// still different licences.
func TestLicenseRefsKeepAlikeFieldsApart(t *testing.T) {
	seen := map[string]string{}
	for _, field := range []string{"GPL2+", "GPL2-", "GPL2", " GPL2", "custom", "Custom", "cus tom", "cus/tom"} {
		ref := licenseOf(field).declared
		if other, ok := seen[ref]; ok {
			t.Errorf("%q and %q both became %s", other, field, ref)
		}
		seen[ref] = field
	}
}

// spdxExpression reads a lower-case and, or or with as the operator;
// that is only unambiguous while no listed identifier has that name.
func TestOperatorWordsAreNoIdentifiers(t *testing.T) {
	for _, w := range []string{"and", "or", "with", "AND", "OR", "WITH"} {
		if ok, _ := spdxexp.ActiveLicense(w); ok {
			t.Errorf("%q is a license on the SPDX License List go-spdx has", w)
		}
		if ok, _ := spdxexp.ValidateLicenses([]string{w}); ok {
			t.Errorf("go-spdx reads %q as a license or exception", w)
		}
	}
}

// Every licenseDeclared of a generated SBOM is one a validator accepts,
// and every L: field that is not an SPDX expression is in the document
// word for word.
func TestBuildDeclaresOnlyValidLicenses(t *testing.T) {
	bin, err := os.ReadFile(os.Args[0]) // any Go binary
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{ // package name: its L: field
		"valid": "MIT", "lowercase": "mit and zlib", "custom": "custom", "custom-too": "custom",
		"gpl2": "GPL2+", "pd": "Public-Domain", "ref": "LicenseRef-foo", "none": "NONE", "empty": "",
	}
	var db strings.Builder
	for _, name := range []string{"valid", "lowercase", "custom", "custom-too", "gpl2", "pd", "ref", "none", "empty"} {
		db.WriteString("P:" + name + "\nV:1.0-r0\nL:" + fields[name] + "\n\n")
	}
	in := Input{Name: "sidecar", Version: "dev", Platform: "linux/amd64", Binary: bin, BinaryPath: "/x",
		APKInstalled: []byte(db.String()), Created: time.Unix(0, 0)}
	raw := buildJSON(t, in)
	doc, err := spdxjson.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]string{} // LicenseRef: extracted text
	var ids []string
	for _, l := range doc.OtherLicenses {
		if _, twice := defined[l.LicenseIdentifier]; twice || !refSyntax.MatchString(l.LicenseIdentifier) {
			t.Errorf("hasExtractedLicensingInfos: %q defined twice or not a LicenseRef", l.LicenseIdentifier)
		}
		defined[l.LicenseIdentifier] = l.ExtractedText
		ids = append(ids, l.LicenseIdentifier)
	}
	if !sort.StringsAreSorted(ids) {
		t.Errorf("extracted licences in the order %q: want them sorted, so that the same image gives the same bytes", ids)
	}
	if len(defined) != 4 { // custom, GPL2+, Public-Domain, LicenseRef-foo
		t.Errorf("%d extracted licences, want 4 (one per distinct invalid field): %q", len(defined), ids)
	}
	used := map[string]bool{}
	for _, p := range doc.Packages {
		lic := p.PackageLicenseDeclared
		field, apk := fields[p.PackageName]
		switch text, isRef := defined[lic]; {
		case isRef:
			used[lic] = true
			if !apk || text != field {
				t.Errorf("package %s: %s has the text %q, want its L: field %q", p.PackageName, lic, text, field)
			}
		case lic == "NONE" || lic == noAssertion:
		default:
			if apk && lic != field && !strings.Contains(p.PackageLicenseComments, strconv.Quote(field)) {
				t.Errorf("package %s: licenseDeclared %q, and its L: field %q is not in licenseComments %q", p.PackageName, lic, field, p.PackageLicenseComments)
			}
			if norm, ok := spdxExpression(lic); !ok || norm != lic {
				t.Errorf("package %s: licenseDeclared %q is not an SPDX expression in normal form", p.PackageName, lic)
			}
			if ok, bad := spdxexp.ValidateLicenses([]string{lic}); !ok {
				t.Errorf("package %s: go-spdx refuses licenseDeclared %q: %q", p.PackageName, lic, bad)
			}
		}
	}
	if len(used) != len(defined) {
		t.Errorf("packages use %d of the %d extracted licences", len(used), len(defined))
	}
	if again := buildJSON(t, in); !bytes.Equal(raw, again) {
		t.Error("the same input gave different documents")
	}
}

func buildJSON(t *testing.T, in Input) []byte {
	t.Helper()
	doc, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := JSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// A field keeps its LicenseRef from image to image, so SBOMs of two
// images compare; docs/pipeline.md quotes the one for "custom".
func TestLicenseRefInDocs(t *testing.T) {
	md, err := os.ReadFile("../../docs/pipeline.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("`(LicenseRef-[A-Za-z0-9.-]+)` for `custom`").FindSubmatch(md)
	if m == nil {
		t.Fatal("docs/pipeline.md gives no LicenseRef for `custom`")
	}
	if got := licenseOf("custom").declared; got != string(m[1]) {
		t.Errorf("custom becomes %s; docs/pipeline.md says %s", got, m[1])
	}
}

func TestCheckLicenses(t *testing.T) {
	const ref = "LicenseRef-custom-6cdfd271da635d49"
	defined := []*spdx.OtherLicense{{LicenseIdentifier: ref, ExtractedText: "custom"}}
	for _, tc := range []struct {
		name, declared, concluded string
		other                     []*spdx.OtherLicense
		want                      string // "" for valid
	}{
		{"an expression", "MIT AND (Apache-2.0 OR Zlib)", "NOASSERTION", nil, ""},
		{"NONE", "NONE", "NONE", nil, ""},
		{"a defined LicenseRef", ref, "NOASSERTION", defined, ""},
		{"an undefined LicenseRef", ref, "NOASSERTION", nil, `license "` + ref + `"`},
		{"a field as apk wrote it", "custom", "NOASSERTION", defined, `license "custom"`},
		{"a lower-case operator", "MIT and Zlib", "NOASSERTION", nil, `license "MIT and Zlib"`},
		{"what go-spdx reads but SPDX lists not", "MIT-only", "NOASSERTION", nil, `license "MIT-only"`},
		{"empty", "", "NOASSERTION", nil, `license ""`},
		{"licenseConcluded too", "MIT", "custom", defined, `license "custom"`},
		{"a LicenseRef defined twice", ref, "NOASSERTION", append(defined, defined...), "defined twice"},
		{"an extracted licence that is no LicenseRef", "MIT", "NOASSERTION", []*spdx.OtherLicense{{LicenseIdentifier: "custom"}}, `"custom" is not a LicenseRef-`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := &spdx.Document{OtherLicenses: tc.other, Packages: []*spdx.Package{
				{PackageName: "p", PackageLicenseDeclared: tc.declared, PackageLicenseConcluded: tc.concluded},
			}}
			err := checkLicenses(doc)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("checkLicenses = %v, want an error with %q (none if empty)", err, tc.want)
			}
		})
	}
}
