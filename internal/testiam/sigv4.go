package testiam

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Want is what a token must have been signed for.
type Want struct {
	Endpoint string            // host:port the token names
	Region   string            // signing region
	User     string            // the database user logging in
	Secrets  map[string]string // access key id → secret key: the test's credentials
}

// emptyPayloadHash is SHA-256 of nothing: RDS tokens sign an empty body.
const emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// Verify recomputes the SigV4 presigned-URL signature of an RDS IAM token
// ("host:port?Action=connect&DBUser=…&X-Amz-…"), written from the SigV4
// specification rather than with the SDK, so that it checks the sidecar's
// signing instead of repeating it. It returns why a token is refused.
func Verify(token string, w Want, now time.Time) error {
	u, err := url.Parse("https://" + token)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.Host != w.Endpoint {
		return fmt.Errorf("signed for endpoint %q, want %q", u.Host, w.Endpoint)
	}
	if u.Path != "" && u.Path != "/" {
		return fmt.Errorf("path %q, want none", u.Path)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	one := func(k string) string {
		if v := q[k]; len(v) == 1 {
			return v[0]
		}
		return ""
	}
	if one("Action") != "connect" {
		return fmt.Errorf("Action %q, want connect", one("Action"))
	}
	if one("DBUser") != w.User {
		return fmt.Errorf("signed for user %q, logging in as %q", one("DBUser"), w.User)
	}
	if one("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" {
		return fmt.Errorf("algorithm %q", one("X-Amz-Algorithm"))
	}
	if one("X-Amz-SignedHeaders") != "host" {
		return fmt.Errorf("signed headers %q, want host", one("X-Amz-SignedHeaders"))
	}
	cred := strings.Split(one("X-Amz-Credential"), "/")
	if len(cred) != 5 || cred[3] != "rds-db" || cred[4] != "aws4_request" {
		return fmt.Errorf("credential scope %q", one("X-Amz-Credential"))
	}
	keyID, day, region := cred[0], cred[1], cred[2]
	if region != w.Region {
		return fmt.Errorf("signed for region %q, want %q", region, w.Region)
	}
	secret, ok := w.Secrets[keyID]
	if !ok {
		return fmt.Errorf("unknown access key id %q", keyID)
	}
	signedAt, err := time.Parse("20060102T150405Z", one("X-Amz-Date"))
	if err != nil || signedAt.Format("20060102") != day {
		return fmt.Errorf("date %q does not match scope day %q", one("X-Amz-Date"), day)
	}
	expires, err := strconv.Atoi(one("X-Amz-Expires"))
	if err != nil || expires <= 0 || expires > 900 {
		return fmt.Errorf("X-Amz-Expires %q, want 1..900", one("X-Amz-Expires"))
	}
	if now.Before(signedAt.Add(-5 * time.Minute)) {
		return fmt.Errorf("signed in the future (%s)", signedAt)
	}
	if !now.Before(signedAt.Add(time.Duration(expires) * time.Second)) {
		return fmt.Errorf("expired at %s", signedAt.Add(time.Duration(expires)*time.Second))
	}

	keys := make([]string, 0, len(q))
	for k := range q {
		if k != "X-Amz-Signature" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var cq []string
	for _, k := range keys {
		for _, v := range q[k] {
			cq = append(cq, escape(k)+"="+escape(v))
		}
	}
	canonical := strings.Join([]string{"GET", "/", strings.Join(cq, "&"), "host:" + u.Host + "\n", "host", emptyPayloadHash}, "\n")
	scope := strings.Join(cred[1:], "/")
	sum := sha256.Sum256([]byte(canonical))
	toSign := "AWS4-HMAC-SHA256\n" + one("X-Amz-Date") + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
	key := []byte("AWS4" + secret)
	for _, part := range []string{day, region, "rds-db", "aws4_request"} {
		key = mac(key, part)
	}
	want := hex.EncodeToString(mac(key, toSign))
	if !hmac.Equal([]byte(want), []byte(one("X-Amz-Signature"))) {
		return fmt.Errorf("signature does not match (wrong secret key, or the token was altered)")
	}
	return nil
}

func mac(key []byte, s string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(s))
	return h.Sum(nil)
}

// escape is SigV4's URI encoding: every byte but A-Z a-z 0-9 - _ . ~.
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
