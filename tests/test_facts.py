"""What the probe's output says about a node: which runtime the kubelet uses
(dockershim, cri-dockerd, containerd, CRI-O), and the units and sockets of
what a node leaves, decided once (components/manifest.py) for the scripts."""
from __future__ import annotations

import pytest

from components.facts import NodeFacts
from components.manifest import (
    CRI_DOCKERD_UNITS, DOCKER_UNITS, KNOWN_CRI_SOCKETS, KUBEADM_FLAGS, KUBELET_CONFIG, PROBED_UNITS, source_units,
)
from components.model import CRI_ENDPOINTS
from components.plan import plan_node


def facts(flags: str = "", config: str = "", cmdline: str = "", version: str = "Kubernetes v1.28.15",
          **units: str) -> NodeFacts:
    return NodeFacts(
        facts={"os.id": "debian", "kubelet.version": version, "kubelet.cmdline": cmdline,
               "containerd.version": "1.6.20",
               **{f"unit.{name.replace('_', '-')}": state for name, state in units.items()}},
        files={KUBEADM_FLAGS: f'KUBELET_KUBEADM_ARGS="{flags}"\n', KUBELET_CONFIG: config},
    )


@pytest.mark.parametrize("endpoint", [
    "unix:///var/run/cri-dockerd.sock", "unix:///run/cri-dockerd.sock", "/var/run/cri-dockerd.sock",
])
def test_cri_dockerd_is_detected_by_its_endpoint_flag(endpoint):
    node = facts(f"--container-runtime-endpoint={endpoint} --pod-infra-container-image=registry.k8s.io/pause:3.9")
    assert node.kubelet_endpoint == endpoint
    assert node.runtime == "cri-dockerd"


def test_cri_dockerd_is_detected_in_the_kubelet_configuration():
    node = facts("", "kind: KubeletConfiguration\ncontainerRuntimeEndpoint: unix:///run/cri-dockerd.sock\n")
    assert node.runtime == "cri-dockerd"


def test_cri_dockerd_on_another_socket_is_known_by_its_units():
    flags = "--container-runtime-endpoint=unix:///run/docker-cri/cri.sock"
    assert facts(flags).runtime == "unknown"
    assert facts(flags, **{"cri-docker.service": "enabled/active"}).runtime == "cri-dockerd"
    assert facts(flags, **{"cri-docker.socket": "enabled/active"}).runtime == "cri-dockerd"
    assert facts(flags, **{"cri-docker.service": "disabled/inactive"}).runtime == "unknown"


def test_the_last_of_repeated_endpoint_flags_counts_as_for_the_kubelet():
    repeated = " ".join(["--container-runtime-endpoint=unix:///var/run/cri-dockerd.sock"] * 3 +
                        [f"--container-runtime-endpoint={CRI_ENDPOINTS['containerd']}"])
    assert facts(repeated).runtime == "containerd"


def test_a_flag_wins_over_the_configuration_and_the_cmdline_counts_without_one():
    config = f"containerRuntimeEndpoint: {CRI_ENDPOINTS['cri-o']}\n"
    assert facts("--container-runtime-endpoint=unix:///run/cri-dockerd.sock", config).runtime == "cri-dockerd"
    assert facts("", config).runtime == "cri-o"
    cmdline = "/usr/bin/kubelet --container-runtime-endpoint unix:///run/cri-dockerd.sock"
    assert facts("", "", cmdline).runtime == "cri-dockerd"


@pytest.mark.parametrize("flags,version,expected", [
    ("--network-plugin=cni", "Kubernetes v1.23.17", "docker"),
    ("--container-runtime=remote --container-runtime-endpoint=unix:///var/run/dockershim.sock",
     "Kubernetes v1.23.17", "docker"),
    (f"--container-runtime-endpoint={CRI_ENDPOINTS['containerd']}", "Kubernetes v1.28.15", "containerd"),
    ("--container-runtime-endpoint=unix:///run/crio/crio.sock", "Kubernetes v1.28.15", "cri-o"),
    ("", "", "unknown"),
])
def test_other_runtimes(flags, version, expected):
    assert facts(flags, version=version).runtime == expected


def test_source_units_are_docker_cri_dockerd_and_the_other_runtime():
    assert source_units("containerd") == DOCKER_UNITS + CRI_DOCKERD_UNITS + ("crio.service",)
    assert source_units("cri-o") == DOCKER_UNITS + CRI_DOCKERD_UNITS + ("containerd.service",)
    # Sockets stop before their services, so socket activation cannot start one again.
    for runtime in CRI_ENDPOINTS:
        units = source_units(runtime)
        assert units.index("docker.socket") < units.index("docker.service")
        assert units.index("cri-docker.socket") < units.index("cri-docker.service")
        assert set(units) <= set(PROBED_UNITS)
    with pytest.raises(ValueError, match="unknown runtime"):
        source_units("docker")


def test_known_cri_sockets_hold_every_target_endpoint():
    paths = {endpoint.removeprefix("unix://").replace("/var/run/", "/run/") for endpoint in CRI_ENDPOINTS.values()}
    assert paths <= set(KNOWN_CRI_SOCKETS)
    assert "/run/cri-dockerd.sock" in KNOWN_CRI_SOCKETS


def test_the_plan_says_the_source_is_cri_dockerd(node):
    node_facts = facts("--container-runtime=remote --container-runtime-endpoint=unix:///var/run/cri-dockerd.sock",
                       "kind: KubeletConfiguration\ncgroupDriver: systemd\n", version="Kubernetes v1.26.15",
                       **{"cri-docker.service": "enabled/active", "cri-docker.socket": "enabled/active",
                          "docker.service": "enabled/active", "docker.socket": "enabled/active",
                          "kubelet.service": "enabled/active"})
    plan = plan_node(node, node_facts)
    assert plan.action == "migrate" and plan.runtime_before == "cri-dockerd"
    assert plan.describe().startswith(f"switch from cri-dockerd to {node.target.runtime}")
    assert plan.summary()["runtimeBefore"] == "cri-dockerd"


def test_a_cri_dockerd_unit_left_on_is_drift(node):
    target = node.target
    migrated = facts(f"--container-runtime=remote --container-runtime-endpoint={target.cri_endpoint}",
                     "kind: KubeletConfiguration\ncgroupDriver: systemd\n", version="Kubernetes v1.26.15",
                     **{"containerd.service": "enabled/active", "crio.service": "enabled/active",
                        "kubelet.service": "enabled/active", "cri-docker.socket": "enabled/active"})
    drift = {item.fact for item in plan_node(node, migrated).drift}
    assert {"cri-docker.socket enabled", "cri-docker.socket active"} <= drift
