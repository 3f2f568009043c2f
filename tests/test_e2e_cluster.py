"""End to end with a real control plane (etcd, kube-apiserver, controller
manager, scheduler from lab/control-plane; nodes registered and heartbeating
through the lab kubelet stand-in): cordon, PDB-honouring drain, annotation,
Ready verification, uncordon, the Docker-socket scan and the API-level
rollback, through the real Pulumi engine."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import yaml

from tests import lab

pytestmark = pytest.mark.e2e

WORKLOAD = "shimless-e2e"
NEVER_READY_DROP_IN = "/etc/systemd/system/kubelet.service.d/99-e2e-never-ready.conf"
NEVER_READY = ("if grep -q container-runtime=remote /var/lib/kubelet/kubeadm-flags.env; "
               "then sed -i s,127.0.0.1:26443,127.0.0.1:9, /etc/kubernetes/kubelet.conf; "
               "else sed -i s,127.0.0.1:9,127.0.0.1:26443, /etc/kubernetes/kubelet.conf; fi")
SOCKET_POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "docker-socket-user", "namespace": WORKLOAD},
    "spec": {"nodeName": "lab-w2",
             "containers": [{"name": "ci", "image": "registry.k8s.io/pause:3.6",
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
    env = dict(os.environ, LAB_CLUSTER="1")
    subprocess.run(["bash", str(lab.ROOT / "lab" / "lab-reset.sh")], env=env, check=True,
                   stdout=subprocess.DEVNULL, timeout=900)
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


@pytest.fixture(scope="module")
def cluster_config():
    env = dict(os.environ, LAB_CLUSTER="1")
    subprocess.run(["bash", str(lab.ROOT / "lab" / "lab-up.sh")], env=env, check=True,
                   stdout=subprocess.DEVNULL, timeout=1800)
    config = lab.require_lab()
    assert config["config"]["shimless:cluster"] == {"mode": "kubeconfig"}, "lab-up did not start the cluster"
    yield config
    # Give the other e2e module its plain lab stack back.
    subprocess.run(["bash", str(lab.ROOT / "lab" / "lab-up.sh")], check=True, stdout=subprocess.DEVNULL)


def cluster_stack(config: dict, tmp_path, **rollout):
    config = json.loads(json.dumps(config))
    if rollout:
        config["config"]["shimless:rollout"] = rollout
    return lab.engine_stack(lab.project_copy(tmp_path, config), tmp_path / "state")


def test_up_cordons_drains_switches_annotates_verifies_and_uncordons(cluster_config, tmp_path):
    cluster_reset()
    deploy_workload()
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
    from pulumi.automation import errors
    cluster_reset()
    # lab-w1's kubelet, once started on remote-runtime flags, gets a kubeconfig
    # that reaches no API server (on its old flags it gets the real one back):
    # locally fine, never Ready through the API on the new runtime.
    lab.out("lab-w1", f"mkdir -p /etc/systemd/system/kubelet.service.d && printf '%s\\n' '[Service]' "
                      f"\"ExecStartPre=/bin/sh -c '{NEVER_READY}'\" > {NEVER_READY_DROP_IN} && systemctl daemon-reload")
    stack = cluster_stack(cluster_config, tmp_path, canary=1, maxUnavailable=1, healthTimeoutSeconds=30)
    with pytest.raises(errors.CommandError) as info:
        stack.up(color="never")
    message = str(info.value)
    assert "shimless[lab-w1] step 'verify' failed after 30s" in message
    assert "node lab-w1: rolled back to its previous runtime" in message
    status = lab.standin("lab-w1")
    assert status["mode"] == "dockershim" and status["runtimeName"] == "docker"
    assert "--network-plugin=cni" in lab.out("lab-w1", "cat /var/lib/kubelet/kubeadm-flags.env")
    # The earlier batch is migrated; the later one was never touched.
    assert node_json("lab-cp1")["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert lab.ssh("lab-w2", "test -e /var/lib/shimless", check=False).returncode != 0
    lab.out("lab-w1", f"rm {NEVER_READY_DROP_IN} && systemctl daemon-reload")
