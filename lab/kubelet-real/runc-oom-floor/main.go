// Command runc-oom-floor is installed as /usr/local/sbin/runc in the lab
// nodes (found on PATH before Debian's /usr/sbin/runc by containerd's shim,
// for Docker's containers and for the CRI's alike). The machines the lab runs
// on withhold CAP_SYS_RESOURCE from every process, so no process may set an
// oom_score_adj below its own; the kubelet asks for -998 for every pod
// sandbox (and -997 for Guaranteed pods), which runc cannot apply and so no
// pod could start. For `create` and `run` it raises a lower
// process.oomScoreAdj in the bundle's config.json to the caller's own
// oom_score_adj (the lowest it may set), then runs the real runc with the
// same arguments. Everything else is passed through untouched.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

const realRunc = "/usr/sbin/runc"

// runc's global options that take a value as the next argument.
var globalWithValue = map[string]bool{"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true}

// bundleOf returns the bundle directory of a `runc create|run` command line,
// or "" when the command is another one.
func bundleOf(args []string) string {
	command, bundle := "", "."
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case command == "" && globalWithValue[a]:
			i++
		case a == "--bundle" || a == "-b":
			if i+1 < len(args) {
				bundle = args[i+1]
				i++
			}
		case strings.HasPrefix(a, "--bundle="):
			bundle = strings.TrimPrefix(a, "--bundle=")
		case command == "" && !strings.HasPrefix(a, "-"):
			command = a
		}
	}
	if command != "create" && command != "run" {
		return ""
	}
	return bundle
}

func ownOOMScoreAdj() (int, error) {
	raw, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(raw)))
}

// raiseOOMScoreAdj rewrites config.json when its oomScoreAdj is below floor.
func raiseOOMScoreAdj(bundle string, floor int) error {
	path := filepath.Join(bundle, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		return err
	}
	process, _ := spec["process"].(map[string]any)
	adj, ok := process["oomScoreAdj"].(float64)
	if !ok || int(adj) >= floor {
		return nil
	}
	process["oomScoreAdj"] = floor
	out, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o600)
}

func main() {
	if bundle := bundleOf(os.Args[1:]); bundle != "" {
		floor, err := ownOOMScoreAdj()
		if err == nil {
			err = raiseOOMScoreAdj(bundle, floor)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "runc-oom-floor: %v\n", err)
			os.Exit(1)
		}
	}
	argv := append([]string{realRunc}, os.Args[1:]...)
	if err := syscall.Exec(realRunc, argv, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "runc-oom-floor: exec %s: %v\n", realRunc, err)
		os.Exit(1)
	}
}
