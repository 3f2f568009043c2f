// Lab kubelet stand-in.
//
// This is NOT the Kubernetes kubelet. It is a small static program installed
// as /usr/bin/kubelet inside the shimless lab nodes (lab/lab-up.sh) so that a
// node migration can be exercised end to end without a cluster. At start-up it
// does what the real kubelet does that matters for leaving dockershim:
//
//   - `--version` prints "Kubernetes vX.Y.Z" (set at build time, -X main.kubeletVersion);
//   - parses the real kubelet's flags and refuses the ones its version would
//     refuse (dockershim flags are gone from 1.24, --container-runtime from 1.27);
//   - reads the KubeletConfiguration (--config), for cgroupDriver and
//     containerRuntimeEndpoint;
//   - dockershim mode (<=1.23, --container-runtime absent or "docker"): talks
//     to Docker Engine over its unix socket and refuses a cgroup driver
//     mismatch the way kubelet 1.23 did;
//   - remote mode: asks the CRI endpoint for Version/Status over gRPC
//     (runtime.v1, falling back to runtime.v1alpha2 like kubelet 1.23), and
//     exits 1 when the endpoint does not serve CRI;
//   - every ~2 s writes the runtime it talks to into
//     /var/lib/kubelet/standin-status.json (ready=false while the runtime
//     does not answer, like a NotReady node);
//   - with a --kubeconfig that has credentials and reaches an API server (the
//     lab control plane, LAB_CLUSTER=1): registers and heartbeats its Node and
//     plays the kubelet for pods bound to it (apiserver.go).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimev1 "k8s.io/cri-api/pkg/apis/runtime/v1"
	runtimev1alpha2 "k8s.io/cri-api/pkg/apis/runtime/v1alpha2"
	"sigs.k8s.io/yaml"
)

// kubeletVersion is set at build time: -ldflags "-X main.kubeletVersion=v1.23.17".
var kubeletVersion = "v1.23.17"

const (
	defaultStatusFile     = "/var/lib/kubelet/standin-status.json"
	dockershimSocket      = "unix:///var/run/dockershim.sock"
	defaultDockerEndpoint = "unix:///var/run/docker.sock"
	containerdSocket      = "unix:///run/containerd/containerd.sock"
	heartbeatInterval     = 2 * time.Second
	requestTimeout        = 5 * time.Second
)

// ---------------------------------------------------------------- logging

var verbosity = 0

func klog(sev byte, depthFile string, msg string, kv ...interface{}) {
	now := time.Now()
	var b strings.Builder
	fmt.Fprintf(&b, "%c%02d%02d %02d:%02d:%02d.%06d %7d %s] %q",
		sev, int(now.Month()), now.Day(), now.Hour(), now.Minute(), now.Second(),
		now.Nanosecond()/1000, os.Getpid(), depthFile, msg)
	for i := 0; i+1 < len(kv); i += 2 {
		v := kv[i+1]
		switch vv := v.(type) {
		case string:
			fmt.Fprintf(&b, " %s=%q", kv[i], vv)
		case error:
			fmt.Fprintf(&b, " %s=%q", kv[i], vv.Error())
		default:
			fmt.Fprintf(&b, " %s=%v", kv[i], vv)
		}
	}
	fmt.Fprintln(os.Stderr, b.String())
}

func infof(file, msg string, kv ...interface{})  { klog('I', file, msg, kv...) }
func warnf(file, msg string, kv ...interface{})  { klog('W', file, msg, kv...) }
func errorf(file, msg string, kv ...interface{}) { klog('E', file, msg, kv...) }
func vinfof(level int, file, msg string, kv ...interface{}) {
	if verbosity >= level {
		klog('I', file, msg, kv...)
	}
}

// ---------------------------------------------------------------- versions

type semver struct{ major, minor, patch int }

func parseVersion(s string) (semver, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	if i := strings.IndexAny(s, "-+"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return semver{}, fmt.Errorf("bad version %q", s)
	}
	var v [3]int
	for i := 0; i < len(parts) && i < 3; i++ {
		n, err := strconv.Atoi(parts[i])
		if err != nil {
			return semver{}, fmt.Errorf("bad version %q", s)
		}
		v[i] = n
	}
	return semver{v[0], v[1], v[2]}, nil
}

func (v semver) atLeast(major, minor int) bool {
	return v.major > major || (v.major == major && v.minor >= minor)
}

// ---------------------------------------------------------------- flags

type flagSpec struct {
	name        string
	isBool      bool
	removedIn   [2]int // first minor version that no longer knows the flag; {0,0} = never
	deprecation string // printed as a warning when used
}

// A subset of the kubelet's flags: the ones kubeadm-era nodes actually carry.
var knownFlags = []flagSpec{
	{name: "config"},
	{name: "kubeconfig"},
	{name: "bootstrap-kubeconfig"},
	{name: "container-runtime", removedIn: [2]int{1, 27}},
	{name: "container-runtime-endpoint"},
	{name: "image-service-endpoint"},
	{name: "pod-infra-container-image"},
	{name: "node-ip"},
	{name: "hostname-override"},
	{name: "node-labels"},
	{name: "register-with-taints"},
	{name: "root-dir"},
	{name: "cert-dir"},
	{name: "cgroup-driver", deprecation: "This parameter should be set via the config file specified by the Kubelet's --config flag."},
	{name: "fail-swap-on", isBool: true, deprecation: "This parameter should be set via the config file specified by the Kubelet's --config flag."},
	{name: "resolv-conf", deprecation: "This parameter should be set via the config file specified by the Kubelet's --config flag."},
	{name: "runtime-request-timeout", deprecation: "This parameter should be set via the config file specified by the Kubelet's --config flag."},
	{name: "rotate-certificates", isBool: true, deprecation: "This parameter should be set via the config file specified by the Kubelet's --config flag."},
	{name: "v"},
	{name: "vmodule"},
	{name: "logtostderr", isBool: true},
	{name: "help", isBool: true},
	{name: "version"},
	// dockershim-only flags, removed together with dockershim in 1.24
	{name: "network-plugin", removedIn: [2]int{1, 24}},
	{name: "network-plugin-mtu", removedIn: [2]int{1, 24}},
	{name: "cni-bin-dir", removedIn: [2]int{1, 24}},
	{name: "cni-conf-dir", removedIn: [2]int{1, 24}},
	{name: "cni-cache-dir", removedIn: [2]int{1, 24}},
	{name: "docker-endpoint", removedIn: [2]int{1, 24}},
	{name: "image-pull-progress-deadline", removedIn: [2]int{1, 24}},
	{name: "experimental-dockershim-root-directory", removedIn: [2]int{1, 24}},
}

type flags map[string]string

func parseFlags(args []string, ver semver) (flags, error) {
	specs := map[string]flagSpec{}
	for _, f := range knownFlags {
		if f.removedIn != [2]int{0, 0} && ver.atLeast(f.removedIn[0], f.removedIn[1]) {
			continue
		}
		specs[f.name] = f
	}
	out := flags{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "" {
			continue
		}
		if !strings.HasPrefix(a, "-") {
			return nil, fmt.Errorf("unknown command %q for \"kubelet\"", a)
		}
		name := strings.TrimLeft(a, "-")
		value, hasValue := "", false
		if j := strings.IndexByte(name, '='); j >= 0 {
			name, value, hasValue = name[:j], name[j+1:], true
		}
		if name == "h" {
			name = "help"
		}
		spec, ok := specs[name]
		if !ok {
			if strings.HasPrefix(a, "--") {
				return nil, fmt.Errorf("unknown flag: --%s", name)
			}
			return nil, fmt.Errorf("unknown shorthand flag: %q in %s", name, a)
		}
		switch {
		case hasValue:
		case spec.isBool:
			value = "true"
		case name == "version":
			value = "true"
		default:
			if i+1 >= len(args) {
				return nil, fmt.Errorf("flag needs an argument: --%s", name)
			}
			i++
			value = args[i]
		}
		if spec.deprecation != "" {
			out["__deprecated_"+name] = spec.deprecation
		}
		out[name] = value
	}
	return out, nil
}

func usage() {
	fmt.Println(`The kubelet is the primary "node agent" that runs on each node.
(This binary is the shimless LAB KUBELET STAND-IN, not the real kubelet: it only
connects to the container runtime and reports what it found in
` + defaultStatusFile + `.)

Usage:
  kubelet [flags]

Flags:`)
	for _, f := range knownFlags {
		fmt.Printf("      --%s\n", f.name)
	}
}

// ---------------------------------------------------------------- config

type kubeletConfig struct {
	APIVersion               string `json:"apiVersion"`
	Kind                     string `json:"kind"`
	CgroupDriver             string `json:"cgroupDriver"`
	ContainerRuntimeEndpoint string `json:"containerRuntimeEndpoint"`
	StaticPodPath            string `json:"staticPodPath"`
}

func loadConfig(path string) (*kubeletConfig, error) {
	cfg := &kubeletConfig{}
	if path == "" {
		return cfg, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to load Kubelet config file %s, error failed to read kubelet config file %q, error: %v", path, path, err)
	}
	if err := yaml.Unmarshal(data, cfg); err != nil {
		return nil, fmt.Errorf("failed to load Kubelet config file %s, error failed to decode: %v", path, err)
	}
	if cfg.Kind != "" && cfg.Kind != "KubeletConfiguration" {
		return nil, fmt.Errorf("failed to load Kubelet config file %s, error failed to decode: no kind %q is registered", path, cfg.Kind)
	}
	return cfg, nil
}

// ---------------------------------------------------------------- status file

type standinStatus struct {
	Standin           bool     `json:"standin"`
	KubeletVersion    string   `json:"kubeletVersion"`
	Mode              string   `json:"mode"`
	Endpoint          string   `json:"endpoint"`
	RuntimeName       string   `json:"runtimeName"`
	RuntimeVersion    string   `json:"runtimeVersion"`
	RuntimeAPIVersion string   `json:"runtimeApiVersion,omitempty"`
	CRIAPI            string   `json:"criApi,omitempty"`
	Ready             bool     `json:"ready"`
	NetworkReady      *bool    `json:"networkReady,omitempty"`
	CgroupDriver      string   `json:"cgroupDriver"`
	RuntimeCgroupDrv  string   `json:"runtimeCgroupDriver,omitempty"`
	NodeName          string   `json:"nodeName"`
	NodeIP            string   `json:"nodeIP,omitempty"`
	PodInfraImage     string   `json:"podInfraContainerImage,omitempty"`
	Pid               int      `json:"pid"`
	Args              []string `json:"args"`
	Message           string   `json:"message,omitempty"`
	Error             string   `json:"error,omitempty"`
	Exited            bool     `json:"exited,omitempty"`
	StartedAt         string   `json:"startedAt"`
	HeartbeatAt       string   `json:"heartbeatAt"`
}

var statusFile = defaultStatusFile

func writeStatus(st *standinStatus) {
	st.HeartbeatAt = time.Now().UTC().Format(time.RFC3339)
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return
	}
	data = append(data, '\n')
	if err := os.MkdirAll(filepath.Dir(statusFile), 0o755); err != nil {
		warnf("standin.go:0", "Failed to write stand-in status", "err", err)
		return
	}
	tmp := statusFile + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err == nil {
		err = os.Rename(tmp, statusFile)
		if err != nil {
			warnf("standin.go:0", "Failed to write stand-in status", "err", err)
		}
	}
}

// ---------------------------------------------------------------- runtimes

type runtimeInfo struct {
	name, version, apiVersion, criAPI, cgroupDriver string
	ready                                           bool
	networkReady                                    *bool
	message                                         string
}

type runtimeClient interface {
	probe(ctx context.Context) (runtimeInfo, error)
	close()
}

// dockershim: Docker Engine API over its unix socket.
type dockerClient struct {
	http *http.Client
}

func unixPath(endpoint string) (string, error) {
	if strings.HasPrefix(endpoint, "unix://") {
		return strings.TrimPrefix(endpoint, "unix://"), nil
	}
	if strings.HasPrefix(endpoint, "/") {
		return endpoint, nil
	}
	return "", fmt.Errorf("protocol %q not supported", strings.SplitN(endpoint, "://", 2)[0])
}

func newDockerClient(endpoint string) (*dockerClient, error) {
	path, err := unixPath(endpoint)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	return &dockerClient{http: &http.Client{Transport: tr, Timeout: requestTimeout}}, nil
}

func (d *dockerClient) get(ctx context.Context, path string, into interface{}) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path, nil)
	if err != nil {
		return err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("Error response from daemon: %s", strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, into)
}

func (d *dockerClient) probe(ctx context.Context) (runtimeInfo, error) {
	var ver struct {
		Version    string `json:"Version"`
		APIVersion string `json:"ApiVersion"`
	}
	if err := d.get(ctx, "/version", &ver); err != nil {
		return runtimeInfo{}, fmt.Errorf("failed to get docker version: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?: %w", err)
	}
	var info struct {
		CgroupDriver string `json:"CgroupDriver"`
	}
	if err := d.get(ctx, "/info", &info); err != nil {
		return runtimeInfo{}, fmt.Errorf("failed to get docker info: %w", err)
	}
	return runtimeInfo{name: "docker", version: ver.Version, apiVersion: ver.APIVersion,
		cgroupDriver: info.CgroupDriver, ready: true}, nil
}

func (d *dockerClient) close() {}

// remote: CRI over gRPC.
type criClient struct {
	conn *grpc.ClientConn
	api  string // "v1" or "v1alpha2", decided at start-up
}

func newCRIClient(endpoint string) (*criClient, error) {
	path, err := unixPath(endpoint)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.Dial("unix://"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16*1024*1024)),
		// Reconnect quickly once the runtime comes back (heartbeat is ~2 s).
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second,
		}),
	)
	if err != nil {
		return nil, err
	}
	return &criClient{conn: conn}, nil
}

// determineAPI mirrors kubelet 1.23: try runtime.v1, fall back to v1alpha2
// when v1 is Unimplemented.
func (c *criClient) determineAPI(ctx context.Context) error {
	_, errV1 := runtimev1.NewRuntimeServiceClient(c.conn).Version(ctx, &runtimev1.VersionRequest{Version: "0.1.0"})
	if errV1 == nil {
		c.api = "v1"
		return nil
	}
	if status.Code(errV1) != codes.Unimplemented {
		return errV1
	}
	vinfof(2, "remote_runtime.go:86", "Falling back to CRI v1alpha2", "err", errV1)
	_, errA := runtimev1alpha2.NewRuntimeServiceClient(c.conn).Version(ctx, &runtimev1alpha2.VersionRequest{Version: "0.1.0"})
	if errA == nil {
		c.api = "v1alpha2"
		return nil
	}
	return errA
}

func (c *criClient) probe(ctx context.Context) (runtimeInfo, error) {
	var ri runtimeInfo
	ri.criAPI = c.api
	var conds []struct {
		typ    string
		status bool
		reason string
	}
	if c.api == "v1alpha2" {
		cl := runtimev1alpha2.NewRuntimeServiceClient(c.conn)
		v, err := cl.Version(ctx, &runtimev1alpha2.VersionRequest{Version: "0.1.0"})
		if err != nil {
			return ri, err
		}
		ri.name, ri.version, ri.apiVersion = v.RuntimeName, v.RuntimeVersion, v.RuntimeApiVersion
		st, err := cl.Status(ctx, &runtimev1alpha2.StatusRequest{})
		if err != nil {
			return ri, err
		}
		if st.Status != nil {
			for _, c := range st.Status.Conditions {
				conds = append(conds, struct {
					typ    string
					status bool
					reason string
				}{c.Type, c.Status, c.Reason + " " + c.Message})
			}
		}
	} else {
		cl := runtimev1.NewRuntimeServiceClient(c.conn)
		v, err := cl.Version(ctx, &runtimev1.VersionRequest{Version: "0.1.0"})
		if err != nil {
			return ri, err
		}
		ri.name, ri.version, ri.apiVersion = v.RuntimeName, v.RuntimeVersion, v.RuntimeApiVersion
		st, err := cl.Status(ctx, &runtimev1.StatusRequest{})
		if err != nil {
			return ri, err
		}
		if st.Status != nil {
			for _, c := range st.Status.Conditions {
				conds = append(conds, struct {
					typ    string
					status bool
					reason string
				}{c.Type, c.Status, c.Reason + " " + c.Message})
			}
		}
	}
	ri.ready = false
	for _, c := range conds {
		switch c.typ {
		case "RuntimeReady":
			ri.ready = c.status
			if !c.status {
				ri.message = "container runtime not ready: " + strings.TrimSpace(c.reason)
			}
		case "NetworkReady":
			nr := c.status
			ri.networkReady = &nr
		}
	}
	return ri, nil
}

func (c *criClient) close() { c.conn.Close() }

// ---------------------------------------------------------------- main

func fatal(st *standinStatus, file string, err error) {
	errorf(file, "command failed", "err", err)
	if st != nil {
		st.Ready = false
		st.Exited = true
		st.Error = err.Error()
		writeStatus(st)
	}
	os.Exit(1)
}

func hostname() string {
	h, _ := os.Hostname()
	return strings.ToLower(h)
}

func main() {
	if p := os.Getenv("KUBELET_STANDIN_STATUS_FILE"); p != "" {
		statusFile = p
	}
	ver, err := parseVersion(kubeletVersion)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lab kubelet stand-in built with a bad version %q: %v\n", kubeletVersion, err)
		os.Exit(2)
	}
	args := os.Args[1:]
	fl, err := parseFlags(args, ver)
	if err != nil {
		// kubelet: run.go:74] "command failed" err="failed to parse kubelet flag: unknown flag: --network-plugin"
		errorf("run.go:74", "command failed", "err", fmt.Errorf("failed to parse kubelet flag: %w", err))
		os.Exit(1)
	}
	if v, ok := fl["v"]; ok {
		verbosity, _ = strconv.Atoi(v)
	}
	if _, ok := fl["help"]; ok && fl["help"] != "false" {
		usage()
		return
	}
	if v, ok := fl["version"]; ok && v != "false" {
		if v == "raw" {
			fmt.Printf("version.Info{Major:\"%d\", Minor:\"%d\", GitVersion:\"%s\", Platform:\"linux/amd64\", Standin:true}\n", ver.major, ver.minor, kubeletVersion)
		} else {
			fmt.Printf("Kubernetes %s\n", kubeletVersion)
		}
		return
	}
	for k, msg := range fl {
		if strings.HasPrefix(k, "__deprecated_") {
			fmt.Fprintf(os.Stderr, "Flag --%s has been deprecated, %s\n", strings.TrimPrefix(k, "__deprecated_"), msg)
			delete(fl, k)
		}
	}
	if _, ok := fl["pod-infra-container-image"]; ok && ver.atLeast(1, 24) {
		fmt.Fprintln(os.Stderr, "Flag --pod-infra-container-image has been deprecated, will be removed in a future release. Image garbage collector will get sandbox image information from CRI.")
	}
	if _, ok := fl["container-runtime"]; ok && ver.atLeast(1, 24) {
		fmt.Fprintln(os.Stderr, "Flag --container-runtime has been deprecated, will be removed in 1.27 as the only valid value is 'remote'")
	}

	started := time.Now().UTC().Format(time.RFC3339)
	nodeName := fl["hostname-override"]
	if nodeName == "" {
		nodeName = hostname()
	}
	st := &standinStatus{Standin: true, KubeletVersion: kubeletVersion, NodeName: nodeName,
		NodeIP: fl["node-ip"], PodInfraImage: fl["pod-infra-container-image"],
		Pid: os.Getpid(), Args: args, StartedAt: started}

	infof("server.go:446", "Kubelet version", "kubeletVersion", kubeletVersion)
	infof("server.go:448", "Golang settings", "GOGC", os.Getenv("GOGC"), "GOMAXPROCS", os.Getenv("GOMAXPROCS"), "GOTRACEBACK", os.Getenv("GOTRACEBACK"))
	warnf("standin.go:1", "This is the shimless lab kubelet stand-in, not the real kubelet: it runs no containers (pods bound to it are only marked Running)")

	cfg, err := loadConfig(fl["config"])
	if err != nil {
		fatal(st, "server.go:216", err)
	}
	cgroupDriver := cfg.CgroupDriver
	if v := fl["cgroup-driver"]; v != "" {
		cgroupDriver = v
	}
	if cgroupDriver == "" {
		cgroupDriver = "cgroupfs" // kubelet default before 1.28 when not set in config
	}
	st.CgroupDriver = cgroupDriver
	for _, k := range []string{"kubeconfig", "bootstrap-kubeconfig"} {
		if p := fl[k]; p != "" {
			if _, err := os.Stat(p); err != nil {
				vinfof(2, "bootstrap.go:56", "Kubeconfig not present (the lab kubelet stand-in keeps looking for it)", "path", p, "flag", k)
			}
		}
	}

	// Decide the runtime mode the way the real kubelet of this version would.
	containerRuntime, crSet := fl["container-runtime"]
	endpoint, epSet := fl["container-runtime-endpoint"]
	if !epSet && cfg.ContainerRuntimeEndpoint != "" {
		endpoint, epSet = cfg.ContainerRuntimeEndpoint, true
	}
	mode := "remote"
	if !ver.atLeast(1, 24) {
		if !crSet || containerRuntime == "" {
			containerRuntime = "docker"
		}
		switch containerRuntime {
		case "docker":
			mode = "dockershim"
		case "remote":
			mode = "remote"
		default:
			fatal(st, "server.go:210", fmt.Errorf("failed to validate kubelet flags: unsupported CRI runtime: %q", containerRuntime))
		}
		if !epSet {
			endpoint = dockershimSocket
		}
	} else {
		if crSet && containerRuntime != "remote" {
			fatal(st, "server.go:210", fmt.Errorf("failed to validate kubelet flags: unsupported CRI runtime: %q, only %q is currently supported", containerRuntime, "remote"))
		}
		if !epSet {
			endpoint = containerdSocket
		}
	}
	st.Mode = mode

	var client runtimeClient
	ctx, cancel := context.WithTimeout(context.Background(), 3*requestTimeout)
	if mode == "dockershim" {
		dockerEndpoint := fl["docker-endpoint"]
		if dockerEndpoint == "" {
			dockerEndpoint = defaultDockerEndpoint
		}
		st.Endpoint = dockerEndpoint
		warnf("server.go:213", "Using dockershim is deprecated, please consider using a full-fledged CRI implementation")
		infof("docker_service.go:241", "Connecting to docker on the dockerEndpoint", "endpoint", dockerEndpoint)
		dc, err := newDockerClient(dockerEndpoint)
		if err != nil {
			fatal(st, "server.go:302", fmt.Errorf("failed to run Kubelet: failed to create kubelet: %w", err))
		}
		ri, err := dc.probe(ctx)
		if err != nil {
			fatal(st, "server.go:302", fmt.Errorf("failed to run Kubelet: failed to create kubelet: %w", err))
		}
		infof("docker_service.go:264", "Docker Info", "dockerInfo", fmt.Sprintf("version=%s cgroupDriver=%s", ri.version, ri.cgroupDriver))
		infof("docker_service.go:279", "Setting cgroupDriver", "cgroupDriver", ri.cgroupDriver)
		if ri.cgroupDriver != cgroupDriver {
			fatal(st, "server.go:302", fmt.Errorf("failed to run Kubelet: misconfiguration: kubelet cgroup driver: %q is different from docker cgroup driver: %q", cgroupDriver, ri.cgroupDriver))
		}
		client = dc
	} else {
		st.Endpoint = endpoint
		cc, err := newCRIClient(endpoint)
		if err != nil {
			fatal(st, "server.go:302", fmt.Errorf("failed to run Kubelet: failed to create kubelet: get remote runtime service: %w", err))
		}
		infof("remote_runtime.go:74", "Connecting to runtime service", "endpoint", endpoint)
		if err := cc.determineAPI(ctx); err != nil {
			msg := fmt.Errorf("failed to run Kubelet: unable to determine runtime API version: %w", err)
			if status.Code(err) == codes.Unimplemented {
				errorf("remote_runtime.go:90", "The endpoint does not serve the CRI: if this is containerd, is \"cri\" in disabled_plugins of /etc/containerd/config.toml?", "endpoint", endpoint)
			}
			fatal(st, "server.go:302", msg)
		}
		infof("remote_runtime.go:104", "Using CRI API", "version", cc.api)
		ri, err := cc.probe(ctx)
		if err != nil {
			fatal(st, "server.go:302", fmt.Errorf("failed to run Kubelet: failed to get runtime version: %w", err))
		}
		infof("kuberuntime_manager.go:245", "Container runtime initialized", "containerRuntime", ri.name, "version", ri.version, "apiVersion", ri.apiVersion)
		client = cc
	}
	cancel()
	defer client.close()

	// The API-server side (apiserver.go): only with a --kubeconfig that works.
	rt := &sharedRuntime{mode: mode, endpoint: st.Endpoint}
	stopAPI := make(chan struct{})
	if kc := fl["kubeconfig"]; kc != "" {
		agent := &apiAgent{kubeconfig: kc, nodeName: nodeName, rt: rt, started: time.Now(), staticPodPath: cfg.StaticPodPath,
			nodeLabels: parseNodeLabels(fl["node-labels"]), taints: parseTaints(fl["register-with-taints"])}
		go agent.run(stopAPI)
	}
	defer close(stopAPI)

	// Heartbeat loop.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	tick := time.NewTicker(heartbeatInterval)
	defer tick.Stop()
	wasReady := false
	first := true
	for {
		pctx, pcancel := context.WithTimeout(context.Background(), requestTimeout)
		ri, err := client.probe(pctx)
		pcancel()
		if err != nil {
			st.Ready = false
			st.Message = "container runtime is down: " + err.Error()
			rt.set(false, "", "", st.Message)
			if wasReady || first {
				errorf("kubelet.go:2391", "Container runtime not ready", "runtimeReady", "RuntimeReady=false reason:RuntimeDown message:"+err.Error())
			}
			wasReady = false
		} else {
			st.RuntimeName, st.RuntimeVersion, st.RuntimeAPIVersion, st.CRIAPI = ri.name, ri.version, ri.apiVersion, ri.criAPI
			st.RuntimeCgroupDrv = ri.cgroupDriver
			st.NetworkReady = ri.networkReady
			st.Ready = ri.ready
			st.Message = ri.message
			rt.set(ri.ready, ri.name, ri.version, ri.message)
			if ri.ready && (!wasReady || first) {
				infof("kubelet_node_status.go:563", "Recording event message for node", "node", nodeName, "event", "NodeReady",
					"runtime", ri.name+"://"+ri.version)
			} else if !ri.ready && (wasReady || first) {
				errorf("kubelet.go:2391", "Container runtime not ready", "message", ri.message)
			}
			wasReady = ri.ready
		}
		first = false
		writeStatus(st)
		select {
		case s := <-sigs:
			infof("standin.go:2", "Lab kubelet stand-in shutting down", "signal", s.String())
			return
		case <-tick.C:
		}
	}
}
