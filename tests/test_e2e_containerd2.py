"""End to end to containerd 2.x (issue 13): the lab's nodes with containerd 2.4.2
installed beside Docker's containerd 1.6 (`LAB_CLUSTER=1 LAB_CONTAINERD=2`,
lab/containerd2/: the release in /opt/containerd-2.4.2/bin, containerd and ctr
linked into /usr/local/bin, Docker's containerd.service untouched), moved there
through the real Pulumi engine with `target: {runtime: containerd, source:
preinstalled, version: "2.4.2"}`: from dockershim (kubelet 1.23.17) with the
cluster e2e's workload and the control plane's static pods running before and
after, kept there (a second `up` and `preview --expect-no-changes` change
nothing, an edited config is found and repaired), rolled back to Docker on its
containerd 1.6 when the node never gets Ready, and from cri-dockerd (kubelet
1.24.17).

containerd.service keeps its own unit (`ExecStart=/usr/bin/containerd`);
shimless' drop-in (components/runtime_unit.py) makes it run the containerd
pre-stage validated and the shim beside it. The workload and the cluster
helpers are tests/test_e2e_cluster.py's and tests/test_e2e_cridockerd.py's; the
rollback and cri-dockerd cases each take one node, so the module stays short.
At the end the module gives the other modules their plain lab back."""
from __future__ import annotations

import copy
import json
import os
import re

import pytest

from components.manifest import CONTAINERD_BINARY_DROP_IN
from components.model import CRI_ENDPOINTS, CRI_SOCKET_ANNOTATION, RUNTIME_LABEL
from tests import lab
from tests.test_containerd2 import VERSION
from tests.test_e2e_cluster import (STATIC_POD, STATIC_POD_YAML, WORKLOAD, cluster_stack, deploy_workload, drift_json,
                                    kubectl, never_ready, node_json, restore_plain_lab, running_pods,
                                    up_rolled_back_at_verify, wait_workload_runs_on)
from tests.test_e2e_cridockerd import (CRI_DOCKERD_SOCKET, KUBELET_VERSION as CRI_DOCKERD_KUBELET,
                                       assert_moved_off_cri_dockerd, ready_on, unit_state, up_log, wait_for)

pytestmark = pytest.mark.e2e

LAB_ENV = dict(os.environ, LAB_CLUSTER="1", LAB_CONTAINERD="2")
CRI_DOCKERD_ENV = {**LAB_ENV, "LAB_SOURCE": "cri-dockerd"}
TARGET = {"runtime": "containerd", "source": "preinstalled", "version": VERSION}
# Where the lab puts containerd 2 (lab/containerd2/layer.sh) and where Docker's containerd is.
NEW_CONTAINERD = "/usr/local/bin/containerd"
NEW_CTR = "/usr/local/bin/ctr"
NEW_DIR = f"/opt/containerd-{VERSION}/bin"
DOCKER_CONTAINERD = "/usr/bin/containerd"
DOCKER_CTR = "/usr/bin/ctr"
CONTAINERD_UNIT = "/lib/systemd/system/containerd.service"
CONTAINERD_CONFIG = "/etc/containerd/config.toml"
# What the API reports: the lab's build stamps the version as upstream's tag, v2.4.2.
API_RUNTIME = re.compile(rf"containerd://v?{re.escape(VERSION)}$")


@pytest.fixture(scope="module")
def containerd2_lab():
    with pytest.MonkeyPatch.context() as env:
        # restore_plain_lab resets to the environment's lab minus LAB_CLUSTER: without these, the plain one.
        for name in ("LAB_CONTAINERD", "LAB_SOURCE", "LAB_CRIO"):
            env.delenv(name, raising=False)
        try:
            # lab-reset first: lab-up over the plain lab's running standalone nodes would wait
            # for Nodes that never register.
            lab.script("lab-reset.sh", env=LAB_ENV)
            lab.script("lab-up.sh", env=LAB_ENV)
            config = lab.require_lab()
            assert config["config"]["shimless:cluster"] == {"mode": "kubeconfig"}, "lab-up did not start the cluster"
            assert config["config"]["shimless:target"].get("version") == VERSION, config["config"]["shimless:target"]
            yield config
        finally:
            restore_plain_lab()


def containerd2_stack(config: dict, tmp_path, nodes: tuple[str, ...] = lab.NODES, **rollout):
    """The engine on a copy of the lab's stack: target containerd 2, only `nodes`."""
    config = copy.deepcopy(config)
    config["config"]["shimless:target"] = dict(TARGET)
    config["config"]["shimless:nodes"] = [n for n in config["config"]["shimless:nodes"] if n["name"] in nodes]
    return cluster_stack(config, tmp_path, **rollout)


def wait_ready(*nodes: str) -> None:
    kubectl("wait", "--for=condition=Ready", *(f"node/{name}" for name in nodes), "--timeout=120s")


def service_binary(node: str) -> str:
    """The executable containerd.service's main process runs, symlinks resolved."""
    return lab.out(node, "readlink -f /proc/$(systemctl show -p MainPID --value containerd.service)/exe")


def cri_shims(node: str) -> set[str]:
    """The executables of the shims of the CRI's pods (containerd namespace k8s.io)."""
    listed = lab.out(node, "for p in $(pgrep -x containerd-shim); do "
                           "if tr '\\0' ' ' </proc/$p/cmdline | grep -q -- '-namespace k8s.io '; "
                           "then readlink -f /proc/$p/exe; fi; done")
    return set(listed.split())


def drop_ins(node: str) -> list[str]:
    """containerd.service's drop-ins, as systemd applies them."""
    return lab.out(node, "systemctl show -p DropInPaths --value containerd.service").split()


def running_tasks_of(node: str, namespace: str, ctr: str) -> list[str]:
    """What containerd runs in `namespace`, asked with `ctr` (the client of the running containerd's release)."""
    listed = lab.out(node, f"{ctr} -n {namespace} tasks ls")
    return [line.split()[0] for line in listed.splitlines()[1:] if line.split()[2:3] == ["RUNNING"]]


def changed_urns(stack) -> tuple[str, list[str]]:
    """A preview's output and the URNs of the resources it would change."""
    urns: list[str] = []

    def on_event(event):
        pre = event.resource_pre_event
        if pre is not None and pre.metadata.op.value not in ("same", "read"):
            urns.append(pre.metadata.urn)

    return stack.preview(color="never", on_event=on_event).stdout, urns


def assert_on_containerd_2(name: str) -> None:
    """Through the API the node runs containerd 2.4.2, uncordoned, annotated and labelled; on the
    node containerd.service runs containerd 2 (its own unit untouched, shimless' drop-in over
    it), the CRI's pods run in 2's shims, and Docker is off."""
    node = node_json(name)
    assert API_RUNTIME.match(node["status"]["nodeInfo"]["containerRuntimeVersion"]), node["status"]["nodeInfo"]
    assert node["metadata"]["annotations"][CRI_SOCKET_ANNOTATION] == CRI_ENDPOINTS["containerd"]
    assert node["metadata"]["labels"][RUNTIME_LABEL] == "containerd"
    assert not node["spec"].get("unschedulable"), f"{name} left cordoned"
    assert service_binary(name) == f"{NEW_DIR}/containerd"
    assert CONTAINERD_BINARY_DROP_IN in drop_ins(name)
    assert f"ExecStart={NEW_CONTAINERD}" in lab.out(name, f"cat {CONTAINERD_BINARY_DROP_IN}")
    assert lab.out(name, f"grep ^ExecStart= {CONTAINERD_UNIT}") == f"ExecStart={DOCKER_CONTAINERD}"
    assert lab.out(name, f"grep '^version = ' {CONTAINERD_CONFIG}") == "version = 4"
    shims = cri_shims(name)
    assert shims == {f"{NEW_DIR}/containerd-shim-runc-v2"}, shims
    assert unit_state(name, "containerd.service") == ("enabled", "active")
    for unit in ("docker.socket", "docker.service"):
        enabled, active = unit_state(name, unit)
        assert enabled != "enabled" and active != "active", f"{name}: {unit} {enabled}/{active}"
    assert running_tasks_of(name, "moby", NEW_CTR) == [], name


def test_nodes_start_on_docker_with_containerd_2_beside_its_1_6(containerd2_lab):
    for name in lab.NODES:
        assert node_json(name)["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("docker://")
        # Docker's containerd 1.6 serves Docker under its own unit; 2.4.2 is first on PATH, not running.
        assert service_binary(name) == DOCKER_CONTAINERD
        assert CONTAINERD_BINARY_DROP_IN not in drop_ins(name)
        assert f"v{VERSION}" in lab.out(name, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin "
                                              "containerd --version")
        assert "1.6.20" in lab.out(name, f"{DOCKER_CONTAINERD} --version")
        assert lab.ssh(name, "command -v containerd-shim-runc-v2", check=False).stdout.strip() == \
            "/usr/bin/containerd-shim-runc-v2"  # 2's shim is beside it only: Docker's 1.6 finds its own
    wait_for("lab-cp1's kube-apiserver pod running in Docker",
             lambda: "kube-system/kube-apiserver-lab-cp1" in running_pods("lab-cp1", "docker"))


def test_up_moves_dockershim_nodes_to_containerd_2_and_keeps_them_there(containerd2_lab, tmp_path):
    units = {name: lab.out(name, f"sha256sum {CONTAINERD_UNIT}") for name in lab.NODES}
    deploy_workload()
    wait_workload_runs_on("docker")
    stack = containerd2_stack(containerd2_lab, tmp_path)
    preview = stack.preview(color="never")
    assert "switch from docker to containerd" in preview.stdout, preview.stdout
    text = up_log(stack)
    assert "evicting pod shimless-e2e/pause-" in text  # the drain went through eviction
    assert "verified Ready=True runtime=containerd://" in text
    nodes = stack.outputs()["nodes"].value
    for name, node in nodes.items():
        assert (node["runtimeBefore"], node["runtimeAfter"], node["runtimeVersion"]) == ("docker", "containerd",
                                                                                          VERSION), name
        assert CONTAINERD_BINARY_DROP_IN in node["files"], name
    for name in lab.NODES:
        assert_on_containerd_2(name)
        assert lab.out(name, f"sha256sum {CONTAINERD_UNIT}") == units[name]
    # The workload and the control plane's static pods run on containerd 2's CRI.
    wait_workload_runs_on("containerd")
    wait_for("lab-cp1's kube-apiserver pod running on containerd",
             lambda: "kube-system/kube-apiserver-lab-cp1" in running_pods("lab-cp1", "containerd"))
    assert kubectl("-n", WORKLOAD, "get", "deployment", "pause", "-o",
                   "jsonpath={.status.availableReplicas}").strip() == "2"

    # A second up changes nothing and restarts nothing; preview agrees.
    pids = {name: lab.out(name, "systemctl show -p MainPID --value containerd.service") for name in lab.NODES}
    assert lab.changes(stack.up(color="never").summary.resource_changes) == {}
    stack.preview(color="never", expect_no_changes=True)
    assert {name: lab.out(name, "systemctl show -p MainPID --value containerd.service") for name in lab.NODES} == pids
    code, report = drift_json()
    assert code == 0, report

    # Drift on the version 4 config: someone pins another sandbox image on lab-w1.
    lab.out("lab-w1", f"sed -i 's|^  sandbox = .*|  sandbox = \"registry.k8s.io/pause:3.9\"|' {CONTAINERD_CONFIG}")
    assert "pause:3.9" in lab.out("lab-w1", f"cat {CONTAINERD_CONFIG}")
    code, report = drift_json()
    assert code == 2, report
    assert [d["fact"] for d in report["nodes"]["lab-w1"]["drift"]] == [CONTAINERD_CONFIG]
    assert report["nodes"]["lab-cp1"]["status"] == report["nodes"]["lab-w2"]["status"] == "clean"
    said, changed = changed_urns(stack)
    assert f"drift: {CONTAINERD_CONFIG}: differs" in said, said
    assert changed and all("::shimless-lab-w1-" in urn or urn.endswith("::shimless-lab-w1") for urn in changed), \
        changed
    up_log(stack)
    assert "pause:3.9" not in lab.out("lab-w1", f"cat {CONTAINERD_CONFIG}")
    assert_on_containerd_2("lab-w1")
    stack.preview(color="never", expect_no_changes=True)
    assert drift_json()[0] == 0


def test_node_never_ready_on_containerd_2_is_rolled_back_to_docker_on_its_1_6(containerd2_lab, tmp_path):
    lab.script("lab-reset.sh", "lab-w1", env=LAB_ENV)
    wait_ready("lab-w1")
    before = lab.out("lab-w1", f"sha256sum {CONTAINERD_CONFIG} {CONTAINERD_UNIT}")
    with never_ready("lab-w1"):
        stack = containerd2_stack(containerd2_lab, tmp_path, ("lab-w1",), healthTimeoutSeconds=30)
        up_rolled_back_at_verify(stack, "lab-w1", 30)
        wait_for("lab-w1 Ready on docker:// after the rollback", lambda: ready_on("lab-w1", "docker"))
        # Docker is back on its containerd 1.6: shimless' drop-in is gone, the unit runs its own
        # binary on Docker's config again, both files as they were.
        assert CONTAINERD_BINARY_DROP_IN not in drop_ins("lab-w1")
        assert lab.ssh("lab-w1", f"test -e {CONTAINERD_BINARY_DROP_IN}", check=False).returncode != 0
        assert service_binary("lab-w1") == DOCKER_CONTAINERD
        assert lab.out("lab-w1", f"sha256sum {CONTAINERD_CONFIG} {CONTAINERD_UNIT}") == before
        for unit in ("docker.socket", "docker.service", "containerd.service"):
            assert unit_state("lab-w1", unit) == ("enabled", "active"), unit
        # What the kubelet started on containerd 2 was stopped; Docker runs the static pod again.
        assert running_tasks_of("lab-w1", "k8s.io", DOCKER_CTR) == []
        wait_for("the static pod running in Docker after the rollback",
                 lambda: "kube-system/e2e-static-lab-w1" in running_pods("lab-w1", "docker"), timeout=60)
    assert "--network-plugin=cni" in lab.out("lab-w1", "cat /var/lib/kubelet/kubeadm-flags.env")
    # The annotation follows a verified node only.
    assert node_json("lab-w1")["metadata"]["annotations"][CRI_SOCKET_ANNOTATION] == "/var/run/dockershim.sock"


def test_a_cri_dockerd_node_moves_to_containerd_2(containerd2_lab, tmp_path):
    lab.script("lab-reset.sh", "lab-w2", env=CRI_DOCKERD_ENV)
    wait_ready("lab-w2")
    node = node_json("lab-w2")
    assert node["status"]["nodeInfo"]["kubeletVersion"] == CRI_DOCKERD_KUBELET
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("docker://"), node["status"]
    assert node["metadata"]["annotations"][CRI_SOCKET_ANNOTATION] == CRI_DOCKERD_SOCKET
    lab.out("lab-w2", f"cat > {STATIC_POD} <<'YAML'\n{STATIC_POD_YAML}YAML")
    try:
        deploy_workload()
        wait_for("the static pod and the DaemonSet's pod on lab-w2 running in Docker",
                 lambda: {"kube-system/e2e-static-lab-w2"} <= running_pods("lab-w2", "docker") and
                 any(pod.startswith(f"{WORKLOAD}/node-agent-") for pod in running_pods("lab-w2", "docker")))
        stack = containerd2_stack(containerd2_lab, tmp_path, ("lab-w2",))
        text = up_log(stack)
        assert "verified Ready=True runtime=containerd://" in text
        assert stack.outputs()["nodes"].value["lab-w2"]["runtimeBefore"] == "cri-dockerd"
        assert_moved_off_cri_dockerd("lab-w2", "containerd")
        assert_on_containerd_2("lab-w2")
        wait_for("the static pod and the DaemonSet's pod on lab-w2 running on containerd 2",
                 lambda: {"kube-system/e2e-static-lab-w2"} <= running_pods("lab-w2", "containerd") and
                 any(pod.startswith(f"{WORKLOAD}/node-agent-") for pod in running_pods("lab-w2", "containerd")))
        agents = [pod for pod in json.loads(kubectl("-n", WORKLOAD, "get", "pods", "-o", "json"))["items"]
                  if pod["spec"].get("nodeName") == "lab-w2" and pod["metadata"]["name"].startswith("node-agent-")]
        assert agents and all(s["containerID"].startswith("containerd://")
                              for pod in agents for s in pod["status"].get("containerStatuses") or []), agents
        stack.preview(color="never", expect_no_changes=True)
    finally:
        lab.ssh("lab-w2", f"rm -f {STATIC_POD}", check=False)
