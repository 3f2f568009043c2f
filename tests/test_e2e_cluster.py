"""End to end with a real control plane (etcd, kube-apiserver, controller
manager, scheduler from lab/control-plane) and real kubelets 1.23.17
(lab/kubelet-real): pods running on Docker, cordon, PDB-honouring drain, annotation,
Ready verification, uncordon, pods running on containerd, the Docker-socket
scan and the API-level rollback, through the real Pulumi engine."""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
from contextlib import contextmanager

import pytest
import yaml

from tests import lab

pytestmark = pytest.mark.e2e

WORKLOAD = "shimless-e2e"
NEVER_READY_DROP_IN = "/etc/systemd/system/kubelet.service.d/99-e2e-never-ready.conf"
NEVER_READY = ("if grep -q container-runtime=remote /var/lib/kubelet/kubeadm-flags.env; "
               "then sed -i s,127.0.0.1:26443,127.0.0.1:9, /etc/kubernetes/kubelet.conf; "
               "else sed -i s,127.0.0.1:9,127.0.0.1:26443, /etc/kubernetes/kubelet.conf; fi")
LAB_ENV = dict(os.environ, LAB_CLUSTER="1")
STATIC_POD = "/etc/kubernetes/manifests/e2e-static.yaml"
STATIC_POD_YAML = """apiVersion: v1
kind: Pod
metadata:
  name: e2e-static
  namespace: kube-system
spec:
  hostNetwork: true
  containers:
  - name: pause
    image: registry.k8s.io/pause:3.6
    command: ["/pause"]
    imagePullPolicy: Never
"""
SOCKET_POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "docker-socket-user", "namespace": WORKLOAD},
    "spec": {"nodeName": "lab-w2", "hostNetwork": True,
             "containers": [{"name": "ci", "image": "registry.k8s.io/pause:3.6", "imagePullPolicy": "Never",
                             "volumeMounts": [{"name": "run", "mountPath": "/host/run"}]}],
             "volumes": [{"name": "run", "hostPath": {"path": "/var/run"}}]},
}


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> str:
    done = subprocess.run([str(lab.ROOT / "lab" / "kubectl"), *args], input=stdin, capture_output=True,
                          text=True, timeout=180, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def node_json(name: str) -> dict:
    return json.loads(kubectl("get", "node", name, "-o", "json"))


def cluster_reset() -> None:
    lab.script("lab-reset.sh", env=LAB_ENV)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
        ready = {n["metadata"]["name"] for n in nodes
                 if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])}
        if ready >= set(lab.NODES):
            return
        time.sleep(2)
    raise AssertionError(f"lab nodes not Ready after reset: {ready}")


def deploy_workload() -> None:
    kubectl("create", "namespace", WORKLOAD, check=False)
    manifest = (lab.ROOT / "lab" / "control-plane" / "smoke.sh").read_text()
    # The smoke test's Deployment (2 replicas) + PDB (minAvailable 1) + DaemonSet.
    body = manifest.split("<<'YAML'\n", 1)[1].split("\nYAML\n", 1)[0]
    kubectl("apply", "-n", WORKLOAD, "-f", "-", stdin=body)
    kubectl("-n", WORKLOAD, "rollout", "status", "deployment/pause", "--timeout=120s")
    kubectl("-n", WORKLOAD, "rollout", "status", "daemonset/node-agent", "--timeout=120s")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if kubectl("-n", WORKLOAD, "get", "pdb", "pause", "-o", "jsonpath={.status.disruptionsAllowed}").strip() == "1":
            return
        time.sleep(1)
    raise AssertionError("the PDB never allowed a disruption")


def running_pods(node: str, runtime: str) -> set[str]:
    """namespace/pod of every pod container the node's `runtime` (docker |
    containerd) really runs: Docker's k8s_* containers, or the CRI's."""
    if runtime == "docker":
        names = lab.out(node, "if systemctl is-active -q docker; then docker ps --filter name=^k8s_ "
                              "--format '{{.Label \"io.kubernetes.pod.namespace\"}}/{{.Label \"io.kubernetes.pod.name\"}}'; fi")
        return set(names.split())
    listed = lab.ssh(node, "crictl --runtime-endpoint unix:///run/containerd/containerd.sock ps -o json",
                     check=False)
    if listed.returncode != 0:
        return set()
    return {f"{c['labels']['io.kubernetes.pod.namespace']}/{c['labels']['io.kubernetes.pod.name']}"
            for c in json.loads(listed.stdout)["containers"] if c["state"] == "CONTAINER_RUNNING"}


def running_tasks(node: str, namespace: str) -> list[str]:
    """Containers containerd runs in `namespace`: `moby` (Docker's), `k8s.io` (the CRI's)."""
    listed = lab.out(node, f"ctr -n {namespace} tasks ls")
    return [line.split()[0] for line in listed.splitlines()[1:] if line.split()[2:3] == ["RUNNING"]]


def workload_on(runtime: str) -> dict[str, set[str]]:
    """Per node, the e2e workload's pods its `runtime` runs."""
    return {name: {p for p in running_pods(name, runtime) if p.startswith(f"{WORKLOAD}/")} for name in lab.NODES}


def wait_workload_runs_on(runtime: str, timeout: float = 120) -> dict[str, set[str]]:
    """Until every node runs a DaemonSet pod and the nodes together run the
    Deployment's two replicas, on `runtime`."""
    deadline = time.monotonic() + timeout
    while True:
        pods = workload_on(runtime)
        agents = all(any(p.startswith(f"{WORKLOAD}/node-agent-") for p in on) for on in pods.values())
        replicas = sum(1 for on in pods.values() for p in on if p.startswith(f"{WORKLOAD}/pause-"))
        if agents and replicas == 2:
            return pods
        if time.monotonic() > deadline:
            raise AssertionError(f"the workload does not run on {runtime}: {pods}")
        time.sleep(2)


@pytest.fixture(scope="module")
def cluster_config():
    lab.script("lab-up.sh", env=LAB_ENV)
    config = lab.require_lab()
    assert config["config"]["shimless:cluster"] == {"mode": "kubeconfig"}, "lab-up did not start the cluster"
    yield config
    restore_plain_lab()


def restore_plain_lab() -> None:
    """Give the other e2e modules their plain lab back: standalone kubelets, no cluster in the stack."""
    plain = {k: v for k, v in os.environ.items() if k not in ("LAB_CLUSTER", "LAB_KUBELET")}
    for script in ("lab-reset.sh", "lab-up.sh"):
        lab.script(script, env=plain)


def cluster_stack(config: dict, tmp_path, **rollout):
    config = json.loads(json.dumps(config))
    if rollout:
        config["config"]["shimless:rollout"] = rollout
    return lab.engine_stack(lab.project_copy(tmp_path, config), tmp_path / "state")


@contextmanager
def never_ready(node: str, fault: str = NEVER_READY):
    """`node` never Ready through the API on its new runtime, until the block
    ends: its kubelet, started on the flags `fault` looks for, gets a
    kubeconfig that reaches no API server (on its old flags the real one
    back), so it runs locally but the API never sees it. A static pod, which
    the kubelet runs without the API, gives the rollback a pod to take back."""
    lab.out(node, f"cat > {STATIC_POD} <<'YAML'\n{STATIC_POD_YAML}YAML")
    lab.out(node, f"mkdir -p {os.path.dirname(NEVER_READY_DROP_IN)} && printf '%s\\n' '[Service]' "
                  f"\"ExecStartPre=/bin/sh -c '{fault}'\" > {NEVER_READY_DROP_IN} && systemctl daemon-reload")
    try:
        yield
    finally:
        lab.ssh(node, f"rm -f {STATIC_POD} {NEVER_READY_DROP_IN} && systemctl daemon-reload", check=False)


def up_rolled_back_at_verify(stack, node: str, health_timeout: int) -> str:
    """`pulumi up`, which must fail at `node`'s verify after `health_timeout`
    seconds and roll the node back; what it printed."""
    from pulumi.automation import errors
    with pytest.raises(errors.CommandError) as info:
        stack.up(color="never")
    message = str(info.value)
    assert f"shimless[{node}] step 'verify' failed after {health_timeout}s" in message
    assert f"node {node}: rolled back to its previous runtime" in message
    return message


def test_up_cordons_drains_switches_annotates_verifies_and_uncordons(cluster_config, tmp_path):
    cluster_reset()
    deploy_workload()
    # Real pods, really on Docker: dockershim's containers, nothing on a CRI.
    wait_workload_runs_on("docker")
    assert workload_on("containerd") == {name: set() for name in lab.NODES}
    stack = cluster_stack(cluster_config, tmp_path)
    log: list[str] = []
    result = stack.up(color="never", on_output=log.append)
    text = "\n".join(log)
    assert result.summary.result == "succeeded"
    assert "evicting pod shimless-e2e/pause-" in text  # the drain went through eviction
    assert "verified Ready=True runtime=containerd://" in text
    wide = kubectl("get", "nodes", "-o", "wide")
    for name in lab.NODES:
        node = node_json(name)
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://"), wide
        assert node["metadata"]["annotations"]["kubeadm.alpha.kubernetes.io/cri-socket"] == \
            "unix:///run/containerd/containerd.sock"
        assert node["metadata"]["labels"]["shimless.io/container-runtime"] == "containerd"
        assert not node["spec"].get("unschedulable"), f"{name} left cordoned"
    assert kubectl("-n", WORKLOAD, "get", "deployment", "pause", "-o",
                   "jsonpath={.status.availableReplicas}").strip() == "2"
    # The same workload now runs on containerd's CRI, and Docker runs nothing.
    wait_workload_runs_on("containerd")
    for name in lab.NODES:
        assert lab.ssh(name, "systemctl is-active -q docker", check=False).returncode != 0, name
        # Docker's containers stopped with it, live-restore or not: no second copy of any pod.
        assert running_tasks(name, "moby") == [], name
    assert lab.changes(stack.preview(color="never").change_summary) == {}
    code, report = drift_json()
    assert code == 0, report
    # Drift through the API: someone relabels lab-w1. Detected, repaired by up, clean after.
    kubectl("label", "node", "lab-w1", "--overwrite", "shimless.io/container-runtime=docker")
    code, report = drift_json()
    assert code == 2
    assert [d["fact"] for d in report["nodes"]["lab-w1"]["drift"]] == ["label shimless.io/container-runtime"]
    assert report["nodes"]["lab-cp1"]["status"] == report["nodes"]["lab-w2"]["status"] == "clean"
    stack.up(color="never")
    assert node_json("lab-w1")["metadata"]["labels"]["shimless.io/container-runtime"] == "containerd"
    assert lab.changes(stack.preview(color="never").change_summary) == {}
    assert drift_json()[0] == 0


def drift_json() -> tuple[int, dict]:
    import sys
    done = subprocess.run([sys.executable, "-m", "components.cli", "drift", "--stack", "lab", "--json"],
                          cwd=lab.ROOT, capture_output=True, text=True, timeout=300)
    return done.returncode, json.loads(done.stdout)


def test_docker_socket_workload_blocks_its_node(cluster_config, tmp_path):
    cluster_reset()
    kubectl("create", "namespace", WORKLOAD, check=False)
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(SOCKET_POD))
    try:
        stack = cluster_stack(cluster_config, tmp_path)
        log: list[str] = []
        stack.up(color="never", on_output=log.append)
        text = "\n".join(log)
        assert "lab-w2: not migrated: pods mount the Docker socket: shimless-e2e/docker-socket-user (hostPath /var/run)" in text
        assert node_json("lab-w2")["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("docker://")
        assert node_json("lab-w1")["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    finally:
        kubectl("-n", WORKLOAD, "delete", "pod", "docker-socket-user", "--wait=false", check=False)


def test_node_never_ready_is_rolled_back_and_the_rollout_stops(cluster_config, tmp_path):
    cluster_reset()
    with never_ready("lab-w1"):
        stack = cluster_stack(cluster_config, tmp_path, canary=1, maxUnavailable=1, healthTimeoutSeconds=30)
        message = up_rolled_back_at_verify(stack, "lab-w1", 30)
        # Back on Docker for real: Ready through the API, reporting docker://.
        deadline = time.monotonic() + 120
        while True:
            node = node_json("lab-w1")
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
            if ready and node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("docker://"):
                break
            assert time.monotonic() < deadline, f"lab-w1 not Ready on Docker after the rollback: {node['status']}"
            time.sleep(2)
        # What the kubelet started on containerd was stopped before Docker came back.
        assert re.search(r"stopping \d+ pod sandboxes on unix:///run/containerd/containerd.sock", message), message
        assert running_tasks("lab-w1", "k8s.io") == []
        deadline = time.monotonic() + 60
        while "kube-system/e2e-static-lab-w1" not in running_pods("lab-w1", "docker"):
            assert time.monotonic() < deadline, "the static pod does not run on Docker after the rollback"
            time.sleep(2)
    assert "--network-plugin=cni" in lab.out("lab-w1", "cat /var/lib/kubelet/kubeadm-flags.env")
    # The annotation and label follow a verified node only: lab-w1 keeps its old ones.
    meta = node_json("lab-w1")["metadata"]
    assert meta["annotations"]["kubeadm.alpha.kubernetes.io/cri-socket"] == "/var/run/dockershim.sock", meta
    assert meta.get("labels", {}).get("shimless.io/container-runtime") != "containerd", meta
    # The earlier batch is migrated; the later one was never touched.
    assert node_json("lab-cp1")["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    # (pre-staged ahead, maybe: rollout.prestageAhead; never switched)
    assert lab.ssh("lab-w2", "test -e /var/lib/shimless/backup", check=False).returncode != 0
    assert node_json("lab-w2")["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("docker://")
