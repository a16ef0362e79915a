package config

import (
	"strings"
	"testing"
)

func TestIAMRules(t *testing.T) {
	base := map[string]string{"TARGET_HOST": "db.cluster-x.us-east-1.rds.amazonaws.com", "TARGET_PORT": "3306",
		"TARGET_TLS": "verify-identity", "TARGET_AUTH": "IAM", "AWS_REGION": "us-east-1", "LISTEN_ADDR": "127.0.0.1",
		"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "top-secret-key"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string // every one must appear; nil = valid
	}{
		{"valid", with(), nil},
		{"valid with LOCAL_PASSWORD on 0.0.0.0", with("LISTEN_ADDR", "0.0.0.0", "LOCAL_PASSWORD", "pw"), nil},
		{"without TLS", with("TARGET_TLS", ""), []string{"TARGET_TLS", "TARGET_AUTH=iam", "verify-ca or verify-identity"}},
		{"0.0.0.0 without LOCAL_PASSWORD", with("LISTEN_ADDR", ""), []string{"LOCAL_PASSWORD", "LISTEN_ADDR=0.0.0.0", "LISTEN_ADDR=127.0.0.1"}},
		{":: without LOCAL_PASSWORD", with("LISTEN_ADDR", "::"), []string{"LOCAL_PASSWORD", "LISTEN_ADDR=::"}},
		// Blanks alone are unset, as in every variable: no password anyone could guess.
		{"0.0.0.0 with a blank LOCAL_PASSWORD", with("LISTEN_ADDR", "0.0.0.0", "LOCAL_PASSWORD", " \t "), []string{"LOCAL_PASSWORD is not set", "LISTEN_ADDR=0.0.0.0"}},
		{"no region", with("AWS_REGION", ""), []string{"AWS_REGION is not set", "TARGET_AUTH=iam"}},
		// AWS_DEFAULT_REGION is the fallback, as in the AWS SDKs (ECS on
		// EC2 sets neither when a task definition sets one of them).
		{"AWS_DEFAULT_REGION alone", with("AWS_REGION", "", "AWS_DEFAULT_REGION", "us-east-1"), nil},
		{"AWS_DEFAULT_REGION alone, another region than the endpoint's", with("AWS_REGION", "", "AWS_DEFAULT_REGION", "eu-west-1"),
			[]string{`AWS_DEFAULT_REGION="eu-west-1" is not the region of the database endpoint db.cluster-x.us-east-1.rds.amazonaws.com`, "set AWS_REGION"}},
		{"AWS_DEFAULT_REGION alone, malformed", with("AWS_REGION", "", "AWS_DEFAULT_REGION", "us-east"), []string{`AWS_DEFAULT_REGION="us-east" is invalid; accepted: an AWS region`}},
		{"no region, the endpoint's named", with("AWS_REGION", ""), []string{"AWS_REGION is not set", "the endpoint db.cluster-x.us-east-1.rds.amazonaws.com is in us-east-1"}},
		{"bad region", with("AWS_REGION", "us-east"), []string{`AWS_REGION="us-east"`}},
		{"bad IAM_USERS", with("IAM_USERS", "app,,report"), []string{`IAM_USERS="app,,report": entry "" is empty; accepted:`}},
		{"IAM_USERS quoted", with("IAM_USERS", "'app'"), []string{`IAM_USERS="'app'": entry "'app'" has the character '\''`, "no quotes"}},
		{"IAM_USERS as an account", with("IAM_USERS", "app@%"), []string{`IAM_USERS="app@%": entry "app@%" ends in an account host (@%)`, "account host"}},
		{"IAM_USERS as a local account", with("IAM_USERS", "app,report@localhost"), []string{`IAM_USERS="app,report@localhost": entry "report@localhost" ends in an account host (@localhost)`}},
		{"IAM_USERS with an address as an account", with("IAM_USERS", "app@10.0.0.1"), []string{`IAM_USERS="app@10.0.0.1": entry "app@10.0.0.1" ends in an account host (@10.0.0.1)`}},
		{"IAM_USERS, a name with an @", with("IAM_USERS", "jane@example.com,app"), nil},
		{"IAM_USERS spaced, not comma-separated", with("IAM_USERS", "app report"), []string{`IAM_USERS="app report": entry "app report" has the character ' '`, "spaces"}},
		{"IAM_USERS semicolon-separated", with("IAM_USERS", "app;report"), []string{`IAM_USERS="app;report": entry "app;report" has the character ';'`}},
		{"IAM_USERS wildcard", with("IAM_USERS", "*"), []string{`IAM_USERS="*": entry "*" has the character '*'`, "unset for any user"}},
		{"IAM_USERS spaces around commas", with("IAM_USERS", " app , report "), nil},
		// MariaDB's limit, in characters (MySQL's is 32).
		{"IAM_USERS a name of 80 characters", with("IAM_USERS", "app,"+strings.Repeat("é", 80)), nil},
		{"IAM_USERS a name longer than 80 characters", with("IAM_USERS", "app,"+strings.Repeat("a", 81)),
			[]string{`IAM_USERS="app,` + strings.Repeat("a", 81) + `": entry "` + strings.Repeat("a", 81) + `" has 81 characters`, "of at most 80 characters"}},
		{"IAM_USERS, every bad entry named", with("IAM_USERS", "app,,report@%,x y"),
			[]string{`IAM_USERS="app,,report@%,x y": entry "" is empty; entry "report@%" ends in an account host (@%); entry "x y" has the character ' '; accepted:`}},
		// A value shown masked may hide a secret that runs over commas:
		// its entries are named by their place, never quoted.
		{"IAM_USERS with a password in it", with("IAM_USERS", "app,password=s3cret x,y z"),
			[]string{`IAM_USERS="app,password=xxxxx": entries 2 and 3 are not user names; accepted:`}},
		{"IAM_USERS with a connection string in it", with("IAM_USERS", "app,Uid=app;Pwd=s3cret"),
			[]string{`IAM_USERS="app,Uid=app;Pwd=xxxxx": entry 2 is not a user name; accepted:`}},
		// A secret pasted as an entry is no user name: refused masked,
		// rather than accepted and logged in clear at start.
		{"IAM_USERS with a password entry", with("IAM_USERS", "app,password=s3cret"),
			[]string{`IAM_USERS="app,password=xxxxx": entry 2 is not a user name; accepted:`}},
		{"IAM_USERS with a token's query", with("IAM_USERS", "app,db:3306/?X-Amz-Signature=s3cret"),
			[]string{`IAM_USERS="app,db:3306/?xxxxx": entry 2 is not a user name; accepted:`}},
		{"IAM_USERS with a YAML password", with("IAM_USERS", "app,password:s3cret"),
			[]string{`IAM_USERS="app,password:xxxxx": entry 2 is not a user name; accepted:`}},
		{"IAM_USERS with a mysql -p", with("IAM_USERS", "-ps3cret"),
			[]string{`IAM_USERS="-pxxxxx": entry 1 is not a user name; accepted:`}},
		{"IAM_USERS, names with pass and token in them", with("IAM_USERS", "passport,token_reader,app-pool"), nil},
		{"bad auth", with("TARGET_AUTH", "token"), []string{`TARGET_AUTH="token"`, "passthrough or iam"}},
		{"half keys", with("AWS_SECRET_ACCESS_KEY", ""), []string{"AWS_SECRET_ACCESS_KEY is not set"}},
		// Web identity: what cannot work later is refused at start, with
		// the check's own reason.
		{"web identity, a role name", with("AWS_ACCESS_KEY_ID", "", "AWS_SECRET_ACCESS_KEY", "", "AWS_WEB_IDENTITY_TOKEN_FILE", "/t", "AWS_ROLE_ARN", "app"),
			[]string{`AWS_ROLE_ARN="app" is invalid; accepted: an IAM role ARN`}},
		{"web identity, the role of another partition", with("AWS_ACCESS_KEY_ID", "", "AWS_SECRET_ACCESS_KEY", "", "AWS_WEB_IDENTITY_TOKEN_FILE", "/t",
			"AWS_ROLE_ARN", "arn:aws-cn:iam::123456789012:role/app"), []string{`AWS_ROLE_ARN="arn:aws-cn:iam::123456789012:role/app" is in partition aws-cn, and AWS_REGION=us-east-1 is in aws`}},
		// The token in place of its file's path: refused, and never shown.
		{"web identity, the token for its file", with("AWS_ACCESS_KEY_ID", "", "AWS_SECRET_ACCESS_KEY", "",
			"AWS_WEB_IDENTITY_TOKEN_FILE", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.top-secret-key", "AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/app"),
			[]string{`AWS_WEB_IDENTITY_TOKEN_FILE="xxxxx" is a token (a JWT, not shown), not the path of its file`}},
		// The region read from AWS_DEFAULT_REGION is named as such: AWS_REGION is not set.
		{"web identity, the role of another partition, AWS_DEFAULT_REGION's region", with("AWS_ACCESS_KEY_ID", "", "AWS_SECRET_ACCESS_KEY", "", "AWS_WEB_IDENTITY_TOKEN_FILE", "/t",
			"AWS_ROLE_ARN", "arn:aws-cn:iam::123456789012:role/app", "AWS_REGION", "", "AWS_DEFAULT_REGION", "us-east-1"),
			[]string{"is in partition aws-cn, and AWS_DEFAULT_REGION=us-east-1 is in aws", "or the AWS_DEFAULT_REGION of the role's partition"}},
		{"IP target without a name", with("TARGET_HOST", "10.0.0.5", "TARGET_TLS", "verify-ca"), []string{"TARGET_SERVER_NAME is not set", "TARGET_AUTH=iam", "10.0.0.5"}},
		// Both at once, not the name only once TLS is fixed.
		{"IP target without TLS or a name", with("TARGET_HOST", "10.0.0.5", "TARGET_TLS", ""), []string{"TARGET_TLS", "TARGET_SERVER_NAME is not set", "10.0.0.5"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(env(tc.env))
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if c.IAM == nil || c.Auth != AuthIAM {
					t.Fatal("no IAM token source")
				}
				a := c.Proxy().Forwards[0].TLS.IAM
				if a == nil || a.Endpoint != "db.cluster-x.us-east-1.rds.amazonaws.com:3306" {
					t.Fatalf("authority %+v", a)
				}
				return
			}
			refusedAs(t, err, tc.want)
			if strings.Contains(err.Error(), "s3cret") {
				t.Error("the error shows a password")
			}
			if strings.Contains(err.Error(), "top-secret-key") {
				t.Error("the error shows the secret key")
			}
		})
	}
}

// AWS_REGION wins over AWS_DEFAULT_REGION, as in the AWS SDKs.
func TestIAMRegionOverDefaultRegion(t *testing.T) {
	c, err := Parse(env(map[string]string{"TARGET_HOST": "db.cluster-x.us-east-1.rds.amazonaws.com", "TARGET_PORT": "3306",
		"TARGET_TLS": "verify-identity", "TARGET_AUTH": "iam", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "eu-west-1",
		"LISTEN_ADDR": "127.0.0.1", "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "k"}))
	if err != nil || c.AWSRegion != "us-east-1" || c.IAM.Region != "us-east-1" {
		t.Fatalf("region %q, %v; want AWS_REGION's us-east-1", c.AWSRegion, err)
	}
	c, err = Parse(env(map[string]string{"TARGET_HOST": "db.cluster-x.us-east-1.rds.amazonaws.com", "TARGET_PORT": "3306",
		"TARGET_TLS": "verify-identity", "TARGET_AUTH": "iam", "AWS_DEFAULT_REGION": "us-east-1",
		"LISTEN_ADDR": "127.0.0.1", "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "k"}))
	if err != nil || c.AWSRegion != "us-east-1" || c.IAM.Region != "us-east-1" {
		t.Fatalf("region %q, %v; want AWS_DEFAULT_REGION's us-east-1", c.AWSRegion, err)
	}
}

// A region already refused is not used to judge the role's partition:
// one problem, the region's, not a second one it caused.
func TestIAMRoleNotJudgedByARefusedRegion(t *testing.T) {
	_, err := Parse(env(map[string]string{"TARGET_HOST": "db.cluster-x.us-east-1.rds.amazonaws.com", "TARGET_PORT": "3306",
		"TARGET_TLS": "verify-identity", "TARGET_AUTH": "iam", "AWS_REGION": "cn-north-1", "LISTEN_ADDR": "127.0.0.1",
		"AWS_WEB_IDENTITY_TOKEN_FILE": "/t", "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/app"}))
	refusedAs(t, err, []string{`AWS_REGION="cn-north-1" is not the region of the database endpoint`})
	if strings.Contains(err.Error(), "AWS_ROLE_ARN") {
		t.Errorf("the role was judged by the refused region:\n%s", err)
	}
}

// Tokens are signed for the name the server knows itself by, never the
// IP dialed; the IAM variables are ignored in passthrough.
func TestIAMEndpointAndPassthrough(t *testing.T) {
	c, err := Parse(env(map[string]string{"TARGET_HOST": "10.0.0.5", "TARGET_PORT": "3306", "TARGET_TLS": "verify-identity",
		"TARGET_SERVER_NAME": "db.cluster-x.eu-west-1.rds.amazonaws.com", "TARGET_AUTH": "iam", "AWS_REGION": "eu-west-1",
		"LISTEN_ADDR": "127.0.0.1", "IAM_USERS": "app, report"}))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Proxy().Forwards[0].TLS.IAM
	if a.Endpoint != "db.cluster-x.eu-west-1.rds.amazonaws.com:3306" || !a.Users["report"] || len(a.Users) != 2 || c.IAM.Region != "eu-west-1" {
		t.Fatalf("authority %+v region %s", a, c.IAM.Region)
	}
	if !strings.HasPrefix(c.IAM.Source.Name, "EC2 instance metadata") {
		t.Fatalf("source %q", c.IAM.Source.Name)
	}
	p, err := Parse(env(map[string]string{"TARGET_HOST": "db.example", "TARGET_PORT": "3306", "IAM_USERS": "app", "LOCAL_PASSWORD": "x"}))
	if err != nil || p.IAM != nil || p.IAMUsers != nil || p.LocalPassword != "" || p.Proxy().Forwards[0].TLS != nil {
		t.Fatalf("passthrough kept IAM settings: %+v, %v", p, err)
	}
}

// IAM_USERS, LOCAL_PASSWORD and AWS_REGION are read only with iam: a task
// definition, or an AWS_REGION the SDK's own conventions set, keeps them
// harmlessly in passthrough mode. LOCAL_PASSWORD is taken as written.
func TestIAMOnlySettings(t *testing.T) {
	base := map[string]string{"TARGET_HOST": "db.cluster-abc.eu-west-1.rds.amazonaws.com", "TARGET_PORT": "3306",
		"AWS_REGION": "local", "IAM_USERS": "app,,", "LOCAL_PASSWORD": " pw "}
	c, err := Parse(env(base))
	if err != nil {
		t.Fatalf("passthrough with iam-only settings a passthrough ignores: %v", err)
	}
	if c.AWSRegion != "" || c.IAMUsers != nil || c.LocalPassword != "" {
		t.Errorf("passthrough kept iam settings: %+v", c)
	}
	iam := map[string]string{"TARGET_TLS": "verify-identity", "TARGET_AUTH": "iam", "AWS_REGION": "eu-west-1",
		"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"}
	for k, v := range base {
		if _, ok := iam[k]; !ok && k != "IAM_USERS" {
			iam[k] = v
		}
	}
	c, err = Parse(env(iam))
	if err != nil {
		t.Fatal(err)
	}
	if c.LocalPassword != " pw " {
		t.Errorf("LOCAL_PASSWORD = %q, want it as written", c.LocalPassword)
	}
	iam["LOCAL_PASSWORD"], iam["LISTEN_ADDR"] = "   ", "127.0.0.1"
	if c, err = Parse(env(iam)); err != nil || c.LocalPassword != "" {
		t.Errorf("LOCAL_PASSWORD of blanks: %q, %v; want it unset", c.LocalPassword, err)
	}
	iam["LOCAL_PASSWORD"] = " pw "
	delete(iam, "LISTEN_ADDR")
	iam["IAM_USERS"] = "app,,"
	if _, err := Parse(env(iam)); err == nil || !strings.Contains(err.Error(), `IAM_USERS="app,,"`) {
		t.Errorf("iam with IAM_USERS=app,,: %v", err)
	}
}

// LOCAL_PASSWORD is used as written, but blanks at its ends (a secret file's
// newline) are named, without the password, for a warning at start.
func TestLocalPasswordSpace(t *testing.T) {
	for _, tc := range []struct{ password, want string }{
		{"s3cret", ""},
		{"s3 cr\tet", ""},
		{"s3cret\n", "ends in a newline"},
		{"s3cret\r\n", "ends in a newline"},
		{"s3cret ", "ends in a space"},
		{"s3cret\t", "ends in a tab"},
		{"s3cret\u00a0", "ends in a blank (U+00A0)"},
		{" s3cret", "starts with a space"},
		{"\ns3cret", "starts with a newline"},
		{"", ""},
	} {
		if got := (Config{LocalPassword: tc.password}).LocalPasswordSpace(); got != tc.want {
			t.Errorf("LocalPasswordSpace of %q = %q, want %q", tc.password, got, tc.want)
		}
	}
}

// A token signed for another region than the cluster's is refused by
// Aurora at every login: an endpoint name that says its region settles
// AWS_REGION at start. Names that say none (a global endpoint, an alias)
// are left to the database.
func TestIAMRegionMatchesTheEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name, host, serverName, region string
		want                           []string // nil = valid
	}{
		{"the endpoint's region", "db.cluster-x.eu-west-1.rds.amazonaws.com", "", "eu-west-1", nil},
		{"another region", "db.cluster-x.eu-west-1.rds.amazonaws.com", "", "us-east-1",
			[]string{`AWS_REGION="us-east-1" is not the region of the database endpoint db.cluster-x.eu-west-1.rds.amazonaws.com`, "accepted: eu-west-1"}},
		{"another region in TARGET_SERVER_NAME", "10.0.0.5", "db.cluster-ro-x.ap-southeast-2.rds.amazonaws.com", "ap-southeast-1",
			[]string{`AWS_REGION="ap-southeast-1"`, "db.cluster-ro-x.ap-southeast-2.rds.amazonaws.com", "accepted: ap-southeast-2"}},
		{"a name in capitals", "DB.CLUSTER-X.EU-WEST-1.RDS.AMAZONAWS.COM", "", "eu-west-1", nil},
		{"China", "db.cluster-x.cn-north-1.rds.amazonaws.com.cn", "", "cn-north-1", nil},
		{"China, another region", "db.cluster-x.cn-north-1.rds.amazonaws.com.cn", "", "cn-northwest-1", []string{"accepted: cn-north-1"}},
		{"GovCloud", "db.cluster-x.us-gov-west-1.rds.amazonaws.com", "", "us-gov-east-1", []string{"accepted: us-gov-west-1"}},
		{"an RDS Proxy", "p.proxy-x.eu-central-1.rds.amazonaws.com", "", "eu-west-1", []string{"accepted: eu-central-1"}},
		{"a global endpoint says no region", "db.global-x.global.rds.amazonaws.com", "", "eu-west-1", nil},
		{"an alias says no region", "db.internal.example", "", "eu-west-1", nil},
		{"a look-alike domain", "db.eu-west-1.rds.amazonaws.com.example", "", "us-east-1", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := map[string]string{"TARGET_HOST": tc.host, "TARGET_PORT": "3306", "TARGET_TLS": "verify-identity", "TARGET_AUTH": "iam",
				"AWS_REGION": tc.region, "LISTEN_ADDR": "127.0.0.1", "AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s"}
			if tc.serverName != "" {
				e["TARGET_SERVER_NAME"] = tc.serverName
			}
			_, err := Parse(env(e))
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			refusedAs(t, err, tc.want)
		})
	}
}

// refusedAs fails t unless err refuses the configuration with every want
// in its text.
func refusedAs(t *testing.T, err error, want []string) {
	t.Helper()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%s", w, err)
		}
	}
}
