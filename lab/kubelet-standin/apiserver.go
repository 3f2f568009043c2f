// API-server side of the lab kubelet stand-in (plain HTTPS + JSON, no client-go).
//
// When --kubeconfig names a kubeconfig whose server answers (the lab control
// plane, lab/control-plane/), the stand-in behaves towards the API server like
// a kubelet, minimally:
//
//   - registers its Node (labels kubernetes.io/hostname, os, arch, --node-labels,
//     node-role.kubernetes.io/control-plane on the lab's control-plane node;
//     at creation only, kubeadm's cri-socket annotation) and then only ever
//     PATCHes labels it owns and the status subresource (strategic merge), so
//     annotations, labels, taints and spec.unschedulable set by others stay;
//   - every ~5 s: status.conditions (Ready True/False from the runtime it
//     really talks to, lastHeartbeatTime now), nodeInfo.containerRuntimeVersion
//     "<runtimeName>://<version>", kubeletVersion, capacity/allocatable,
//     addresses; renews its Lease in kube-node-lease;
//   - mirror pods for its static pod manifests (staticPodPath);
//   - for pods bound to it (spec.nodeName): marks them Running/Ready without
//     running anything (containerIDs carry the runtime's name), and deletes
//     pods with a deletionTimestamp with grace period 0 (finishing evictions
//     and deletions the way a kubelet does after stopping the containers).
//
// Without a usable kubeconfig (the lab's placeholder points at nothing) it
// retries quietly and re-reads the file, so a kubeconfig written later is
// picked up without a restart.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/yaml"
)

const (
	nodeStatusInterval = 5 * time.Second
	podSyncInterval    = 2 * time.Second
	kubeconfigRetry    = 5 * time.Second
)

// sharedRuntime is what the heartbeat loop last learnt from the runtime.
type sharedRuntime struct {
	mu             sync.Mutex
	ready          bool
	name, version  string
	message        string
	mode, endpoint string
}

func (s *sharedRuntime) set(ready bool, name, version, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ready = ready
	if name != "" {
		s.name, s.version = name, version
	}
	s.message = message
}

func (s *sharedRuntime) get() (ready bool, name, version, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready, s.name, s.version, s.message
}

// ---------------------------------------------------------------- kubeconfig

type kubeconfigFile struct {
	CurrentContext string `json:"current-context"`
	Clusters       []struct {
		Name    string `json:"name"`
		Cluster struct {
			Server                   string `json:"server"`
			CertificateAuthority     string `json:"certificate-authority"`
			CertificateAuthorityData string `json:"certificate-authority-data"`
			InsecureSkipTLSVerify    bool   `json:"insecure-skip-tls-verify"`
		} `json:"cluster"`
	} `json:"clusters"`
	Contexts []struct {
		Name    string `json:"name"`
		Context struct {
			Cluster string `json:"cluster"`
			User    string `json:"user"`
		} `json:"context"`
	} `json:"contexts"`
	Users []struct {
		Name string `json:"name"`
		User struct {
			ClientCertificate     string `json:"client-certificate"`
			ClientCertificateData string `json:"client-certificate-data"`
			ClientKey             string `json:"client-key"`
			ClientKeyData         string `json:"client-key-data"`
			Token                 string `json:"token"`
			TokenFile             string `json:"tokenFile"`
		} `json:"user"`
	} `json:"users"`
}

type apiClient struct {
	server string
	token  string
	http   *http.Client
}

func readMaybe(data, file, base string) ([]byte, error) {
	if data != "" {
		return base64.StdEncoding.DecodeString(data)
	}
	if file == "" {
		return nil, nil
	}
	if !filepath.IsAbs(file) {
		file = filepath.Join(base, file)
	}
	return os.ReadFile(file)
}

func loadKubeconfig(path string) (*apiClient, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var kc kubeconfigFile
	if err := yaml.Unmarshal(raw, &kc); err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	ctxName := kc.CurrentContext
	var clusterName, userName string
	for _, c := range kc.Contexts {
		if c.Name == ctxName || (ctxName == "" && len(kc.Contexts) == 1) {
			clusterName, userName = c.Context.Cluster, c.Context.User
		}
	}
	base := filepath.Dir(path)
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	c := &apiClient{}
	found := false
	for _, cl := range kc.Clusters {
		if cl.Name != clusterName {
			continue
		}
		found = true
		c.server = strings.TrimRight(cl.Cluster.Server, "/")
		if cl.Cluster.InsecureSkipTLSVerify {
			tlsCfg.InsecureSkipVerify = true
		}
		ca, err := readMaybe(cl.Cluster.CertificateAuthorityData, cl.Cluster.CertificateAuthority, base)
		if err != nil {
			return nil, fmt.Errorf("certificate authority: %w", err)
		}
		if len(ca) > 0 {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(ca) {
				return nil, fmt.Errorf("no certificates in the certificate authority of cluster %q", cl.Name)
			}
			tlsCfg.RootCAs = pool
		}
	}
	if !found || c.server == "" {
		return nil, fmt.Errorf("%s: no cluster server for context %q", path, ctxName)
	}
	hasCreds := false
	for _, u := range kc.Users {
		if u.Name != userName {
			continue
		}
		cert, err := readMaybe(u.User.ClientCertificateData, u.User.ClientCertificate, base)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		key, err := readMaybe(u.User.ClientKeyData, u.User.ClientKey, base)
		if err != nil {
			return nil, fmt.Errorf("client key: %w", err)
		}
		if len(cert) > 0 && len(key) > 0 {
			pair, err := tls.X509KeyPair(cert, key)
			if err != nil {
				return nil, fmt.Errorf("client certificate/key: %w", err)
			}
			tlsCfg.Certificates = []tls.Certificate{pair}
			hasCreds = true
		}
		c.token = u.User.Token
		if c.token == "" && u.User.TokenFile != "" {
			t, err := os.ReadFile(u.User.TokenFile)
			if err != nil {
				return nil, err
			}
			c.token = strings.TrimSpace(string(t))
		}
		if c.token != "" {
			hasCreds = true
		}
	}
	if !hasCreds {
		// the lab's placeholder kubelet.conf (user: {}): no cluster to talk to
		return nil, errNoCredentials
	}
	c.http = &http.Client{Timeout: requestTimeout, Transport: &http.Transport{
		TLSClientConfig: tlsCfg, Proxy: nil, MaxIdleConnsPerHost: 4, IdleConnTimeout: 60 * time.Second,
	}}
	return c, nil
}

var errNoCredentials = fmt.Errorf("no client credentials (placeholder kubeconfig)")

type apiError struct {
	code int
	body string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.code, strings.TrimSpace(e.body))
}

func isNotFound(err error) bool {
	ae, ok := err.(*apiError)
	return ok && ae.code == http.StatusNotFound
}
func isConflict(err error) bool {
	ae, ok := err.(*apiError)
	return ok && ae.code == http.StatusConflict
}

func (c *apiClient) do(ctx context.Context, method, path, contentType string, body interface{}, into interface{}) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.server+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "kubelet/"+kubeletVersion+" (linux/amd64) shimless-lab-standin")
	if body != nil {
		if contentType == "" {
			contentType = "application/json"
		}
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &apiError{code: resp.StatusCode, body: string(data)}
	}
	if into != nil {
		return json.Unmarshal(data, into)
	}
	return nil
}

// ---------------------------------------------------------------- node

type apiAgent struct {
	kubeconfig string
	nodeName   string
	nodeLabels map[string]string
	taints     []map[string]string
	rt         *sharedRuntime
	started    time.Time

	staticPodPath string
	nodeUID       string

	client     *apiClient
	kcStamp    string
	registered bool
	lastErr    string
	lastLease  *leaseObj
}

func (a *apiAgent) logOnce(msg string, err error) {
	s := msg + ": " + err.Error()
	if s == a.lastErr {
		return
	}
	a.lastErr = s
	warnf("kubelet_node_status.go:70", msg, "node", a.nodeName, "err", err)
}

func fileStamp(p string) string {
	fi, err := os.Stat(p)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%d-%d", fi.Size(), fi.ModTime().UnixNano())
}

// ensureClient (re)loads the kubeconfig when it changed; false when unusable.
func (a *apiAgent) ensureClient() bool {
	stamp := fileStamp(a.kubeconfig)
	if stamp == "" {
		a.client = nil
		return false
	}
	if a.client != nil && stamp == a.kcStamp {
		return true
	}
	c, err := loadKubeconfig(a.kubeconfig)
	a.kcStamp = stamp
	if err != nil {
		a.client = nil
		if err == errNoCredentials {
			vinfof(2, "bootstrap.go:56", "Kubeconfig has no credentials: not contacting an API server", "path", a.kubeconfig)
		} else {
			a.logOnce("Unusable kubeconfig", err)
		}
		return false
	}
	a.client = c
	a.registered = false
	infof("bootstrap.go:59", "Using kubeconfig", "path", a.kubeconfig, "server", c.server)
	return true
}

func readLabNodeRole() string {
	data, err := os.ReadFile("/etc/shimless-lab-node")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "ROLE=") {
			return strings.TrimSpace(strings.TrimPrefix(l, "ROLE="))
		}
	}
	return ""
}

func (a *apiAgent) ownLabels() map[string]string {
	l := map[string]string{
		"kubernetes.io/hostname":  a.nodeName,
		"kubernetes.io/os":        "linux",
		"kubernetes.io/arch":      runtime.GOARCH,
		"beta.kubernetes.io/os":   "linux",
		"beta.kubernetes.io/arch": runtime.GOARCH,
	}
	if readLabNodeRole() == "control-plane" {
		// kubeadm 1.23 labels control-plane nodes with both
		l["node-role.kubernetes.io/control-plane"] = ""
		l["node-role.kubernetes.io/master"] = ""
		l["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
	}
	for k, v := range a.nodeLabels {
		l[k] = v
	}
	return l
}

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func osImage() string {
	data, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "Linux"
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "PRETTY_NAME=") {
			return strings.Trim(strings.TrimPrefix(l, "PRETTY_NAME="), `"`)
		}
	}
	return "Linux"
}

func kernelVersion() string {
	return readTrim("/proc/sys/kernel/osrelease")
}

func memCapacity() string {
	data, err := os.ReadFile("/proc/meminfo")
	if err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 && f[0] == "MemTotal:" {
				return f[1] + "Ki"
			}
		}
	}
	return "4Gi"
}

func (a *apiAgent) register(ctx context.Context) error {
	var node map[string]interface{}
	err := a.client.do(ctx, http.MethodGet, "/api/v1/nodes/"+a.nodeName, "", nil, &node)
	if isNotFound(err) {
		a.rt.mu.Lock()
		mode, endpoint := a.rt.mode, a.rt.endpoint
		a.rt.mu.Unlock()
		criSocket := endpoint
		if mode == "dockershim" {
			criSocket = "/var/run/dockershim.sock"
		}
		spec := map[string]interface{}{}
		if len(a.taints) > 0 {
			spec["taints"] = a.taints
		}
		obj := map[string]interface{}{
			"apiVersion": "v1", "kind": "Node",
			"metadata": map[string]interface{}{
				"name":   a.nodeName,
				"labels": a.ownLabels(),
				"annotations": map[string]string{
					// what kubeadm init/join records (the stand-in plays kubeadm here)
					"kubeadm.alpha.kubernetes.io/cri-socket":                 criSocket,
					"node.alpha.kubernetes.io/ttl":                           "0",
					"volumes.kubernetes.io/controller-managed-attach-detach": "true",
				},
			},
			"spec": spec,
		}
		var created struct {
			Metadata struct {
				UID string `json:"uid"`
			} `json:"metadata"`
		}
		if err := a.client.do(ctx, http.MethodPost, "/api/v1/nodes", "", obj, &created); err != nil {
			if isConflict(err) {
				return err // registered meanwhile: take the existing one next round
			}
			return fmt.Errorf("create node: %w", err)
		}
		a.nodeUID = created.Metadata.UID
		infof("kubelet_node_status.go:73", "Successfully registered node", "node", a.nodeName)
		return nil
	}
	if err != nil {
		return err
	}
	// existing node: add (never remove or change others') labels we own
	md, _ := node["metadata"].(map[string]interface{})
	a.nodeUID, _ = md["uid"].(string)
	have, _ := md["labels"].(map[string]interface{})
	missing := map[string]string{}
	for k, v := range a.ownLabels() {
		if hv, ok := have[k]; !ok || hv != v {
			missing[k] = v
		}
	}
	if len(missing) > 0 {
		patch := map[string]interface{}{"metadata": map[string]interface{}{"labels": missing}}
		if err := a.client.do(ctx, http.MethodPatch, "/api/v1/nodes/"+a.nodeName, "application/strategic-merge-patch+json", patch, nil); err != nil {
			return fmt.Errorf("label node: %w", err)
		}
	}
	infof("kubelet_node_status.go:111", "Node was previously registered", "node", a.nodeName)
	return nil
}

func (a *apiAgent) nodeStatusPatch() map[string]interface{} {
	ready, name, version, message := a.rt.get()
	now := time.Now().UTC().Format(time.RFC3339)
	readyStatus, reason := "True", "KubeletReady"
	msg := "kubelet is posting ready status (lab kubelet stand-in)"
	if !ready {
		readyStatus, reason = "False", "KubeletNotReady"
		msg = message
		if msg == "" {
			msg = "container runtime is down"
		}
	}
	crv := ""
	if name != "" {
		crv = name + "://" + version
	}
	cond := func(typ, status, reason, msg string) map[string]interface{} {
		return map[string]interface{}{"type": typ, "status": status, "reason": reason, "message": msg,
			"lastHeartbeatTime": now, "lastTransitionTime": a.transition(typ, status, now)}
	}
	mem := memCapacity()
	res := map[string]string{"cpu": fmt.Sprint(runtime.NumCPU()), "memory": mem, "pods": "110", "ephemeral-storage": "100Gi"}
	return map[string]interface{}{
		"status": map[string]interface{}{
			"conditions": []interface{}{
				cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
				cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
				cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
				cond("Ready", readyStatus, reason, msg),
			},
			"addresses": []interface{}{
				map[string]string{"type": "InternalIP", "address": "127.0.0.1"},
				map[string]string{"type": "Hostname", "address": a.nodeName},
			},
			"capacity":        res,
			"allocatable":     res,
			"daemonEndpoints": map[string]interface{}{"kubeletEndpoint": map[string]interface{}{"Port": 10250}},
			"nodeInfo": map[string]string{
				"machineID":               readTrim("/etc/machine-id"),
				"systemUUID":              readTrim("/etc/machine-id"),
				"bootID":                  readTrim("/proc/sys/kernel/random/boot_id"),
				"kernelVersion":           kernelVersion(),
				"osImage":                 osImage(),
				"containerRuntimeVersion": crv,
				"kubeletVersion":          kubeletVersion,
				"kubeProxyVersion":        kubeletVersion,
				"operatingSystem":         "linux",
				"architecture":            runtime.GOARCH,
			},
		},
	}
}

var (
	transitions   = map[string][2]string{} // type -> {status, time}
	transitionsMu sync.Mutex
)

func (a *apiAgent) transition(typ, status, now string) string {
	transitionsMu.Lock()
	defer transitionsMu.Unlock()
	t, ok := transitions[typ]
	if !ok || t[0] != status {
		transitions[typ] = [2]string{status, now}
		return now
	}
	return t[1]
}

func (a *apiAgent) postStatus(ctx context.Context) error {
	return a.client.do(ctx, http.MethodPatch, "/api/v1/nodes/"+a.nodeName+"/status",
		"application/strategic-merge-patch+json", a.nodeStatusPatch(), nil)
}

type leaseObj struct {
	APIVersion string                 `json:"apiVersion"`
	Kind       string                 `json:"kind"`
	Metadata   map[string]interface{} `json:"metadata"`
	Spec       map[string]interface{} `json:"spec"`
}

func (a *apiAgent) renewLease(ctx context.Context) {
	path := "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/" + a.nodeName
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000000Z07:00")
	var l leaseObj
	err := a.client.do(ctx, http.MethodGet, path, "", nil, &l)
	if isNotFound(err) {
		l = leaseObj{APIVersion: "coordination.k8s.io/v1", Kind: "Lease",
			Metadata: map[string]interface{}{"name": a.nodeName, "namespace": "kube-node-lease"},
			Spec:     map[string]interface{}{"holderIdentity": a.nodeName, "leaseDurationSeconds": 40, "renewTime": now}}
		_ = a.client.do(ctx, http.MethodPost, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", "", l, nil)
		return
	}
	if err != nil {
		return
	}
	if l.Spec == nil {
		l.Spec = map[string]interface{}{}
	}
	l.Spec["holderIdentity"] = a.nodeName
	l.Spec["leaseDurationSeconds"] = 40
	l.Spec["renewTime"] = now
	_ = a.client.do(ctx, http.MethodPut, path, "", l, nil)
}

// ---------------------------------------------------------------- pods

type podList struct {
	Items []pod `json:"items"`
}

type pod struct {
	Metadata struct {
		Name              string            `json:"name"`
		Namespace         string            `json:"namespace"`
		UID               string            `json:"uid"`
		DeletionTimestamp *string           `json:"deletionTimestamp"`
		Annotations       map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		HostNetwork    bool `json:"hostNetwork"`
		InitContainers []struct {
			Name  string `json:"name"`
			Image string `json:"image"`
		} `json:"initContainers"`
		Containers []struct {
			Name  string `json:"name"`
			Image string `json:"image"`
		} `json:"containers"`
	} `json:"spec"`
	Status struct {
		Phase      string `json:"phase"`
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"conditions"`
		ContainerStatuses []struct {
			Name        string `json:"name"`
			ContainerID string `json:"containerID"`
			Ready       bool   `json:"ready"`
		} `json:"containerStatuses"`
		StartTime string `json:"startTime"`
	} `json:"status"`
}

func (p *pod) upToDate(runtimeName string) bool {
	if p.Status.Phase != "Running" {
		return false
	}
	ready := false
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" && c.Status == "True" {
			ready = true
		}
	}
	if !ready || len(p.Status.ContainerStatuses) != len(p.Spec.Containers) {
		return false
	}
	for _, cs := range p.Status.ContainerStatuses {
		if !cs.Ready || !strings.HasPrefix(cs.ContainerID, runtimeName+"://") {
			return false // e.g. the node changed runtime: the kubelet restarted the containers
		}
	}
	return true
}

func fakeID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "/")))
	return hex.EncodeToString(h[:])
}

func fakePodIP(uid string) string {
	h := sha256.Sum256([]byte(uid))
	return fmt.Sprintf("10.244.%d.%d", h[0], 2+int(h[1])%250)
}

func (a *apiAgent) podStatusPatch(p *pod, runtimeName string) map[string]interface{} {
	now := time.Now().UTC().Format(time.RFC3339)
	start := p.Status.StartTime
	if start == "" {
		start = now
	}
	var cs, ics []interface{}
	for _, c := range p.Spec.Containers {
		cs = append(cs, map[string]interface{}{
			"name": c.Name, "image": c.Image, "imageID": "",
			"containerID": runtimeName + "://" + fakeID(runtimeName, p.Metadata.UID, c.Name),
			"ready":       true, "started": true, "restartCount": 0,
			"state": map[string]interface{}{"running": map[string]string{"startedAt": now}},
		})
	}
	for _, c := range p.Spec.InitContainers {
		ics = append(ics, map[string]interface{}{
			"name": c.Name, "image": c.Image, "imageID": "",
			"containerID": runtimeName + "://" + fakeID(runtimeName, p.Metadata.UID, "init", c.Name),
			"ready":       true, "restartCount": 0,
			"state": map[string]interface{}{"terminated": map[string]interface{}{
				"exitCode": 0, "reason": "Completed", "startedAt": start, "finishedAt": now}},
		})
	}
	cond := func(t string) map[string]interface{} {
		return map[string]interface{}{"type": t, "status": "True", "lastProbeTime": nil, "lastTransitionTime": now}
	}
	podIP := fakePodIP(p.Metadata.UID)
	if p.Spec.HostNetwork {
		podIP = "127.0.0.1"
	}
	st := map[string]interface{}{
		"phase":             "Running",
		"hostIP":            "127.0.0.1",
		"podIP":             podIP,
		"podIPs":            []interface{}{map[string]string{"ip": podIP}},
		"startTime":         start,
		"conditions":        []interface{}{cond("Initialized"), cond("Ready"), cond("ContainersReady"), cond("PodScheduled")},
		"containerStatuses": cs,
	}
	if len(ics) > 0 {
		st["initContainerStatuses"] = ics
	}
	return map[string]interface{}{"status": st}
}

func (a *apiAgent) syncPods(ctx context.Context) error {
	q := url.Values{"fieldSelector": {"spec.nodeName=" + a.nodeName}}
	var pl podList
	if err := a.client.do(ctx, http.MethodGet, "/api/v1/pods?"+q.Encode(), "", nil, &pl); err != nil {
		return err
	}
	ready, runtimeName, _, _ := a.rt.get()
	if ready {
		a.syncMirrorPods(ctx, pl.Items)
	}
	for i := range pl.Items {
		p := &pl.Items[i]
		base := "/api/v1/namespaces/" + p.Metadata.Namespace + "/pods/" + p.Metadata.Name
		if p.Metadata.DeletionTimestamp != nil {
			opts := map[string]interface{}{"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
				"preconditions": map[string]string{"uid": p.Metadata.UID}}
			if err := a.client.do(ctx, http.MethodDelete, base, "", opts, nil); err != nil && !isNotFound(err) && !isConflict(err) {
				warnf("kubelet_pods.go:1", "Failed to delete pod", "pod", p.Metadata.Namespace+"/"+p.Metadata.Name, "err", err)
				continue
			}
			infof("kubelet.go:2112", "SyncLoop DELETE (containers stopped; lab stand-in ran none)", "pod", p.Metadata.Namespace+"/"+p.Metadata.Name)
			continue
		}
		if !ready || runtimeName == "" || p.upToDate(runtimeName) {
			continue
		}
		if err := a.client.do(ctx, http.MethodPatch, base+"/status", "application/strategic-merge-patch+json",
			a.podStatusPatch(p, runtimeName), nil); err != nil && !isNotFound(err) {
			warnf("status_manager.go:1", "Failed to update pod status", "pod", p.Metadata.Namespace+"/"+p.Metadata.Name, "err", err)
			continue
		}
		infof("kubelet.go:2084", "SyncLoop: pod marked Running (lab stand-in runs no containers)", "pod", p.Metadata.Namespace+"/"+p.Metadata.Name, "runtime", runtimeName)
	}
	return nil
}

// ---------------------------------------------------------------- loop

func (a *apiAgent) run(stop <-chan struct{}) {
	var lastStatus time.Time
	for {
		if a.ensureClient() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*requestTimeout)
			func() {
				defer cancel()
				if !a.registered {
					if _, name, _, _ := a.rt.get(); name == "" {
						return // the runtime has not answered yet: nothing true to report
					}
					if err := a.register(ctx); err != nil {
						a.logOnce("Unable to register node with API server", err)
						return
					}
					a.registered = true
					a.lastErr = ""
					lastStatus = time.Time{}
				}
				if time.Since(lastStatus) >= nodeStatusInterval {
					if err := a.postStatus(ctx); err != nil {
						a.logOnce("Error updating node status", err)
						if isNotFound(err) {
							a.registered = false // node object deleted: register again
						}
						return
					}
					a.renewLease(ctx)
					lastStatus = time.Now()
					a.lastErr = ""
				}
				if err := a.syncPods(ctx); err != nil {
					a.logOnce("Failed to list pods bound to this node", err)
				}
			}()
		}
		wait := podSyncInterval
		if a.client == nil {
			wait = kubeconfigRetry
		}
		select {
		case <-stop:
			return
		case <-time.After(wait):
		}
	}
}

func parseNodeLabels(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}

func parseTaints(s string) []map[string]string {
	var out []map[string]string
	for _, t := range strings.Split(s, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		kv, effect, _ := strings.Cut(t, ":")
		k, v, _ := strings.Cut(kv, "=")
		m := map[string]string{"key": k, "effect": effect}
		if v != "" {
			m["value"] = v
		}
		out = append(out, m)
	}
	return out
}

// ---------------------------------------------------------------- static pods

// syncMirrorPods gives every static pod manifest (staticPodPath of the
// KubeletConfiguration, /etc/kubernetes/manifests on kubeadm control-plane
// nodes) a mirror pod "<name>-<node>" like the kubelet does, and deletes
// mirror pods whose manifest is gone. existing: the pods bound to this node.
func (a *apiAgent) syncMirrorPods(ctx context.Context, existing []pod) {
	want := map[string]map[string]interface{}{} // namespace/name -> pod object
	if a.staticPodPath != "" {
		entries, _ := os.ReadDir(a.staticPodPath)
		for _, e := range entries {
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			raw, err := os.ReadFile(filepath.Join(a.staticPodPath, e.Name()))
			if err != nil {
				continue
			}
			var obj map[string]interface{}
			if err := yaml.Unmarshal(raw, &obj); err != nil || obj["kind"] != "Pod" {
				continue
			}
			md, _ := obj["metadata"].(map[string]interface{})
			spec, _ := obj["spec"].(map[string]interface{})
			if md == nil || spec == nil {
				continue
			}
			name, _ := md["name"].(string)
			ns, _ := md["namespace"].(string)
			if name == "" {
				continue
			}
			if ns == "" {
				ns = "default"
			}
			hash := fakeID(string(raw))[:32]
			ann, _ := md["annotations"].(map[string]interface{})
			if ann == nil {
				ann = map[string]interface{}{}
			}
			ann["kubernetes.io/config.source"] = "file"
			ann["kubernetes.io/config.hash"] = hash
			ann["kubernetes.io/config.mirror"] = hash
			md["annotations"] = ann
			md["name"] = name + "-" + a.nodeName
			md["namespace"] = ns
			if a.nodeUID != "" {
				md["ownerReferences"] = []interface{}{map[string]interface{}{
					"apiVersion": "v1", "kind": "Node", "name": a.nodeName, "uid": a.nodeUID, "controller": true}}
			}
			spec["nodeName"] = a.nodeName
			obj["metadata"] = md
			obj["spec"] = spec
			want[ns+"/"+name+"-"+a.nodeName] = obj
		}
	}
	have := map[string]bool{}
	for _, p := range existing {
		key := p.Metadata.Namespace + "/" + p.Metadata.Name
		if p.Metadata.Annotations["kubernetes.io/config.mirror"] == "" {
			continue
		}
		have[key] = true
		if _, ok := want[key]; !ok && p.Metadata.DeletionTimestamp == nil {
			_ = a.client.do(ctx, http.MethodDelete, "/api/v1/namespaces/"+p.Metadata.Namespace+"/pods/"+p.Metadata.Name, "",
				map[string]interface{}{"gracePeriodSeconds": 0}, nil)
			infof("mirror_client.go:1", "Deleted a mirror pod whose static pod is gone", "pod", key)
		}
	}
	for key, obj := range want {
		if have[key] {
			continue
		}
		ns := obj["metadata"].(map[string]interface{})["namespace"].(string)
		if err := a.client.do(ctx, http.MethodPost, "/api/v1/namespaces/"+ns+"/pods", "", obj, nil); err != nil && !isConflict(err) {
			a.logOnce("Failed creating a mirror pod", fmt.Errorf("%s: %w", key, err))
			continue
		}
		infof("kubelet.go:1", "Creating a mirror pod for static pod", "pod", key)
	}
}
