package iamauth

import (
	"context"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// afterSleep is what time.Now reads d after base when the host slept
// (a VM suspended) or its wall clock was stepped meanwhile: the wall clock
// d on, the monotonic clock where it was (Go's on Linux is
// CLOCK_MONOTONIC, which stops in suspend). No API makes such a Time, so
// its fields are set, and the result checked.
func afterSleep(t *testing.T, base time.Time, d time.Duration) time.Time {
	t.Helper()
	type fields struct {
		wall uint64
		ext  int64 // the monotonic reading, with one
		loc  *time.Location
	}
	after := base.Add(d)
	if unsafe.Sizeof(after) == unsafe.Sizeof(fields{}) {
		(*fields)(unsafe.Pointer(&after)).ext = (*fields)(unsafe.Pointer(&base)).ext
	}
	if after.Sub(base) != 0 || after.Round(0).Sub(base.Round(0)) != d {
		t.Fatalf("cannot make a time whose wall clock is %s past its monotonic clock (has time.Time changed?): %v, %v", d, base, after)
	}
	return after
}

// Aurora judges a token by its X-Amz-Date and X-Amz-Expires, wall-clock
// times: reuse follows the wall clock. The monotonic clock decided it, so
// after a VM slept through a token's life (or NTP stepped the clock) the
// sidecar reused a token the database refused, for up to its 10 minutes.
func TestTokenReuseFollowsTheWallClock(t *testing.T) {
	for _, tc := range []struct {
		name        string
		credsExpire time.Duration // 0: credentials that do not expire
		slept       time.Duration
		signed      int64
	}{
		{"slept short of the refresh point", 0, TokenLife - RefreshBefore - time.Second, 1},
		{"slept past the token's life", 0, TokenLife, 2},
		// The source still returns the credentials that end the token:
		// signed again, it would end at the same moment.
		{"slept past the credentials' refresh point", 7 * time.Minute, 3 * time.Minute, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			now := time.Now()
			creds := aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret"}
			if tc.credsExpire > 0 {
				// As the SDK parses them: no monotonic reading.
				creds.CanExpire, creds.Expires = true, now.Add(tc.credsExpire).Round(0)
			}
			tk := testTokens(&countingProvider{creds: creds}, &now, &mu)
			ctx := context.Background()
			if _, err := tk.Token(ctx, "db:3306", "app"); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			now = afterSleep(t, now, tc.slept)
			mu.Unlock()
			if _, err := tk.Token(ctx, "db:3306", "app"); err != nil {
				t.Fatal(err)
			}
			if st := tk.Stats(); st.Signed != tc.signed {
				t.Fatalf("signed %d tokens, reused %d; want %d signed after the wall clock moved %s", st.Signed, st.Reused, tc.signed, tc.slept)
			}
		})
	}
}
