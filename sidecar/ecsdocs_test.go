package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/example/sidecar/sidecar/internal/config"
	"github.com/example/sidecar/sidecar/internal/iamauth"
)

// ecsShape is the fields ECS accepts in an object of a task definition;
// a field whose shape is nil is not checked further. A list is checked
// element by element against the same shape.
type ecsShape map[string]ecsShape

// leaves is a shape whose fields are all unchecked.
func leaves(names ...string) ecsShape {
	s := ecsShape{}
	for _, n := range names {
		s[n] = nil
	}
	return s
}

// ecsContainer is ContainerDefinition in the ECS API reference, with the
// members the docs use spelled out.
var ecsContainer = func() ecsShape {
	s := leaves("name", "image", "repositoryCredentials", "cpu", "memory", "memoryReservation", "links",
		"essential", "restartPolicy", "entryPoint", "command", "environmentFiles", "volumesFrom", "startTimeout",
		"stopTimeout", "versionConsistency", "hostname", "user", "workingDirectory", "disableNetworking", "privileged",
		"readonlyRootFilesystem", "dnsServers", "dnsSearchDomains", "extraHosts", "dockerSecurityOptions", "interactive",
		"pseudoTerminal", "dockerLabels", "systemControls", "resourceRequirements", "firelensConfiguration", "credentialSpecs")
	s["environment"] = leaves("name", "value")
	s["secrets"] = leaves("name", "valueFrom")
	s["dependsOn"] = leaves("containerName", "condition")
	s["healthCheck"] = leaves("command", "interval", "timeout", "retries", "startPeriod")
	s["linuxParameters"] = leaves("devices", "initProcessEnabled", "sharedMemorySize", "tmpfs", "maxSwap", "swappiness")
	s["linuxParameters"]["capabilities"] = leaves("add", "drop")
	s["logConfiguration"] = leaves("logDriver", "options")
	s["logConfiguration"]["secretOptions"] = leaves("name", "valueFrom")
	s["ulimits"] = leaves("name", "softLimit", "hardLimit")
	s["mountPoints"] = leaves("sourceVolume", "containerPath", "readOnly")
	s["portMappings"] = leaves("containerPort", "hostPort", "protocol", "name", "appProtocol", "containerPortRange")
	return s
}()

// ecsTask is RegisterTaskDefinition's request in the ECS API reference.
var ecsTask = func() ecsShape {
	s := leaves("family", "taskRoleArn", "executionRoleArn", "networkMode", "placementConstraints",
		"requiresCompatibilities", "cpu", "memory", "tags", "pidMode", "ipcMode", "proxyConfiguration",
		"inferenceAccelerators", "ephemeralStorage", "runtimePlatform", "enableFaultInjection")
	s["containerDefinitions"] = ecsContainer
	s["volumes"] = leaves("name", "host", "configuredAtLaunch", "dockerVolumeConfiguration", "efsVolumeConfiguration",
		"fsxWindowsFileServerVolumeConfiguration")
	return s
}()

// checkShape returns the path of every field of v that shape does not
// have.
func checkShape(path string, v any, shape ecsShape) []string {
	var bad []string
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			sub, ok := shape[k]
			switch {
			case !ok:
				bad = append(bad, path+"."+k)
			case sub != nil:
				bad = append(bad, checkShape(path+"."+k, x, sub)...)
			}
		}
	case []any:
		for i, x := range v {
			bad = append(bad, checkShape(path+"["+strconv.Itoa(i)+"]", x, shape)...)
		}
	}
	sort.Strings(bad)
	return bad
}

// ecsBlock is one JSON block of the docs that ECS would read: a whole
// task definition, a container definition or members of one, or an
// environment entry.
type ecsBlock struct {
	doc   any
	shape ecsShape // nil for an environment entry
}

// ecsBlocks returns the JSON blocks of text ECS would read (not IAM
// policies, not log lines).
func ecsBlocks(text string) []ecsBlock {
	var out []ecsBlock
	for _, block := range codeBlocks(text, "json") {
		doc, err := decodeJSONBlock(block)
		m, isObject := doc.(map[string]any)
		if err != nil || !isObject {
			continue
		}
		_, policy := m["Statement"]
		_, task := m["containerDefinitions"]
		_, envName := m["name"]
		_, envValue := m["value"]
		switch {
		case policy:
		case task:
			out = append(out, ecsBlock{doc, ecsTask})
		case len(m) == 2 && envName && envValue:
			out = append(out, ecsBlock{doc, nil})
		default: // a container, or members to add to one
			out = append(out, ecsBlock{doc, ecsContainer})
		}
	}
	return out
}

// Every task definition, container and fragment of one in the docs uses
// only field names ECS has (the AWS CLI refuses a misspelt one as an
// "Unknown parameter" when the task definition is registered), with
// values ECS accepts where the docs set them: dependsOn conditions, log
// drivers and awslogs options, ulimit names, network modes, launch types,
// Fargate's CPU and memory pairs and role ARNs.
func TestDocsTaskDefinitionsUseECSFields(t *testing.T) {
	objects := 0
	for f, text := range userDocs(t) {
		for _, b := range ecsBlocks(text) {
			objects++
			if b.shape == nil {
				if name := b.doc.(map[string]any)["name"]; !slices.Contains(config.Names, name.(string)) {
					t.Errorf("%s: an environment entry sets %v, which the sidecar does not read", f, name)
				}
				continue
			}
			for _, field := range checkShape("", b.doc, b.shape) {
				t.Errorf("%s: %s is no field of an ECS task definition", f, field)
			}
			for _, msg := range ecsValueErrors(b.doc) {
				t.Errorf("%s: %s", f, msg)
			}
		}
	}
	if objects < 8 {
		t.Fatalf("found %d task definitions, containers and fragments in the docs; want at least 8", objects)
	}
}

// ECS's enumerations (the API reference's ContainerDependency,
// LogConfiguration, Ulimit and RegisterTaskDefinition), and awslogs'
// options.
var (
	ecsConditions    = []string{"START", "COMPLETE", "SUCCESS", "HEALTHY"}
	ecsLogDrivers    = []string{"awslogs", "fluentd", "gelf", "json-file", "journald", "logentries", "syslog", "splunk", "awsfirelens"}
	awslogsOptions   = []string{"awslogs-group", "awslogs-region", "awslogs-stream-prefix", "awslogs-create-group", "awslogs-datetime-format", "awslogs-multiline-pattern", "awslogs-endpoint", "mode", "max-buffer-size"}
	ecsUlimits       = []string{"core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"}
	ecsNetworkModes  = []string{"awsvpc", "bridge", "host", "none"}
	ecsCompatibility = []string{"EC2", "FARGATE", "EXTERNAL", "MANAGED_INSTANCES"}
	iamRoleARN       = regexp.MustCompile(`^arn:aws(-cn|-us-gov)?:iam::\d{12}:role/[\w+=,.@/-]+$`)
)

// fargateSize reports whether a task's cpu and memory (as ECS writes them,
// in CPU units and MiB) are one of Fargate's sizes up to 4 vCPU.
func fargateSize(cpu, memory string) bool {
	mib, err := strconv.Atoi(memory)
	if err != nil {
		return false
	}
	gib := map[string][2]int{"512": {1, 4}, "1024": {2, 8}, "2048": {4, 16}, "4096": {8, 30}}[cpu]
	if cpu == "256" {
		return mib == 512 || mib == 1024 || mib == 2048
	}
	return gib[0] > 0 && mib%1024 == 0 && mib/1024 >= gib[0] && mib/1024 <= gib[1]
}

// ecsValueErrors checks the values of doc, a task definition or a
// container (or members of one), where ECS accepts only some, and their
// JSON types: the AWS CLI refuses a number where ECS takes a string
// ("cpu": 512 for a task) and the reverse ("value": 3306).
func ecsValueErrors(doc any) []string {
	raw, _ := json.Marshal(doc)
	if m, _ := doc.(map[string]any); m["containerDefinitions"] == nil {
		var c containerFields
		if err := json.Unmarshal(raw, &c); err != nil {
			return []string{"does not decode as a container definition: " + err.Error()}
		}
		return c.valueErrors()
	}
	var task struct {
		NetworkMode   string            `json:"networkMode"`
		Compatibility []string          `json:"requiresCompatibilities"`
		CPU           string            `json:"cpu"`
		Memory        string            `json:"memory"`
		TaskRole      *string           `json:"taskRoleArn"`
		ExecutionRole *string           `json:"executionRoleArn"`
		ContainerDefs []containerFields `json:"containerDefinitions"`
	}
	if err := json.Unmarshal(raw, &task); err != nil {
		return []string{"does not decode as a task definition: " + err.Error()}
	}
	var bad []string
	if task.NetworkMode != "" && !slices.Contains(ecsNetworkModes, task.NetworkMode) {
		bad = append(bad, "networkMode "+task.NetworkMode+" is none of "+strings.Join(ecsNetworkModes, ", "))
	}
	for _, c := range task.Compatibility {
		if !slices.Contains(ecsCompatibility, c) {
			bad = append(bad, "requiresCompatibilities "+c+" is none of "+strings.Join(ecsCompatibility, ", "))
		}
	}
	if slices.Contains(task.Compatibility, "FARGATE") {
		if !fargateSize(task.CPU, task.Memory) {
			bad = append(bad, "cpu "+task.CPU+" with memory "+task.Memory+" is no Fargate task size")
		}
	}
	for field, arn := range map[string]*string{"taskRoleArn": task.TaskRole, "executionRoleArn": task.ExecutionRole} {
		if arn != nil && !iamRoleARN.MatchString(*arn) {
			bad = append(bad, field+" "+*arn+" is no IAM role ARN")
		}
	}
	for _, c := range task.ContainerDefs {
		bad = append(bad, c.valueErrors()...)
	}
	return bad
}

// containerFields are the members of a container definition whose values
// ecsValueErrors checks, each of the JSON type ECS takes.
type containerFields struct {
	Name         string `json:"name"`
	Image        string `json:"image"`
	Essential    *bool  `json:"essential"`
	ReadonlyRoot *bool  `json:"readonlyRootFilesystem"`
	CPU          *int   `json:"cpu"`
	Memory       *int   `json:"memory"`
	StopTimeout  *int   `json:"stopTimeout"`
	Environment  []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"environment"`
	HealthCheck *struct {
		Command                                 []string `json:"command"`
		Interval, Timeout, Retries, StartPeriod *int
	} `json:"healthCheck"`
	DependsOn []struct {
		Condition string `json:"condition"`
	} `json:"dependsOn"`
	LogConfiguration *struct {
		LogDriver string            `json:"logDriver"`
		Options   map[string]string `json:"options"`
	} `json:"logConfiguration"`
	Ulimits []struct {
		Name string `json:"name"`
		Soft int    `json:"softLimit"`
		Hard int    `json:"hardLimit"`
	} `json:"ulimits"`
}

func (c containerFields) valueErrors() []string {
	var bad []string
	if hc := c.HealthCheck; hc != nil && (len(hc.Command) < 2 || hc.Command[0] != "CMD" && hc.Command[0] != "CMD-SHELL") {
		bad = append(bad, "container "+c.Name+": healthCheck command "+strings.Join(hc.Command, " ")+" does not start with CMD or CMD-SHELL")
	}
	for _, d := range c.DependsOn {
		if !slices.Contains(ecsConditions, d.Condition) {
			bad = append(bad, "container "+c.Name+": dependsOn condition "+d.Condition+" is none of "+strings.Join(ecsConditions, ", "))
		}
	}
	if lc := c.LogConfiguration; lc != nil {
		if !slices.Contains(ecsLogDrivers, lc.LogDriver) {
			bad = append(bad, "container "+c.Name+": logDriver "+lc.LogDriver+" is none of "+strings.Join(ecsLogDrivers, ", "))
		}
		for k := range lc.Options {
			if lc.LogDriver == "awslogs" && !slices.Contains(awslogsOptions, k) {
				bad = append(bad, "container "+c.Name+": "+k+" is no awslogs option")
			}
		}
		for _, k := range []string{"awslogs-group", "awslogs-region", "awslogs-stream-prefix"} { // the last one Fargate requires
			if _, ok := lc.Options[k]; lc.LogDriver == "awslogs" && !ok {
				bad = append(bad, "container "+c.Name+": awslogs without "+k)
			}
		}
	}
	for _, u := range c.Ulimits {
		if !slices.Contains(ecsUlimits, u.Name) || u.Soft > u.Hard {
			bad = append(bad, "container "+c.Name+": ulimit "+u.Name+" is unknown, or its softLimit is above its hardLimit")
		}
	}
	return bad
}

// rdsConnectResource is the form of rds-db:connect's resource for Aurora:
// partition, region, account, the cluster's resource id (never its name),
// the database user.
var rdsConnectResource = regexp.MustCompile(`^arn:(aws|aws-cn|aws-us-gov):rds-db:([a-z]{2}(?:-[a-z]+)+-\d):(\d{12}):dbuser:(cluster-[A-Z0-9]+)/([^/*\s]+)$`)

// docs/iam.md's setup hangs together: its policy allows rds-db:connect on
// a resource of the right form, for the region its sidecar signs tokens
// for and the user its sidecar allows, the SQL creates that user for IAM,
// and the task definition gives the task the role the sidecar signs with
// (taskRoleArn: the execution role's credentials never reach a container).
func TestDocsIAMSetupHangsTogether(t *testing.T) {
	text := userDocs(t)["docs/iam.md"]
	var resources []string
	var sidecars []config.Config
	for _, block := range codeBlocks(text, "json") {
		var policy struct {
			Statement []struct {
				Effect   string
				Action   any
				Resource any
			}
		}
		if json.Unmarshal([]byte(block), &policy) == nil && len(policy.Statement) > 0 {
			for _, s := range policy.Statement { // TestDocsIAMPoliciesAreValid checks the rest
				if s.Effect == "Allow" && strings.Contains(strings.ToLower(jsonText(s.Action)), "rds-db:connect") {
					resources = append(resources, strings.Fields(jsonText(s.Resource))...)
				}
			}
			continue
		}
		var task struct {
			TaskRole   string `json:"taskRoleArn"`
			Containers []struct {
				containerDef
				Image string `json:"image"`
			} `json:"containerDefinitions"`
		}
		if json.Unmarshal([]byte(block), &task) != nil {
			continue
		}
		for _, c := range task.Containers {
			cfg, err := config.Parse(lookupMap(envOf(c.containerDef)))
			if !strings.Contains(c.Image, "/sidecar:") || err != nil || cfg.Auth != config.AuthIAM {
				continue
			}
			sidecars = append(sidecars, cfg)
			if !iamRoleARN.MatchString(task.TaskRole) {
				t.Errorf("docs/iam.md: the task definition of IAM sidecar %q has taskRoleArn %q; the sidecar signs with the task role, so it needs one", c.Name, task.TaskRole)
			}
		}
	}
	created := regexp.MustCompile(`CREATE USER '([^']+)' IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'`).FindAllStringSubmatch(strings.Join(codeBlocks(text, "sql"), "\n"), -1)
	if len(resources) == 0 || len(sidecars) == 0 || len(created) == 0 {
		t.Fatalf("docs/iam.md has %d rds-db:connect resources, %d IAM sidecars and %d CREATE USER … AWSAuthenticationPlugin; want each", len(resources), len(sidecars), len(created))
	}
	for _, r := range resources {
		m := rdsConnectResource.FindStringSubmatch(r)
		if m == nil {
			t.Errorf("docs/iam.md: rds-db:connect resource %q is not arn:<partition>:rds-db:<region>:<account>:dbuser:cluster-<RESOURCE ID>/<user>", r)
			continue
		}
		region, user := m[2], m[5]
		for _, cfg := range sidecars {
			if cfg.AWSRegion != region {
				t.Errorf("docs/iam.md: the policy allows %s, but the sidecar signs for %s", region, cfg.AWSRegion)
			}
			if len(cfg.IAMUsers) > 0 && !slices.Contains(cfg.IAMUsers, user) {
				t.Errorf("docs/iam.md: the policy allows user %s, but the sidecar's IAM_USERS is %v", user, cfg.IAMUsers)
			}
		}
		if !slices.ContainsFunc(created, func(c []string) bool { return c[1] == user }) {
			t.Errorf("docs/iam.md: the policy allows user %s, which its SQL does not create", user)
		}
	}
}

// jsonText is a policy's Action or Resource (a string or a list of them)
// as space-separated text.
func jsonText(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []any:
		var s []string
		for _, x := range v {
			s = append(s, jsonText(x))
		}
		return strings.Join(s, " ")
	}
	return ""
}

// docs/iam.md's refusal table has a row for every reason
// sidecar_iam_failures_total counts, and no other.
func TestDocsIAMFailureReasons(t *testing.T) {
	checkReasonTable(t, "docs/iam.md", "| `reason` | The app's error | What to do |", "iamauth.Reasons", iamauth.Reasons)
}

// shCommands returns the commands of text's sh blocks, a line continued
// with a backslash joined to the next.
func shCommands(text string) []string {
	var out []string
	for _, block := range codeBlocks(text, "sh") {
		cmd := ""
		for _, l := range strings.Split(block, "\n") {
			l = strings.TrimSpace(l)
			if c, ok := strings.CutSuffix(l, "\\"); ok {
				cmd += c
				continue
			}
			if cmd += l; strings.TrimSpace(cmd) != "" {
				out = append(out, cmd)
			}
			cmd = ""
		}
	}
	return out
}

// Aurora applies a change of IAM database authentication at the next
// maintenance window unless told to apply it immediately (ApplyImmediately
// in the RDS API's ModifyDBCluster), and until then CREATE USER … WITH
// AWSAuthenticationPlugin fails. docs/iam.md's command turns it on now,
// and no doc names the flag without it.
func TestDocsIAMEnableAppliesNow(t *testing.T) {
	const enable, now = "--enable-iam-database-authentication", "--apply-immediately"
	found := false
	for _, cmd := range shCommands(userDocs(t)["docs/iam.md"]) {
		found = found || strings.HasPrefix(cmd, "aws rds modify-db-cluster ") && strings.Contains(cmd, enable) && strings.Contains(cmd, now)
	}
	if !found {
		t.Errorf("docs/iam.md has no sh command aws rds modify-db-cluster … %s %s", enable, now)
	}
	for f, text := range userDocs(t) {
		for _, l := range strings.Split(text, "\n") {
			if strings.Contains(l, enable) && !strings.Contains(l, now) {
				t.Errorf("%s: %q enables IAM authentication without %s: it waits for the maintenance window", f, l, now)
			}
		}
	}
}

// docs/ecs.md's aws logs create-log-group creates the group its task
// definition logs to, in the region it logs to: a group made in the
// shell's default region is not found, and the task stops.
func TestDocsLogGroupCommandIsTheTasks(t *testing.T) {
	text := userDocs(t)["docs/ecs.md"]
	groups := map[string]bool{} // group and region, "/ecs/x eu-west-1"
	for _, block := range codeBlocks(text, "json") {
		var task struct {
			Containers []containerFields `json:"containerDefinitions"`
		}
		if json.Unmarshal([]byte(block), &task) != nil {
			continue
		}
		for _, c := range task.Containers {
			if lc := c.LogConfiguration; lc != nil && lc.LogDriver == "awslogs" {
				groups[lc.Options["awslogs-group"]+" "+lc.Options["awslogs-region"]] = true
			}
		}
	}
	flag := func(cmd, name string) string {
		m := regexp.MustCompile(`(?:^|\s)` + name + `[ =](\S+)`).FindStringSubmatch(cmd)
		if m == nil {
			return ""
		}
		return m[1]
	}
	cmds := regexp.MustCompile("`(aws logs create-log-group [^`]+)`").FindAllStringSubmatch(text, -1)
	for _, c := range shCommands(text) {
		if strings.HasPrefix(c, "aws logs create-log-group ") {
			cmds = append(cmds, []string{c, c})
		}
	}
	if len(groups) == 0 || len(cmds) == 0 {
		t.Fatalf("docs/ecs.md has %d awslogs groups and %d aws logs create-log-group commands; want both", len(groups), len(cmds))
	}
	for _, c := range cmds {
		if got := flag(c[1], "--log-group-name") + " " + flag(c[1], "--region"); !groups[got] {
			t.Errorf("docs/ecs.md: %q creates group and region %q; the task definition logs to %v", c[1], got, groups)
		}
	}
}

// secretSource is the valueFrom of an ECS secret: a Secrets Manager
// secret's full ARN (its name, then the 6 characters Secrets Manager adds,
// then optionally :json-key:version-stage:version-id) or a Parameter Store
// parameter's (ECS also takes a parameter's bare name in the task's region;
// the docs use ARNs, which work from any region).
var secretSource = regexp.MustCompile(`^arn:aws(-cn|-us-gov)?:(secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+-[A-Za-z0-9]{6}(:[^:]*:[^:]*:[^:]*)?|ssm:[a-z0-9-]+:\d{12}:parameter/[\w/.-]+)$`)

// The docs give LOCAL_PASSWORD as an ECS secret, never in a container's
// environment (which DescribeTaskDefinition shows to whoever may read the
// task definition): each secret the docs show comes from a store in a form
// ECS reads, and names a variable the sidecar reads.
func TestDocsLocalPasswordIsASecret(t *testing.T) {
	secrets := 0
	for f, text := range userDocs(t) {
		for _, b := range ecsBlocks(text) {
			var task struct {
				Containers []json.RawMessage `json:"containerDefinitions"`
			}
			raw, _ := json.Marshal(b.doc)
			if json.Unmarshal(raw, &task) != nil || len(task.Containers) == 0 {
				task.Containers = []json.RawMessage{raw} // a container, or members of one
			}
			for _, c := range task.Containers {
				var def struct {
					containerDef
					Image   string `json:"image"`
					Secrets []struct {
						Name      string `json:"name"`
						ValueFrom string `json:"valueFrom"`
					} `json:"secrets"`
				}
				if json.Unmarshal(c, &def) != nil {
					continue
				}
				if _, ok := envOf(def.containerDef)["LOCAL_PASSWORD"]; ok {
					t.Errorf("%s: container %q sets LOCAL_PASSWORD in its environment; give it as a secret", f, def.Name)
				}
				for _, s := range def.Secrets {
					secrets++
					if !secretSource.MatchString(s.ValueFrom) {
						t.Errorf("%s: secret %s comes from %q, no Secrets Manager secret or Parameter Store parameter ARN", f, s.Name, s.ValueFrom)
					}
					if sidecar := def.Image == "" || strings.Contains(def.Image, "/sidecar:"); sidecar && !slices.Contains(config.Names, s.Name) {
						t.Errorf("%s: the sidecar's secret %s is no variable it reads", f, s.Name)
					}
				}
			}
		}
	}
	if secrets == 0 {
		t.Error("no doc shows how to give LOCAL_PASSWORD as an ECS secret")
	}
}

// docs/iam.md's settings table has a row for TARGET_AUTH and every
// setting read only with it (config.Settings' meanings that begin "with
// TARGET_AUTH=iam"), each a variable the sidecar reads, with its default
// where it has one and no value claimed as a default where it has none.
func TestDocsIAMSettingsTable(t *testing.T) {
	section := docSection(t, "docs/iam.md", "## Settings")
	rows := map[string]string{} // name: default cell
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Z_]+)` \\| ([^|]+) \\|").FindAllStringSubmatch(section, -1) {
		rows[m[1]] = strings.TrimSpace(m[2])
	}
	for name, cell := range rows {
		i := slices.IndexFunc(config.Settings, func(s config.Setting) bool { return s.Name == name })
		switch {
		case i < 0:
			t.Errorf("docs/iam.md's settings table has %s, which the sidecar does not read", name)
		case config.Settings[i].Default != "" && cell != "`"+config.Settings[i].Default+"`":
			t.Errorf("docs/iam.md: %s's default is %s; config.Settings has `%s`", name, cell, config.Settings[i].Default)
		case config.Settings[i].Default == "" && strings.HasPrefix(cell, "`"):
			t.Errorf("docs/iam.md: %s's default is %s; config.Settings has none", name, cell)
		}
	}
	for _, st := range config.Settings {
		if _, ok := rows[st.Name]; !ok && (st.Name == "TARGET_AUTH" || strings.HasPrefix(st.Meaning, "with TARGET_AUTH=iam")) {
			t.Errorf("docs/iam.md's settings table has no row for %s", st.Name)
		}
	}
}

// docs/ecs.md's FORWARDS line, put in its task definition's sidecar in
// place of TARGET_HOST, TARGET_PORT and LISTEN_PORT as it says, gives a
// configuration the sidecar accepts, whose forwards include the port the
// app connects to.
func TestDocsECSForwardsReplacement(t *testing.T) {
	text := userDocs(t)["docs/ecs.md"]
	m := regexp.MustCompile("replace `TARGET_HOST`/`TARGET_PORT`/`LISTEN_PORT` with one variable:\\s+`(\\{[^`]+\\})`").FindStringSubmatch(text)
	if m == nil {
		t.Fatal("docs/ecs.md has no \"replace `TARGET_HOST`/`TARGET_PORT`/`LISTEN_PORT` with one variable: `{ … }`\"")
	}
	var entry struct{ Name, Value string }
	if err := json.Unmarshal([]byte(m[1]), &entry); err != nil || entry.Name != "FORWARDS" {
		t.Fatalf("docs/ecs.md's replacement %s: %v; want a FORWARDS environment entry", m[1], err)
	}
	var task struct {
		Containers []struct {
			containerDef
			Image string `json:"image"`
		} `json:"containerDefinitions"`
	}
	if err := json.Unmarshal([]byte(codeBlocks(text, "json")[0]), &task); err != nil {
		t.Fatalf("docs/ecs.md's first JSON block: %v", err)
	}
	var ports []string
	var dbPort string
	for _, c := range task.Containers {
		env := envOf(c.containerDef)
		if !strings.Contains(c.Image, "/sidecar:") {
			dbPort = env["DB_PORT"]
			continue
		}
		delete(env, "TARGET_HOST")
		delete(env, "TARGET_PORT")
		delete(env, "LISTEN_PORT")
		env["FORWARDS"] = entry.Value
		cfg, err := config.Parse(lookupMap(env))
		if err != nil {
			t.Fatalf("docs/ecs.md's sidecar with %s: %v", m[1], err)
		}
		for _, fw := range cfg.Forwards {
			ports = append(ports, strconv.Itoa(fw.ListenPort))
		}
	}
	if dbPort == "" || !slices.Contains(ports, dbPort) {
		t.Errorf("docs/ecs.md: with FORWARDS the sidecar listens on %v; the app connects to port %q", ports, dbPort)
	}
}

// iamAction is service:Action, the action allowed to end in a wildcard.
var iamAction = regexp.MustCompile(`^[a-z0-9-]+:[A-Za-z0-9]+\*?$`)

// Every IAM policy the docs show (the task role's, ECS Exec's, the
// pipeline's) is one IAM accepts: the current policy language version, and
// statements that allow or deny service:Action actions on a resource (or,
// in a trust policy, to a principal).
func TestDocsIAMPoliciesAreValid(t *testing.T) {
	policies := 0
	for f, text := range userDocs(t) {
		for _, block := range codeBlocks(text, "json") {
			var policy struct {
				Version   string
				Statement []struct {
					Effect    string
					Action    any
					Resource  any
					Principal any
				}
			}
			if json.Unmarshal([]byte(block), &policy) != nil || len(policy.Statement) == 0 {
				continue
			}
			policies++
			if policy.Version != "2012-10-17" {
				t.Errorf("%s: a policy's Version is %q; IAM's current one is 2012-10-17", f, policy.Version)
			}
			for i, s := range policy.Statement {
				if s.Effect != "Allow" && s.Effect != "Deny" {
					t.Errorf("%s: statement %d's Effect is %q, neither Allow nor Deny", f, i, s.Effect)
				}
				actions := strings.Fields(jsonText(s.Action))
				for _, a := range actions {
					if !iamAction.MatchString(a) {
						t.Errorf("%s: statement %d's action %q is not service:Action", f, i, a)
					}
				}
				if len(actions) == 0 || (jsonText(s.Resource) == "" && s.Principal == nil) {
					t.Errorf("%s: statement %d has no Action, or neither a Resource nor a Principal", f, i)
				}
			}
		}
	}
	if policies < 4 {
		t.Fatalf("found %d IAM policies in the docs; want at least 4", policies)
	}
}

// Every `NAME=value` the docs' prose gives for one of the sidecar's
// variables is a value the sidecar accepts for it, whatever the other
// variables say.
func TestDocsProseSettingsAreAccepted(t *testing.T) {
	span := regexp.MustCompile("`([A-Z_]+)=([^`\\s…]+)`")
	seen := 0
	for f, text := range userDocs(t) {
		for _, m := range span.FindAllStringSubmatch(text, -1) {
			name, value := m[1], m[2]
			if !slices.Contains(config.Names, name) {
				continue
			}
			seen++
			// Plain, and with IAM, which reads its own variables only then.
			for _, env := range []map[string]string{
				{"TARGET_HOST": "127.0.0.1", "TARGET_PORT": "3306"},
				{"TARGET_HOST": "db.cluster-abc123.us-east-1.rds.amazonaws.com", "TARGET_PORT": "3306", "LISTEN_ADDR": "127.0.0.1",
					"TARGET_TLS": "verify-identity", "TARGET_AUTH": "iam", "AWS_REGION": "us-east-1"},
			} {
				env[name] = value
				_, err := config.Parse(lookupMap(env))
				// NAME="value" is invalid, or NAME="value": entry …; not
				// NAME="value" with another variable's value.
				refused := fmt.Sprintf("%s=%q", name, value)
				if err != nil && (strings.Contains(err.Error(), refused+" is invalid") || strings.Contains(err.Error(), refused+": ")) {
					t.Errorf("%s: %s; the sidecar refuses it: %v", f, m[0], err)
					break
				}
			}
		}
	}
	if seen < 15 {
		t.Fatalf("found %d `NAME=value` settings of the sidecar in the docs; want at least 15", seen)
	}
}
