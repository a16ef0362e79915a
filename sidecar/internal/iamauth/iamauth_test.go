package iamauth

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/example/sidecar/sidecar/internal/mysqlwire"
)

// countingProvider serves fixed credentials and counts retrievals.
type countingProvider struct {
	creds aws.Credentials
	err   error
	calls atomic.Int64
}

func (p *countingProvider) Retrieve(context.Context) (aws.Credentials, error) {
	p.calls.Add(1)
	return p.creds, p.err
}

func testTokens(p aws.CredentialsProvider, clock *time.Time, mu *sync.Mutex) *Tokens {
	return &Tokens{Source: Source{Provider: p, Name: "test"}, Region: "us-east-1", Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return *clock
	}}
}

func TestTokenReuseAndRefresh(t *testing.T) {
	p := &countingProvider{creds: aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret"}}
	var mu sync.Mutex
	now := time.Now()
	tk := testTokens(p, &now, &mu)
	ctx := context.Background()
	first, err := tk.Token(ctx, "db.example:3306", "app")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("https://" + first)
	if u.Host != "db.example:3306" || u.Query().Get("DBUser") != "app" || !strings.Contains(u.Query().Get("X-Amz-Credential"), "/us-east-1/rds-db/") {
		t.Fatalf("token for the wrong endpoint, user or region: %s", u.Redacted())
	}
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	advance(TokenLife - RefreshBefore - time.Second)
	if again, _ := tk.Token(ctx, "db.example:3306", "app"); again != first {
		t.Fatal("a fresh token was not reused")
	}
	if _, err := tk.Token(ctx, "db.example:3306", "other"); err != nil {
		t.Fatal(err)
	}
	advance(2 * time.Second) // past the refresh point
	if _, err := tk.Token(ctx, "db.example:3306", "app"); err != nil {
		t.Fatal(err)
	}
	st := tk.Stats()
	if st.Signed != 3 || st.Reused != 1 {
		t.Fatalf("signed %d reused %d; want 3 and 1", st.Signed, st.Reused)
	}
}

// A token whose credentials expire within RefreshBefore is replaced once
// the source has newer ones.
func TestTokenLifeFollowsCredentials(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	p := &countingProvider{creds: aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "s", CanExpire: true, Expires: now.Add(7 * time.Minute)}}
	tk := testTokens(p, &now, &mu)
	ctx := context.Background()
	if _, err := tk.Token(ctx, "db:3306", "app"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(3 * time.Minute) // 4 min before the credentials expire: inside RefreshBefore
	p.creds = aws.Credentials{AccessKeyID: "AKID2", SecretAccessKey: "s", CanExpire: true, Expires: now.Add(time.Hour)}
	mu.Unlock()
	if _, err := tk.Token(ctx, "db:3306", "app"); err != nil {
		t.Fatal(err)
	}
	if st := tk.Stats(); st.Signed != 2 {
		t.Fatalf("a token was reused past its credentials' refresh point (signed %d)", st.Signed)
	}
}

// The credentials cache returns the same credentials until they expire,
// and a token signed again with them ends when they do, as the cached one:
// in their last RefreshBefore, a storm of logins must not sign one token
// per login.
func TestTokenOfExpiringCredentialsIsNotSignedPerLogin(t *testing.T) {
	var mu sync.Mutex
	now := time.Now()
	p := &countingProvider{creds: aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "s", CanExpire: true, Expires: now.Add(4 * time.Minute)}}
	tk := testTokens(p, &now, &mu)
	ctx := context.Background()
	first, err := tk.Token(ctx, "db:3306", "app")
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		mu.Lock()
		now = now.Add(time.Second)
		mu.Unlock()
		if tok, err := tk.Token(ctx, "db:3306", "app"); err != nil || tok != first {
			t.Fatalf("login while the same credentials serve got another token (err %v)", err)
		}
	}
	if st := tk.Stats(); st.Signed != 1 || st.Reused != 100 {
		t.Fatalf("100 logins with the same credentials: signed %d, reused %d; want 1 and 100", st.Signed, st.Reused)
	}
	mu.Lock()
	now = now.Add(3 * time.Minute) // the credentials have expired: new ones sign a new token
	p.creds = aws.Credentials{AccessKeyID: "AKID2", SecretAccessKey: "s", CanExpire: true, Expires: now.Add(time.Hour)}
	mu.Unlock()
	if tok, err := tk.Token(ctx, "db:3306", "app"); err != nil || tok == first {
		t.Fatalf("login after the credentials expired reused their token (err %v)", err)
	}
	if st := tk.Stats(); st.Signed != 2 {
		t.Fatalf("signed %d after new credentials; want 2", st.Signed)
	}
}

func TestConcurrentLoginsShareOneSigning(t *testing.T) {
	p := &countingProvider{creds: aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "s"}}
	tk := &Tokens{Source: Source{Provider: p, Name: "test"}, Region: "us-east-1"}
	var wg sync.WaitGroup
	tokens := make([]string, 100)
	for i := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tokens[i], _ = tk.Token(context.Background(), "db:3306", "app")
		}()
	}
	wg.Wait()
	for _, tok := range tokens {
		if tok == "" || tok != tokens[0] {
			t.Fatal("logins got different or no tokens")
		}
	}
	if st := tk.Stats(); st.Signed != 1 || st.Reused != 99 || p.calls.Load() != 1 {
		t.Fatalf("signed %d, reused %d, credential calls %d", st.Signed, st.Reused, p.calls.Load())
	}
}

func TestCredentialFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		p      *countingProvider
		reason string
	}{
		{"none", &countingProvider{err: errors.New("no EC2 IMDS role found")}, ReasonNoCredentials},
		{"expired", &countingProvider{creds: aws.Credentials{AccessKeyID: "A", SecretAccessKey: "s", CanExpire: true, Expires: time.Now().Add(-time.Minute)}}, ReasonExpired},
		{"unreachable", &countingProvider{err: &url.Error{Op: "Get", URL: "http://127.0.0.1:1", Err: errors.New("dial tcp 127.0.0.1:1: connect: connection refused")}}, ReasonUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tk := &Tokens{Source: Source{Provider: tc.p, Name: "test source"}, Region: "us-east-1"}
			a := &Authority{Tokens: tk, Endpoint: "db:3306"}
			_, err := a.Password(context.Background(), "app", nil, nil)
			var f *Failure
			if !errors.As(err, &f) || f.Reason != tc.reason || !strings.Contains(err.Error(), "test source") {
				t.Fatalf("got %v, want reason %s naming the source", err, tc.reason)
			}
			if tk.Stats().Failures[tc.reason] != 1 {
				t.Fatal("failure not counted")
			}
			if ok, why := tk.Ready(); ok || !strings.Contains(why, "test source") {
				t.Fatalf("Ready() = %v, %q", ok, why)
			}
		})
	}
}

func TestCredentialSource(t *testing.T) {
	for _, tc := range []struct {
		name, want, errVar string
		env                map[string]string
	}{
		{"keys", "environment", "", map[string]string{"AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "s"}},
		{"half keys", "", "AWS_SECRET_ACCESS_KEY", map[string]string{"AWS_ACCESS_KEY_ID": "A"}},
		{"web identity", "web identity", "", map[string]string{"AWS_WEB_IDENTITY_TOKEN_FILE": "/t", "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/r"}},
		{"web identity without role", "", "AWS_ROLE_ARN", map[string]string{"AWS_WEB_IDENTITY_TOKEN_FILE": "/t"}},
		{"ECS task role", "ECS task role", "", map[string]string{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/x"}},
		{"bad relative", "", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", map[string]string{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "v2"}},
		{"bad relative with a token in the query", "", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", map[string]string{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "v2/credentials?token=Sup3rSecret"}},
		{"full loopback", "container credentials endpoint", "", map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:9/c"}},
		{"full EKS", "container credentials endpoint", "", map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials"}},
		{"full https", "container credentials endpoint", "", map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "https://creds.example/c"}},
		{"full http elsewhere", "", "AWS_CONTAINER_CREDENTIALS_FULL_URI", map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://10.0.0.1/c"}},
		// The password in the URL is the secret here, and the error hides it.
		{"full http elsewhere with a password", "", "AWS_CONTAINER_CREDENTIALS_FULL_URI", map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://admin:Sup3rSecret@10.0.0.1/c"}},
		{"full http elsewhere with a token in the query", "", "AWS_CONTAINER_CREDENTIALS_FULL_URI", map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://10.0.0.1/c?token=Sup3rSecret"}},
		{"full http elsewhere with a token in the fragment", "", "AWS_CONTAINER_CREDENTIALS_FULL_URI", map[string]string{"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://10.0.0.1/c#Sup3rSecret"}},
		{"nothing", "EC2 instance metadata (no AWS_* credential variables set)", "", nil},
		{"a laptop's profile", "EC2 instance metadata (no AWS_* credential variables set; AWS_PROFILE is not read: export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)", "",
			map[string]string{"AWS_PROFILE": "dev"}},
		{"a role without a token file", "EC2 instance metadata (no AWS_* credential variables set; AWS_ROLE_ARN is read only with AWS_WEB_IDENTITY_TOKEN_FILE)", "",
			map[string]string{"AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/app"}},
		{"a session token alone, metadata off", "EC2 instance metadata (no AWS_* credential variables set; AWS_EC2_METADATA_DISABLED=true turns it off; AWS_SESSION_TOKEN is read only with", "",
			map[string]string{"AWS_SESSION_TOKEN": "x", "AWS_EC2_METADATA_DISABLED": "true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, err := CredentialSource(func(k string) string { return tc.env[k] }, "us-east-1", "AWS_REGION")
			if tc.errVar != "" {
				var e *EnvError
				if !errors.As(err, &e) || e.Variable != tc.errVar {
					t.Fatalf("got %v, want an error naming %s", err, tc.errVar)
				}
				if strings.Contains(err.Error(), `"s"`) || strings.Contains(err.Error(), "Sup3rSecret") {
					t.Fatalf("the error shows a secret: %v", err)
				}
				return
			}
			if err != nil || !strings.HasPrefix(src.Name, tc.want) {
				t.Fatalf("got %q, %v; want %q", src.Name, err, tc.want)
			}
		})
	}
}

func TestAuthorityChecks(t *testing.T) {
	p := &countingProvider{creds: aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "s"}}
	tk := &Tokens{Source: Source{Provider: p, Name: "test"}, Region: "us-east-1"}
	scramble := []byte("01234567890123456789")
	a := &Authority{Tokens: tk, Endpoint: "db:3306", Users: map[string]bool{"app": true}, LocalPassword: []byte("pw")}
	good := nativeProofForTest("pw", scramble)
	if _, err := a.Password(context.Background(), "app", good, scramble); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user   string
		proof  []byte
		reason string
	}{
		{"root", good, ReasonUserNotAllowed},
		{"app", nativeProofForTest("wrong", scramble), ReasonLocalPassword},
		{"app", nil, ReasonLocalPassword},
		{"root", nil, ReasonLocalPassword}, // IAM_USERS only for a client that knows the password
	} {
		_, err := a.Password(context.Background(), tc.user, tc.proof, scramble)
		var f *Failure
		if !errors.As(err, &f) || f.Reason != tc.reason {
			t.Errorf("%s: got %v, want %s", tc.user, err, tc.reason)
		}
		if tc.reason == ReasonLocalPassword && strings.Contains(err.Error(), "allowed") {
			t.Errorf("%s without the password: %q shows IAM_USERS", tc.user, err)
		}
	}
	if st := tk.Stats(); st.Signed != 1 || p.calls.Load() != 1 {
		t.Fatalf("refused logins signed tokens: %+v", st)
	}
}

func nativeProofForTest(pw string, scramble []byte) []byte {
	return mysqlwire.NativeProof([]byte(pw), scramble)
}

// Tokens due for a refresh are dropped when another is signed: without
// IAM_USERS an app may name any user, and each must not stay for the
// process's life.
func TestTokenCacheDropsStaleUsers(t *testing.T) {
	p := &countingProvider{creds: aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret"}}
	var mu sync.Mutex
	now := time.Now()
	tk := testTokens(p, &now, &mu)
	ctx := context.Background()
	for _, user := range []string{"a", "b", "c"} {
		if _, err := tk.Token(ctx, "db:3306", user); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	now = now.Add(TokenLife - RefreshBefore)
	mu.Unlock()
	if _, err := tk.Token(ctx, "db:3306", "d"); err != nil {
		t.Fatal(err)
	}
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if _, ok := tk.cache[tokenKey{"db:3306", "d"}]; !ok || len(tk.cache) != 1 {
		t.Errorf("cache holds %d tokens; want only d's, the others due for a refresh", len(tk.cache))
	}
}

// DNS names are case-insensitive and RDS endpoints lower-case: a host
// written in capitals (TARGET_HOST, FORWARDS) is signed lower-cased, and
// shares the token of the same host written in lower case.
func TestTokenHostIsLowerCase(t *testing.T) {
	p := &countingProvider{creds: aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret"}}
	a := &Authority{Tokens: &Tokens{Source: Source{Provider: p, Name: "test"}, Region: "us-east-1"},
		Endpoint: "MyCluster.Cluster-Abc.US-EAST-1.rds.amazonaws.com:3306"}
	pw, err := a.Password(context.Background(), "app", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse("https://" + string(pw))
	if err != nil || u.Host != "mycluster.cluster-abc.us-east-1.rds.amazonaws.com:3306" {
		t.Fatalf("token host %q (%v); want mycluster.cluster-abc.us-east-1.rds.amazonaws.com:3306", u.Host, err)
	}
	lower, err := a.Tokens.Token(context.Background(), "mycluster.cluster-abc.us-east-1.rds.amazonaws.com:3306", "app")
	if err != nil || lower != string(pw) {
		t.Fatalf("the lower-case host got another token (%v)", err)
	}
}
