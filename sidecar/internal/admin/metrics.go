package admin

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/example/sidecar/sidecar/internal/iamauth"
	"github.com/example/sidecar/sidecar/internal/proxy"
)

// WriteMetrics writes the Prometheus text exposition (format 0.0.4). snap is
// nil in sleep mode.
func WriteMetrics(w io.Writer, cfg Config, ready bool, snap *proxy.Snapshot) error {
	b := bufio.NewWriter(w)
	p := promWriter{w: b}

	p.family("sidecar_build_info", "gauge", "Always 1; labels say what runs.")
	p.sample("sidecar_build_info", labels("version", cfg.Version, "commit", cfg.Commit, "mode", cfg.Mode), 1)
	p.family("sidecar_ready", "gauge", "1 when every listener is up, no drain has begun and, with TARGET_AUTH=iam, AWS credentials were obtained (what /readyz reports).")
	p.sample("sidecar_ready", "", boolGauge(ready))
	draining := false
	if snap != nil {
		draining = snap.Draining
	}
	p.family("sidecar_draining", "gauge", "1 once shutdown has begun: not accepting, in-flight connections finishing.")
	p.sample("sidecar_draining", "", boolGauge(draining))

	if cfg.IAM != nil {
		st := cfg.IAM.Stats()
		p.family("sidecar_iam_tokens_signed_total", "counter", "IAM auth tokens signed (TARGET_AUTH=iam), counted before the database answers the login they go in.")
		p.sample("sidecar_iam_tokens_signed_total", "", float64(st.Signed))
		p.family("sidecar_iam_tokens_reused_total", "counter", "Logins that reused a cached IAM token.")
		p.sample("sidecar_iam_tokens_reused_total", "", float64(st.Reused))
		p.family("sidecar_iam_failures_total", "counter", "IAM logins that failed, by reason; the app got an ERR saying why.")
		for _, r := range iamauth.Reasons {
			p.sample("sidecar_iam_failures_total", labels("reason", r), float64(st.Failures[r]))
		}
	}
	writeRuntimeMetrics(&p)
	if fds, ok := openFDs(); ok {
		p.family("process_open_fds", "gauge", "Open file descriptors.")
		p.sample("process_open_fds", "", float64(fds))
	}
	if limit, ok := maxFDs(); ok {
		p.family("process_max_fds", "gauge", "File descriptor limit (RLIMIT_NOFILE soft limit).")
		p.sample("process_max_fds", "", float64(limit))
	}

	if snap != nil {
		fw := snap.Forwards
		each := func(name, typ, help string, value func(proxy.ForwardSnapshot) float64) {
			p.family(name, typ, help)
			for _, f := range fw {
				p.sample(name, fwdLabels(f), value(f))
			}
		}
		byLabel := func(name, help, label string, counts func(proxy.ForwardSnapshot) []proxy.Count) {
			p.family(name, "counter", help)
			for _, f := range fw {
				for _, c := range counts(f) {
					p.sample(name, fwdLabels(f, label, c.Label), float64(c.Value))
				}
			}
		}
		each("sidecar_connections_active", "gauge", "Connections in progress.",
			func(f proxy.ForwardSnapshot) float64 { return float64(f.Active) })
		each("sidecar_connections_total", "counter", "Connections accepted and admitted.",
			func(f proxy.ForwardSnapshot) float64 { return float64(f.Total) })
		each("sidecar_connections_rejected_total", "counter", "Connections closed at once because MAX_CONNECTIONS was reached.",
			func(f proxy.ForwardSnapshot) float64 { return float64(f.Rejected) })
		each("sidecar_accept_errors_total", "counter", "Failed accepts (for example out of file descriptors).",
			func(f proxy.ForwardSnapshot) float64 { return float64(f.AcceptErrors) })
		each("sidecar_dns_held_answers_total", "counter", "Failed lookups of the target (timeout or SERVFAIL) after which new connections kept using the last DNS answer (DNS_CACHE_TTL).",
			func(f proxy.ForwardSnapshot) float64 { return float64(f.HeldAnswers) })
		byLabel("sidecar_dial_failures_total", "Failed dials to the target, per address tried, by reason.", "reason",
			func(f proxy.ForwardSnapshot) []proxy.Count { return f.DialFailures })
		byLabel("sidecar_connections_closed_total", "Connections ended, by reason.", "reason",
			func(f proxy.ForwardSnapshot) []proxy.Count { return f.ConnectionsClosed })
		if slices.ContainsFunc(fw, func(f proxy.ForwardSnapshot) bool { return f.TLSRefusals != nil }) {
			byLabel("sidecar_tls_refusals_total", "MySQL logins refused by the sidecar in TLS mode (TARGET_TLS), by reason; the app got an ERR packet saying why.", "reason",
				func(f proxy.ForwardSnapshot) []proxy.Count { return f.TLSRefusals })
		}
		p.family("sidecar_bytes_total", "counter", "Bytes relayed, counted as they are delivered, including on connections still open.")
		for _, f := range fw {
			p.sample("sidecar_bytes_total", fwdLabels(f, "direction", "to_upstream"), float64(f.BytesToUpstream))
			p.sample("sidecar_bytes_total", fwdLabels(f, "direction", "to_client"), float64(f.BytesToClient))
		}
	}
	if p.err != nil {
		return p.err
	}
	return b.Flush()
}

type promWriter struct {
	w   *bufio.Writer
	err error
}

func (p *promWriter) family(name, typ, help string) {
	p.printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func (p *promWriter) sample(name, labels string, v float64) {
	p.printf("%s%s %v\n", name, labels, v)
}

func (p *promWriter) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

func fwdLabels(f proxy.ForwardSnapshot, extra ...string) string {
	return labels(append([]string{"listen_port", f.Listen, "target", f.Target}, extra...)...)
}

// labels renders name/value pairs as {a="x",b="y"}, escaped per the format.
func labels(kv ...string) string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(kv[i])
		sb.WriteString(`="`)
		sb.WriteString(labelEscaper.Replace(kv[i+1]))
		sb.WriteByte('"')
	}
	sb.WriteByte('}')
	return sb.String()
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func openFDs() (int, bool) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, false
	}
	return len(ents), true
}
