"""End to end from cri-dockerd (issue 13): the lab's cluster with real
kubelets 1.24.17 (or SHIMLESS_E2E_CRI_DOCKERD_KUBELET) that reach Docker through Mirantis cri-dockerd 0.4.3
(`LAB_CLUSTER=1 LAB_SOURCE=cri-dockerd`, lab/cri-dockerd/), moved to containerd
and to CRI-O through the real Pulumi engine with the workload running before
and after, and rolled back to cri-dockerd when the node never gets Ready.

The nodes also carry CRI-O, installed but disabled (`LAB_CRIO=1`), so that one
lab serves every test here. The workload and the cluster helpers are
tests/test_e2e_cluster.py's; at the end the module gives the other modules
their plain lab back, as that module does."""
from __future__ import annotations

import copy
import json
import os
import time

import pytest

from components.manifest import CRI_DOCKERD_UNITS, DOCKER_UNITS, RUNTIME_SERVICES
from components.model import CRI_ENDPOINTS, CRI_SOCKET_ANNOTATION
from tests import lab
from tests.test_e2e_cluster import (WORKLOAD, cluster_stack, deploy_workload, kubectl, never_ready, node_json,
                                    restore_plain_lab, running_pods, running_tasks, up_rolled_back_at_verify,
                                    wait_workload_runs_on)

pytestmark = pytest.mark.e2e

# The nodes' kubelet: 1.24.17 by default; SHIMLESS_E2E_CRI_DOCKERD_KUBELET=1.28.15 runs this module on
# kubelets past 1.27 (no --container-runtime, the endpoint in the KubeletConfiguration after the switch)
# under a control plane of their version (lab/lib.sh lab_control_plane_version). Not in `make test`:
# that kubelet and control plane are two more builds (README, Lab).
KUBELET_VERSION = "v" + os.environ.get("SHIMLESS_E2E_CRI_DOCKERD_KUBELET", "1.24.17").removeprefix("v")
ENDPOINT_IN_CONFIG = int(KUBELET_VERSION.split(".")[1]) >= 27
LAB_ENV = dict(os.environ, LAB_CLUSTER="1", LAB_SOURCE="cri-dockerd", LAB_CRIO="1",
               LAB_CRI_DOCKERD_KUBELET_VERSION=KUBELET_VERSION)
# What the lab's kubeadm recorded for these nodes (lab/lib.sh), as kubeadm of their version does.
CRI_DOCKERD_SOCKET = "unix:///var/run/cri-dockerd.sock"
KUBEADM_FLAGS = ('KUBELET_KUBEADM_ARGS="' + ("" if ENDPOINT_IN_CONFIG else "--container-runtime=remote ")
                 + f'--container-runtime-endpoint={CRI_DOCKERD_SOCKET} --pod-infra-container-image=k8s.gcr.io/pause:3.6"')
# The test_e2e_cluster fault, keyed on cri-dockerd's flags instead of dockershim's:
# off cri-dockerd the kubelet gets a kubeconfig that reaches no API server.
NEVER_READY_OFF_CRI_DOCKERD = (
    "if grep -q cri-dockerd.sock /var/lib/kubelet/kubeadm-flags.env; "
    "then sed -i s,127.0.0.1:9,127.0.0.1:26443, /etc/kubernetes/kubelet.conf; "
    "else sed -i s,127.0.0.1:26443,127.0.0.1:9, /etc/kubernetes/kubelet.conf; fi")


@pytest.fixture(scope="module")
def cri_dockerd_lab():
    with pytest.MonkeyPatch.context() as env:
        # restore_plain_lab resets to the environment's lab minus LAB_CLUSTER: without these two, the plain one.
        env.delenv("LAB_SOURCE", raising=False)
        env.delenv("LAB_CRIO", raising=False)
        try:
            # lab-reset first: lab-up over the plain lab's running standalone nodes would wait
            # for Nodes that never register.
            lab.script("lab-reset.sh", env=LAB_ENV)
            lab.script("lab-up.sh", env=LAB_ENV)
            config = lab.require_lab()
            assert config["config"]["shimless:cluster"] == {"mode": "kubeconfig"}, "lab-up did not start the cluster"
            yield config
        finally:
            restore_plain_lab()


def cri_dockerd_reset() -> None:
    """Fresh cri-dockerd nodes, their Nodes registered again and Ready."""
    lab.script("lab-reset.sh", env=LAB_ENV)
    kubectl("wait", "--for=condition=Ready", *(f"node/{name}" for name in lab.NODES), "--timeout=120s")


def wait_for(what: str, check, timeout: float = 120):
    """check()'s first true result, asked every 2 s for up to `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"not within {timeout:.0f}s: {what}"
        time.sleep(2)
    return result


def up_log(stack) -> str:
    """`pulumi up` through the engine; fails unless it succeeded; what it printed."""
    log: list[str] = []
    result = stack.up(color="never", on_output=log.append)
    assert result.summary.result == "succeeded", "\n".join(log[-40:])
    return "\n".join(log)


def unit_state(node: str, unit: str) -> tuple[str, str]:
    """(is-enabled, is-active) of a unit on the node, as systemctl says them ("" when it says nothing)."""
    said = lab.ssh(node, f'echo "$(systemctl is-enabled {unit} 2>/dev/null)/$(systemctl is-active {unit})"',
                   check=False).stdout.strip()
    enabled, _, active = said.partition("/")
    return enabled, active


def ready_on(name: str, runtime: str) -> bool:
    node = node_json(name)
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
    return ready and node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith(f"{runtime}://")


def workload_runs_on_through_api(runtime: str) -> bool:
    """The API's view: a DaemonSet pod of the workload on every node and the
    Deployment's two replicas, each with every container running on `runtime`
    (the scheme of its container IDs)."""
    running = []
    for pod in json.loads(kubectl("-n", WORKLOAD, "get", "pods", "-o", "json"))["items"]:
        statuses = pod["status"].get("containerStatuses") or []
        if statuses and all("running" in (s.get("state") or {}) and
                            s.get("containerID", "").startswith(f"{runtime}://") for s in statuses):
            running.append((pod["spec"]["nodeName"], pod["metadata"]["name"]))
    agents = {node for node, name in running if name.startswith("node-agent-")}
    return agents == set(lab.NODES) and sum(1 for _, name in running if name.startswith("pause-")) == 2


def assert_moved_off_cri_dockerd(name: str, runtime: str) -> None:
    """Through the API the node runs `runtime` under its kubelet (KUBELET_VERSION), uncordoned,
    with kubeadm's annotation naming the runtime; on the node the runtime is on
    and cri-dockerd and Docker left nothing running, enabled or listening."""
    node = node_json(name)
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith(f"{runtime}://"), node["status"]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == KUBELET_VERSION
    assert node["metadata"]["annotations"][CRI_SOCKET_ANNOTATION] == CRI_ENDPOINTS[runtime]
    assert not node["spec"].get("unschedulable"), f"{name} left cordoned"
    assert unit_state(name, RUNTIME_SERVICES[runtime]) == ("enabled", "active")
    for unit in CRI_DOCKERD_UNITS + DOCKER_UNITS:
        enabled, active = unit_state(name, unit)
        assert enabled != "enabled" and active != "active", f"{name}: {unit} {enabled}/{active}"
    assert lab.ssh(name, "test -e /run/cri-dockerd.sock", check=False).returncode != 0, \
        f"{name}: /run/cri-dockerd.sock left behind"
    flags = lab.out(name, "cat /var/lib/kubelet/kubeadm-flags.env")
    assert "cri-dockerd" not in flags, flags
    if ENDPOINT_IN_CONFIG:  # 1.27+: the endpoint in the KubeletConfiguration, no runtime flag left
        assert "--container-runtime" not in flags, flags
        config = lab.out(name, "cat /var/lib/kubelet/config.yaml")
        assert f"containerRuntimeEndpoint: {CRI_ENDPOINTS[runtime]}" in config.splitlines(), config
    else:
        assert f"--container-runtime-endpoint={CRI_ENDPOINTS[runtime]}" in flags, flags


def up_from_cri_dockerd(config: dict, tmp_path, runtime: str):
    """The workload on Docker through cri-dockerd, then `pulumi up` to `runtime`: drained, switched,
    verified, and every node off cri-dockerd with the workload running on `runtime`. The stack."""
    cri_dockerd_reset()
    deploy_workload()
    wait_workload_runs_on("docker")
    stack = cluster_stack(config, tmp_path)
    text = up_log(stack)
    assert "evicting pod shimless-e2e/pause-" in text  # the drain went through eviction
    assert f"verified Ready=True runtime={runtime}://" in text
    nodes = stack.outputs()["nodes"].value
    assert {name: (n["runtimeBefore"], n["runtimeAfter"]) for name, n in nodes.items()} == \
        {name: ("cri-dockerd", runtime) for name in lab.NODES}
    for name in lab.NODES:
        assert_moved_off_cri_dockerd(name, runtime)
    wait_for(f"the workload's pods running on {runtime}", lambda: workload_runs_on_through_api(runtime))
    return stack


def test_nodes_start_on_cri_dockerd_with_a_1_24_kubelet(cri_dockerd_lab):
    for name in lab.NODES:
        node = node_json(name)
        assert node["status"]["nodeInfo"]["kubeletVersion"] == KUBELET_VERSION
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("docker://"), node["status"]
        assert node["metadata"]["annotations"][CRI_SOCKET_ANNOTATION] == CRI_DOCKERD_SOCKET
        assert lab.out(name, "cat /var/lib/kubelet/kubeadm-flags.env") == KUBEADM_FLAGS
        assert "0.4.3" in lab.out(name, "cri-dockerd --version 2>&1")
        for unit in CRI_DOCKERD_UNITS:
            assert unit_state(name, unit) == ("enabled", "active"), (name, unit)
        assert lab.ssh(name, "test -S /run/cri-dockerd.sock", check=False).returncode == 0, name
        assert unit_state(name, "crio.service")[0] == "disabled"
    # The control plane's static pods on lab-cp1: Docker runs them, through cri-dockerd.
    wait_for("lab-cp1's kube-apiserver pod running in Docker",
             lambda: "kube-system/kube-apiserver-lab-cp1" in running_pods("lab-cp1", "docker"))


def test_up_moves_cri_dockerd_nodes_to_containerd(cri_dockerd_lab, tmp_path):
    stack = up_from_cri_dockerd(cri_dockerd_lab, tmp_path, "containerd")
    # On the nodes too: containerd's CRI runs the workload, Docker nothing.
    wait_workload_runs_on("containerd")
    for name in lab.NODES:
        assert running_tasks(name, "moby") == [], name
    assert kubectl("-n", WORKLOAD, "get", "deployment", "pause", "-o",
                   "jsonpath={.status.availableReplicas}").strip() == "2"
    assert lab.changes(stack.preview(color="never").change_summary) == {}


def test_node_never_ready_off_cri_dockerd_is_rolled_back_to_it(cri_dockerd_lab, tmp_path):
    cri_dockerd_reset()
    with never_ready("lab-w1", NEVER_READY_OFF_CRI_DOCKERD):
        stack = cluster_stack(cri_dockerd_lab, tmp_path, canary=1, maxUnavailable=1, healthTimeoutSeconds=30)
        up_rolled_back_at_verify(stack, "lab-w1", 30)
        # Back on cri-dockerd for real: Ready through the API on docker://, cri-dockerd serving again.
        wait_for("lab-w1 Ready on docker:// after the rollback", lambda: ready_on("lab-w1", "docker"))
        for unit in CRI_DOCKERD_UNITS:
            assert unit_state("lab-w1", unit) == ("enabled", "active"), unit
        assert lab.out("lab-w1", "cat /var/lib/kubelet/kubeadm-flags.env") == KUBEADM_FLAGS
        # The API still names cri-dockerd's socket: the annotation follows a verified node only.
        assert node_json("lab-w1")["metadata"]["annotations"][CRI_SOCKET_ANNOTATION] == CRI_DOCKERD_SOCKET
        # What the kubelet started on containerd was stopped; Docker runs the static pod again.
        assert running_tasks("lab-w1", "k8s.io") == []
        wait_for("the static pod running in Docker after the rollback",
                 lambda: "kube-system/e2e-static-lab-w1" in running_pods("lab-w1", "docker"), timeout=60)
        # The canary batch is migrated; the batch after the failed one was never switched.
        assert ready_on("lab-cp1", "containerd")
        assert node_json("lab-w2")["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("docker://")
        assert lab.ssh("lab-w2", "test -e /var/lib/shimless/backup", check=False).returncode != 0
        assert unit_state("lab-w2", "cri-docker.service") == ("enabled", "active")


def test_up_moves_cri_dockerd_nodes_to_crio(cri_dockerd_lab, tmp_path):
    config = copy.deepcopy(cri_dockerd_lab)
    config["config"]["shimless:target"] = {"runtime": "cri-o", "source": "preinstalled"}
    up_from_cri_dockerd(config, tmp_path, "cri-o")
    for name in lab.NODES:
        # Docker's own containerd went with it: the node has one CRI runtime.
        assert unit_state(name, "containerd.service")[1] != "active", name
