package iamauth

import (
	"cmp"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/example/sidecar/internal/redact"
)

// ecsCredentialsHost is where ECS serves a task role's credentials to
// AWS_CONTAINER_CREDENTIALS_RELATIVE_URI.
const ecsCredentialsHost = "http://169.254.170.2"

// RequestTimeout bounds one request for credentials (the SDK retries it
// twice): the SDK's HTTP client waits for an answer without limit, and its
// credentials cache shares one request among every caller, so a request
// the endpoint never answers would stall every login after it.
const RequestTimeout = 5 * time.Second

// Source is where credentials come from.
type Source struct {
	Provider aws.CredentialsProvider // cached
	Name     string                  // for logs: "environment", "ECS task role (…)", …
	// endpoint is the credentials endpoint that errors quote; its path or
	// query may be the task's credential id or a token. nil = none.
	endpoint *url.URL
}

// hide masks the credentials endpoint's address in err's text (keeping
// its host), still wrapping err.
func (s Source) hide(err error) error {
	if err == nil || s.endpoint == nil {
		return err
	}
	scheme := s.endpoint.Scheme + "://"
	re := regexp.MustCompile(regexp.QuoteMeta(scheme) + `[^\s"']*`)
	text := re.ReplaceAllLiteralString(err.Error(), scheme+s.endpoint.Host+"/xxxxx")
	if text == err.Error() {
		return err
	}
	return &hidden{text: text, err: err}
}

type hidden struct {
	text string
	err  error
}

func (h *hidden) Error() string { return h.text }
func (h *hidden) Unwrap() error { return h.err }

// CredentialSource picks the credential source as the AWS SDKs' default
// chain does, from the environment: keys in the environment, then web
// identity, then the ECS container endpoint, then instance metadata. It
// is built from the SDK's providers rather than its config module, which
// would add shared-config, SSO and login code a sidecar never uses (about
// 1.7 MB). A malformed setting is an error naming the variable;
// regionVar is the variable region was read from (AWS_REGION, or
// AWS_DEFAULT_REGION when that is unset).
func CredentialSource(getenv func(string) string, region, regionVar string) (Source, error) {
	return credentialSource(getenv, region, regionVar, RequestTimeout)
}

func credentialSource(getenv func(string) string, region, regionVar string, timeout time.Duration) (Source, error) {
	var p aws.CredentialsProvider
	var name string
	var endpoint string
	client := awshttp.NewBuildableClient().WithTimeout(timeout)
	switch {
	case getenv("AWS_ACCESS_KEY_ID") != "" || getenv("AWS_SECRET_ACCESS_KEY") != "":
		if getenv("AWS_ACCESS_KEY_ID") == "" || getenv("AWS_SECRET_ACCESS_KEY") == "" {
			missing := "AWS_SECRET_ACCESS_KEY"
			if getenv("AWS_ACCESS_KEY_ID") == "" {
				missing = "AWS_ACCESS_KEY_ID"
			}
			return Source{}, &EnvError{Variable: missing, Accepted: "set together with the other of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither (then the task role is used)"}
		}
		p = credentials.NewStaticCredentialsProvider(getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"), getenv("AWS_SESSION_TOKEN"))
		name = "environment (AWS_ACCESS_KEY_ID)"
	case getenv("AWS_WEB_IDENTITY_TOKEN_FILE") != "":
		role := getenv("AWS_ROLE_ARN")
		if role == "" {
			return Source{}, &EnvError{Variable: "AWS_ROLE_ARN", Accepted: RoleARNAccepted + "; required when AWS_WEB_IDENTITY_TOKEN_FILE is set"}
		}
		if err := checkWebIdentity(role, getenv("AWS_ROLE_SESSION_NAME"), getenv("AWS_WEB_IDENTITY_TOKEN_FILE"), region, regionVar); err != nil {
			return Source{}, err
		}
		p = stscreds.NewWebIdentityRoleProvider(sts.New(sts.Options{Region: region, HTTPClient: client}), role, stscreds.IdentityTokenFile(getenv("AWS_WEB_IDENTITY_TOKEN_FILE")),
			func(o *stscreds.WebIdentityRoleOptions) { o.RoleSessionName = getenv("AWS_ROLE_SESSION_NAME") })
		name = "web identity (" + role + ")"
	case getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") != "":
		rel := getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
		if !strings.HasPrefix(rel, "/") {
			return Source{}, &EnvError{Variable: "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", Value: redact.Query(rel), Accepted: "a path starting with / (ECS sets it)"}
		}
		endpoint = ecsCredentialsHost + rel
		p = endpointcreds.New(endpoint, containerAuth(getenv, client))
		name = "ECS task role (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)"
	case getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI") != "":
		full := getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI")
		if err := checkFullURI(full); err != nil {
			return Source{}, &EnvError{Variable: "AWS_CONTAINER_CREDENTIALS_FULL_URI", Value: redact.Query(full), Accepted: err.Error()}
		}
		endpoint = full
		p = endpointcreds.New(full, containerAuth(getenv, client))
		name = "container credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI)"
	default:
		p = ec2rolecreds.New()
		name = "EC2 instance metadata (no AWS_* credential variables set" + unread(getenv) + ")"
	}
	// No ExpiryWindow: the cache would report credentials that expire
	// within it as expired, and a login would be refused with credentials
	// Aurora still accepts.
	src := Source{Provider: aws.NewCredentialsCache(p), Name: name}
	if endpoint != "" {
		src.endpoint, _ = url.Parse(endpoint) // checked above
	}
	return src, nil
}

// unread names the settings of a laptop's AWS CLI that the sidecar's
// chain does not read, so the source's name (logged while credentials
// are missing, and /readyz's reason) says why they did not help.
func unread(getenv func(string) string) string {
	var notes []string
	if strings.EqualFold(strings.TrimSpace(getenv("AWS_EC2_METADATA_DISABLED")), "true") {
		notes = append(notes, "AWS_EC2_METADATA_DISABLED=true turns it off")
	}
	if getenv("AWS_PROFILE") != "" {
		notes = append(notes, "AWS_PROFILE is not read: export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	if getenv("AWS_SESSION_TOKEN") != "" {
		notes = append(notes, "AWS_SESSION_TOKEN is read only with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	if getenv("AWS_ROLE_ARN") != "" {
		notes = append(notes, "AWS_ROLE_ARN is read only with AWS_WEB_IDENTITY_TOKEN_FILE")
	}
	if len(notes) == 0 {
		return ""
	}
	return "; " + strings.Join(notes, "; ")
}

// RoleARNAccepted is what AWS_ROLE_ARN accepts.
const RoleARNAccepted = "an IAM role ARN, arn:<partition>:iam::<12-digit account>:role/[<path>/]<name> " +
	"(partition aws, aws-cn, aws-us-gov or another AWS partition), such as arn:aws:iam::123456789012:role/app"

// roleARN is IAM's grammar for a role ARN: a partition (aws, aws-cn,
// aws-us-gov, aws-iso-b, …), no region, a 12-digit account, an optional
// path of ! to DEL (0x21 to 0x7F, IAM's rule) and a name of 1 to 64 of
// [A-Za-z0-9+=,.@_-].
var roleARN = regexp.MustCompile(`^arn:(aws(?:-[a-z]+)*):iam::[0-9]{12}:role/(?:[!-\x7f]*/)?[\w+=,.@-]{1,64}$`)

// roleSessionName is STS's rule for RoleSessionName.
var roleSessionName = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)

// checkWebIdentity refuses what cannot work whatever happens later: a
// role that is no role ARN, one in another partition than region's
// (STS there does not know it), a session name STS refuses, a token path
// that is a directory (the serviceaccount directory given for its token
// file) or the token itself, which the SDK's error would quote in every
// retry's log line and /readyz, unmasked. A token file that
// does not exist yet is not refused: the SDK reads it at every request,
// and a mount may fill it after the start.
func checkWebIdentity(role, sessionName, tokenFile, region, regionVar string) error {
	m := roleARN.FindStringSubmatch(role)
	if m == nil {
		return &EnvError{Variable: "AWS_ROLE_ARN", Value: role, Accepted: RoleARNAccepted}
	}
	// Only the partitions whose regions' names say them are judged: a
	// partition AWS adds later may name its regions in another way.
	judged := m[1] == "aws" || m[1] == "aws-cn" || m[1] == "aws-us-gov"
	if want := regionPartition(region); judged && want != "" && m[1] != want {
		return &EnvError{Variable: "AWS_ROLE_ARN", Value: role,
			Reason:   fmt.Sprintf(" is in partition %s, and %s=%s is in %s, whose STS does not know the role", m[1], regionVar, region, want),
			Accepted: "a role ARN of partition " + want + " (arn:" + want + ":iam::…), or the " + regionVar + " of the role's partition"}
	}
	if sessionName != "" && !roleSessionName.MatchString(sessionName) {
		return &EnvError{Variable: "AWS_ROLE_SESSION_NAME", Value: sessionName, Accepted: "2 to 64 of A-Z a-z 0-9 + = , . @ _ - (STS's rule), or unset for a generated name"}
	}
	if jwt.MatchString(strings.TrimSpace(tokenFile)) {
		return &EnvError{Variable: "AWS_WEB_IDENTITY_TOKEN_FILE", Value: redact.Mask, Reason: " is a token (a JWT, not shown), not the path of its file",
			Accepted: tokenFileAccepted}
	}
	if fi, err := os.Stat(tokenFile); err == nil && fi.IsDir() {
		return &EnvError{Variable: "AWS_WEB_IDENTITY_TOKEN_FILE", Value: tokenFile, Reason: " is a directory", Accepted: tokenFileAccepted}
	}
	return nil
}

// tokenFileAccepted is what AWS_WEB_IDENTITY_TOKEN_FILE accepts.
const tokenFileAccepted = "the path of the token file, such as /var/run/secrets/eks.amazonaws.com/serviceaccount/token (it may appear after the start)"

// jwt is a JWS in compact form, as a web identity token is: a header
// (base64url JSON, so "eyJ"), a payload and a signature.
var jwt = regexp.MustCompile(`^eyJ[\w-]*\.[\w-]+\.[\w-]*$`)

// regionPartition is the partition of region for the partitions whose
// regions' names say it (aws, aws-cn, aws-us-gov); "" for the isolated
// ones (us-iso-east-1, eusc-de-east-1, …) and for none, which are not
// checked.
func regionPartition(region string) string {
	switch {
	case region == "":
		return ""
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	case strings.Contains(region, "-iso") || strings.HasPrefix(region, "eusc-"):
		return ""
	default:
		return "aws"
	}
}

// EnvError is a credential variable that cannot work. Value is empty for
// a variable that is missing; secrets are never put in it.
type EnvError struct {
	Variable, Value, Accepted string
	Reason                    string // " is …"; "" = " is invalid"
}

func (e *EnvError) Error() string {
	if e.Value == "" {
		return e.Variable + " is not set; accepted: " + e.Accepted
	}
	return fmt.Sprintf("%s=%q%s; accepted: %s", e.Variable, e.Value, cmp.Or(e.Reason, " is invalid"), e.Accepted)
}

// containerAuth sends the ECS/EKS agent's authorization token, read from
// the file on every call because the agent rotates it, with client.
func containerAuth(getenv func(string) string, client *awshttp.BuildableClient) func(*endpointcreds.Options) {
	return func(o *endpointcreds.Options) {
		o.HTTPClient = client
		if file := getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"); file != "" {
			o.AuthorizationTokenProvider = endpointcreds.TokenProviderFunc(func() (string, error) {
				b, err := os.ReadFile(file)
				if err != nil {
					return "", fmt.Errorf("read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: %w", err)
				}
				return strings.TrimSpace(string(b)), nil
			})
		} else if tok := getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN"); tok != "" {
			o.AuthorizationToken = tok
		}
	}
}

// checkFullURI allows what the SDKs allow: https anywhere, http only to
// loopback or the ECS and EKS credential addresses, so credentials never
// cross a network in the clear.
func checkFullURI(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("want an http:// or https:// URL")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if host == "localhost" {
			return nil
		}
		ip := net.ParseIP(host)
		if ip != nil && (ip.IsLoopback() || ip.Equal(net.ParseIP("169.254.170.2")) || ip.Equal(net.ParseIP("169.254.170.23")) || ip.Equal(net.ParseIP("fd00:ec2::23"))) {
			return nil
		}
		return fmt.Errorf("http is allowed only to loopback, 169.254.170.2 (ECS) or 169.254.170.23 (EKS); use https")
	default:
		return fmt.Errorf("want an http:// or https:// URL")
	}
}
