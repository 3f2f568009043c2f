"""Translate Docker's /etc/docker/daemon.json into where each setting lives after
the move to containerd or CRI-O, and account for every key that has no new home.

Pure: no Pulumi, no I/O. `render.py` turns the translation into files and the
kubelet settings go through `kubelet_flags.rewrite_kubelet_config`.
"""
from __future__ import annotations

import ipaddress
import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from components.model import RUNTIMES, RegistryMirror, check_mirror_endpoint, check_registry_host


class DaemonJsonError(ValueError):
    """daemon.json is not something Docker itself would accept."""


# Where files land on the node; render.py writes to the same paths.
CONTAINERD_CERTS_DIR = "/etc/containerd/certs.d"
CONTAINERD_CONFIG = "/etc/containerd/config.toml"
CRIO_DROP_IN = "/etc/crio/crio.conf.d/20-shimless.conf"
CRIO_REGISTRIES_DROP_IN = "/etc/containers/registries.conf.d/20-shimless.conf"
PROXY_DROP_INS = {
    "containerd": "/etc/systemd/system/containerd.service.d/http-proxy.conf",
    "cri-o": "/etc/systemd/system/crio.service.d/http-proxy.conf",
}
PROXY_ENV_NAMES = {
    "http-proxy": "HTTP_PROXY",
    "https-proxy": "HTTPS_PROXY",
    "no-proxy": "NO_PROXY",
}
DEFAULT_ROOTS = {"containerd": "/var/lib/containerd", "cri-o": "/var/lib/containers/storage"}
DOCKER_DEFAULT_DATA_ROOT = "/var/lib/docker"

# log-drivers whose files the kubelet's own rotation replaces.
_FILE_LOG_DRIVERS = ("json-file", "local")

_NETWORK_REASON = "pod networking is set up by the CNI plugin, not by the container runtime"
_DNS_REASON = "pod DNS comes from the kubelet (clusterDNS, resolvConf), not from the runtime"
_TLS_REASON = "the CRI socket is local-only; there is no remote TCP/TLS API to configure"

# Keys with a known reason for not being carried; anything else gets a generic one.
_NOT_CARRIED_REASONS: dict[str, str] = {
    "live-restore": "not needed: containerd and CRI-O shims keep containers running while the "
    "runtime daemon restarts",
    "userns-remap": "no node-wide user-namespace remapping in CRI runtimes; use pod "
    "spec.hostUsers: false (Kubernetes user namespaces) instead",
    "storage-driver": "{runtime} uses its own storage (containerd snapshotter / "
    "containers-storage driver, overlay by default); images are pulled again, Docker's image "
    "store is not reused",
    "storage-opts": "storage options belong to Docker's graph driver; {runtime} storage "
    "defaults are kept (not rendered)",
    "iptables": _NETWORK_REASON,
    "ip-forward": _NETWORK_REASON,
    "ip-masq": _NETWORK_REASON,
    "ip": _NETWORK_REASON,
    "ip6tables": _NETWORK_REASON,
    "bridge": _NETWORK_REASON,
    "bip": _NETWORK_REASON,
    "fixed-cidr": _NETWORK_REASON,
    "fixed-cidr-v6": _NETWORK_REASON,
    "default-address-pools": _NETWORK_REASON,
    "default-gateway": _NETWORK_REASON,
    "default-gateway-v6": _NETWORK_REASON,
    "mtu": _NETWORK_REASON,
    "ipv6": _NETWORK_REASON,
    "icc": _NETWORK_REASON,
    "userland-proxy": _NETWORK_REASON,
    "userland-proxy-path": _NETWORK_REASON,
    "dns": _DNS_REASON,
    "dns-opts": _DNS_REASON,
    "dns-search": _DNS_REASON,
    "debug": "runtime log level is {runtime}'s own setting (containerd [debug] level, CRI-O "
    "log_level); not rendered",
    "log-level": "runtime log level is {runtime}'s own setting (containerd [debug] level, CRI-O "
    "log_level); not rendered",
    "hosts": "the kubelet reaches {runtime} on its fixed CRI socket; Docker API listeners go away",
    "tls": _TLS_REASON,
    "tlsverify": _TLS_REASON,
    "tlscacert": _TLS_REASON,
    "tlscert": _TLS_REASON,
    "tlskey": _TLS_REASON,
    "group": "socket group of the Docker API; the CRI socket is root-only",
    "max-concurrent-uploads": "the kubelet never pushes images",
    "max-download-attempts": "the kubelet retries pulls itself with back-off",
    "shutdown-timeout": "pod termination is governed by terminationGracePeriodSeconds and the "
    "kubelet's graceful node shutdown settings",
    "default-shm-size": "size /dev/shm per pod with an emptyDir volume (medium: Memory)",
    "cgroup-parent": "the kubelet places pods under its own cgroup hierarchy "
    "(cgroupRoot / cgroupsPerQOS)",
    "exec-root": "runtime state directory is {runtime}'s own; default kept",
    "containerd": "dockerd's connection to containerd; {runtime} is now talked to directly "
    "over CRI",
    "containerd-namespace": "Kubernetes containers live in containerd's k8s.io namespace",
    "seccomp-profile": "seccomp is chosen per pod (securityContext.seccompProfile); not "
    "rendered",
    "selinux-enabled": "SELinux support is {runtime}'s own setting; not rendered",
    "no-new-privileges": "set per container (securityContext.allowPrivilegeEscalation: false)",
    "init": "there is no init process injection in CRI runtimes; use shareProcessNamespace or "
    "an init in the image",
    "oom-score-adjust": "the kubelet sets OOM scores per QoS class",
    "features": "Docker feature flags (e.g. buildkit) do not apply to CRI runtimes",
    "experimental": "Docker experimental features do not apply to CRI runtimes",
    "metrics-addr": "Docker metrics endpoint goes away; scrape {runtime} metrics or the "
    "kubelet instead",
    "authorization-plugins": "Docker API authorization plugins have no CRI equivalent",
    "icc-disabled": _NETWORK_REASON,
    "labels": "Docker daemon labels are not exposed by CRI; use Kubernetes node labels",
    "registry-auth": "registry credentials come from imagePullSecrets or a kubelet credential "
    "provider",
}

# A RuntimeClass handler, which names a runtime handler, must be a DNS-1123 label.
_HANDLER_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)
# Docker's names for its built-in runc (daemon.json cannot redefine it), which
# containerd and CRI-O also have as their default handler.
_DOCKER_RUNC_NAMES = ("runc", "io.containerd.runc.v2")
# The containerd shim that runs any runc-compatible binary (options.BinaryName).
RUNC_SHIM = "io.containerd.runc.v2"
_RUNTIME_CLASS_NOTE = ("a pod that needs a runtime other than the default selects it with a RuntimeClass "
                       "whose handler is the runtime's name")

# Docker's human sizes for json-file max-size are binary (RAMInBytes): k = 1024.
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:[iI]?[bB])?$", re.ASCII)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_KUBE_SUFFIX = {"k": "Ki", "m": "Mi", "g": "Gi", "t": "Ti"}


@dataclass(frozen=True)
class OciRuntime:
    """An OCI runtime daemon.json registers, carried as a runtime handler of the same name."""

    name: str
    path: str  # daemon.json's "path", as written
    binary: str  # the absolute path on the node when the probe resolved it, else `path`


@dataclass(frozen=True)
class DaemonTranslation:
    """What daemon.json becomes on the target runtime, plus an account of every key."""

    runtime: str
    registry_mirrors: tuple[RegistryMirror, ...] = ()
    insecure_registries: tuple[str, ...] = ()
    cgroup_driver: str | None = None  # only when exec-opts set it explicitly
    docker_cgroup_driver: str = "cgroupfs"  # what Docker actually used
    data_root: str | None = None  # Docker's data-root, as written
    runtime_root: str | None = None  # where the runtime's root goes; None = runtime default
    default_ulimits: dict = field(default_factory=dict, hash=False)
    proxies: dict = field(default_factory=dict, hash=False)
    kubelet_settings: dict = field(default_factory=dict, hash=False)
    oci_runtimes: tuple[OciRuntime, ...] = ()  # sorted by name
    default_runtime: str | None = None  # a handler of oci_runtimes; None = runc stays the default
    max_concurrent_downloads: int | None = None
    carried: tuple[tuple[str, str], ...] = ()
    not_carried: tuple[tuple[str, str], ...] = ()
    # Why the node must not be switched: a runtime pods would need and could not
    # get there (its binary missing, its name not a handler name). Keyed like carried.
    blocking: tuple[tuple[str, str], ...] = ()

    def report(self) -> dict:
        """A JSON-able account of the translation, for operators and the CLI."""
        report = {
            "runtime": self.runtime,
            "docker_cgroup_driver": self.docker_cgroup_driver,
            "carried": [{"key": key, "to": to} for key, to in self.carried],
            "not_carried": [{"key": key, "reason": reason} for key, reason in self.not_carried],
            "kubelet_settings": dict(sorted(self.kubelet_settings.items())),
        }
        if self.oci_runtimes or self.default_runtime:
            report["oci_runtimes"] = {
                "handlers": {runtime.name: runtime.binary for runtime in self.oci_runtimes},
                "default": self.default_runtime or "runc",
                "note": _RUNTIME_CLASS_NOTE,
            }
        if self.blocking:
            report["blocking"] = [{"key": key, "reason": reason} for key, reason in self.blocking]
        return report

    def runtimes_summary(self) -> str:
        """One line for preview: the runtime handlers carried and the default; "" without any."""
        if not self.oci_runtimes:
            return ""
        names = ", ".join(runtime.name + (" (default)" if runtime.name == self.default_runtime else "")
                          for runtime in self.oci_runtimes)
        return f"OCI runtimes from daemon.json carried as {self.runtime} runtime handlers: {names}; " \
            + _RUNTIME_CLASS_NOTE


def docker_size_to_quantity(size: str) -> str:
    """Docker's "50m" / "1g" / "100k" / "1048576" as a kubelet quantity ("50Mi", ...)."""
    match = _SIZE_RE.fullmatch(size.strip())
    if not match:
        raise ValueError(f"{size!r} is not a Docker size (like 10m, 1g, 100k)")
    number, unit = match.group(1), match.group(2).lower()
    if "." not in number:
        value = int(number)
        if value <= 0:
            raise ValueError(f"{size!r} must be positive")
        return f"{value}{_KUBE_SUFFIX[unit]}" if unit else str(value)
    total = float(number) * _SIZE_UNITS[unit]
    if total < 1:
        raise ValueError(f"{size!r} must be at least one byte")
    total_bytes = int(total)
    # A fractional size: express it in the largest binary unit that divides it exactly.
    for suffix, scale in (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if total_bytes % scale == 0:
            return f"{total_bytes // scale}{suffix}"
    return str(total_bytes)


def runtime_root_for(data_root: str, runtime: str) -> str | None:
    """Where the runtime's storage goes, given Docker's data-root (None = keep the default).

    The runtime gets a sibling of Docker's directory on the same disk
    ("/data/docker" -> "/data/containerd"), or a subdirectory when data-root is
    not named "docker" (a mount point, say), so Docker's own tree stays separable.
    """
    normalized = posixpath.normpath(data_root)
    if posixpath.basename(normalized) == "docker":
        base = posixpath.dirname(normalized)
    else:
        base = normalized
    leaf = "containerd" if runtime == "containerd" else "containers/storage"
    root = posixpath.join(base, leaf)
    return None if root == DEFAULT_ROOTS[runtime] else root


def _is_cidr(entry: str) -> bool:
    if "/" not in entry:
        return False
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


def _string_list(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DaemonJsonError(f"daemon.json: {key!r} must be a list of strings")
    return value


def _string_map(value: Any, key: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise DaemonJsonError(f"daemon.json: {key!r} must be an object of string values")
    return value


def _registry_targets(runtime: str, registry: str) -> str:
    if runtime == "containerd":
        return f"{CONTAINERD_CERTS_DIR}/{registry}/hosts.toml"
    return CRIO_REGISTRIES_DROP_IN


class _Translation:
    """A translation in progress: each handler adds what its key becomes, and
    accounts for the key (carried, or not carried and why) exactly once."""

    def __init__(self, runtime: str, runtime_paths: Mapping[str, str] | None) -> None:
        self.runtime = runtime
        self.runtime_paths = runtime_paths
        self.carried: dict[str, str] = {}
        self.not_carried: dict[str, str] = {}
        self.blocking: dict[str, str] = {}
        self.mirrors: tuple[RegistryMirror, ...] = ()
        self.insecure: list[str] = []
        self.cgroup_driver: str | None = None
        self.data_root: str | None = None
        self.runtime_root: str | None = None
        self.default_ulimits: dict = {}
        self.proxies: dict[str, str] = {}
        self.log_driver = "json-file"
        self.kubelet_settings: dict = {}
        self.oci_runtimes: list[OciRuntime] = []
        self.unusable_runtimes: dict[str, str] = {}  # name -> why it is not a handler
        self.default_runtime: str | None = None
        self.max_concurrent_downloads: int | None = None

    def carry(self, key: str, to: str) -> None:
        self.carried[key] = to

    def drop(self, key: str, reason: str) -> None:
        self.not_carried[key] = reason.replace("{runtime}", self.runtime)

    def block(self, key: str, reason: str) -> None:
        self.blocking[key] = reason.replace("{runtime}", self.runtime)

    def resolve(self, path: str) -> tuple[str, str]:
        """The binary a runtime's path names on the node, and why it cannot run there ("" if it can).

        `runtime_paths` is the probe's answer (path as written -> absolute path
        on the node, "" = not there); None means no node was asked (render from
        files), and the path is kept as written."""
        if "/" in path and not path.startswith("/"):
            return path, f"path {path!r} is relative; the node's runtimes need an absolute path or a name on PATH"
        if self.runtime_paths is None:
            return path, ""
        if path not in self.runtime_paths:
            return path, f"{path} was not checked on the node (the probe did not report it)"
        found = self.runtime_paths[path]
        if not found:
            where = "does not exist or is not executable" if path.startswith("/") else "is not on PATH"
            return path, f"{path} {where} on the node; pods that need this runtime could not start"
        return found, ""

    def result(self) -> DaemonTranslation:
        return DaemonTranslation(
            runtime=self.runtime,
            registry_mirrors=self.mirrors,
            insecure_registries=tuple(sorted(self.insecure)),
            cgroup_driver=self.cgroup_driver,
            docker_cgroup_driver=self.cgroup_driver or "cgroupfs",
            data_root=self.data_root,
            runtime_root=self.runtime_root,
            default_ulimits=self.default_ulimits,
            proxies=dict(sorted(self.proxies.items())),
            kubelet_settings=dict(sorted(self.kubelet_settings.items())),
            oci_runtimes=tuple(sorted(self.oci_runtimes, key=lambda runtime: runtime.name)),
            default_runtime=self.default_runtime,
            max_concurrent_downloads=self.max_concurrent_downloads,
            carried=tuple(sorted(self.carried.items())),
            not_carried=tuple(sorted(self.not_carried.items())),
            blocking=tuple(sorted(self.blocking.items())),
        )


# Docker's own keys nest three levels at most; anything far deeper is not a daemon.json.
MAX_DEPTH = 32


def load_daemon_json(text: str) -> dict:
    """daemon.json text as a dict, or DaemonJsonError in one line: invalid JSON,
    not an object, nested deeper than MAX_DEPTH, or holding a lone surrogate
    (a "\\ud800" escape, which no file or config can carry as text)."""
    try:
        daemon = json.loads(text)
    except json.JSONDecodeError as err:
        raise DaemonJsonError(f"daemon.json: invalid JSON: {err}") from None
    except RecursionError:
        raise DaemonJsonError(f"daemon.json: nested more than {MAX_DEPTH} levels deep") from None
    if not isinstance(daemon, dict):
        raise DaemonJsonError(f"daemon.json must be a JSON object, not {type(daemon).__name__}")
    stack: list[tuple[str, Any, int]] = [("", daemon, 1)]
    while stack:
        where, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise DaemonJsonError(f"daemon.json: nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            for key, item in value.items():
                stack.append((_surrogate_free(f"{where}.{key}" if where else key, where), item, depth + 1))
        elif isinstance(value, list):
            stack.extend((f"{where}[{index}]", item, depth + 1) for index, item in enumerate(value))
        elif isinstance(value, str):
            _surrogate_free(value, where)
    return daemon


def _surrogate_free(text: str, where: str) -> str:
    if any("\ud800" <= char <= "\udfff" for char in text):
        place = f" in {ascii(where)}" if where else ""
        raise DaemonJsonError(f"daemon.json: a lone surrogate (\\ud800-\\udfff escape){place} is not text")
    return text


def translate_daemon_json(daemon: dict, runtime: str,
                          runtime_paths: Mapping[str, str] | None = None) -> DaemonTranslation:
    """Map each daemon.json key to its home on `runtime`, or say why it has none.

    `runtime_paths` is what the node's probe found for each OCI runtime's path
    (see _Translation.resolve); without it, runtime paths are kept as written."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
    if not isinstance(daemon, dict):
        raise DaemonJsonError(
            f"daemon.json must be a JSON object, not {type(daemon).__name__}"
        )
    translation = _Translation(runtime, runtime_paths)
    # In the table's order, not the file's: log-opts depends on log-driver.
    for key, handler in _HANDLERS.items():
        if key in daemon:
            handler(translation, key, daemon[key])
    for key in daemon:
        if key not in _HANDLERS:
            translation.drop(key, _NOT_CARRIED_REASONS.get(key, "no equivalent in {runtime}"))
    return translation.result()


def _registry_mirrors(translation: _Translation, key: str, value: Any) -> None:
    """Docker only ever uses its mirrors for Docker Hub."""
    endpoints: list[str] = []
    for url in _string_list(value, key):
        try:
            endpoint = check_mirror_endpoint(url.strip())
        except ValueError as err:
            raise DaemonJsonError(f"daemon.json: 'registry-mirrors' entry {err}") from None
        if endpoint not in endpoints:
            endpoints.append(endpoint)
    if endpoints:
        translation.mirrors = (RegistryMirror("docker.io", tuple(endpoints)),)
        translation.carry(key, _registry_targets(translation.runtime, "docker.io"))
    else:
        translation.drop(key, "empty list: nothing to carry")


def _insecure_registries(translation: _Translation, key: str, value: Any) -> None:
    cidrs: list[str] = []
    insecure = translation.insecure
    for entry in _string_list(value, key):
        entry = entry.strip()
        if _is_cidr(entry):
            cidrs.append(entry)
            continue
        # Docker accepts "host:port" and, leniently, a scheme prefix.
        host = re.sub(r"^https?://", "", entry).rstrip("/")
        try:
            check_registry_host(host)
        except ValueError:
            raise DaemonJsonError(
                f"daemon.json: 'insecure-registries' entry {entry!r} is not a "
                "registry host[:port] or CIDR"
            ) from None
        if host not in insecure:
            insecure.append(host)
    if insecure:
        if translation.runtime == "containerd":
            targets = ", ".join(_registry_targets(translation.runtime, host) for host in sorted(insecure))
        else:
            targets = f"{CRIO_REGISTRIES_DROP_IN} (insecure = true)"
        translation.carry(key, targets)
    elif not cidrs:
        translation.drop(key, "empty list: nothing to carry")
    for cidr in cidrs:
        translation.drop(
            f"insecure-registries[{cidr}]",
            "{runtime} has no insecure-by-CIDR setting; list each registry host instead",
        )


def _exec_opts(translation: _Translation, key: str, value: Any) -> None:
    """Only the cgroup driver has a new home."""
    options = _string_list(value, key)
    if not options:
        translation.drop(key, "empty list: nothing to carry")
    for option in options:
        name, _, setting = option.partition("=")
        name, setting = name.strip(), setting.strip()
        if name != "native.cgroupdriver":
            translation.drop(f"exec-opts.{name}", "no equivalent exec option in {runtime}")
            continue
        if setting not in ("systemd", "cgroupfs"):
            raise DaemonJsonError(
                "daemon.json: 'exec-opts' native.cgroupdriver must be systemd or "
                f"cgroupfs, not {setting!r}"
            )
        translation.cgroup_driver = setting
        to = (
            f"runc SystemdCgroup in {CONTAINERD_CONFIG}"
            if translation.runtime == "containerd"
            else f"cgroup_manager in {CRIO_DROP_IN}"
        )
        translation.carry(f"exec-opts.{name}", f"{to} (must equal the kubelet cgroupDriver)")


def _data_root(translation: _Translation, key: str, value: Any) -> None:
    """data-root, or "graph", its pre-17.05 name; "" (Docker's own example) is its default."""
    if value == "":
        translation.drop(key, f"empty: Docker's default {DOCKER_DEFAULT_DATA_ROOT}; {{runtime}} keeps its default root")
        return
    if not isinstance(value, str) or not value.startswith("/"):
        raise DaemonJsonError(f"daemon.json: {key!r} must be an absolute path string")
    if translation.data_root is not None:
        raise DaemonJsonError("daemon.json: 'data-root' and 'graph' are both set")
    runtime = translation.runtime
    translation.data_root = posixpath.normpath(value)
    translation.runtime_root = runtime_root_for(translation.data_root, runtime)
    if translation.runtime_root is None:
        translation.drop(key, f"{value} is Docker's default; {{runtime}} keeps its default root")
    elif runtime == "containerd":
        translation.carry(key, f"top-level root = {translation.runtime_root} in {CONTAINERD_CONFIG}")
    else:
        translation.carry(key, f"[crio] root = {translation.runtime_root} in {CRIO_DROP_IN}")


def _default_ulimits(translation: _Translation, key: str, value: Any) -> None:
    translation.default_ulimits = _validate_ulimits(value)
    if translation.runtime == "cri-o":
        translation.carry(key, f"default_ulimits in {CRIO_DROP_IN}")
    else:
        translation.drop(
            key,
            "containerd sets rlimits only through a base runtime spec "
            "(base_runtime_spec); set them per workload or in a base spec; not rendered",
        )


def _proxies(translation: _Translation, key: str, value: Any) -> None:
    raw = _string_map(value, key)
    for name, setting in raw.items():
        if name not in PROXY_ENV_NAMES:
            translation.drop(f"proxies.{name}", "unknown proxy setting")
            continue
        if "\n" in setting or "\r" in setting:
            raise DaemonJsonError(f"daemon.json: 'proxies.{name}' contains a newline")
        translation.proxies[name] = setting
        translation.carry(f"proxies.{name}", f"{PROXY_ENV_NAMES[name]} in {PROXY_DROP_INS[translation.runtime]}")
    if not raw:
        translation.drop(key, "empty object: nothing to carry")


def _validate_ulimits(value: Any) -> dict:
    if not isinstance(value, dict):
        raise DaemonJsonError("daemon.json: 'default-ulimits' must be an object")
    for name, limit in value.items():
        if not isinstance(limit, dict):
            raise DaemonJsonError(f"daemon.json: 'default-ulimits.{name}' must be an object")
        for part in ("Hard", "Soft"):
            if part not in limit or not isinstance(limit[part], int) or isinstance(
                limit[part], bool
            ):
                raise DaemonJsonError(
                    f"daemon.json: 'default-ulimits.{name}.{part}' must be an integer"
                )
        if not re.fullmatch(r"[a-z]+", str(limit.get("Name", name))):
            raise DaemonJsonError(f"daemon.json: 'default-ulimits.{name}' has a bad Name")
    return {name: dict(value[name]) for name in sorted(value)}


def _log_driver(translation: _Translation, key: str, value: Any) -> None:
    """File rotation moves to the kubelet; other drivers have no home."""
    if not isinstance(value, str) or not value:
        raise DaemonJsonError("daemon.json: 'log-driver' must be a non-empty string")
    translation.log_driver = value
    if value in _FILE_LOG_DRIVERS:
        translation.carry(
            key,
            "CRI log files under /var/log/pods rotated by the kubelet (lines change to the "
            "CRI format; update parsers that expect Docker JSON)",
        )
    else:
        translation.drop(
            key,
            f"{{runtime}} writes container logs only to files under /var/log/pods; ship "
            f"them with a node log agent instead of the {value} driver",
        )


def _log_opts(translation: _Translation, key: str, value: Any) -> None:
    """max-size and max-file of a file log driver become the kubelet's rotation."""
    opts = _string_map(value, key)
    if not opts:
        translation.drop(key, "empty object: nothing to carry")
    driver = translation.log_driver
    for name, setting in opts.items():
        option = f"log-opts.{name}"
        if name in ("max-size", "max-file") and driver not in _FILE_LOG_DRIVERS:
            translation.drop(option, f"applies to the {driver} log driver only")
        elif name == "max-size":
            _log_max_size(translation, option, setting)
        elif name == "max-file":
            _log_max_file(translation, option, setting)
        elif name == "compress":
            translation.drop(option, "the kubelet always compresses rotated container logs")
        else:
            translation.drop(option, f"log option of the {driver} driver; no equivalent for CRI log files")


def _log_max_size(translation: _Translation, option: str, value: str) -> None:
    if value.strip() == "-1":
        translation.drop(option, "unlimited in Docker; the kubelet always rotates (default 10Mi)")
        return
    try:
        translation.kubelet_settings["containerLogMaxSize"] = docker_size_to_quantity(value)
    except ValueError as err:
        raise DaemonJsonError(f"daemon.json: 'log-opts.max-size': {err}") from None
    translation.carry(option, "kubelet containerLogMaxSize")


def _log_max_file(translation: _Translation, option: str, value: str) -> None:
    if not re.fullmatch(r"[0-9]+", value.strip()) or int(value) < 1:
        raise DaemonJsonError(
            f"daemon.json: 'log-opts.max-file' must be a positive integer, not {value!r}"
        )
    files = int(value)
    if files < 2:
        # The kubelet rejects containerLogMaxFiles < 2.
        translation.kubelet_settings["containerLogMaxFiles"] = 2
        translation.carry(option, "kubelet containerLogMaxFiles (raised to 2, the kubelet minimum)")
    else:
        translation.kubelet_settings["containerLogMaxFiles"] = files
        translation.carry(option, "kubelet containerLogMaxFiles")


def _handler_target(runtime: str) -> str:
    return CONTAINERD_CONFIG if runtime == "containerd" else CRIO_DROP_IN


def _runtimes(translation: _Translation, key: str, value: Any) -> None:
    """Each OCI runtime becomes a runtime handler of the same name (see _oci_runtime)."""
    if not isinstance(value, dict) or not all(isinstance(spec, dict) for spec in value.values()):
        raise DaemonJsonError("daemon.json: 'runtimes' must be an object of runtime objects")
    if not value:
        translation.drop(key, "empty object: nothing to carry")
    for name, spec in value.items():
        _oci_runtime(translation, name, spec)


def _oci_runtime(translation: _Translation, name: str, spec: dict) -> None:
    entry = f"runtimes.{name}"
    if name in _DOCKER_RUNC_NAMES:
        translation.drop(entry, "Docker's name for its built-in runc; {runtime}'s own runc handler is kept")
        return
    if not _HANDLER_NAME_RE.fullmatch(name):
        reason = (f"{name!r} cannot be a runtime handler name: a RuntimeClass handler is a DNS-1123 label "
                  "(lowercase letters, digits and '-', at most 63)")
        translation.unusable_runtimes[name] = reason
        translation.drop(entry, reason)
        return
    if "runtimeType" in spec:
        reason = ("a containerd shim (runtimeType), not an OCI binary; register it as a {runtime} runtime "
                  "handler by hand")
        translation.unusable_runtimes[name] = reason.replace("{runtime}", translation.runtime)
        translation.drop(entry, reason)
        return
    path = spec.get("path")
    if not isinstance(path, str) or not path.strip():
        raise DaemonJsonError(f"daemon.json: '{entry}.path' must be a non-empty string")
    args = _string_list(spec.get("runtimeArgs", []), f"{entry}.runtimeArgs")
    binary, problem = translation.resolve(path)
    translation.oci_runtimes.append(OciRuntime(name, path, binary))
    option = "options.BinaryName" if translation.runtime == "containerd" else "runtime_path"
    translation.carry(entry, f"runtime handler {name} ({option} = {binary}) in "
                             f"{_handler_target(translation.runtime)}; a RuntimeClass with handler: {name} "
                             "selects it")
    if problem:
        translation.block(entry, problem)
    if args:
        shim = "containerd's runc shim" if translation.runtime == "containerd" else "a CRI-O runtime handler"
        translation.drop(f"{entry}.runtimeArgs", f"{shim} passes no extra arguments to the runtime binary; "
                                                 "wrap the binary in a script that adds them")
    for other in sorted(set(spec) - {"path", "runtimeArgs"}):
        translation.drop(f"{entry}.{other}", "no equivalent in a {runtime} runtime handler")


def _default_runtime(translation: _Translation, key: str, value: Any) -> None:
    """Pods without a RuntimeClass run on the default handler, as all pods ran on Docker's default."""
    if not isinstance(value, str) or not value:
        raise DaemonJsonError("daemon.json: 'default-runtime' must be a non-empty string")
    setting = "default_runtime_name" if translation.runtime == "containerd" else "default_runtime"
    if value in _DOCKER_RUNC_NAMES:
        translation.carry(key, "runc, the default handler of {runtime} too (nothing to write)"
                          .replace("{runtime}", translation.runtime))
    elif value in {runtime.name for runtime in translation.oci_runtimes}:
        translation.default_runtime = value
        translation.carry(key, f"{setting} = {value} in {_handler_target(translation.runtime)}")
    else:
        reason = translation.unusable_runtimes.get(value) or f"{value!r} is not one of daemon.json's runtimes"
        translation.drop(key, reason)
        translation.block(key, f"{reason}; every pod on the node runs on Docker's default runtime "
                               f"{value!r}, and {{runtime}} could not give it to them")


def _max_concurrent_downloads(translation: _Translation, key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DaemonJsonError("daemon.json: 'max-concurrent-downloads' must be a non-negative integer")
    if translation.runtime == "cri-o":
        translation.drop(key, "CRI-O has no setting for concurrent layer downloads (crio.conf [crio.image] has "
                              "none); its image library's default applies")
    elif value == 0:
        translation.drop(key, "0 means no limit in some Docker versions and the default in others; "
                              "containerd's default (3) is kept")
    else:
        translation.max_concurrent_downloads = value
        translation.carry(key, f"CRI max_concurrent_downloads = {value} in {CONTAINERD_CONFIG}")


# Each daemon.json key with a home after Docker, and its handler; every other
# key is reported as not carried (with _NOT_CARRIED_REASONS' reason). Adding a
# key is one entry here.
_HANDLERS: dict[str, Callable[[_Translation, str, Any], None]] = {
    "registry-mirrors": _registry_mirrors,
    "insecure-registries": _insecure_registries,
    "exec-opts": _exec_opts,
    "data-root": _data_root,
    "graph": _data_root,
    "default-ulimits": _default_ulimits,
    "proxies": _proxies,
    "log-driver": _log_driver,
    "log-opts": _log_opts,
    "runtimes": _runtimes,
    "default-runtime": _default_runtime,  # after runtimes: it names one of them
    "max-concurrent-downloads": _max_concurrent_downloads,
}
