// Command iamverify is the password check of the IAM test fixture: MariaDB's
// auth_pam runs it through pam_script as pam_script_auth, so the password
// (an RDS IAM token) arrives in PAM_AUTHTOK and the user in PAM_USER.
// (pam_exec's expose_authtok would cut tokens at 512 bytes, PAM's
// PAM_MAX_RESP_SIZE; real tokens are over 1 KB.) It accepts
// only a token that testiam.Verify accepts, and appends its verdict as one
// JSON line to the log named in the config, so tests can tell its refusals
// from anything else's.
//
// Its configuration is iamverify.json next to it.
package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/example/sidecar/internal/testiam"
)

func main() {
	var cfg testiam.VerifierConfig
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(os.Args[0]), "iamverify.json"))
	if err == nil {
		err = json.Unmarshal(raw, &cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "iamverify:", err)
		os.Exit(2)
	}
	token := os.Getenv("PAM_AUTHTOK")
	user := os.Getenv("PAM_USER")
	verr := testiam.Verify(token, testiam.Want{Endpoint: cfg.Endpoint, Region: cfg.Region, User: user, Secrets: cfg.Secrets}, time.Now().Add(cfg.ClockSkew))
	v := testiam.Verdict{User: user, Accepted: verr == nil, TokenLen: len(token)}
	if u, err := url.Parse("https://" + token); err == nil {
		v.Signature = u.Query().Get("X-Amz-Signature")
	}
	if verr != nil {
		v.Reason = verr.Error()
	}
	if f, err := os.OpenFile(cfg.Log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
		line, _ := json.Marshal(v)
		_, _ = f.Write(append(line, '\n'))
		_ = f.Close()
	}
	if verr != nil {
		os.Exit(1)
	}
}
