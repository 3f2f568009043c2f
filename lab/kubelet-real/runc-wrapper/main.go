// Command runc-wrapper is installed as /usr/local/sbin/runc in the lab nodes
// that run the real kubelet: containerd's shim finds it on PATH before
// Debian's /usr/sbin/runc, for Docker's containers and the CRI's alike. For
// `create` and `run` it fits the bundle's config.json to what the lab's
// machines grant a node, then runs the real runc with the same arguments;
// every other command passes through untouched.
//
//   - No process here has CAP_SYS_RESOURCE, so none may set an oom_score_adj
//     below its own; the kubelet asks for -998 for every pod sandbox (-997
//     for Guaranteed pods). A lower process.oomScoreAdj is raised to the
//     caller's own.
//   - A node's cgroup2 tree has no controllers (the host is cgroup v1
//     hybrid: cpu, memory, ... are bound to v1 hierarchies), so runc cannot
//     write cpu.weight, memory.max, ...; containerd's CRI sets CPU shares on
//     every sandbox. Limits of controllers the node's cgroup2 root does not
//     offer are dropped, as Docker itself does when the kernel lacks them
//     ("WARNING: No cpu shares support").
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

// cgroup2Controllers returns the controllers the node's cgroup2 root offers,
// or nil when /sys/fs/cgroup is not a cgroup2 mount (then nothing is dropped).
func cgroup2Controllers() map[string]bool {
	raw, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	if err != nil {
		return nil
	}
	offered := map[string]bool{}
	for _, c := range strings.Fields(string(raw)) {
		offered[c] = true
	}
	return offered
}

// OCI linux.resources keys (and linux.resources.cpu keys) by the cgroup2
// controller that applies them.
var resourceController = map[string]string{"memory": "memory", "pids": "pids", "blockIO": "io", "hugepageLimits": "hugetlb", "rdma": "rdma"}
var cpuKeyController = map[string]string{"shares": "cpu", "quota": "cpu", "period": "cpu", "realtimeRuntime": "cpu", "realtimePeriod": "cpu", "idle": "cpu", "cpus": "cpuset", "mems": "cpuset"}

// fitSpec applies both adjustments to a parsed config.json; reports a change.
func fitSpec(spec map[string]any, floor int, offered map[string]bool) bool {
	changed := false
	if process, ok := spec["process"].(map[string]any); ok {
		if adj, ok := process["oomScoreAdj"].(float64); ok && int(adj) < floor {
			process["oomScoreAdj"] = floor
			changed = true
		}
	}
	linux, _ := spec["linux"].(map[string]any)
	resources, _ := linux["resources"].(map[string]any)
	if offered == nil || resources == nil {
		return changed
	}
	for key, controller := range resourceController {
		if _, set := resources[key]; set && !offered[controller] {
			delete(resources, key)
			changed = true
		}
	}
	if cpu, ok := resources["cpu"].(map[string]any); ok {
		for key, controller := range cpuKeyController {
			if _, set := cpu[key]; set && !offered[controller] {
				delete(cpu, key)
				changed = true
			}
		}
	}
	if unified, ok := resources["unified"].(map[string]any); ok {
		for key := range unified {
			if !offered[strings.SplitN(key, ".", 2)[0]] {
				delete(unified, key)
				changed = true
			}
		}
	}
	return changed
}

func fitBundle(bundle string) error {
	floor, err := ownOOMScoreAdj()
	if err != nil {
		return err
	}
	path := filepath.Join(bundle, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		return err
	}
	if !fitSpec(spec, floor, cgroup2Controllers()) {
		return nil
	}
	out, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o600)
}

func main() {
	if bundle := bundleOf(os.Args[1:]); bundle != "" {
		if err := fitBundle(bundle); err != nil {
			fmt.Fprintf(os.Stderr, "runc-wrapper: %v\n", err)
			os.Exit(1)
		}
	}
	argv := append([]string{realRunc}, os.Args[1:]...)
	if err := syscall.Exec(realRunc, argv, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "runc-wrapper: exec %s: %v\n", realRunc, err)
		os.Exit(1)
	}
}
