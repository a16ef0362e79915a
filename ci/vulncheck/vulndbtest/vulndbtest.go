// Package vulndbtest writes local Go vulnerability databases for tests, in
// the v1 layout govulncheck reads from a file:// URL
// (https://go.dev/security/vuln/database#api): index/db.json,
// index/modules.json, index/vulns.json and ID/<id>.json in OSV format.
package vulndbtest

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Entry is one OSV entry affecting one package of one module.
type Entry struct {
	ID         string   // GO-YYYY-NNNN
	Module     string   // "stdlib" for the standard library
	Package    string   // import path
	Symbols    []string // affected functions, e.g. "Listen", "Conn.Read"
	Introduced string   // "0" when empty
	Fixed      string   // first fixed version; "" for no fix
}

// StdlibNow is an entry for package pkg's symbols of the standard library
// at the toolchain running the test: introduced in 0, fixed in the next
// patch release, so a binary built by this toolchain is affected.
func StdlibNow(id, pkg string, symbols ...string) Entry {
	v := strings.TrimPrefix(runtime.Version(), "go")
	v, _, _ = strings.Cut(v, " ") // "1.26.8 X:…" on experiment builds
	parts := strings.Split(v, ".")
	for len(parts) < 3 {
		parts = append(parts, "0")
	}
	patch, _ := strconv.Atoi(parts[2])
	fixed := fmt.Sprintf("%s.%s.%d", parts[0], parts[1], patch+1)
	return Entry{ID: id, Module: "stdlib", Package: pkg, Symbols: symbols, Fixed: fixed}
}

// Modified is the time every database Write makes says it was last
// modified (index/db.json), its entries too.
func Modified() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

// Write creates a database with entries in a new temporary directory and
// returns its file:// URL. No entries: an empty (but valid) database.
func Write(t testing.TB, entries ...Entry) string {
	t.Helper()
	dir := t.TempDir()
	mod := Modified().Format(time.RFC3339)
	type vulnRef struct {
		ID       string `json:"id"`
		Modified string `json:"modified"`
		Fixed    string `json:"fixed,omitempty"`
	}
	modules := map[string][]vulnRef{}
	var order []string
	vulns := []map[string]any{}
	for _, e := range entries {
		intro := e.Introduced
		if intro == "" {
			intro = "0"
		}
		events := []map[string]string{{"introduced": intro}}
		if e.Fixed != "" {
			events = append(events, map[string]string{"fixed": e.Fixed})
		}
		imp := map[string]any{"path": e.Package}
		if len(e.Symbols) > 0 {
			imp["symbols"] = e.Symbols
		}
		osv := map[string]any{
			"schema_version": "1.3.1",
			"id":             e.ID,
			"modified":       mod,
			"published":      mod,
			"summary":        "test entry " + e.ID,
			"details":        "Written by vulndbtest.",
			"affected": []any{map[string]any{
				"package":            map[string]string{"name": e.Module, "ecosystem": "Go"},
				"ranges":             []any{map[string]any{"type": "SEMVER", "events": events}},
				"ecosystem_specific": map[string]any{"imports": []any{imp}},
			}},
			"database_specific": map[string]string{"url": "https://pkg.go.dev/vuln/" + e.ID},
		}
		writeJSON(t, filepath.Join(dir, "ID", e.ID+".json"), osv)
		if _, ok := modules[e.Module]; !ok {
			order = append(order, e.Module)
		}
		modules[e.Module] = append(modules[e.Module], vulnRef{ID: e.ID, Modified: mod, Fixed: e.Fixed})
		vulns = append(vulns, map[string]any{"id": e.ID, "modified": mod, "aliases": []string{}})
	}
	mods := []map[string]any{}
	for _, m := range order {
		mods = append(mods, map[string]any{"path": m, "vulns": modules[m]})
	}
	writeJSON(t, filepath.Join(dir, "index", "db.json"), map[string]string{"modified": mod})
	writeJSON(t, filepath.Join(dir, "index", "modules.json"), mods)
	writeJSON(t, filepath.Join(dir, "index", "vulns.json"), vulns)
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(dir)}).String()
}

func writeJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
