// Package vulncheck runs govulncheck (golang.org/x/vuln, in process) in
// binary mode on a built Go binary and reports its findings.
//
// Typical use, before anything is pushed:
//
//	if _, err := vulncheck.Probe(ctx, db); err != nil { ... } // seconds, not a hang
//	findings, err := vulncheck.Scan(ctx, db, "/tmp/sidecar-amd64")
//	vulncheck.Table(os.Stderr, findings)
//	if vulncheck.Affected(findings) { ... } // stop the release
//
// The database is a URL as govulncheck's -db flag takes it: https://… (the
// public one is DefaultDB) or file:///dir holding the v1 layout
// (index/db.json, index/modules.json, ID/<id>.json); see
// https://go.dev/security/vuln/database#api.
package vulncheck

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/vuln/scan"
)

// DefaultDB is the public Go vulnerability database.
const DefaultDB = "https://vuln.go.dev"

// ProbeTimeout bounds the reachability check of a remote database.
const ProbeTimeout = 10 * time.Second

// Finding is one vulnerability govulncheck reports for a binary, at the
// most precise level it reached (symbol, else package, else module).
type Finding struct {
	OSV     string // e.g. GO-2024-1234
	Module  string // module path; "stdlib" for the standard library
	Package string // import path, when known
	Found   string // version in the binary
	Fixed   string // first fixed version; "" when there is no fix
	// Affected functions the binary contains, sorted, as package.Func or
	// package.Type.Method; none when the vulnerable code is not linked in.
	Symbols []string
}

// Affects reports whether the binary contains an affected symbol:
// govulncheck's own line between "your code is affected" and "a module
// you use has a vulnerability in code you do not use". It reads the
// linked functions from the binary's symbol table and line table
// (golang.org/x/vuln internal/buildinfo/additions_scan.go,
// ExtractPackagesAndSymbols), so the Dockerfile keeps the symbol table
// (-ldflags -w, no -s). For a stripped binary (-s) it cannot see them and
// reports every vulnerable symbol of the modules in the build info
// (internal/vulncheck/binary.go, allKnownVulnerableSymbols): the check is
// then at module precision and errs on the side of failing.
func (f Finding) Affects() bool { return len(f.Symbols) > 0 }

// Affected reports whether any finding affects the binary.
func Affected(fs []Finding) bool { return slices.ContainsFunc(fs, Finding.Affects) }

// ValidDB checks the form of a database URL: http, https or file.
func ValidDB(db string) error {
	u, err := url.Parse(db)
	if err != nil {
		// url.Error quotes the whole URL, credentials included.
		var ue *url.Error
		if errors.As(err, &ue) {
			return fmt.Errorf("not a URL: %w", ue.Err)
		}
		return errors.New("not a URL")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		// Paths are appended to the URL, so a query could not work, and
		// a token in it would be printed: credentials go in the user info.
		return errors.New("a query (?…) or fragment (#…) is not accepted; give a mirror's token as https://user:token@mirror/")
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return errors.New("no host")
		}
	case "file":
		if u.Host != "" {
			// file://relative/db parses as host "relative", path "/db":
			// refuse it rather than read a different directory.
			return fmt.Errorf("a file URL takes no host (got %q); want file:///absolute/path", u.Host)
		}
		if u.Path == "" {
			return errors.New("no path")
		}
	default:
		return fmt.Errorf("scheme %q is not http, https or file", u.Scheme)
	}
	return nil
}

// Redact returns db fit to print: an authenticated mirror's password
// (https://user:token@mirror/) replaced by xxxxx, as url.URL.Redacted
// does. A URL that does not parse has everything between :// and the
// last @ replaced, so a malformed credential is not printed either.
func Redact(db string) string {
	if u, err := url.Parse(db); err == nil {
		if lone := loneUser(u); lone != "" {
			u.User = url.User("xxxxx") // https://token@mirror/: the name is the secret
		}
		if u.RawQuery != "" { // refused by ValidDB, as a fragment is; either may hold a token
			u.RawQuery = "xxxxx"
		}
		if u.Fragment != "" || u.RawFragment != "" { // refused too: shown, not printed
			u.Fragment, u.RawFragment = "xxxxx", ""
		}
		return u.Redacted()
	}
	scheme, rest, ok := strings.Cut(db, "://")
	if !ok {
		return db
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		return scheme + "://xxxxx" + rest[i:]
	}
	return db
}

// scrub removes db's password, raw and escaped, from a message that
// may quote the URL (govulncheck's own errors do).
func scrub(msg, db string) string {
	msg = strings.ReplaceAll(msg, db, Redact(db))
	if u, err := url.Parse(db); err == nil && u.User != nil {
		secret, ok := u.User.Password()
		if !ok {
			secret = loneUser(u)
		}
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "xxxxx")
			msg = strings.ReplaceAll(msg, url.QueryEscape(secret), "xxxxx")
			msg = strings.ReplaceAll(msg, url.PathEscape(secret), "xxxxx")
		}
	}
	return msg
}

// loneUser is u's user name when it has no password (a token given as
// https://token@mirror/), else "".
func loneUser(u *url.URL) string {
	if u.User == nil {
		return ""
	}
	if _, hasPassword := u.User.Password(); hasPassword {
		return ""
	}
	return u.User.Username()
}

// StaleAfter is the age past which a database is reported as old: the
// public one changes daily, so a copy this old misses what was published
// since.
const StaleAfter = 7 * 24 * time.Hour

// Probe checks that db answers as a v1 vulnerability database, within
// ProbeTimeout for a remote one, so an unreachable database fails fast
// instead of stalling the scan. It returns when the database was last
// modified (index/db.json), zero when it does not say.
func Probe(ctx context.Context, db string) (time.Time, error) {
	if err := ValidDB(db); err != nil {
		return time.Time{}, err
	}
	u, _ := url.Parse(db)
	if u.Scheme == "file" {
		dir := filepath.FromSlash(u.Path)
		if _, err := os.Stat(filepath.Join(dir, "index", "modules.json")); err != nil {
			return time.Time{}, fmt.Errorf("not a vulnerability database directory (want index/modules.json in %s): %w", dir, err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, "index", "db.json"))
		return modifiedOf(b), nil
	}
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(db, "/")+"/index/db.json", nil)
	if err != nil {
		return time.Time{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// net/http strips the password from its *url.Error; scrub anyway.
		return time.Time{}, fmt.Errorf("unreachable: %s", scrub(err.Error(), db))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Redact, not URL.Redacted: a token given as the user name is
		// a secret too.
		return time.Time{}, fmt.Errorf("GET %s/index/db.json: %s", strings.TrimRight(Redact(db), "/"), resp.Status)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return modifiedOf(b), nil
}

// modifiedOf reads index/db.json's modified time; zero if it has none.
func modifiedOf(dbJSON []byte) time.Time {
	var v struct {
		Modified time.Time `json:"modified"`
	}
	_ = json.Unmarshal(dbJSON, &v)
	return v.Modified
}

// message is the part of govulncheck's -format json stream used here
// (golang.org/x/vuln/internal/govulncheck.Message).
type message struct {
	Finding *struct {
		OSV          string `json:"osv"`
		FixedVersion string `json:"fixed_version"`
		Trace        []struct {
			Module   string `json:"module"`
			Version  string `json:"version"`
			Package  string `json:"package"`
			Function string `json:"function"`
			Receiver string `json:"receiver"`
		} `json:"trace"`
	} `json:"finding"`
}

// Stripped reports whether the ELF binary at path has no symbol table, so
// that Scan matches at module precision, not symbol (see Finding.Affects).
func Stripped(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	return f.Section(".symtab") == nil, nil
}

// Scan runs govulncheck -mode binary on the binary at path against db.
// An error means the scan did not complete; findings are not an error.
func Scan(ctx context.Context, db, path string) ([]Finding, error) {
	var out, errOut bytes.Buffer
	cmd := scan.Command(ctx, "-mode", "binary", "-format", "json", "-db", db, path)
	cmd.Stdin = strings.NewReader("")
	cmd.Stdout, cmd.Stderr = &out, &errOut
	// No telemetry prompts or uploads from a build pipeline.
	cmd.Env = append(os.Environ(), "GOTELEMETRY=off")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if err := cmd.Wait(); err != nil {
		msg := scrub(strings.TrimSpace(errOut.String()), db)
		if msg != "" {
			return nil, fmt.Errorf("govulncheck: %w: %s", err, msg)
		}
		return nil, fmt.Errorf("govulncheck: %w", err)
	}
	return parse(&out)
}

// parse folds the JSON stream into one Finding per OSV id, keeping the
// most precise level and every affected symbol.
func parse(r io.Reader) ([]Finding, error) {
	dec := json.NewDecoder(bufio.NewReader(r))
	byID := map[string]*Finding{}
	var order []string
	for {
		var m message
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("govulncheck output: %w", err)
		}
		if m.Finding == nil || len(m.Finding.Trace) == 0 {
			continue
		}
		fr := m.Finding.Trace[0]
		f, ok := byID[m.Finding.OSV]
		if !ok {
			f = &Finding{OSV: m.Finding.OSV}
			byID[f.OSV] = f
			order = append(order, f.OSV)
		}
		f.Module, f.Found, f.Fixed = fr.Module, fr.Version, m.Finding.FixedVersion
		if fr.Package != "" {
			f.Package = fr.Package
		}
		if fr.Function != "" {
			sym := fr.Function
			if sym == fr.Package+"/*" { // a stripped binary: the whole package (allKnownVulnerableSymbols)
				sym = "*"
			}
			if fr.Receiver != "" {
				sym = fr.Receiver + "." + sym
			}
			sym = lastElem(fr.Package) + "." + sym
			if !slices.Contains(f.Symbols, sym) {
				f.Symbols = append(f.Symbols, sym)
			}
		}
	}
	out := make([]Finding, 0, len(order))
	for _, id := range order {
		slices.Sort(byID[id].Symbols) // govulncheck emits them in map order
		out = append(out, *byID[id])
	}
	return out, nil
}

func lastElem(p string) string {
	if i := strings.LastIndex(p, "/"); i >= 0 {
		return p[i+1:]
	}
	return p
}

// tableSymbols is how many affected symbols a table row names: an entry
// that lists no symbols affects its whole package, and govulncheck then
// reports every function of it the binary links (hundreds for net).
const tableSymbols = 3

// Table prints findings, one row each, under a header; "none" for no
// findings. Rows without an affected symbol are in the binary's modules
// but not in its code.
func Table(w io.Writer, platform string, fs []Finding) {
	if len(fs) == 0 {
		fmt.Fprintf(w, "%s: no known vulnerabilities\n", platform)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLATFORM\tOSV\tMODULE/PACKAGE\tFOUND\tFIXED\tAFFECTED SYMBOL")
	for _, f := range fs {
		what := f.Module
		if f.Package != "" {
			what = f.Package
			if !strings.HasPrefix(f.Package, f.Module) { // stdlib
				what = f.Module + " " + f.Package
			}
		}
		fixed := f.Fixed
		if fixed == "" {
			fixed = "(no fix)"
		}
		sym := "(not in the binary's code)"
		if n := len(f.Symbols); n > tableSymbols {
			sym = fmt.Sprintf("%s and %d more", strings.Join(f.Symbols[:tableSymbols], ", "), n-tableSymbols)
		} else if n > 0 {
			sym = strings.Join(f.Symbols, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", platform, f.OSV, what, f.Found, fixed, sym)
	}
	tw.Flush()
}
