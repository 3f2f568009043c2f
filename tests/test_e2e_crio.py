"""End to end on the lab with CRI-O as the target (issue 4, point 4).

Debian bookworm has no cri-o package: `LAB_CRIO=1 bash lab/lab-up.sh` builds
crio v1.27.1 from the Go module proxy (lab/crio/build.sh, cached) and gives the
nodes crio + pinns, Debian's conmon, crun and skopeo, a lab crio.conf (vfs
storage, runc through the lab's wrapper) and a crio.service that is installed
but not enabled. The real kubelet runs standalone with static pods whose image
is in Docker only: the nodes are still in the
Docker era. The program then migrates them with `target: {runtime: cri-o,
source: preinstalled}` through the real Pulumi engine (Automation API).

At the end the module gives the other modules their plain lab back (lab-up and
lab-reset without LAB_CRIO: nodes without any CRI-O)."""
from __future__ import annotations

import copy
import json
import os

import pytest

from tests import lab

pytestmark = pytest.mark.e2e

CRIO_SOCK = "unix:///var/run/crio/crio.sock"
CRIO_DROP_IN = "/etc/crio/crio.conf.d/20-shimless.conf"
CRIO_REGISTRIES = "/etc/containers/registries.conf.d/20-shimless.conf"
MANAGED_FILES = (CRIO_DROP_IN, CRIO_REGISTRIES, "/etc/crictl.yaml",
                 "/var/lib/kubelet/kubeadm-flags.env", "/var/lib/kubelet/config.yaml")


def _lab(script: str, crio: bool, *nodes: str) -> None:
    env = dict(os.environ)
    env.pop("LAB_CRIO", None)
    env.pop("LAB_CLUSTER", None)
    if crio:
        env["LAB_CRIO"] = "1"
    lab.script(script, *nodes, env=env)


@pytest.fixture(scope="module")
def crio_lab():
    _lab("lab-up.sh", crio=True)
    _lab("lab-reset.sh", crio=True)
    config = lab.require_lab()
    assert config["config"]["shimless:cluster"] == {"mode": "none"}
    yield config
    # the plain lab again for the other modules: no CRI-O in the nodes
    _lab("lab-up.sh", crio=False)
    _lab("lab-reset.sh", crio=False)


@pytest.fixture(scope="module")
def stack(crio_lab, tmp_path_factory):
    config = copy.deepcopy(crio_lab)
    config["config"]["shimless:target"] = {"runtime": "cri-o", "source": "preinstalled"}
    work = lab.project_copy(tmp_path_factory.mktemp("crio"), config)
    return lab.engine_stack(work, tmp_path_factory.mktemp("state"))



def test_nodes_start_in_the_docker_era_with_crio_installed_but_off(crio_lab):
    for node in lab.NODES:
        assert "1.27.1" in lab.out(node, "crio --version")
        lab.out(node, "command -v conmon crun pinns")
        assert lab.ssh(node, "systemctl is-enabled crio.service", check=False).stdout.strip() == "disabled"
        assert lab.ssh(node, "systemctl is-active crio.service", check=False).stdout.strip() != "active"
        status = lab.kubelet(node)
        assert status["mode"] == "dockershim" and status["runtime"] == "docker" and status["ready"] is True, status
        # the pause image is Docker's only: nothing in CRI-O's storage yet
        assert lab.ssh(node, "ls /var/lib/containers/storage/vfs-images 2>/dev/null | grep -q .", check=False).returncode != 0


def test_up_migrates_every_node_to_crio(stack):
    preview = stack.preview(color="never")
    assert "switch from docker to cri-o" in preview.stdout
    result = stack.up(color="never", on_output=print)
    assert result.summary.result == "succeeded"
    for node in lab.NODES:
        info = json.loads(lab.out(node, f"crictl --runtime-endpoint {CRIO_SOCK} info"))
        assert info["status"]["conditions"][0]["type"] == "RuntimeReady"
        assert info["status"]["conditions"][0]["status"] is True
        assert "cri-o" in lab.out(node, f"crictl --runtime-endpoint {CRIO_SOCK} version")
        drop_in = lab.out(node, f"cat {CRIO_DROP_IN}")
        assert 'cgroup_manager = "cgroupfs"' in drop_in  # the lab kubelet's cgroupDriver
        assert 'conmon_cgroup = "pod"' in drop_in
        assert 'pause_image = "registry.k8s.io/pause:3.6"' in drop_in
        assert "mirror.lab.invalid" in lab.out(node, f"cat {CRIO_REGISTRIES}")
        flags = lab.out(node, "cat /var/lib/kubelet/kubeadm-flags.env")
        assert "--container-runtime=remote" in flags
        assert f"--container-runtime-endpoint={CRIO_SOCK}" in flags
        assert "--network-plugin" not in flags and "--pod-infra-container-image" not in flags
        assert lab.out(node, "systemctl is-enabled crio.service") == "enabled"
        assert lab.out(node, "systemctl is-active crio.service") == "active"
        for unit in ("docker.service", "docker.socket"):
            assert lab.ssh(node, f"systemctl is-enabled {unit}", check=False).stdout.strip() != "enabled"
            assert lab.ssh(node, f"systemctl is-active {unit}", check=False).stdout.strip() != "active"
        status = lab.kubelet(node)
        assert status["mode"] == "remote" and status["runtime"] == "cri-o" and status["ready"] is True, status
        assert status["endpoint"] == CRIO_SOCK and f"lab-static-{node}" in status["pods"]
        images = json.loads(lab.out(node, f"crictl --runtime-endpoint {CRIO_SOCK} images -o json"))
        tags = {tag for image in images["images"] for tag in image["repoTags"]}
        assert {"registry.k8s.io/pause:3.6", "k8s.gcr.io/pause:3.6", lab.WORKLOAD_IMAGE} <= tags, tags
    nodes = stack.outputs()["nodes"].value
    assert set(nodes) == set(lab.NODES)
    assert all(n["runtimeBefore"] == "docker" and n["runtimeAfter"] == "cri-o" for n in nodes.values())
    assert all(n["result"].startswith("switched runtime=cri-o") for n in nodes.values())
    assert all(n["imagesCarried"]["images"] == 2 for n in nodes.values()), nodes



def test_second_preview_and_up_change_nothing(stack):
    before = {node: lab.fingerprint(node, MANAGED_FILES) for node in lab.NODES}
    assert lab.changes(stack.preview(color="never").change_summary) == {}
    result = stack.up(color="never")
    assert lab.changes(result.summary.resource_changes) == {}
    assert {node: lab.fingerprint(node, MANAGED_FILES) for node in lab.NODES} == before


def test_docker_default_oci_runtime_becomes_crios_default_and_runs_the_pods(crio_lab, tmp_path):
    _lab("lab-reset.sh", True, "lab-w2")
    lab.install_oci_recorder("lab-w2")
    config = copy.deepcopy(crio_lab)
    config["config"]["shimless:target"] = {"runtime": "cri-o", "source": "preinstalled"}
    config["config"]["shimless:nodes"] = [n for n in config["config"]["shimless:nodes"] if n["name"] == "lab-w2"]
    stack = lab.engine_stack(lab.project_copy(tmp_path, config), tmp_path / "state")
    assert f"{lab.OCI_RECORDER_NAME} (default)" in stack.preview(color="never").stdout
    assert stack.up(color="never").summary.result == "succeeded"
    crio = lab.out("lab-w2", "crio config 2>/dev/null")
    assert f'default_runtime = "{lab.OCI_RECORDER_NAME}"' in crio
    assert f"[crio.runtime.runtimes.{lab.OCI_RECORDER_NAME}]" in crio and f'runtime_path = "{lab.OCI_RECORDER}"' in crio
    status = lab.kubelet("lab-w2")
    assert status["runtime"] == "cri-o" and status["ready"] is True, status
    assert "drop_infra_ctr = true" in crio  # host-network pods run no infra container
    ids, seen = lab.through_oci_recorder("lab-w2", CRIO_SOCK, sandboxes=False)
    assert ids and seen == ids, (ids, seen)
    assert lab.changes(stack.preview(color="never").change_summary) == {}



def test_too_little_space_for_the_images_blocks_the_node_before_anything_changes(crio_lab, tmp_path):
    """A node whose CRI-O storage lives on a small partition (here a 64 MiB
    tmpfs on /var/lib/containers, as a site may mount one) cannot take Docker's
    images: pre-stage stops that node with the space it found, while it still
    serves on Docker, and nothing of the switch has happened."""
    node = "lab-w1"
    _lab("lab-reset.sh", True, node)
    lab.ssh(node, "mkdir -p /var/lib/containers && mount -t tmpfs -o size=64m shimless-e2e-small /var/lib/containers")
    try:
        config = copy.deepcopy(crio_lab)
        config["config"]["shimless:target"] = {"runtime": "cri-o", "source": "preinstalled"}
        config["config"]["shimless:nodes"] = [n for n in config["config"]["shimless:nodes"] if n["name"] == node]
        stack = lab.engine_stack(lab.project_copy(tmp_path, config), tmp_path / "state")
        flags_before = lab.out(node, "cat /var/lib/kubelet/kubeadm-flags.env")
        with pytest.raises(Exception) as failed:
            stack.up(color="never")
        message = str(failed.value)
        assert f"shimless[{node}]" in message and "prestage" in message, message[-3000:]
        assert "not enough space for Docker's images in /var/lib/containers" in message, message[-3000:]
        assert "MiB free" in message
        # still fully on Docker: flags, units, the kubelet's own pods
        assert lab.out(node, "cat /var/lib/kubelet/kubeadm-flags.env") == flags_before
        assert lab.ssh(node, "systemctl is-enabled crio.service", check=False).stdout.strip() == "disabled"
        assert lab.out(node, "systemctl is-active docker.service") == "active"
        status = lab.kubelet(node)
        assert status["runtime"] == "docker" and status["ready"] is True, status
        # nothing was copied into the small store: no layer unpacked (the image
        # lookups before the check may create the store's empty index and locks)
        assert lab.ssh(node, "ls -A /var/lib/containers/storage/vfs/dir 2>/dev/null | grep -q .",
                       check=False).returncode != 0
        # with room again (the partition gone), the same stack switches the node
        lab.ssh(node, "umount /var/lib/containers")
        assert stack.up(color="never").summary.result == "succeeded"
        assert lab.kubelet(node)["runtime"] == "cri-o"
    finally:
        lab.ssh(node, "! mountpoint -q /var/lib/containers || umount /var/lib/containers", check=False)
