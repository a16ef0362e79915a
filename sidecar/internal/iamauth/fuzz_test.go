package iamauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/example/sidecar/sidecar/internal/mysqlwire"
)

// FuzzAuthorityPassword checks an app's user name and proof, both sent
// by the app, against IAM_USERS and LOCAL_PASSWORD: a login passes exactly
// when both do; a refusal names the user and its reason, never
// LOCAL_PASSWORD, and IAM_USERS only to a client that proved the password;
// a token is signed for the endpoint and exactly the user named.
func FuzzAuthorityPassword(f *testing.F) {
	scramble := []byte("01234567890123456789")
	const local = "local-pw"
	good := mysqlwire.NativeProof([]byte(local), scramble)
	for _, restrict := range []bool{true, false} {
		f.Add("app", good, scramble, restrict)
		f.Add("root", good, scramble, restrict)
		f.Add("app", mysqlwire.NativeProof([]byte("wrong"), scramble), scramble, restrict)
		f.Add("app", []byte{}, scramble, restrict)
		f.Add("a&DBUser=root", mysqlwire.NativeProof([]byte(local), []byte("abcdefghijklmnopqrst\x00")), []byte("abcdefghijklmnopqrst\x00"), restrict)
		f.Add("ünï\xff code%", mysqlwire.NativeProof([]byte(local), []byte{}), []byte{}, restrict)
	}
	f.Fuzz(func(t *testing.T, user string, proof, scramble []byte, restrict bool) {
		p := &countingProvider{creds: aws.Credentials{AccessKeyID: "AKIDFUZZ", SecretAccessKey: "fuzz-secret"}}
		a := &Authority{Tokens: &Tokens{Source: Source{Provider: p, Name: "fuzz"}, Region: "us-east-1"},
			Endpoint: "db.example:3306", LocalPassword: []byte(local)}
		if restrict {
			a.Users = map[string]bool{"app": true, "a&DBUser=root": true, "ünï\xff code%": true}
		}
		proved := bytes.Equal(proof, mysqlwire.NativeProof([]byte(local), scramble))
		allowed := !restrict || a.Users[user]
		token, err := a.Password(context.Background(), user, proof, scramble)
		if err != nil {
			var fl *Failure
			want := map[bool]string{false: ReasonLocalPassword, true: ReasonUserNotAllowed}[proved]
			if !errors.As(err, &fl) || fl.Reason != want || proved && allowed {
				t.Fatalf("user %q, proved %v, allowed %v: error %v, want reason %s", user, proved, allowed, err, want)
			}
			named := fmt.Sprintf("%q", user)
			rest := strings.ReplaceAll(err.Error(), named, "") // the app's own words aside
			if !strings.Contains(err.Error(), named) || strings.Contains(rest, local) || strings.Contains(rest, "allowed:") != proved {
				t.Fatalf("refusal %q: must name the user, never LOCAL_PASSWORD, and IAM_USERS only after the password", err)
			}
			return
		}
		if !proved || !allowed {
			t.Fatalf("user %q logged in: proved %v, allowed %v", user, proved, allowed)
		}
		u, err := url.Parse("https://" + string(token))
		if err != nil {
			t.Fatalf("token %q is not a URL: %v", token, err)
		}
		q := u.Query()
		if u.Host != a.Endpoint || q.Get("Action") != "connect" || len(q["DBUser"]) != 1 || q.Get("DBUser") != user {
			t.Fatalf("token for %q is %q: host %q, Action %q, DBUser %q", user, token, u.Host, q["Action"], q["DBUser"])
		}
		if bytes.IndexByte(token, 0) >= 0 {
			t.Fatalf("token %q has a NUL: mysql_clear_password would cut it", token)
		}
	})
}
