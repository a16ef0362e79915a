package iamauth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/example/sidecar/sidecar/internal/mysqlwire"
)

// Authority logs apps in for one forward's target.
type Authority struct {
	Tokens   *Tokens
	Endpoint string          // TARGET_SERVER_NAME:TARGET_PORT: what tokens are signed for
	Users    map[string]bool // IAM_USERS; nil = any user the app names
	// LocalPassword is LOCAL_PASSWORD; nil = the app sends any or no password.
	LocalPassword []byte
}

// WantsProof reports whether the app must prove LOCAL_PASSWORD.
func (a *Authority) WantsProof() bool { return a.LocalPassword != nil }

// Password checks the app's user and its mysql_native_password proof of
// LOCAL_PASSWORD over scramble, and returns the password to give the
// server: a token for user. Errors are *Failure, and their text is for
// the app. The password comes first: IAM_USERS is shown only to a client
// that knows it.
func (a *Authority) Password(ctx context.Context, user string, proof, scramble []byte) ([]byte, error) {
	if a.LocalPassword != nil {
		want := mysqlwire.NativeProof(a.LocalPassword, scramble)
		if subtle.ConstantTimeCompare(want, proof) != 1 {
			a.Tokens.count(ReasonLocalPassword)
			return nil, &Failure{Reason: ReasonLocalPassword, Err: fmt.Errorf(
				"sidecar: wrong or missing password for %q; this sidecar requires the app to send LOCAL_PASSWORD (mysql_native_password)", user)}
		}
	}
	if a.Users != nil && !a.Users[user] {
		a.Tokens.count(ReasonUserNotAllowed)
		return nil, &Failure{Reason: ReasonUserNotAllowed, Err: fmt.Errorf(
			"sidecar: user %q is not in IAM_USERS, so the sidecar does not sign IAM tokens for it; allowed: %s", user, a.allowed())}
	}
	signCtx, cancel := a.Tokens.rest(ctx)
	defer cancel()
	token, err := a.Tokens.Token(signCtx, a.Endpoint, user)
	if err != nil && ctx.Err() == nil && signCtx.Err() != nil {
		err = &Failure{Reason: ReasonUnreachable, Err: fmt.Errorf("get AWS credentials from %s: no answer within %s, the wait before the dial included: %w",
			a.Tokens.Source.Name, a.Tokens.signTimeout(), signCtx.Err())}
	}
	if err != nil {
		f, _ := err.(*Failure)
		reason := ReasonSigning
		if f != nil {
			reason = f.Reason
		}
		if !errors.Is(err, context.Canceled) { // its app left: not a failure
			a.Tokens.count(reason)
		}
		return nil, &Failure{Reason: reason, Err: fmt.Errorf("sidecar: cannot log in %q with IAM: %w", user, err)}
	}
	return []byte(token), nil
}

type waitedKey struct{}

// Waited returns ctx for Password, telling it that its login has waited
// d for credentials already (Credentials, before the dial): the signing
// waits only for the rest of SignTimeout, so the login's waits together
// keep to that one bound.
func Waited(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, waitedKey{}, d)
}

// rest is ctx bounded by what Waited left of SignTimeout, if it was used
// and the signing may have to wait: with the credentials at hand it waits
// for nothing, and a bound the wait before the dial spent would refuse a
// login that can succeed.
func (t *Tokens) rest(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Value(waitedKey{}).(time.Duration); ok && !t.atHand() {
		return context.WithTimeout(ctx, t.signTimeout()-d)
	}
	return ctx, func() {}
}

// Credentials waits, as long as a signing would, for the AWS credentials
// tokens are signed with. The forwarder asks before it dials the database:
// a login that waited for them after the server's greeting could outlast
// the server's connect_timeout (10 s on Aurora), which closes it, and one
// refused for want of them would leave the server an aborted connect
// (max_connect_errors). With credentials at hand the signing after the
// greeting takes no wait. A failure counts as a failed login, and its text
// is for the app; an app that left (ctx ended) is not counted.
func (a *Authority) Credentials(ctx context.Context) error {
	wait, cancel := context.WithTimeout(ctx, a.Tokens.signTimeout())
	defer cancel()
	_, err := a.Tokens.retrieve(wait)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("sidecar: cannot log in with IAM: waiting for AWS credentials from %s: %w", a.Tokens.Source.Name, ctx.Err())
	}
	reason := ReasonSigning
	if f := (*Failure)(nil); errors.As(err, &f) {
		reason = f.Reason
	}
	a.Tokens.count(reason)
	return &Failure{Reason: reason, Err: fmt.Errorf("sidecar: cannot log in with IAM: %w", err)}
}

// Failed counts a failure the server reported (ReasonUserNotIAM,
// ReasonServerRefused).
func (a *Authority) Failed(reason string) { a.Tokens.count(reason) }

func (a *Authority) allowed() string {
	names := make([]string, 0, len(a.Users))
	for u := range a.Users {
		names = append(names, u)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
