"""Typed, immutable settings shared by the pure modules and the components.

Nothing here imports Pulumi: the parser in `config.py` builds these from raw
stack config, and everything downstream (rendering, planning) reads them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

RUNTIMES = ("containerd", "cri-o")
INSTALL_SOURCES = ("package", "distro", "preinstalled")
CGROUP_DRIVERS = ("auto", "systemd", "cgroupfs")
ROLES = ("control-plane", "worker")
DOCKER_POLICIES = ("keep", "purge")
CLUSTER_MODES = ("kubeconfig", "none")

# What shimless records on the Node object, and how the node reports its runtime.
CRI_SOCKET_ANNOTATION = "kubeadm.alpha.kubernetes.io/cri-socket"
RUNTIME_LABEL = "shimless.io/container-runtime"
TOKEN_ANNOTATION = "shimless.io/token"
RUNTIME_VERSION_PREFIX = {"containerd": "containerd://", "cri-o": "cri-o://"}

CRI_ENDPOINTS = {
    "containerd": "unix:///run/containerd/containerd.sock",
    "cri-o": "unix:///var/run/crio/crio.sock",
}


@dataclass(frozen=True)
class RegistryMirror:
    """Pull-through mirrors for one registry, in preference order."""

    registry: str  # e.g. "docker.io"
    endpoints: tuple[str, ...]  # e.g. ("https://mirror.example",)


@dataclass(frozen=True)
class RuntimeTarget:
    """The runtime a node should end on, and how it is configured."""

    runtime: str = "containerd"  # one of RUNTIMES
    version: str = ""  # "" = whatever the install source provides
    source: str = "distro"  # one of INSTALL_SOURCES
    pause_image: str = "registry.k8s.io/pause:3.6"
    cgroup_driver: str = "auto"  # one of CGROUP_DRIVERS
    registry_mirrors: tuple[RegistryMirror, ...] = ()
    insecure_registries: tuple[str, ...] = ()
    cni_bin_dir: str = "/opt/cni/bin"
    cni_conf_dir: str = "/etc/cni/net.d"

    @property
    def cri_endpoint(self) -> str:
        return CRI_ENDPOINTS[self.runtime]


@dataclass(frozen=True)
class Bastion:
    host: str
    port: int = 22
    user: str = "root"
    host_key: str = ""


@dataclass(frozen=True)
class NodeSpec:
    """One Kubernetes node and how to reach it."""

    name: str  # the Kubernetes node name
    host: str
    port: int
    user: str
    role: str  # one of ROLES
    host_key: str  # "ssh-ed25519 AAAA..."; "" only when the stack allows unpinned keys
    target: RuntimeTarget
    has_own_private_key: bool = False  # the key itself stays in the secret config
    bastion: Bastion | None = None

    @property
    def is_control_plane(self) -> bool:
        return self.role == "control-plane"


@dataclass(frozen=True)
class DockerPolicy:
    mode: str = "keep"  # one of DOCKER_POLICIES
    remove_data: bool = False  # purge only: also remove /var/lib/docker


@dataclass(frozen=True)
class DrainPolicy:
    timeout_seconds: int = 300
    grace_period_seconds: int = -1  # -1: each pod's own terminationGracePeriodSeconds
    delete_emptydir_data: bool = True
    force: bool = False
    retries: int = 3


@dataclass(frozen=True)
class RolloutPolicy:
    canary: int = 1
    max_unavailable: int = 1
    health_timeout_seconds: int = 300
    allow_docker_socket_workloads: bool = False


@dataclass(frozen=True)
class Settings:
    """Everything the program needs from one stack's config, validated."""

    nodes: tuple[NodeSpec, ...]
    cluster_mode: str = "kubeconfig"  # one of CLUSTER_MODES
    docker: DockerPolicy = field(default_factory=DockerPolicy)
    drain: DrainPolicy = field(default_factory=DrainPolicy)
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)

    @property
    def uses_cluster(self) -> bool:
        return self.cluster_mode != "none"
