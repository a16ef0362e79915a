package iamauth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Web identity is refused at start only for what cannot work later: a
// role that is no IAM role ARN, a role of another partition than the
// region's, a token path that is a directory. A token file that does not
// exist yet is accepted (the SDK reads it at every request), and so is
// every form of role ARN IAM issues.
func TestWebIdentityChecks(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("jwt"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, role, file, region string
		session                  string   // AWS_ROLE_SESSION_NAME
		want                     []string // in the error; nil = accepted
	}{
		{"plain", "arn:aws:iam::123456789012:role/app", token, "us-east-1", "", nil},
		{"with a path", "arn:aws:iam::123456789012:role/service-role/team/app-role", token, "eu-west-1", "", nil},
		// IAM's path is any of ! (0x21) to DEL (0x7F) between slashes.
		{"a path of every character IAM allows", "arn:aws:iam::123456789012:role/a!~\x7f/z/app", token, "us-east-1", "", nil},
		{"a service-linked role", "arn:aws:iam::123456789012:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS", token, "us-east-1", "", nil},
		{"every name character", "arn:aws:iam::123456789012:role/a+b=c,d.e@f_g-H9", token, "us-east-1", "", nil},
		{"a name of 64 characters", "arn:aws:iam::123456789012:role/" + strings.Repeat("r", 64), token, "us-east-1", "", nil},
		{"China", "arn:aws-cn:iam::123456789012:role/app", token, "cn-north-1", "", nil},
		{"GovCloud", "arn:aws-us-gov:iam::123456789012:role/app", token, "us-gov-west-1", "", nil},
		{"an isolated partition", "arn:aws-iso-b:iam::123456789012:role/app", token, "us-isob-east-1", "", nil},
		{"a partition added later, its regions named otherwise", "arn:aws-xyz:iam::123456789012:role/app", token, "xy-north-1", "", nil},
		{"the token file not there yet", "arn:aws:iam::123456789012:role/app", filepath.Join(dir, "later", "token"), "us-east-1", "", nil},
		{"a session name", "arn:aws:iam::123456789012:role/app", token, "us-east-1", "orders-task@eu=1,x.y_z+", nil},
		{"a relative token file, as the SDK reads it", "arn:aws:iam::123456789012:role/app", "token", "us-east-1", "", nil},

		{"a role name", "app", token, "us-east-1", "", []string{`AWS_ROLE_ARN="app" is invalid`, "arn:<partition>:iam::<12-digit account>:role/", "aws-cn, aws-us-gov"}},
		{"a newline from a secret", "arn:aws:iam::123456789012:role/app\n", token, "us-east-1", "", []string{`AWS_ROLE_ARN="arn:aws:iam::123456789012:role/app\n" is invalid`}},
		{"a user", "arn:aws:iam::123456789012:user/app", token, "us-east-1", "", []string{"AWS_ROLE_ARN=", "is invalid"}},
		{"an assumed-role session", "arn:aws:sts::123456789012:assumed-role/app/session", token, "us-east-1", "", []string{"AWS_ROLE_ARN=", "is invalid"}},
		{"an account of 11 digits", "arn:aws:iam::12345678901:role/app", token, "us-east-1", "", []string{"is invalid", "12-digit account"}},
		{"a region in the ARN", "arn:aws:iam:us-east-1:123456789012:role/app", token, "us-east-1", "", []string{"is invalid"}},
		{"no name", "arn:aws:iam::123456789012:role/team/", token, "us-east-1", "", []string{"is invalid"}},
		{"a name of 65 characters", "arn:aws:iam::123456789012:role/" + strings.Repeat("r", 65), token, "us-east-1", "", []string{"is invalid"}},
		{"an unknown service partition", "arn:amazon:iam::123456789012:role/app", token, "us-east-1", "", []string{"is invalid"}},
		{"the commercial partition in China", "arn:aws:iam::123456789012:role/app", token, "cn-north-1", "",
			[]string{`AWS_ROLE_ARN="arn:aws:iam::123456789012:role/app" is in partition aws, and AWS_REGION=cn-north-1 is in aws-cn`, "arn:aws-cn:iam::"}},
		{"GovCloud's role in a commercial region", "arn:aws-us-gov:iam::123456789012:role/app", token, "us-east-1", "",
			[]string{"is in partition aws-us-gov, and AWS_REGION=us-east-1 is in aws,"}},
		{"a session name of one character", "arn:aws:iam::123456789012:role/app", token, "us-east-1", "a",
			[]string{`AWS_ROLE_SESSION_NAME="a" is invalid`, "2 to 64 of"}},
		{"a session name with a space", "arn:aws:iam::123456789012:role/app", token, "us-east-1", "orders task", []string{`AWS_ROLE_SESSION_NAME="orders task" is invalid`}},
		{"the serviceaccount directory", "arn:aws:iam::123456789012:role/app", dir, "us-east-1", "",
			[]string{`AWS_WEB_IDENTITY_TOKEN_FILE="` + dir + `" is a directory`, "the path of the token file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"AWS_WEB_IDENTITY_TOKEN_FILE": tc.file, "AWS_ROLE_ARN": tc.role, "AWS_ROLE_SESSION_NAME": tc.session}
			src, err := CredentialSource(func(k string) string { return env[k] }, tc.region, "AWS_REGION")
			if tc.want == nil {
				if err != nil || !strings.HasPrefix(src.Name, "web identity") {
					t.Fatalf("got %q, %v; want web identity accepted", src.Name, err)
				}
				return
			}
			var e *EnvError
			if !errors.As(err, &e) {
				t.Fatalf("got %v; want an *EnvError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// The token pasted where its file's path belongs is refused at start,
// without showing it: read as a path, the SDK's error would quote the
// token, a credential, in every retry's log line and in /readyz.
func TestWebIdentityTokenInPlaceOfItsPath(t *testing.T) {
	const jwt = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJl"
	for _, file := range []string{jwt, jwt + "\n"} {
		env := map[string]string{"AWS_WEB_IDENTITY_TOKEN_FILE": file, "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/app"}
		_, err := CredentialSource(func(k string) string { return env[k] }, "us-east-1", "AWS_REGION")
		var e *EnvError
		if !errors.As(err, &e) || e.Variable != "AWS_WEB_IDENTITY_TOKEN_FILE" || !strings.Contains(err.Error(), "is a token") ||
			!strings.Contains(err.Error(), "the path of the token file") {
			t.Fatalf("got %v; want AWS_WEB_IDENTITY_TOKEN_FILE refused as a token", err)
		}
		if strings.Contains(err.Error(), "c2lnbmF0dXJl") || strings.Contains(e.Value, "c2lnbmF0dXJl") {
			t.Errorf("the refusal shows the token: %v", err)
		}
	}
}
