"""Typed, immutable settings shared by the pure modules and the components.

Nothing here imports Pulumi: the parser in `config.py` builds these from raw
stack config, and everything downstream (rendering, planning) reads them.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

RUNTIMES = ("containerd", "cri-o")
INSTALL_SOURCES = ("package", "distro", "preinstalled")
# Which of Docker's images pre-stage carries into the target runtime's store:
# those of the node's pods (and the sandbox image), every tagged one, or none.
IMAGE_CARRY = ("pods", "all", "none")
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


# --- field validators ---------------------------------------------------------
# One check per kind of value, used by the stack config (config.py), by the
# daemon.json translation and by rendering alike, so that check-config, preview
# and `render` accept and refuse the same values with the same words. Each
# raises ValueError with what is wrong, and returns the value as it is used.

_DNS_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*", re.ASCII)
_IMAGE = re.compile(r"[a-z0-9]+(?:[._/:@-][A-Za-z0-9_.-]+)*", re.ASCII)
_URL_PATH = re.compile(r"(?:/[A-Za-z0-9._~%!$&()*+,;=:@-]*)*", re.ASCII)


def check_host(text: object) -> str:
    """An IP address or a DNS host name."""
    if isinstance(text, str):
        try:
            ipaddress.ip_address(text)
            return text
        except ValueError:
            if len(text) <= 253 and _DNS_NAME.fullmatch(text):
                return text
    raise ValueError(f"is not an IP address or host name: {text!r}")


def check_registry_host(text: object) -> str:
    """A registry as containerd names its certs.d directory: host[:port], host a
    DNS name or an IP address ([...] for IPv6), port 1-65535."""
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::([0-9]{1,5}))?", text, re.ASCII) \
        if isinstance(text, str) else None
    if match:
        host, port = match.groups()
        try:
            if host.startswith("["):
                ipaddress.IPv6Address(host[1:-1])
            else:
                check_host(host)
            if port is None or 1 <= int(port) <= 65535:
                return text
        except ValueError:
            pass
    raise ValueError(f"is not a registry host[:port]: {text!r}")


def check_mirror_endpoint(text: object) -> str:
    """A mirror URL: http(s)://host[:port][/path], no credentials, query or
    fragment (they would be written to the node and kept in the state in plain
    text). Returned without a trailing slash."""
    if not isinstance(text, str) or not text.isascii() or any(c.isspace() or c in "\"'\\" for c in text):
        raise ValueError(f"is not an http(s) URL: {text!r}")
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None:
        # Not echoed: the value is a credential.
        raise ValueError("must not carry credentials (user:password@); give the node registry auth instead")
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    host = parts.hostname or ""
    host_ok = _is_ipv6(host) if parts.netloc.startswith("[") else _is_host(host)
    if not text.startswith(("http://", "https://")) or not port_ok or not host_ok or "?" in text \
            or "#" in text or not _URL_PATH.fullmatch(parts.path):
        raise ValueError(f"is not an http(s) URL: {text!r}")
    return text.rstrip("/")


def check_image(text: object) -> str:
    """An image reference like registry.k8s.io/pause:3.9."""
    if isinstance(text, str) and _IMAGE.fullmatch(text):
        return text
    raise ValueError(f"is not an image reference: {text!r}")


def _is_host(text: str) -> bool:
    try:
        check_host(text)
    except ValueError:
        return False
    return ":" not in text  # a bare IPv6 address needs brackets in a URL


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class RegistryMirror:
    """Pull-through mirrors for one registry, in preference order."""

    registry: str  # e.g. "docker.io"
    endpoints: tuple[str, ...]  # e.g. ("https://mirror.example",)


@dataclass(frozen=True)
class RuntimeTarget:
    """The runtime a node should end on, and how it is configured. Every
    field's default is in Pulumi.yaml's schema (shimless:target)."""

    runtime: str  # one of RUNTIMES
    version: str  # "" = whatever the install source provides
    source: str  # one of INSTALL_SOURCES
    pause_image: str
    cgroup_driver: str  # one of CGROUP_DRIVERS
    registry_mirrors: tuple[RegistryMirror, ...]
    insecure_registries: tuple[str, ...]
    cni_bin_dir: str
    cni_conf_dir: str
    images: str = "pods"  # one of IMAGE_CARRY; the default is Pulumi.yaml's

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


def node_from_dict(data: dict) -> NodeSpec:
    """A NodeSpec from `dataclasses.asdict(node)`, e.g. after a JSON round trip."""
    target = dict(data["target"])
    target["registry_mirrors"] = tuple(RegistryMirror(mirror["registry"], tuple(mirror["endpoints"]))
                                       for mirror in target.get("registry_mirrors", ()))
    target["insecure_registries"] = tuple(target.get("insecure_registries", ()))
    bastion = Bastion(**data["bastion"]) if data.get("bastion") else None
    return NodeSpec(**{**data, "target": RuntimeTarget(**target), "bastion": bastion})


# The policies and Settings have no defaults here: parse_settings fills every
# field from the stack, merged over Pulumi.yaml's schema defaults.


@dataclass(frozen=True)
class DockerPolicy:
    mode: str  # one of DOCKER_POLICIES
    remove_data: bool  # purge only: also remove Docker's data-root


@dataclass(frozen=True)
class DrainPolicy:
    timeout_seconds: int
    grace_period_seconds: int  # -1: each pod's own terminationGracePeriodSeconds
    delete_emptydir_data: bool
    force: bool
    retries: int


@dataclass(frozen=True)
class RolloutPolicy:
    canary: int
    max_unavailable: int
    health_timeout_seconds: int
    allow_docker_socket_workloads: bool
    prestage_ahead: int  # batches whose pre-stage may run ahead of the batch being switched; 0: none
    prestage_parallel: int  # pre-stages in flight at most, when they run ahead


@dataclass(frozen=True)
class Settings:
    """Everything the program needs from one stack's config, validated."""

    nodes: tuple[NodeSpec, ...]
    cluster_mode: str  # one of CLUSTER_MODES
    docker: DockerPolicy
    drain: DrainPolicy
    rollout: RolloutPolicy

    @property
    def uses_cluster(self) -> bool:
        return self.cluster_mode != "none"
