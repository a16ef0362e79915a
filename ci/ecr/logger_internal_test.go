package ecr

import (
	"strings"
	"testing"

	"github.com/aws/smithy-go/logging"
)

func TestSDKLoggerDropsOnlyTheIMDSv1Fallback(t *testing.T) {
	for _, tc := range []struct {
		class  logging.Classification
		format string
		args   []any
		want   string // "" when dropped
	}{
		{logging.Warn, "falling back to IMDSv1: %v", []any{"404"}, ""},
		{logging.Warn, "Response has no supported checksum. Not validating response payload.", nil, "WARN Response has no supported checksum"},
		{logging.Debug, "retrying %s", []any{"GetAuthorizationToken"}, "DEBUG retrying GetAuthorizationToken"},
	} {
		var b strings.Builder
		sdkLogger{&b}.Logf(tc.class, tc.format, tc.args...)
		if got := b.String(); (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) || (got != "" && !strings.HasSuffix(got, "\n")) {
			t.Errorf("Logf(%s, %q) wrote %q, want a line with %q", tc.class, tc.format, got, tc.want)
		}
	}
}
