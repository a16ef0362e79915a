package sidecarbin

import (
	"os"
	"slices"
	"strings"
	"testing"
)

func TestBuildFlags(t *testing.T) {
	vars := map[string]string{"VERSION": "1.2.3", "REVISION": "abc"}
	for _, tc := range []struct {
		name, dockerfile string
		want             []string
		err              string
	}{
		{name: "continued RUN with quoted ldflags",
			dockerfile: "FROM x\nRUN --mount=type=cache,target=/c \\\n    GOOS=\"$TARGETOS\" go build -trimpath \\\n        -ldflags \"-w -X main.version=${VERSION} -X main.commit=$REVISION\" \\\n        -o /out/sidecar ./sidecar\n",
			want:       []string{"-trimpath", "-ldflags", "-w -X main.version=1.2.3 -X main.commit=abc"}},
		{name: "comment lines inside a RUN and other RUNs",
			dockerfile: "RUN echo go\n# go build -a -o x\nrun set -e; \\\n# a note\n  go build -v -o x .\n",
			want:       []string{"-v"}},
		{name: "unknown variable", dockerfile: "RUN go build -ldflags \"-X main.x=${TARGETARCH}\" -o x .", err: "$TARGETARCH"},
		{name: "no go build", dockerfile: "FROM x\n# RUN go build -o x .\nRUN go vet ./...\n", err: "no `go build`"},
		{name: "two go builds", dockerfile: "RUN go build -o a .\nRUN go build -o b .\n", err: "more than one"},
		{name: "unterminated quote", dockerfile: "RUN go build -ldflags \"-w -o x .", err: "unterminated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := BuildFlags(tc.dockerfile, vars)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want it to contain %q (flags %q)", err, tc.err, got)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("BuildFlags = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// The repository's Dockerfile parses, and its stamps reach the binary.
func TestBuildFlagsOfTheDockerfile(t *testing.T) {
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	flags, err := BuildFlags(string(df), map[string]string{"VERSION": "v9", "REVISION": "r9"})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.Index(flags, "-ldflags")
	if i < 0 || i+1 == len(flags) {
		t.Fatalf("no -ldflags in %q", flags)
	}
	for _, w := range []string{"-X main.version=v9", "-X main.commit=r9"} {
		if !strings.Contains(flags[i+1], w) {
			t.Errorf("-ldflags %q lacks %q", flags[i+1], w)
		}
	}
}
