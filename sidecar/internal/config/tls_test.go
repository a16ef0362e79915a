package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/example/sidecar/sidecar/internal/rdsca"
)

func TestParseTLS(t *testing.T) {
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, rdsca.PEM[:strings.Index(string(rdsca.PEM), "-----END CERTIFICATE-----")+26], 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	firstCA := rdsca.PEM[:strings.Index(string(rdsca.PEM), "-----END CERTIFICATE-----")+26]
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	file := func(name string, parts ...[]byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Join(parts, nil), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	withKey := file("with-key.pem", firstCA, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	badDER := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("not DER")})
	damaged := file("damaged.pem", badDER, firstCA, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: []byte{0x30, 0}}),
		[]byte("-----BEGIN CERTIFICATE-----\nnot*base64\n-----END CERTIFICATE-----\n"))
	onlyDamaged := file("only-damaged.pem", badDER)
	bundle := file("bundle.pem", []byte("# Amazon RDS, every region\n"), rdsca.PEM, []byte("# the end\n")) // text between blocks, as in ca-certificates
	// What Windows PowerShell 5's Set-Content -Encoding UTF8 and older Notepads put first.
	withBOM := file("bom.pem", []byte("\xef\xbb\xbf"), firstCA)
	for _, tc := range []struct {
		name        string
		env         map[string]string
		wantMode    TLSMode
		wantCAFrom  string
		wantNames   []string // per forward, in listen port order
		wantProblem []string // each must appear in the error
		wantSkipped []string // each must appear in TLSCASkipped, in order
	}{
		{name: "off by default; the TLS variables are not read",
			env:      map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306", "TARGET_TLS_CA": "/nonexistent"},
			wantMode: TLSDisabled},
		{name: "verify-identity, any case, the name defaults to the host and the CA to the RDS bundle",
			env:      map[string]string{"TARGET_HOST": "x.cluster-abc.us-east-1.rds.amazonaws.com.", "TARGET_PORT": "3306", "TARGET_TLS": "Verify-Identity"},
			wantMode: TLSVerifyIdentity, wantCAFrom: rdsca.Name, wantNames: []string{"x.cluster-abc.us-east-1.rds.amazonaws.com"}},
		{name: "an IP target with TARGET_SERVER_NAME and a CA file",
			env: map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": "3306", "TARGET_TLS": "verify-identity",
				"TARGET_SERVER_NAME": "x.cluster-abc.us-east-1.rds.amazonaws.com", "TARGET_TLS_CA": caFile},
			wantMode: TLSVerifyIdentity, wantCAFrom: caFile, wantNames: []string{"x.cluster-abc.us-east-1.rds.amazonaws.com"}},
		{name: "verify-ca accepts an IP target with no name",
			env:      map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": "3306", "TARGET_TLS": "VERIFY-CA"},
			wantMode: TLSVerifyCA, wantCAFrom: rdsca.Name, wantNames: []string{""}},
		{name: "MySQL's spelling: VERIFY_IDENTITY",
			env:      map[string]string{"TARGET_HOST": "x.cluster-abc.us-east-1.rds.amazonaws.com", "TARGET_PORT": "3306", "TARGET_TLS": "VERIFY_IDENTITY"},
			wantMode: TLSVerifyIdentity, wantCAFrom: rdsca.Name, wantNames: []string{"x.cluster-abc.us-east-1.rds.amazonaws.com"}},
		{name: "verify_ca",
			env:      map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": "3306", "TARGET_TLS": "verify_ca"},
			wantMode: TLSVerifyCA, wantCAFrom: rdsca.Name, wantNames: []string{""}},
		{name: "with FORWARDS each forward's name is its own host",
			env:      map[string]string{"FORWARDS": "8080=w.cluster-a.rds.amazonaws.com:3306,8081=r.cluster-ro-a.rds.amazonaws.com:3306", "TARGET_TLS": "verify-identity"},
			wantMode: TLSVerifyIdentity, wantCAFrom: rdsca.Name, wantNames: []string{"w.cluster-a.rds.amazonaws.com", "r.cluster-ro-a.rds.amazonaws.com"}},
		{name: "verify-identity with an IP target and no name",
			env:         map[string]string{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": "3306", "TARGET_TLS": "verify-identity"},
			wantProblem: []string{"TARGET_SERVER_NAME is not set", "127.0.0.1 is an IP address", "verify-ca"}},
		{name: "verify-identity with an IP in FORWARDS and no name",
			env:         map[string]string{"FORWARDS": "8080=db.example:3306,8081=[::1]:3306", "TARGET_TLS": "verify-identity"},
			wantProblem: []string{"TARGET_SERVER_NAME is not set", "::1 is an IP address"}},
		{name: "an encrypt-without-verify mode is refused",
			env:         map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306", "TARGET_TLS": "required"},
			wantProblem: []string{`TARGET_TLS="required" is invalid; accepted: disabled, verify-ca or verify-identity`}},
		{name: "unreadable CA file",
			env:         map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306", "TARGET_TLS": "verify-ca", "TARGET_TLS_CA": filepath.Join(dir, "missing.pem")},
			wantProblem: []string{`TARGET_TLS_CA="` + filepath.Join(dir, "missing.pem") + `": cannot be read`, "PEM file"}},
		{name: "CA file without a certificate",
			env:         map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306", "TARGET_TLS": "verify-ca", "TARGET_TLS_CA": empty},
			wantProblem: []string{`TARGET_TLS_CA="` + empty + `": holds no PEM certificate`}},
		{name: "a private key in the CA file",
			env:         map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306", "TARGET_TLS": "verify-ca", "TARGET_TLS_CA": withKey},
			wantProblem: []string{`TARGET_TLS_CA="` + withKey + `": PEM block 2 is "EC PRIVATE KEY": a private key does not belong in a file of trusted CAs`}},
		{name: "what cannot be used beside a certificate that can is skipped, and named",
			env:      map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306", "TARGET_TLS": "verify-ca", "TARGET_TLS_CA": damaged},
			wantMode: TLSVerifyCA, wantCAFrom: damaged, wantNames: []string{"db.example"},
			wantSkipped: []string{"PEM block 1 is a CERTIFICATE that does not parse (", `PEM block 3 is "X509 CRL", not a CERTIFICATE`,
				"1 PEM block(s) could not be decoded (bad base64 or no END line)"}},
		{name: "only a certificate that does not parse",
			env:         map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306", "TARGET_TLS": "verify-ca", "TARGET_TLS_CA": onlyDamaged},
			wantProblem: []string{`TARGET_TLS_CA="` + onlyDamaged + `": holds no certificate that can be used: PEM block 1 is a CERTIFICATE that does not parse (`}},
		{name: "the whole RDS bundle, with text around it",
			env:      map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306", "TARGET_TLS": "verify-ca", "TARGET_TLS_CA": bundle},
			wantMode: TLSVerifyCA, wantCAFrom: bundle, wantNames: []string{"db.example"}},
		{name: "a CA file that starts with a UTF-8 byte order mark",
			env:      map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306", "TARGET_TLS": "verify-ca", "TARGET_TLS_CA": withBOM},
			wantMode: TLSVerifyCA, wantCAFrom: withBOM, wantNames: []string{"db.example"}},
		{name: "TARGET_SERVER_NAME is an IP",
			env:         map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306", "TARGET_TLS": "verify-identity", "TARGET_SERVER_NAME": "10.0.0.1"},
			wantProblem: []string{`TARGET_SERVER_NAME="10.0.0.1": is an IP address`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if len(tc.wantProblem) > 0 {
				if err == nil {
					t.Fatalf("Parse accepted %v", tc.env)
				}
				for _, w := range tc.wantProblem {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(c.TLSCASkipped) != len(tc.wantSkipped) {
				t.Errorf("skipped %q, want %d", c.TLSCASkipped, len(tc.wantSkipped))
			}
			for i, w := range tc.wantSkipped {
				if i < len(c.TLSCASkipped) && !strings.Contains(c.TLSCASkipped[i], w) {
					t.Errorf("skipped[%d] = %q, want it to contain %q", i, c.TLSCASkipped[i], w)
				}
			}
			if c.TLS != tc.wantMode || c.TLSCAFrom != tc.wantCAFrom {
				t.Errorf("TLS %q from %q; want %q from %q", c.TLS, c.TLSCAFrom, tc.wantMode, tc.wantCAFrom)
			}
			pc := c.Proxy()
			for i, f := range pc.Forwards {
				if tc.wantMode == TLSDisabled {
					if f.TLS != nil {
						t.Errorf("forward %d has TLS with TARGET_TLS=disabled", i)
					}
					continue
				}
				if f.TLS == nil || f.TLS.ServerName != tc.wantNames[i] || string(f.TLS.Mode) != string(tc.wantMode) || f.TLS.Roots == nil || f.TLS.Sessions == nil {
					t.Errorf("forward %d: TLS %+v; want server name %q", i, f.TLS, tc.wantNames[i])
				}
				// One pool lends every forward's TLS sessions (IAM's and Relay's)
				// their buffers: without it each made its own at every burst.
				if f.TLS != nil && (f.TLS.Buffers == nil || f.TLS.Buffers != pc.Forwards[0].TLS.Buffers) {
					t.Errorf("forward %d: Buffers %p; want the one pool every forward shares", i, f.TLS.Buffers)
				}
			}
		})
	}
}

func TestAdminEndpoint(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string // "" = an error
	}{
		{map[string]string{}, "127.0.0.1:9911"},
		{map[string]string{"ADMIN_ADDR": "0.0.0.0", "ADMIN_PORT": "9000"}, "127.0.0.1:9000"},
		{map[string]string{"ADMIN_ADDR": "::"}, "127.0.0.1:9911"}, // dual-stack (admin's TestListenBindsTheFamilyAsked)
		{map[string]string{"ADMIN_ADDR": "10.1.2.3"}, "10.1.2.3:9911"},
		{map[string]string{"ADMIN_ADDR": "localhost"}, ""},
		{map[string]string{"ADMIN_PORT": "x"}, ""},
	} {
		got, err := AdminEndpoint(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
		if tc.want == "" {
			if err == nil || !strings.Contains(err.Error(), "ADMIN_") {
				t.Errorf("%v: %q, %v; want an error naming the variable", tc.env, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%v: %q, %v; want %q", tc.env, got, err, tc.want)
		}
	}
	c, err := Parse(func(k string) (string, bool) {
		v, ok := map[string]string{"MODE": "sleep", "ADMIN_ADDR": "0.0.0.0"}[k]
		return v, ok
	})
	if err != nil || c.AdminListen() != "0.0.0.0:9911" {
		t.Errorf("ADMIN_ADDR=0.0.0.0 binds %q, %v", c.AdminListen(), err)
	}
}
