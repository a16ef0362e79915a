package iamauth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Authority.Credentials is a login's wait before the dial: bounded by the
// sign timeout, refused with the reason and the source named, counted
// once, except for a login whose app left; a success turns /readyz ready.
func TestCredentialsBeforeTheDial(t *testing.T) {
	good := aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "s"}
	for _, tc := range []struct {
		name      string
		p         aws.CredentialsProvider
		appLeaves bool
		reason    string // "" = none counted
		says      string
	}{
		{"at hand", &countingProvider{creds: good}, false, "", ""},
		{"none", &countingProvider{err: errors.New("no EC2 IMDS role found")}, false, ReasonNoCredentials, "no EC2 IMDS role found"},
		{"expired", &countingProvider{creds: aws.Credentials{AccessKeyID: "A", SecretAccessKey: "s", CanExpire: true, Expires: time.Now().Add(-time.Second)}},
			false, ReasonExpired, "have already expired"},
		{"never answered", aws.NewCredentialsCache(slowProvider{time.Hour}), false, ReasonUnreachable, "no answer within 200ms"},
		{"the app leaves", aws.NewCredentialsCache(slowProvider{time.Hour}), true, "", "waiting for AWS credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tk := &Tokens{Source: Source{Provider: tc.p, Name: "test source"}, Region: "us-east-1", SignTimeout: 200 * time.Millisecond}
			a := &Authority{Tokens: tk, Endpoint: "db:3306"}
			ctx, leave := context.WithCancel(context.Background())
			defer leave()
			if tc.appLeaves {
				leave() // before the sign timeout, whatever the machine's load
			}
			err := a.Credentials(ctx)
			var counted int64
			for _, n := range tk.Stats().Failures {
				counted += n
			}
			ready, _ := tk.Ready()
			var f *Failure
			switch {
			case tc.says == "":
				if err != nil || !ready || counted != 0 {
					t.Fatalf("got %v, ready %v, %d failures counted; want nil, ready, none", err, ready, counted)
				}
			case tc.reason == "": // the app left: not the credentials' failure
				if err == nil || errors.As(err, &f) || counted != 0 || !strings.Contains(err.Error(), tc.says) {
					t.Fatalf("got %v (%d failures counted); want a plain error saying %q, not counted", err, counted, tc.says)
				}
			default:
				if !errors.As(err, &f) || f.Reason != tc.reason || !strings.Contains(err.Error(), "test source") || !strings.Contains(err.Error(), tc.says) {
					t.Fatalf("got %v; want reason %s naming the source and saying %q", err, tc.reason, tc.says)
				}
				if st := tk.Stats(); counted != 1 || st.Failures[tc.reason] != 1 || ready {
					t.Fatalf("failures %v, ready %v; want %s counted once, not ready", st.Failures, ready, tc.reason)
				}
			}
		})
	}
}

// Credentials that arrive expired most often mean this host's clock is
// ahead: the error gives both times, so the skew shows without a shell.
func TestExpiredCredentialsShowTheClocks(t *testing.T) {
	now := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	expires := now.Add(-2 * time.Hour)
	tk := &Tokens{Source: Source{Provider: &countingProvider{creds: aws.Credentials{AccessKeyID: "A", SecretAccessKey: "s", CanExpire: true, Expires: expires}},
		Name: "test source"}, Region: "us-east-1", Now: func() time.Time { return now }}
	err := (&Authority{Tokens: tk, Endpoint: "db:3306"}).Credentials(context.Background())
	var f *Failure
	if !errors.As(err, &f) || f.Reason != ReasonExpired {
		t.Fatalf("got %v; want %s", err, ReasonExpired)
	}
	for _, want := range []string{"have already expired", "they expired at 2026-12-07T02:00:00Z", "this host's clock says 2026-12-07T04:00:00Z", "clock is ahead"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
}

// A login whose wait before the dial used the whole bound still signs
// when the credentials are at hand: the signing then waits for nothing,
// and refusing it for the bound would refuse a login that can succeed.
func TestSigningWithCredentialsAtHandIgnoresTheWaitBeforeTheDial(t *testing.T) {
	p := &countingProvider{creds: aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "s", CanExpire: true, Expires: time.Now().Add(time.Hour)}}
	tk := &Tokens{Source: Source{Provider: aws.NewCredentialsCache(p), Name: "test source"}, Region: "us-east-1", SignTimeout: time.Second}
	a := &Authority{Tokens: tk, Endpoint: "db:3306"}
	if err := a.Credentials(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := Waited(context.Background(), tk.SignTimeout)      // the whole bound, spent before the dial
	for _, user := range []string{"a", "b", "c", "d", "e"} { // each a signing of its own
		if _, err := a.Password(ctx, user, nil, nil); err != nil {
			t.Fatalf("login of %s: %v; want a token: the credentials are at hand", user, err)
		}
	}
}
