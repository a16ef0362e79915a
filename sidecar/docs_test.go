package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/example/sidecar/internal/testkit"
	"github.com/example/sidecar/sidecar/internal/config"
	"github.com/example/sidecar/sidecar/internal/iamauth"
	"github.com/example/sidecar/sidecar/internal/mysqltls"
	"github.com/example/sidecar/sidecar/internal/proxy"
	"github.com/example/sidecar/sidecar/internal/rdsca"
	"github.com/example/sidecar/sidecar/internal/relay"
	"github.com/example/sidecar/sidecar/internal/tcpstall"
)

// userDocs returns README.md and docs/*.md, by path relative to the
// repository root.
func userDocs(t *testing.T) map[string]string {
	t.Helper()
	paths, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]string{}
	for _, p := range append(paths, "../README.md") {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		docs[strings.TrimPrefix(p, "../")] = string(b)
	}
	return docs
}

// configRow returns the README configuration table's row for name.
func configRow(t *testing.T, readme, name string) string {
	t.Helper()
	for _, l := range strings.Split(readme, "\n") {
		if strings.HasPrefix(l, "| `"+name+"` |") {
			return l
		}
	}
	t.Fatalf("README.md has no configuration row for %s", name)
	return ""
}

// The admin port's default lives in config.DefaultAdminPort: every copy in
// the docs (the table, URLs, example log lines) says the same port.
func TestDocsAdminPortIsTheDefault(t *testing.T) {
	def := config.Default("ADMIN_PORT")
	docs := userDocs(t)
	if row := configRow(t, docs["README.md"], "ADMIN_PORT"); !strings.HasPrefix(row, "| `ADMIN_PORT` | `"+def+"` |") {
		t.Errorf("README ADMIN_PORT row %q, want default `%s`", row, def)
	}
	copies := regexp.MustCompile(`127\.0\.0\.1:(\d+)/(?:readyz|livez|metrics)|"admin_port":(\d+)|ADMIN_PORT[^|\n]{0,12}default (\d+)`)
	found := 0
	for path, text := range docs {
		for _, m := range copies.FindAllStringSubmatch(text, -1) {
			found++
			if port := m[1] + m[2] + m[3]; port != def {
				t.Errorf("%s: %q says admin port %s, the default is %s", path, m[0], port, def)
			}
		}
	}
	if found < 3 {
		t.Errorf("found only %d copies of the admin port in the docs; the pattern no longer matches them", found)
	}
}

// docSection returns the section of the user doc at path that starts with
// heading, up to the next level-2 heading, and fails the test if there is
// no such section.
func docSection(t *testing.T, path, heading string) string {
	t.Helper()
	_, section, ok := strings.Cut(userDocs(t)[path], heading)
	if !ok {
		t.Fatalf("%s has no section %q", path, heading)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	return section
}

// docs/ecs.md names every port of ECS Service Connect the sidecar must
// keep clear of.
func TestDocsServiceConnectPorts(t *testing.T) {
	section := docSection(t, "docs/ecs.md", "## Next to ECS Service Connect")
	for port, what := range config.ServiceConnectPorts {
		if !strings.Contains(section, "| "+strconv.Itoa(port)+" |") {
			t.Errorf("the Service Connect section has no row for port %d (%s)", port, what)
		}
	}
	for _, want := range []string{"portMappings", "dependsOn", "stopTimeout", "LISTEN_ADDR=127.0.0.1"} {
		if !strings.Contains(section, want) {
			t.Errorf("the Service Connect section does not mention %s", want)
		}
	}
}

// The exit status of a second signal during the drain, and how soon a
// repeat is not one (repeatWindow), are documented
// (TestBinarySecondSignalStopsAtOnce and TestWatchSignals check the behaviour).
func TestDocsSecondSignalExitCode(t *testing.T) {
	drain := strings.Join(strings.Fields(docSection(t, "docs/operations.md", "## Deploys and the drain")), " ")
	repeat := fmt.Sprintf("repeated within %d ms", repeatWindow.Milliseconds())
	for _, want := range []string{"second SIGTERM or SIGINT", "`143`", "`130`", repeat} {
		if !strings.Contains(drain, want) {
			t.Errorf("the drain section does not say %s", want)
		}
	}
}

// The memory-release thresholds the docs state are the proxy's defaults.
func TestDocsMemoryRelease(t *testing.T) {
	docs := userDocs(t)
	for _, doc := range []string{"docs/operations.md", "docs/performance.md"} {
		text := strings.Join(strings.Fields(docs[doc]), " ")
		for _, want := range []string{
			fmt.Sprintf("a peak of at least %d", proxy.DefaultBurstConnections),
			fmt.Sprintf("at most once every %d s", int(proxy.DefaultReleaseMemoryEvery.Seconds())),
		} {
			if !strings.Contains(text, want) {
				t.Errorf("%s does not say %q", doc, want)
			}
		}
	}
}

// The failover section states proxy.MinRelookup, how soon after a lookup
// a failing answer may be looked up again.
func TestDocsMinRelookup(t *testing.T) {
	text := strings.Join(strings.Fields(docSection(t, "docs/operations.md", "## Aurora failover")), " ")
	want := fmt.Sprintf("A name looked up in the last %d ms is not looked up again", proxy.MinRelookup.Milliseconds())
	if !strings.Contains(text, want) {
		t.Errorf("the failover section does not say %q", want)
	}
}

// The failover section and the troubleshooting row state how long a
// failed address is tried last (proxy.DownFor, proxy.DownForMax).
func TestDocsDownFor(t *testing.T) {
	for _, doc := range []string{"docs/operations.md", "docs/troubleshooting.md"} {
		text := strings.Join(strings.Fields(userDocs(t)[doc]), " ")
		want := fmt.Sprintf("after the others for %s, then twice as long each time it fails again, up to %s", humanDuration(proxy.DownFor), humanDuration(proxy.DownForMax))
		if !strings.Contains(text, want) {
			t.Errorf("%s does not say %q", doc, want)
		}
	}
}

// The stale check's section states proxy.DefaultStaleAfter.
func TestDocsStaleAfter(t *testing.T) {
	text := strings.Join(strings.Fields(docSection(t, "docs/operations.md", "## Aurora failover")), " ")
	want := fmt.Sprintf("missing from two checks in a row, and from every check for at least %s", humanDuration(proxy.DefaultStaleAfter))
	if !strings.Contains(text, want) {
		t.Errorf("the failover section does not say %q", want)
	}
}

// humanDuration is d as the docs write it: 30 s, 10 minutes.
func humanDuration(d time.Duration) string {
	if d >= time.Minute && d%time.Minute == 0 {
		return fmt.Sprintf("%d minutes", d/time.Minute)
	}
	return fmt.Sprintf("%d s", d/time.Second)
}

// iam.md states the bounds on the wait for credentials that iamauth and
// mysqltls enforce, the message an app then gets, and the login's bound
// on a COM_CHANGE_USER's switch.
func TestDocsIAMWaitForCredentials(t *testing.T) {
	text := strings.Join(strings.Fields(userDocs(t)["docs/iam.md"]), " ")
	if iamauth.CredentialRetryEvery != time.Second {
		t.Errorf("docs/iam.md says the credentials endpoint is asked again at most once a second; iamauth.CredentialRetryEvery is %s", iamauth.CredentialRetryEvery)
	}
	for _, want := range []string{
		fmt.Sprintf("A login waits at most %d s for credentials in all, each request to the credentials endpoint at most %d s",
			int(iamauth.DefaultSignTimeout.Seconds()), int(iamauth.RequestTimeout.Seconds())),
		fmt.Sprintf("`no answer within %s, the wait before the dial included`", iamauth.DefaultSignTimeout),
		fmt.Sprintf("well inside the %d s login bound", int(mysqltls.LoginTimeout.Seconds())),
		fmt.Sprintf("`no answer within %s`", iamauth.DefaultSignTimeout),
		"the endpoint is asked again at most once a second",
		fmt.Sprintf("bounded as a login is (%s, `mysqltls.LoginTimeout`)", humanDuration(mysqltls.LoginTimeout)),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("docs/iam.md does not say %q", want)
		}
	}
}

// troubleshooting.md states how often a start-up wait for credentials is
// shown and how long one attempt at a silent endpoint lasts (three
// requests: the SDK retries twice).
func TestDocsIAMStartupWait(t *testing.T) {
	text := strings.Join(strings.Fields(userDocs(t)["docs/troubleshooting.md"]), " ")
	for _, want := range []string{
		fmt.Sprintf("repeated every %d s until it answers or fails", int(iamauth.WaitReport.Seconds())),
		fmt.Sprintf("lasts about %d s (each request %d s, and the AWS SDK retries it twice)",
			int(3*iamauth.RequestTimeout.Seconds()), int(iamauth.RequestTimeout.Seconds())),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("docs/troubleshooting.md does not say %q", want)
		}
	}
}

// The greeting's and the TLS handshake's waits are CONNECT_TIMEOUT's, cut
// to the login's bound (Target.HandshakeWait): the docs that state the
// wait say so, with that bound.
func TestDocsGreetingWaitBound(t *testing.T) {
	bound := humanDuration(mysqltls.LoginTimeout)
	if got := (&mysqltls.Target{HandshakeTimeout: config.MaxConnectTimeout}).HandshakeWait(); got != mysqltls.LoginTimeout {
		t.Fatalf("with CONNECT_TIMEOUT at its largest the wait is %s, not the login's %s: fix the docs below", got, bound)
	}
	docs := userDocs(t)
	for _, tt := range []struct{ doc, want string }{
		{"docs/tls.md", "The wait is bounded by `CONNECT_TIMEOUT` per address, at most the login's " + bound + ";"},
		{"README.md", "for the TLS handshake, each (at most " + bound + ", the login's bound)."},
	} {
		if !strings.Contains(strings.Join(strings.Fields(docs[tt.doc]), " "), tt.want) {
			t.Errorf("%s does not say %q", tt.doc, tt.want)
		}
	}
	// sidecar --help, which a newcomer reads before the README.
	for _, st := range config.Settings {
		if want := "for the TLS handshake, each (at most " + bound + ", the login's bound)"; st.Name == "CONNECT_TIMEOUT" && !strings.HasSuffix(st.Meaning, want) {
			t.Errorf("CONNECT_TIMEOUT's --help meaning %q does not end %q", st.Meaning, want)
		}
	}
}

// tls.md's refusal table and iam.md's COM_CHANGE_USER quote the login
// packet limit, in each message that states it, the app's and the
// database's.
func TestDocsMaxLoginPacket(t *testing.T) {
	login := fmt.Sprintf("`sidecar: the app's login packet is over %d bytes`", mysqltls.MaxLoginPacket)
	changeUser := fmt.Sprintf("`sidecar: the app's COM_CHANGE_USER is over %d bytes`", mysqltls.MaxLoginPacket)
	server := fmt.Sprintf("`sidecar: the database sent a login packet over %d bytes`", mysqltls.MaxLoginPacket)
	for _, tt := range []struct{ doc, want string }{
		{"docs/tls.md", login},
		{"docs/tls.md", server},
		{"docs/tls.md", changeUser},
		{"docs/iam.md", changeUser},
		{"docs/iam.md", login}, // a LOCAL_PASSWORD switch's answer at login
	} {
		if !strings.Contains(strings.Join(strings.Fields(userDocs(t)[tt.doc]), " "), tt.want) {
			t.Errorf("%s does not say %s", tt.doc, tt.want)
		}
	}
}

// ecs.md's stopTimeout bullet states Fargate's limit that the start-up
// warning uses, and that the sidecar warns.
func TestDocsFargateStopTimeout(t *testing.T) {
	text := strings.Join(strings.Fields(userDocs(t)["docs/ecs.md"]), " ")
	for _, want := range []string{
		fmt.Sprintf("Fargate maximum %d s", int(config.FargateMaxStopTimeout.Seconds())),
		"On Fargate the sidecar warns at start",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("docs/ecs.md does not say %q", want)
		}
	}
}

// Every copy of DRAIN_TIMEOUT's default and of ECS's default stopTimeout
// in the docs' prose (the README's and the image's "DRAIN_TIMEOUT (20 s)",
// ecs.md's "default 20 s vs 30 s") is the value the code has.
func TestDocsDrainAndStopTimeoutDefaults(t *testing.T) {
	drain, stop := int(proxy.DefaultDrainTimeout.Seconds()), int(config.DefaultStopTimeout.Seconds())
	copies := []struct {
		re   *regexp.Regexp
		want []int // one per group
	}{
		{regexp.MustCompile("`DRAIN_TIMEOUT` \\((\\d+) s"), []int{drain}},
		{regexp.MustCompile("`stopTimeout` \\((\\d+) s"), []int{stop}},
		{regexp.MustCompile(`\(default (\d+) s vs (\d+) s\)`), []int{drain, stop}},
		{regexp.MustCompile(`\(default (\d+) s, Fargate maximum`), []int{stop}},
	}
	found := 0
	for path, text := range userDocs(t) {
		text = strings.Join(strings.Fields(text), " ")
		for _, c := range copies {
			for _, m := range c.re.FindAllStringSubmatch(text, -1) {
				found++
				for i, want := range c.want {
					if got, _ := strconv.Atoi(m[i+1]); got != want {
						t.Errorf("%s: %q says %d s; the default is %d s", path, m[0], got, want)
					}
				}
			}
		}
	}
	if found < 6 {
		t.Errorf("found %d copies of the drain and stop timeout defaults in the docs; the patterns no longer match them", found)
	}
}

// The "starting" line docs/operations.md shows is the one the sidecar logs
// for the README's task definition: the same fields in the same order,
// each with the value the defaults give (version, commit and the
// forward's target name are the example's own).
func TestDocsStartingLineIsTheDefaults(t *testing.T) {
	var documented string
	for _, l := range strings.Split(docSection(t, "docs/operations.md", "## Logs"), "\n") {
		if strings.Contains(l, `"msg":"starting"`) {
			documented = l
		}
	}
	if documented == "" {
		t.Fatal(`docs/operations.md's Logs section has no "starting" line`)
	}
	env := map[string]string{"TARGET_HOST": "orders.cluster-c1a2b3c4d5e6.eu-west-1.rds.amazonaws.com", "TARGET_PORT": "3306", "LISTEN_ADDR": "127.0.0.1"}
	cfg, err := config.Parse(lookupMap(env))
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	attrs := append([]slog.Attr{slog.String("version", "1.0.0"), slog.String("commit", "3f2a…")}, cfg.LogAttrs()...)
	config.NewLogger(&logged, config.LogJSON, slog.LevelInfo).LogAttrs(context.Background(), slog.LevelInfo, "starting", attrs...)

	docKeys, docValues := jsonFields(t, documented)
	keys, values := jsonFields(t, logged.String())
	if !slices.Equal(docKeys, keys) {
		t.Errorf("docs/operations.md's starting line has the fields\n%v\nthe sidecar logs\n%v", docKeys, keys)
	}
	for _, k := range keys {
		switch k {
		case "time", "version", "commit":
			continue
		case "forwards": // the doc shortens the target's name
			if want := `["127.0.0.1:8080=orders.cluster-`; !strings.HasPrefix(docValues[k], want) || !strings.HasPrefix(values[k], want) {
				t.Errorf("forwards: the doc says %s, the sidecar %s; want both to start %s", docValues[k], values[k], want)
			}
			continue
		}
		if docValues[k] != values[k] {
			t.Errorf("docs/operations.md's starting line has %s %s; the sidecar logs %s", k, docValues[k], values[k])
		}
	}
}

// jsonFields returns a JSON object's keys in order, and each one's value
// as written.
func jsonFields(t *testing.T, line string) ([]string, map[string]string) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object (%v): %s", err, line)
	}
	var keys []string
	values := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		keys = append(keys, tok.(string))
		values[tok.(string)] = string(v)
	}
	return keys, values
}

// ecs.md's ulimits bullet states the open-files need the start-up warning
// computes (fdsPerConnection, fdsPerForward, fdsBase), and its example's
// hard limit, as Fargate's default it quotes, meets it for the default
// MAX_CONNECTIONS.
func TestDocsOpenFilesNeed(t *testing.T) {
	text := strings.Join(strings.Fields(userDocs(t)["docs/ecs.md"]), " ")
	def, err := strconv.Atoi(config.Default("MAX_CONNECTIONS"))
	if err != nil {
		t.Fatal(err)
	}
	plain := config.Config{MaxConnections: def, Forwards: make([]config.Forward, 1)}
	withTLS := plain
	withTLS.TLS = config.TLSVerifyIdentity
	need := openFilesNeeded(plain)
	for _, want := range []string{
		fmt.Sprintf("needs %d open files a connection (its two sockets, and a splice pipe each way while it carries bulk data), "+
			"%d a forward and %d besides: %d for the default `MAX_CONNECTIONS` (%d) and one forward", fdsPerConnection(plain), fdsPerForward, fdsBase, need, def),
		fmt.Sprintf("With `TARGET_TLS` a connection needs %d open files, its sockets alone (TLS bytes pass through the sidecar, "+
			"never through a splice pipe): %d.", fdsPerConnection(withTLS), openFilesNeeded(withTLS)),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("docs/ecs.md does not say %q", want)
		}
	}
	if openFilesNeeded(withTLS) > need {
		t.Errorf("TLS needs more open files (%d) than plain (%d): the hard limit checked below must be the larger", openFilesNeeded(withTLS), need)
	}
	for _, re := range []string{`"hardLimit": (\d+) \}\]`, `Fargate's default, (\d+), covers either`} {
		m := regexp.MustCompile(re).FindStringSubmatch(text)
		if m == nil {
			t.Errorf("docs/ecs.md's ulimits bullet has no match for %s", re)
			continue
		}
		if n, _ := strconv.ParseUint(m[1], 10, 64); n < need {
			t.Errorf("docs/ecs.md: %q is short of the %d the default MAX_CONNECTIONS needs", m[0], need)
		}
	}
}

// The limits the configuration enforces are the ones the table states.
func TestDocsDurationLimits(t *testing.T) {
	readme := userDocs(t)["README.md"]
	for name, limit := range map[string]string{
		"CONNECT_TIMEOUT":      "`" + config.MinConnectTimeout.String() + "`",
		"IDLE_TIMEOUT":         "`" + config.MinIdleTimeout.String() + "`",
		"STALE_CHECK_INTERVAL": "`" + config.MinStaleCheckInterval.String() + "`",
		"DNS_CACHE_TTL":        "`" + config.MaxDNSCacheTTL.String() + "`",
		"KEEPALIVE":            "`" + strconv.Itoa(int(config.MaxKeepalive.Seconds())) + "s`",
	} {
		if row := configRow(t, readme, name); !strings.Contains(strings.ReplaceAll(row, "`", ""), strings.Trim(limit, "`")) {
			t.Errorf("README row for %s does not state its limit %s: %q", name, limit, row)
		}
	}
}

// KEEPALIVE's probe interval is a third of it, but never below a second
// (proxy's setKeepalive) and rounded up to whole seconds (Go's net sets
// TCP_KEEPINTVL in seconds): KEEPALIVE=4s probes every 2s, not 1.33s. The
// README row and --help say so, not a bare "every third of it".
func TestDocsKeepaliveInterval(t *testing.T) {
	cells := strings.Split(configRow(t, userDocs(t)["README.md"], "KEEPALIVE"), " | ")
	readme := cells[len(cells)-1] // the meaning, not what is accepted
	var meaning string
	for _, st := range config.Settings {
		if st.Name == "KEEPALIVE" {
			meaning = st.Meaning
		}
	}
	for _, want := range []string{"third of it rounded up to whole seconds", "at least 1s"} {
		for where, text := range map[string]string{"README meaning": readme, "config.Settings meaning": meaning} {
			if !strings.Contains(strings.ReplaceAll(text, "`", ""), want) {
				t.Errorf("KEEPALIVE %s does not say %q: %q", where, want, text)
			}
		}
	}
}

// The README's configuration table is config.Settings: the same variables
// in the same order, with the same defaults and accepted values (Markdown
// backticks aside); the meaning column may say more.
func TestREADMEConfigTableMatchesSettings(t *testing.T) {
	readme := userDocs(t)["README.md"]
	var rows [][]string
	for _, l := range strings.Split(readme, "\n") {
		if strings.HasPrefix(l, "| `") && strings.Count(l, " | ") >= 3 {
			cells := strings.Split(strings.Trim(l, "| "), " | ")
			rows = append(rows, cells)
		}
	}
	plain := func(s string) string { return strings.ReplaceAll(s, "`", "") }
	if len(rows) != len(config.Settings) {
		t.Errorf("README table has %d rows, config.Settings %d", len(rows), len(config.Settings))
	}
	for i, st := range config.Settings {
		if i >= len(rows) {
			t.Errorf("README table lacks %s", st.Name)
			continue
		}
		r := rows[i]
		wantDefault := defaultCell(st)
		switch {
		case r[0] != "`"+st.Name+"`":
			t.Errorf("README row %d is %s, want %s (config.Settings order)", i+1, r[0], st.Name)
		case r[1] != wantDefault:
			t.Errorf("README %s default %q, want %q", st.Name, r[1], wantDefault)
		case plain(r[2]) != st.Accepted:
			t.Errorf("README %s accepted values\n%q, want\n%q", st.Name, plain(r[2]), st.Accepted)
		case strings.TrimSpace(r[3]) == "":
			t.Errorf("README %s has no meaning", st.Name)
		}
	}
}

// sidecar --help lists every variable with its default.
func TestHelpListsEverySetting(t *testing.T) {
	var stdout, stderr testkit.LockedBuffer
	if code := run(context.Background(), []string{"--help"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("--help: exit %d, stderr %q", code, stderr.String())
	}
	out := stdout.String()
	for _, st := range config.Settings {
		def := st.DefaultText()
		if !regexp.MustCompile(`(?m)^  ` + st.Name + ` +default: ` + regexp.QuoteMeta(def) + `$`).MatchString(out) {
			t.Errorf("--help has no line for %s with default %s:\n%s", st.Name, def, out)
		}
		if !strings.Contains(out, "accepted: "+st.Accepted) {
			t.Errorf("--help does not say what %s accepts", st.Name)
		}
	}
}

// What counts as unset is said the same way by --help and the README,
// and is what Parse does: a blank TARGET_HOST is reported as not set.
func TestHelpAndREADMESayWhatCountsAsUnset(t *testing.T) {
	var stdout, stderr testkit.LockedBuffer
	if code := run(context.Background(), []string{"--help"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("--help: exit %d, stderr %q", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), config.UnsetRule) {
		t.Errorf("--help does not say %q:\n%s", config.UnsetRule, stdout.String())
	}
	readme := strings.Join(strings.Fields(userDocs(t)["README.md"]), " ")
	if !strings.Contains(strings.ToLower(readme), config.UnsetRule) {
		t.Errorf("README does not say %q", config.UnsetRule)
	}
	_, err := config.Parse(func(k string) (string, bool) {
		return map[string]string{"TARGET_HOST": " \t ", "TARGET_PORT": "3306"}[k], k == "TARGET_HOST" || k == "TARGET_PORT"
	})
	if err == nil || !strings.Contains(err.Error(), "TARGET_HOST is not set") {
		t.Errorf("a blank TARGET_HOST: %v, want it reported as not set", err)
	}
}

// docs/tls.md says what an empty server_name in the log means: an IP
// target without TARGET_SERVER_NAME, for which ServerName is empty.
func TestDocsEmptyServerName(t *testing.T) {
	c := config.Config{}
	if got := c.ServerName(config.Forward{TargetHost: "127.0.0.1", TargetPort: 3306}); got != "" {
		t.Fatalf("ServerName of an IP target = %q; the doc says it is empty", got)
	}
	if got := c.ServerName(config.Forward{TargetHost: "db.example", TargetPort: 3306}); got != "db.example" {
		t.Fatalf("ServerName of a DNS target = %q, want db.example", got)
	}
	text := strings.Join(strings.Fields(userDocs(t)["docs/tls.md"]), " ")
	if want := "An empty `server_name` (`\"\"`, also in the `starting` line's `server_names`) means the target is an IP address and `TARGET_SERVER_NAME` is unset"; !strings.Contains(text, want) {
		t.Errorf("docs/tls.md does not say %q", want)
	}
}

// The departure grace the docs state is the proxy's default.
func TestDocsDepartureGrace(t *testing.T) {
	text := strings.Join(strings.Fields(userDocs(t)["docs/operations.md"]), " ")
	for _, want := range []string{
		fmt.Sprintf("at least %d clients per second leave", proxy.DefaultDepartureFlood),
		fmt.Sprintf("waits up to %s before the dial", strings.Replace(proxy.DefaultDepartureGrace.String(), "ms", " ms", 1)),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("docs/operations.md does not say %q", want)
		}
	}
}

// The stall section states how long a database whose window holds data
// back may go unheard (tcpstall.WindowSilence) and how often a connection
// is checked (tcpstall.Period).
func TestDocsWindowSilence(t *testing.T) {
	text := strings.Join(strings.Fields(userDocs(t)["docs/operations.md"]), " ")
	want := fmt.Sprintf("taken for gone after %d s", int(tcpstall.WindowSilence.Seconds()))
	if !strings.Contains(text, want) {
		t.Errorf("docs/operations.md does not say %q", want)
	}
	if !strings.Contains(text, "every eighth of that time") {
		t.Error("docs/operations.md does not say how often the stall check runs: \"every eighth of that time\"")
	}
	for _, bound := range []time.Duration{10 * time.Second, 60 * time.Second} { // with KEEPALIVE=4s (the docs' example) and the default
		if got := tcpstall.Period(bound); got != bound/8 {
			t.Errorf("tcpstall.Period(%s) = %s; the docs say an eighth, %s", bound, got, bound/8)
		}
	}
}

// docs/tls.md's refusal table has a row for every reason the sidecar logs
// and counts, and no other.
func TestDocsTLSRefusalReasons(t *testing.T) {
	t.Parallel()
	checkReasonTable(t, "docs/tls.md", "| `reason` | What the app reads | What to do |", "mysqltls.Reasons", mysqltls.Reasons)
}

// checkReasonTable checks that doc's table under header has a row for
// each of reasons (named from), and no other.
func checkReasonTable(t *testing.T, doc, header, from string, reasons []string) {
	t.Helper()
	_, table, _ := strings.Cut(userDocs(t)[doc], header)
	table, _, _ = strings.Cut(table, "\n\n")
	var rows []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_0-9]+)` \\|").FindAllStringSubmatch(table, -1) {
		rows = append(rows, m[1])
	}
	want := slices.Clone(reasons)
	slices.Sort(want)
	slices.Sort(rows)
	if !slices.Equal(rows, want) {
		t.Errorf("%s's refusal table has rows %v; want one per %s: %v", doc, rows, from, want)
	}
}

// defaultCell is a setting's Default cell in a docs table.
func defaultCell(st config.Setting) string {
	switch {
	case st.Default != "":
		return "`" + st.Default + "`"
	case st.Unset != "":
		return "*(" + st.Unset + ")*"
	}
	return "—"
}

// docs/tls.md's settings table gives the same defaults as config.Settings.
func TestDocsTLSSettingsDefaults(t *testing.T) {
	t.Parallel()
	tlsDoc := userDocs(t)["docs/tls.md"]
	seen := 0
	for _, line := range strings.Split(tlsDoc, "\n") {
		cells := strings.Split(line, " | ")
		if len(cells) < 3 || !strings.HasPrefix(cells[0], "| `") {
			continue
		}
		name := strings.Trim(cells[0], "| `")
		for _, st := range config.Settings {
			if st.Name == name {
				seen++
				if cells[1] != defaultCell(st) {
					t.Errorf("docs/tls.md: %s default %q, want %q (config.Settings)", name, cells[1], defaultCell(st))
				}
			}
		}
	}
	if seen < 3 {
		t.Errorf("docs/tls.md's settings table has %d of the TLS settings", seen)
	}
}

// docs/tls.md lists the regions the embedded bundle covers, as rdsca finds
// them in it.
func TestDocsRDSBundleRegions(t *testing.T) {
	t.Parallel()
	tlsDoc := userDocs(t)["docs/tls.md"]
	_, after, _ := strings.Cut(tlsDoc, "It has the RDS roots of these regions: ")
	list, _, _ := strings.Cut(after, ".\n")
	got := strings.Split(strings.Join(strings.Fields(list), " "), ", ")
	if want := rdsca.Regions(); !slices.Equal(got, want) {
		t.Errorf("docs/tls.md lists regions %v; the embedded bundle has %v", got, want)
	}
}

// The troubleshooting row for the open-files warning states the counts
// openFilesNeeded uses and what Fargate's default limit holds with one
// forward; this ties them to the constants.
func TestDocsOpenFilesCounts(t *testing.T) {
	words := map[uint64]string{2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}
	const fargate = 65535
	plain, withTLS := config.Config{}, config.Config{TLS: config.TLSVerifyCA}
	hundreds := func(cfg config.Config) uint64 {
		return (fargate - fdsBase - fdsPerForward) / fdsPerConnection(cfg) / 100 * 100
	}
	h, ht := hundreds(plain), hundreds(withTLS)
	doc := strings.Join(strings.Fields(userDocs(t)["docs/troubleshooting.md"]), " ")
	for _, want := range []string{
		words[fdsPerConnection(plain)] + " descriptors a connection",
		words[fdsPerConnection(withTLS)] + " with `TARGET_TLS` (its sockets alone",
		words[fdsPerForward] + " per forward",
		fmt.Sprintf("%d, holds about %d,%03d connections, or %d,%03d with `TARGET_TLS`", fargate, h/1000, h%1000, ht/1000, ht%1000),
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/troubleshooting.md does not say %q", want)
		}
	}
}

// The portable data path sees a reset of a side that is not read (one
// whose direction waits to write to the other) at its next look, every
// relay.StuckCheck: docs/operations.md says within a fraction of a second,
// as for IAM sessions, which mysqltls.Relay carries on either data path.
func TestDocsStuckCheck(t *testing.T) {
	text := strings.Join(strings.Fields(userDocs(t)["docs/operations.md"]), " ")
	const want = "within a fraction of a second with `DATA_PATH=portable` and for `TARGET_AUTH=iam` sessions"
	if !strings.Contains(text, want) {
		t.Errorf("docs/operations.md does not say %q", want)
	}
	if relay.StuckCheck >= time.Second {
		t.Errorf("relay.StuckCheck = %s; docs/operations.md says %q", relay.StuckCheck, want)
	}
}

// README's FORWARDS row says why a host spelled as a key is refused, in
// the words of the refusal itself, and the name it suggests is accepted.
func TestDocsForwardsKeyHost(t *testing.T) {
	readme := userDocs(t)["README.md"]
	const why = "spelled as a credential's key"
	_, err := config.Parse(func(k string) (string, bool) { return "3307=db_password:3306", k == "FORWARDS" })
	if err == nil || !strings.Contains(err.Error(), "host db_password is "+why) || !strings.Contains(err.Error(), "(db-password: ") {
		t.Errorf("FORWARDS=3307=db_password:3306: %v; want the host named as the reason, and db-password given instead", err)
	}
	if !strings.Contains(readme, "A host "+why+" (`db_password`") || !strings.Contains(readme, "(`db-password`)") {
		t.Errorf("README's FORWARDS row does not say a host %s (db_password) is refused, nor suggest db-password", why)
	}
	if _, err := config.Parse(func(k string) (string, bool) { return "3307=db-password:3306", k == "FORWARDS" }); err != nil {
		t.Errorf("FORWARDS=3307=db-password:3306, the name README suggests: %v", err)
	}
}

// What docs/operations.md says a drain that cut connections logs (its
// drain steps' "logged as `…`", its symptom row's "(`…` in logs)") is in
// what the sidecar logs at the default level, where an operator looks.
func TestDocsDrainDeadlineLogLines(t *testing.T) {
	ops := userDocs(t)["docs/operations.md"]
	drain := docSection(t, "docs/operations.md", "## Deploys and the drain")
	var quoted []string
	for _, m := range regexp.MustCompile("logged as `([^`]+)`").FindAllStringSubmatch(drain, -1) {
		quoted = append(quoted, m[1])
	}
	for _, m := range regexp.MustCompile("\\| Connections cut on deploy \\(`([^`]+)` in logs\\)").FindAllStringSubmatch(ops, -1) {
		quoted = append(quoted, m[1])
	}
	if len(quoted) < 2 {
		t.Fatalf("found %d quotes of the drain deadline's log in docs/operations.md (its drain steps and symptom table); want 2", len(quoted))
	}

	env, listen := echoForward(t)
	env["DRAIN_TIMEOUT"] = "100ms" // LOG_LEVEL unset: the default, info
	cancel, done, stderr := runAsync(t, env)
	waitHealthy(t, env, true)
	c := echoedConn(t, listen) // held past the deadline
	defer c.Close()
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d after a drain that cut a connection, want 0:\n%s", code, stderr)
	}
	logs := stderr.String()
	if !strings.Contains(logs, `"connections_cut":1`) {
		t.Fatalf("the drain cut no connection:\n%s", logs)
	}
	for _, q := range quoted {
		if !strings.Contains(logs, q) {
			t.Errorf("docs/operations.md says a drain that cut connections logs %q; at the default level it does not:\n%s", q, logs)
		}
	}
}
