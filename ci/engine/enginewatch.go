package engine

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// engineWatchPoll is how often Connect looks at the engine container
// while the Dagger CLI starts it.
const engineWatchPoll = time.Second

// engineLogLines is how many of a failed engine's last log lines the
// error shows.
const engineLogLines = 8

// engineInDocker reports whether the Dagger CLI will start the engine as a
// container of the local Docker (the default image:// driver), whose
// failure Connect can then see.
func engineInDocker(env func(string) (string, bool)) bool {
	if _, ok := env("DAGGER_SESSION_PORT"); ok {
		return false
	}
	runner, _ := env("_EXPERIMENTAL_DAGGER_RUNNER_HOST")
	scheme, _, _ := strings.Cut(runner, "://")
	switch scheme {
	case "", "image", "docker-image":
		_, err := exec.LookPath("docker")
		return err == nil
	}
	return false
}

// watchEngineStart polls the engine containers until ctx ends and sends
// one error when one that was started after since has exited, or could
// not start. The Dagger CLI otherwise keeps waiting for it for up to 300 s
// (dagger.io/dagger engineconn/session.go, startCLISession).
func watchEngineStart(ctx context.Context, since time.Time, poll time.Duration) <-chan error {
	failed := make(chan error, 1)
	go func() {
		t := time.NewTicker(poll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := engineContainerFailed(ctx, since); err != nil {
				failed <- err
				return
			}
		}
	}()
	return failed
}

// engineContainerFailed looks at the containers named dagger-engine-*
// (the CLI's names: engine/client/drivers/container.go, containerNamePrefix;
// `docker ps -a`, as its ContainerLs, also lists Created ones). A docker
// command that fails is not a finding: the next poll tries again.
func engineContainerFailed(ctx context.Context, since time.Time) error {
	out, err := exec.CommandContext(ctx, "docker", "ps", "-a", "--filter", "name=^dagger-engine-", "--format", "{{.Names}}").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		return nil
	}
	args := append([]string{"inspect", "--format", "{{.Name}}|{{.State.Status}}|{{.State.ExitCode}}|{{.State.FinishedAt}}|{{.State.Error}}"},
		strings.Fields(string(out))...)
	out, err = exec.CommandContext(ctx, "docker", args...).Output()
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.SplitN(line, "|", 5)
		if len(f) < 5 {
			continue
		}
		name, status, startErr := strings.TrimPrefix(f[0], "/"), f[1], strings.TrimSpace(f[4])
		code, _ := strconv.Atoi(f[2])
		finished, _ := time.Parse(time.RFC3339Nano, f[3])
		var what string
		switch {
		case status == "created" && startErr != "":
			what = "could not start (" + startErr + ")"
		case (status == "exited" || status == "dead") && finished.After(since.Add(-2*time.Second)): // a remote daemon's clock may lag a little
			what = fmt.Sprintf("exited with code %d", code)
		default:
			continue
		}
		return fmt.Errorf("the engine container %s %s while the Dagger CLI was starting it; its last log lines: %s. "+
			"Look with `docker ps -a --filter name=dagger-engine-` and `docker logs %s`",
			name, what, engineLogs(ctx, name), name)
	}
	return nil
}

// engineLogs is the container's last log lines, on one line.
func engineLogs(ctx context.Context, name string) string {
	out, err := exec.CommandContext(ctx, "docker", "logs", "--tail", strconv.Itoa(engineLogLines), name).CombinedOutput()
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	switch {
	case len(lines) == 0 && err != nil:
		return "(none: " + err.Error() + ")"
	case len(lines) == 0:
		return "(none)"
	}
	return strings.Join(lines, " | ")
}
