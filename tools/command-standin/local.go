package main

// command:local:Command: runs the command string with the interpreter
// (default /bin/sh -c) in `dir` (default: the provider's working directory,
// the Pulumi project directory), with `environment` added to the provider's
// environment and `stdin` on standard input.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

func runLocal(ctx context.Context, command string, props resource.PropertyMap,
	extraEnv map[string]string, log logFunc,
) (string, string, error) {
	out, err := newOutputs(getString(props, "logging"), log)
	if err != nil {
		return "", "", err
	}
	interpreter := getStringArray(props, "interpreter")
	if len(interpreter) == 0 {
		interpreter = []string{"/bin/sh", "-c"}
	}
	args := append(append([]string{}, interpreter[1:]...), command)
	cmd := exec.CommandContext(ctx, interpreter[0], args...)
	cmd.Dir = getString(props, "dir")
	cmd.Env = os.Environ()
	cmd.Env = append(cmd.Env, sortedEnv(getStringMap(props, "environment"))...)
	cmd.Env = append(cmd.Env, sortedEnv(extraEnv)...)
	if _, ok := get(props, "stdin"); ok {
		cmd.Stdin = strings.NewReader(getString(props, "stdin"))
	}
	cmd.Stdout = out.stdout
	cmd.Stderr = out.stderr
	// A background child that keeps the pipes open must not hang us forever.
	cmd.WaitDelay = 10 * time.Second

	err = cmd.Run()
	out.flush()
	if err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) && exitErr.Exited() {
			err = fmt.Errorf("exit status %d", exitErr.ExitCode())
		}
		return out.stdout.text(), out.stderr.text(), runError(err, command, out)
	}
	return out.stdout.text(), out.stderr.text(), nil
}
