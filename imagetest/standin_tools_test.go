package imagetest

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestStandinAccountTools proves the stand-in's adduser/addgroup do what
// Alpine's busybox applets do for the options Dockerfiles use, and refuse
// the rest clearly, so the Dockerfile's user creation is tested as on Alpine.
func TestStandinAccountTools(t *testing.T) {
	d := requireDocker(t)
	s := ensureStandins(t, d)
	for _, tc := range []struct {
		name   string
		script string
		ok     bool
		want   []string // whole output lines ("prefix*" for a prefix), or fragments of the error
	}{
		{
			name:   "the Dockerfile's user",
			script: "addgroup -S -g 1000 sidecar && adduser -S -D -H -h /nonexistent -s /sbin/nologin -u 1000 -G sidecar sidecar",
			ok:     true,
			want: []string{
				"passwd sidecar:x:1000:1000:Linux User,,,:/nonexistent:/sbin/nologin",
				"group sidecar:x:1000:sidecar",
				"shadow sidecar:!:*", // then the date of the last password change
				"home absent",
			},
		},
		{
			name:   "defaults: own group, home, /bin/sh",
			script: "adduser -D app",
			ok:     true,
			want: []string{
				"passwd app:x:1000:1000:Linux User,,,:/home/app:/bin/sh",
				"group app:x:1000:",
				"home 1000:1000 drwxr-sr-x",
			},
		},
		{
			name:   "system user without group joins nogroup",
			script: "adduser -S -H svc",
			ok:     true,
			want: []string{
				"passwd svc:x:100:65533:Linux User,,,:/home/svc:/bin/false",
				"group nogroup:x:65533:svc",
			},
		},
		{
			name:   "system group gets the first free system gid",
			script: "addgroup -S one && addgroup -S two && adduser -S -D -H -G two -u 1234 member",
			ok:     true,
			want: []string{
				"group one:x:100:",
				"group two:x:101:member",
				"passwd member:x:1234:101:Linux User,,,:/home/member:/bin/false",
			},
		},
		{"unsupported adduser option", "adduser -D -k /etc/skel x", false, []string{"adduser (stand-in): unsupported option -k"}},
		{"unsupported addgroup option", "addgroup -q x", false, []string{"addgroup (stand-in): unsupported option -q"}},
		{"long option", "addgroup --system x", false, []string{"addgroup (stand-in): unsupported option --system"}},
		{"gid in use", "addgroup -g 1000 a && addgroup -g 1000 b", false, []string{"gid '1000' in use"}},
		{"uid in use", "adduser -D -u 0 x", false, []string{"uid '0' in use"}},
		{"user in use", "adduser -D -H root", false, []string{"user 'root' in use"}},
		{"unknown group", "adduser -S -G missing x", false, []string{"unknown group 'missing'"}},
		{"interactive password", "adduser x", false, []string{"use -D"}},
		{"bad uid", "adduser -D -u 10x0 x", false, []string{"bad UID '10x0'"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Print the account lines of every user and group but the
			// stand-in's own, and the home directory of the last user.
			report := `set -e; ` + tc.script + `
for f in passwd group shadow; do grep -v -E '^(root|nobody|nogroup):' /etc/$f | sed "s/^/$f /" || true; done
grep -q '^nogroup:x:65533:.' /etc/group && grep '^nogroup:' /etc/group | sed 's/^/group /'
home=$(tail -n 1 /etc/passwd | cut -d: -f6)
if [ -d "$home" ]; then echo "home $(stat -c '%u:%g %A' "$home")"; else echo "home absent"; fi`
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			code, out, err := d.exitCode(ctx, "run", "--rm", "--network", "host", "--entrypoint", "/bin/sh", s.Runtime, "-c", report)
			if err != nil {
				t.Fatal(err)
			}
			if (code == 0) != tc.ok {
				t.Fatalf("exit code %d, want success=%v; output:\n%s", code, tc.ok, out)
			}
			for _, w := range tc.want {
				if !hasLine(out, w, !tc.ok) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// hasLine reports whether out has the line want ("prefix*" matches a
// prefix), or with fragment set, a line containing want.
func hasLine(out, want string, fragment bool) bool {
	for _, l := range strings.Split(out, "\n") {
		switch {
		case fragment && strings.Contains(l, want),
			strings.HasSuffix(want, "*") && strings.HasPrefix(l, strings.TrimSuffix(want, "*")),
			l == want:
			return true
		}
	}
	return false
}
