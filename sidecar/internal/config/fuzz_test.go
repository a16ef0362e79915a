package config

import (
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/example/sidecar/internal/redact"
)

// FuzzForwards parses any FORWARDS list. An accepted list, written back as
// the start line logs its forwards, parses to the same forwards; a refused
// one gets problems that each name a variable; nothing panics.
func FuzzForwards(f *testing.F) {
	for _, s := range []string{
		"3306=db:3306", "3306=db:3306,3307=[::1]:3306", " 3306 = db.example. : 3306", "3306=db:3306,",
		"3306=a:1,3306=b:2", "3306=127.0.0.1:3306", "3306=u:p@db:3306", "3306=[fe80::1%eth0]:3306",
		"1=a:65535,65535=b_c:1", "3306=db:+1", "3306=db:03306", "3306=db:3306,3307=u:pw,3308=x@db:1",
		"3306=mysql://u:p@db:3306?x=1,3307=db:1", "3306=db:3306 ,\t3307=db:3307",
	} {
		f.Add(s, "")
	}
	f.Add("3306=localhost:3307,3307=localhost:3306", "127.0.0.1")
	f.Add("3306=db:3306", "::")
	f.Fuzz(func(t *testing.T, list, listenAddr string) {
		e := map[string]string{"FORWARDS": list, "LISTEN_ADDR": listenAddr}
		c, err := Parse(env(e))
		if err != nil {
			for _, p := range err.(*Error).Problems {
				if p.Variable == "" || !strings.HasPrefix(p.String(), p.Variable) {
					t.Errorf("problem %q names no variable", p)
				}
			}
			return
		}
		var again []string
		for _, a := range c.LogAttrs() {
			if a.Key != "forwards" {
				continue
			}
			for _, fw := range a.Value.Any().([]string) {
				listen, target, _ := strings.Cut(fw, "=")
				_, port, err := net.SplitHostPort(listen)
				if err != nil {
					t.Fatalf("logged forward %q: listen part: %v", fw, err)
				}
				again = append(again, port+"="+target)
			}
		}
		e["FORWARDS"] = strings.Join(again, ",")
		c2, err := Parse(env(e))
		if err != nil {
			t.Fatalf("FORWARDS=%q accepted, logged as %q, which is refused: %v", list, e["FORWARDS"], err)
		}
		if !reflect.DeepEqual(c.Forwards, c2.Forwards) {
			t.Fatalf("FORWARDS=%q: %+v; as logged (%q): %+v", list, c.Forwards, e["FORWARDS"], c2.Forwards)
		}
	})
}

// FuzzSecretRefused sets a variable to prefix + a credential's key +
// secret, as a password pasted into the wrong variable, and checks that
// whatever Parse answers (a refusal, or the start line of what it
// accepted) never shows the secret, where redact.Keyed masks it. The
// secret carries a marker, so the check does not depend on what
// the fuzzer puts around it.
func FuzzSecretRefused(f *testing.F) {
	forms := []string{"password=", "Pwd = ", "password: ", `"password":"`, "X-Amz-Signature=", " -p", "?", " --password ", "db.password:"}
	const marker = "QZXJ"
	f.Add(uint8(0), "db", uint8(0), "", "")
	f.Add(uint8(13), "3306=db:3306,3307=", uint8(1), "a,3308=db", ":1")
	f.Add(uint8(1), "", uint8(6), "=", "")
	f.Add(uint8(6), "app,", uint8(2), "x", "")
	f.Add(uint8(4), "/etc/", uint8(0), "", ".pem")
	f.Add(uint8(5), "db.example ", uint8(5), "w", "")
	f.Add(uint8(5), "db.example", uint8(7), "", "")
	f.Add(uint8(5), "3307=spring.", uint8(8), "", "")
	f.Fuzz(func(t *testing.T, which uint8, prefix string, form uint8, s1, s2 string) {
		name := Names[int(which)%len(Names)]
		key := forms[int(form)%len(forms)]
		secret := s1 + marker + s2
		v := prefix + key + secret
		if strings.Contains(prefix+key, marker) || strings.Contains(redact.Keyed(v), marker) {
			return
		}
		if at := strings.LastIndexByte(secret, '@'); key == "?" && at >= 0 && at < len(s1) {
			return // user:pw?x@host: the ? is the password's, the host after the @ shows
		}
		e := map[string]string{"TARGET_HOST": "db", "TARGET_PORT": "3306", name: v}
		if name == "FORWARDS" {
			delete(e, "TARGET_HOST")
			delete(e, "TARGET_PORT")
		}
		if setting(name).iamOnly {
			e["TARGET_AUTH"], e["TARGET_TLS"] = "iam", "verify-identity"
		}
		c, err := Parse(env(e))
		var shown string
		if err != nil {
			shown = err.Error()
		} else {
			shown = fmt.Sprint(slog.GroupValue(c.LogAttrs()...))
		}
		if strings.Contains(shown, marker) {
			t.Fatalf("%s=%q: the secret after %q shows: %s", name, v, key, shown)
		}
	})
}
