"""Stack config -> validated `Settings`, with every problem reported at once.

Pure: the Pulumi program and `components.cli check-config` both feed it a plain
dict of config values (keys without the `shimless:` prefix). Defaults come from
the typed schema in Pulumi.yaml, so they are written down exactly once.
"""
from __future__ import annotations

import copy
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection

import yaml

from components.model import (
    CGROUP_DRIVERS,
    CLUSTER_MODES,
    DOCKER_POLICIES,
    IMAGE_CARRY,
    INSTALL_SOURCES,
    ROLES,
    RUNTIMES,
    Bastion,
    DockerPolicy,
    DrainPolicy,
    NodeSpec,
    RegistryMirror,
    RolloutPolicy,
    RuntimeTarget,
    Settings,
    check_host,
    check_image,
    check_mirror_endpoint,
    check_registry_host,
)
from components.render import containerd_config_version

NAMESPACE = "shimless"
PROJECT_FILE = Path(__file__).resolve().parent.parent / "Pulumi.yaml"
SECRET_KEYS = ("sshPrivateKey", "kubeconfig")
# What read_stack_file puts in place of a value stored encrypted (`secure:`).
SECRET_PLACEHOLDER = "<secret>"

_NODE_KEYS = {"name", "host", "port", "user", "role", "hostKey", "privateKey", "bastion", "target"}
_TARGET_KEYS = {
    "runtime", "version", "source", "pauseImage", "cgroupDriver",
    "registryMirrors", "insecureRegistries", "cniBinDir", "cniConfDir", "images",
}
_BASTION_KEYS = {"host", "port", "user", "hostKey"}
# Every pattern is used with fullmatch: `$` would also accept a trailing newline.
# RFC 1123 subdomain: what Kubernetes accepts as a Node name.
_NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", re.ASCII)
_HOST_KEY = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|ssh-dss) [A-Za-z0-9+/]+={0,3}", re.ASCII)
_VERSION = re.compile(r"v?\d+\.\d+(\.\d+)?([-~+.][0-9A-Za-z.~+-]*)?", re.ASCII)
# A login name as useradd accepts it; never starting with "-", since it ends up in ssh's argv.
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}", re.ASCII)
_ABSOLUTE_PATH = re.compile(r"/[A-Za-z0-9._+@/-]*", re.ASCII)


# Bounds for YAML read from stack files and nodes: aliases may share a subtree,
# but what they expand to stays small, so a few bytes cannot exhaust memory.
MAX_YAML_VALUES = 100_000
MAX_YAML_DEPTH = 64


class YamlError(ValueError):
    """YAML shimless will not load, in one line."""


def load_yaml_documents(text: str) -> list[Any]:
    """Every document of untrusted YAML text, loaded safely: aliases are
    allowed while what they expand to stays within MAX_YAML_VALUES values and
    MAX_YAML_DEPTH levels; lone surrogates (escapes like "\\ud800") are refused.
    A fresh copy each call: callers may change what they get."""
    return copy.deepcopy(_parsed_yaml_documents(text))


# A plan reads each node's KubeletConfiguration several times, and a fleet's
# nodes mostly share theirs: parsed once per distinct text (errors are not kept).
@functools.lru_cache(maxsize=256)
def _parsed_yaml_documents(text: str) -> list[Any]:
    loader = yaml.SafeLoader(text)
    documents = []
    try:
        while loader.check_node():
            node = loader.get_node()
            _check_yaml_node(node)
            documents.append(loader.construct_document(node))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise YamlError(f"invalid YAML: {err.problem or err.context}{where}") from None
    except yaml.YAMLError as err:
        raise YamlError("invalid YAML: " + " ".join(str(err).split())) from None
    except RecursionError:
        raise YamlError(f"invalid YAML: nested more than {MAX_YAML_DEPTH} levels deep") from None
    finally:
        loader.dispose()
    return documents


def load_yaml(text: str) -> Any:
    """The single document of untrusted YAML text (None when empty); see load_yaml_documents."""
    documents = load_yaml_documents(text)
    if len(documents) > 1:
        raise YamlError("holds more than one YAML document")
    return documents[0] if documents else None


def _check_yaml_node(root: yaml.Node) -> None:
    """Refuse what the node graph would expand to when too big, too deep, self-referencing
    or not text; iterative and memoized by node, so shared aliases are counted once each."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth) once expanded
    started: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        children = _yaml_children(node)
        if finished:
            started.discard(id(node))
            values = 1 + sum(sizes[id(child)][0] for child in children)
            depth = 1 + max((sizes[id(child)][1] for child in children), default=0)
            sizes[id(node)] = (values, depth)
            line = node.start_mark.line + 1
            if values > MAX_YAML_VALUES:
                raise YamlError(f"the YAML at line {line} expands to more than {MAX_YAML_VALUES} values "
                                "(aliases repeated inside aliases?)")
            if depth > MAX_YAML_DEPTH:
                raise YamlError(f"the YAML at line {line} is nested more than {MAX_YAML_DEPTH} levels deep")
            continue
        if id(node) in sizes:
            continue
        if id(node) in started:
            raise YamlError(f"the YAML alias at line {node.start_mark.line + 1} refers to itself")
        if isinstance(node, yaml.ScalarNode) and any("\ud800" <= char <= "\udfff" for char in node.value):
            raise YamlError(f"the YAML value at line {node.start_mark.line + 1} holds a lone surrogate "
                            "(a \\ud800-\\udfff escape), which is not text")
        started.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in children)


def _yaml_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


class ConfigError(Exception):
    """Raised with every problem found, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid stack config:\n" + "\n".join(f"  - {p}" for p in problems))


def schema_defaults(project_file: Path = PROJECT_FILE) -> dict[str, Any]:
    """The `default:` of every key in Pulumi.yaml's config schema, by short key."""
    project = yaml.safe_load(project_file.read_text())
    return {
        key.split(":", 1)[1]: spec.get("default")
        for key, spec in (project.get("config") or {}).items()
    }


def schema_types(project_file: Path = PROJECT_FILE) -> dict[str, str]:
    """The declared `type:` of every key in Pulumi.yaml's config schema."""
    project = yaml.safe_load(project_file.read_text())
    return {key.split(":", 1)[1]: spec.get("type", "string") for key, spec in (project.get("config") or {}).items()}


def _merged(default: Any, value: Any) -> Any:
    """Stack value over schema default, one level deep for objects."""
    if value is None:
        return default
    if isinstance(default, dict) and isinstance(value, dict):
        return {**default, **value}
    return value


def _printable(text: str) -> str:
    """A key or name from the stack file as it can go into a one-line message."""
    return text if text.isprintable() else ascii(text)


@dataclass
class _Checker:
    problems: list[str]

    def fail(self, key: str, node: str | None, message: str) -> None:
        where = f"{NAMESPACE}:{_printable(key)}" + (f" (node {_printable(node)})" if node else "")
        self.problems.append(f"{where}: {message}")

    def string(self, obj: dict, field: str, key: str, node: str | None, *, required: bool = False) -> str:
        value = obj.get(field)
        if value is None or value == "":
            if required:
                self.fail(key, node, "is required")
            return ""
        if not isinstance(value, str):
            self.fail(key, node, f"must be a string, got {type(value).__name__} {value!r}")
            return ""
        return value

    def choice(self, obj: dict, field: str, key: str, node: str | None, allowed: tuple[str, ...]) -> str:
        value = obj.get(field)
        if value not in allowed:
            self.fail(key, node, f"must be one of {', '.join(allowed)}; got {value!r}")
            return allowed[0]
        return value

    def integer(self, obj: dict, field: str, key: str, node: str | None, *, minimum: int, maximum: int | None = None) -> int:
        value = obj.get(field)
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            value = int(value)  # `pulumi config set` stores scalars as strings
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, node, f"must be an integer, got {value!r}")
            return minimum
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            self.fail(key, node, f"must be {bound}, got {value}")
            return minimum
        return value

    def boolean(self, obj: dict, field: str, key: str, node: str | None) -> bool:
        value = obj.get(field)
        if value in ("true", "false"):
            return value == "true"
        if not isinstance(value, bool):
            self.fail(key, node, f"must be true or false, got {value!r}")
            return False
        return value

    def unknown_fields(self, obj: dict, allowed: set[str], key: str, node: str | None) -> None:
        for extra in sorted(set(obj) - allowed):
            self.fail(f"{key}.{extra}", node, f"unknown key (known: {', '.join(sorted(allowed))})")

    def valid(self, check: Callable[[Any], Any], value: Any, key: str, node: str | None) -> bool:
        """Apply one of the shared field validators (components.model); False if it refused."""
        try:
            check(value)
        except ValueError as exc:
            self.fail(key, node, str(exc))
            return False
        return True

    def host(self, value: str, key: str, node: str | None) -> None:
        if value:
            self.valid(check_host, value, key, node)

    def user(self, value: str, key: str, node: str | None) -> None:
        if value and not _USER.fullmatch(value):
            self.fail(key, node, f"is not a user name (letters, digits, _ . -, not starting with -): {value!r}")

    def secret(self, value: Any, key: str, node: str | None, encrypted: Collection[str] | None,
               stored_under: str, how: str) -> None:
        """A credential must come from an encrypted (`secure:`) stack value."""
        if value and encrypted is not None and stored_under not in encrypted:
            self.fail(key, node, f"is stored in plain text in the stack file; set it with `{how}`")


def _parse_registries(check: _Checker, obj: dict, key: str,
                      node: str | None) -> tuple[tuple[RegistryMirror, ...], tuple[str, ...]]:
    """target.registryMirrors and target.insecureRegistries."""
    mirrors: list[RegistryMirror] = []
    raw_mirrors = obj.get("registryMirrors") or {}
    if not isinstance(raw_mirrors, dict):
        check.fail(f"{key}.registryMirrors", node, "must be an object {registry: [endpoint, ...]}")
        raw_mirrors = {}
    for registry, endpoints in sorted(raw_mirrors.items()):
        mkey = f"{key}.registryMirrors.{registry}"
        check.valid(check_registry_host, registry, mkey, node)
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        if not isinstance(endpoints, list) or not endpoints:
            check.fail(mkey, node, "must be a non-empty list of endpoint URLs")
            continue
        for endpoint in endpoints:
            check.valid(check_mirror_endpoint, endpoint, mkey, node)
        mirrors.append(RegistryMirror(str(registry), tuple(str(e) for e in endpoints)))
    insecure = obj.get("insecureRegistries") or []
    if not isinstance(insecure, list):
        check.fail(f"{key}.insecureRegistries", node, "must be a list of host[:port]")
        insecure = []
    for registry in insecure:
        check.valid(check_registry_host, registry, f"{key}.insecureRegistries", node)
    return tuple(mirrors), tuple(str(registry) for registry in insecure)


def _parse_target(check: _Checker, obj: dict, key: str, node: str | None) -> RuntimeTarget:
    check.unknown_fields(obj, _TARGET_KEYS, key, node)
    runtime = check.choice(obj, "runtime", f"{key}.runtime", node, RUNTIMES)
    version = check.string(obj, "version", f"{key}.version", node)
    if version and not _VERSION.fullmatch(version):
        check.fail(f"{key}.version", node, f"is not a version like 1.7.24: {version!r}")
    elif version and runtime == "containerd":
        check.valid(containerd_config_version, version, f"{key}.version", node)
    source = check.choice(obj, "source", f"{key}.source", node, INSTALL_SOURCES)
    pause_image = check.string(obj, "pauseImage", f"{key}.pauseImage", node, required=True)
    if pause_image:
        check.valid(check_image, pause_image, f"{key}.pauseImage", node)
    cgroup_driver = check.choice(obj, "cgroupDriver", f"{key}.cgroupDriver", node, CGROUP_DRIVERS)
    images = check.choice(obj, "images", f"{key}.images", node, IMAGE_CARRY)

    mirrors, insecure = _parse_registries(check, obj, key, node)

    dirs = {}
    for field in ("cniBinDir", "cniConfDir"):
        value = check.string(obj, field, f"{key}.{field}", node, required=True)
        if value and not _ABSOLUTE_PATH.fullmatch(value):
            check.fail(f"{key}.{field}", node, f"must be an absolute path (letters, digits, . _ + @ - /), got {value!r}")
        dirs[field] = value
    if runtime == "cri-o" and source == "distro":
        check.fail(f"{key}.source", node, "cri-o has no distro package on Debian/Ubuntu/RHEL; use package or preinstalled")

    return RuntimeTarget(
        runtime=runtime,
        version=version.lstrip("v"),
        source=source,
        pause_image=pause_image,
        cgroup_driver=cgroup_driver,
        registry_mirrors=tuple(mirrors),
        insecure_registries=insecure,
        cni_bin_dir=dirs["cniBinDir"],
        cni_conf_dir=dirs["cniConfDir"],
        images=images,
    )


def parse_target(overrides: dict[str, Any], defaults: dict[str, Any] | None = None) -> RuntimeTarget:
    """The fleet target from Pulumi.yaml's default with `overrides` (target keys)
    merged over it, validated as the stack's is; ConfigError naming each problem."""
    defaults = schema_defaults() if defaults is None else defaults
    check = _Checker([])
    target = _parse_target(check, {**defaults["target"], **overrides}, "target", None)
    if check.problems:
        raise ConfigError(check.problems)
    return target


def _parse_node(
    check: _Checker, index: int, raw: Any, defaults: dict[str, Any], fleet_target: dict, *,
    allow_unpinned: bool, has_default_key: bool, encrypted: Collection[str] | None,
) -> NodeSpec | None:
    key = f"nodes[{index}]"
    if not isinstance(raw, dict):
        check.fail(key, None, f"must be an object with name, host, ...; got {raw!r}")
        return None
    name = check.string(raw, "name", f"{key}.name", None, required=True)
    label = name or f"#{index}"
    if name and (not _NODE_NAME.fullmatch(name) or len(name) > 253):
        check.fail(f"{key}.name", label, "is not a valid Kubernetes node name (lowercase RFC 1123)")
    check.unknown_fields(raw, _NODE_KEYS, key, label)

    host = check.string(raw, "host", f"{key}.host", label, required=True)
    check.host(host, f"{key}.host", label)
    port = check.integer({"port": raw.get("port", defaults["sshPort"])}, "port", f"{key}.port", label, minimum=1, maximum=65535)
    user = check.string({"user": raw.get("user", defaults["sshUser"])}, "user", f"{key}.user", label, required=True)
    check.user(user, f"{key}.user", label)
    role = check.choice({"role": raw.get("role", "worker")}, "role", f"{key}.role", label, ROLES)

    host_key = check.string(raw, "hostKey", f"{key}.hostKey", label)
    if host_key and not _HOST_KEY.fullmatch(host_key.strip()):
        check.fail(f"{key}.hostKey", label, "must be 'TYPE BASE64' as in the server's /etc/ssh/ssh_host_*_key.pub (no host name, no comment)")
    if not host_key and not allow_unpinned:
        check.fail(f"{key}.hostKey", label, "is required (pin the node's SSH host key; or set shimless:allowUnpinnedHostKeys: true, never in production)")

    own_key = raw.get("privateKey")
    if own_key is not None and (not isinstance(own_key, str) or not own_key.strip()):
        check.fail(f"{key}.privateKey", label, "must be the private key text (set it as a secret)")
    check.secret(own_key, f"{key}.privateKey", label, encrypted, "nodes",
                 f"pulumi config set --secret --path 'nodes[{index}].privateKey' < KEYFILE")
    if not own_key and not has_default_key:
        check.fail(f"{key}.privateKey", label, "no SSH private key: set shimless:sshPrivateKey (secret), shimless:sshPrivateKeyPath, or this node's privateKey")

    bastion = _parse_bastion(check, raw["bastion"], f"{key}.bastion", label, user, allow_unpinned=allow_unpinned) \
        if raw.get("bastion") is not None else None

    overrides = raw.get("target") or {}
    if not isinstance(overrides, dict):
        check.fail(f"{key}.target", label, "must be an object overriding keys of shimless:target")
        overrides = {}
    target = _parse_target(check, {**fleet_target, **overrides}, f"{key}.target" if overrides else "target", label)
    return NodeSpec(
        name=name, host=host, port=port, user=user, role=role, host_key=host_key.strip(),
        target=target, has_own_private_key=bool(own_key), bastion=bastion,
    )


def _parse_bastion(check: _Checker, braw: Any, bkey: str, label: str, user: str, *,
                   allow_unpinned: bool) -> Bastion | None:
    """A node's jump host: its user defaults to the node's, its host key pinned like the node's."""
    if not isinstance(braw, dict):
        check.fail(bkey, label, "must be an object {host, port, user, hostKey}")
        return None
    check.unknown_fields(braw, _BASTION_KEYS, bkey, label)
    bhost = check.string(braw, "host", f"{bkey}.host", label, required=True)
    check.host(bhost, f"{bkey}.host", label)
    bastion = Bastion(
        host=bhost,
        port=check.integer({"port": braw.get("port", 22)}, "port", f"{bkey}.port", label, minimum=1, maximum=65535),
        user=check.string({"user": braw.get("user", user)}, "user", f"{bkey}.user", label, required=True),
        host_key=check.string(braw, "hostKey", f"{bkey}.hostKey", label).strip(),
    )
    check.user(bastion.user, f"{bkey}.user", label)
    if bastion.host_key and not _HOST_KEY.fullmatch(bastion.host_key):
        check.fail(f"{bkey}.hostKey", label, "must be 'TYPE BASE64'")
    if not bastion.host_key and not allow_unpinned:
        check.fail(f"{bkey}.hostKey", label, "is required (pin the bastion's SSH host key)")
    return bastion


def parse_settings(raw: dict[str, Any], defaults: dict[str, Any] | None = None, *,
                   encrypted: Collection[str] | None = None) -> Settings:
    """Validate raw stack config (short keys; secrets as plain text or a placeholder).

    `encrypted` names the keys the stack stores encrypted (`secure:`); given, a
    credential under any other key is refused. check-config, preview and
    render's inputs all go through here (and the validators in components.model).
    Raises ConfigError listing every problem, each naming the stack key and node.
    """
    defaults = schema_defaults() if defaults is None else defaults
    check = _Checker([])
    for secret_key in SECRET_KEYS:
        check.secret(raw.get(secret_key), secret_key, None, encrypted, secret_key,
                     f"pulumi config set --secret {secret_key}")
    for key in sorted(set(raw) - set(defaults)):
        check.fail(key, None, f"unknown key (known: {', '.join(sorted(defaults))})")
    value = {key: _merged(defaults.get(key), raw.get(key)) for key in defaults}
    cluster_mode = _parse_cluster(check, value, defaults)
    nodes = _parse_nodes(check, value, encrypted)
    docker, drain, rollout = _parse_docker(check, value), _parse_drain(check, value), _parse_rollout(check, value)
    if check.problems:
        raise ConfigError(check.problems)
    return Settings(nodes=tuple(nodes), cluster_mode=cluster_mode, docker=docker, drain=drain, rollout=rollout)


def _parse_cluster(check: _Checker, value: dict[str, Any], defaults: dict[str, Any]) -> str:
    """cluster.mode, and the kubeconfig it needs."""
    cluster = value["cluster"]
    if not isinstance(cluster, dict):
        check.fail("cluster", None, "must be an object {mode: kubeconfig|none}")
        cluster = defaults["cluster"]
    check.unknown_fields(cluster, {"mode"}, "cluster", None)
    cluster_mode = check.choice(cluster, "mode", "cluster.mode", None, CLUSTER_MODES)
    if cluster_mode == "kubeconfig" and not value["kubeconfig"] and not value["kubeconfigPath"]:
        check.fail("kubeconfig", None, "is required to cordon, drain and verify nodes (set it as a secret, or "
                   "set shimless:kubeconfigPath), or set shimless:cluster.mode: none explicitly to migrate without the API")
    if value["kubeconfig"] and value["kubeconfigPath"]:
        check.fail("kubeconfigPath", None, "set either kubeconfig or kubeconfigPath, not both")
    return cluster_mode


def _parse_nodes(check: _Checker, value: dict[str, Any], encrypted: Collection[str] | None) -> list[NodeSpec]:
    """Every node, with the fleet's SSH defaults and target under its own."""
    check.boolean(value, "allowUnpinnedHostKeys", "allowUnpinnedHostKeys", None)
    allow_unpinned = value["allowUnpinnedHostKeys"] is True or value["allowUnpinnedHostKeys"] == "true"
    check.integer(value, "sshPort", "sshPort", None, minimum=1, maximum=65535)
    if isinstance(value["sshUser"], str):
        check.user(value["sshUser"], "sshUser", None)
    has_default_key = bool(value["sshPrivateKey"]) or bool(value["sshPrivateKeyPath"])
    if value["sshPrivateKeyPath"] and value["sshPrivateKey"]:
        check.fail("sshPrivateKeyPath", None, "set either sshPrivateKey or sshPrivateKeyPath, not both")

    fleet_target = value["target"] if isinstance(value["target"], dict) else {}
    if not isinstance(value["target"], dict):
        check.fail("target", None, "must be an object")

    nodes: list[NodeSpec] = []
    raw_nodes = value["nodes"]
    if not isinstance(raw_nodes, list) or not raw_nodes:
        check.fail("nodes", None, "must list at least one node")
        raw_nodes = raw_nodes if isinstance(raw_nodes, list) else []
    for index, raw_node in enumerate(raw_nodes):
        node = _parse_node(check, index, raw_node, value, fleet_target, allow_unpinned=allow_unpinned,
                           has_default_key=has_default_key, encrypted=encrypted)
        if node is not None:
            nodes.append(node)
    _check_unique(check, nodes)
    return nodes


def _parse_docker(check: _Checker, value: dict[str, Any]) -> DockerPolicy:
    docker_raw = value["docker"] if isinstance(value["docker"], dict) else {}
    check.unknown_fields(docker_raw, {"policy", "removeData"}, "docker", None)
    docker = DockerPolicy(
        mode=check.choice(docker_raw, "policy", "docker.policy", None, DOCKER_POLICIES),
        remove_data=check.boolean(docker_raw, "removeData", "docker.removeData", None),
    )
    if docker.remove_data and docker.mode != "purge":
        check.fail("docker.removeData", None, "only applies with docker.policy: purge")
    return docker


def _parse_drain(check: _Checker, value: dict[str, Any]) -> DrainPolicy:
    drain_raw = value["drain"] if isinstance(value["drain"], dict) else {}
    check.unknown_fields(drain_raw, {"timeoutSeconds", "gracePeriodSeconds", "deleteEmptydirData", "force", "retries"}, "drain", None)
    return DrainPolicy(
        timeout_seconds=check.integer(drain_raw, "timeoutSeconds", "drain.timeoutSeconds", None, minimum=1),
        grace_period_seconds=check.integer(drain_raw, "gracePeriodSeconds", "drain.gracePeriodSeconds", None, minimum=-1),
        delete_emptydir_data=check.boolean(drain_raw, "deleteEmptydirData", "drain.deleteEmptydirData", None),
        force=check.boolean(drain_raw, "force", "drain.force", None),
        retries=check.integer(drain_raw, "retries", "drain.retries", None, minimum=0, maximum=20),
    )


def _parse_rollout(check: _Checker, value: dict[str, Any]) -> RolloutPolicy:
    rollout_raw = value["rollout"] if isinstance(value["rollout"], dict) else {}
    check.unknown_fields(rollout_raw, {"canary", "maxUnavailable", "healthTimeoutSeconds", "allowDockerSocketWorkloads",
                                       "prestageAhead", "prestageParallel"}, "rollout", None)
    return RolloutPolicy(
        canary=check.integer(rollout_raw, "canary", "rollout.canary", None, minimum=0),
        max_unavailable=check.integer(rollout_raw, "maxUnavailable", "rollout.maxUnavailable", None, minimum=1),
        health_timeout_seconds=check.integer(rollout_raw, "healthTimeoutSeconds", "rollout.healthTimeoutSeconds", None, minimum=10),
        allow_docker_socket_workloads=check.boolean(rollout_raw, "allowDockerSocketWorkloads", "rollout.allowDockerSocketWorkloads", None),
        prestage_ahead=check.integer(rollout_raw, "prestageAhead", "rollout.prestageAhead", None, minimum=0),
        prestage_parallel=check.integer(rollout_raw, "prestageParallel", "rollout.prestageParallel", None, minimum=1),
    )


def _check_unique(check: _Checker, nodes: list[NodeSpec]) -> None:
    seen_names: dict[str, int] = {}
    seen_endpoints: dict[tuple[str, int], str] = {}
    for index, node in enumerate(nodes):
        if node.name in seen_names:
            check.fail(f"nodes[{index}].name", node.name, f"duplicate node name (also nodes[{seen_names[node.name]}])")
        seen_names.setdefault(node.name, index)
        endpoint = (node.host, node.port)
        if endpoint in seen_endpoints:
            check.fail(f"nodes[{index}].host", node.name,
                       f"{node.host}:{node.port} is also node {seen_endpoints[endpoint]}'s SSH address")
        seen_endpoints.setdefault(endpoint, node.name)


def read_stack_file(path: Path) -> dict[str, Any]:
    """Short-keyed config of a stack file; secure values become a placeholder."""
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, YamlError) as exc:
        raise ConfigError([f"{path.name}: {getattr(exc, 'strerror', None) or exc}"]) from None
    config = (data.get("config") if isinstance(data, dict) else data) or {}
    if not isinstance(config, dict):
        raise ConfigError([f"{path.name}: `config:` must be a mapping of shimless:* keys"])
    raw: dict[str, Any] = {}
    for full_key, value in config.items():
        namespace, _, key = str(full_key).partition(":")
        if namespace != NAMESPACE or not key:
            continue
        raw[key] = _redact_secure(value)
    return raw


def encrypted_keys(raw: dict[str, Any]) -> set[str]:
    """The keys of read_stack_file's result stored encrypted, wholly or in part
    (as Pulumi counts them: a key holding any `secure:` value is a secret)."""
    def holds_secret(value: Any) -> bool:
        if isinstance(value, dict):
            return any(holds_secret(item) for item in value.values())
        if isinstance(value, list):
            return any(holds_secret(item) for item in value)
        return value == SECRET_PLACEHOLDER
    return {key for key, value in raw.items() if holds_secret(value)}


def _redact_secure(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return SECRET_PLACEHOLDER
        return {k: _redact_secure(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_secure(v) for v in value]
    return value


def private_keys(raw: dict[str, Any], settings: Settings) -> dict[str, str]:
    """Each node's SSH private key text: its own, else sshPrivateKey, else the
    file at sshPrivateKeyPath (read on the machine running shimless)."""
    default_key = raw.get("sshPrivateKey") or ""
    path = raw.get("sshPrivateKeyPath") or ""
    if path and not default_key:
        try:
            default_key = Path(os.path.expanduser(path)).read_text()
        except OSError as exc:
            raise ConfigError([f"{NAMESPACE}:sshPrivateKeyPath: cannot read {path}: {exc.strerror}"]) from exc
    own = {n.get("name"): n.get("privateKey") for n in raw.get("nodes") or [] if isinstance(n, dict)}
    return {node.name: own.get(node.name) or default_key for node in settings.nodes}


def kubeconfig_text(raw: dict[str, Any], settings: Settings) -> str | None:
    """The kubeconfig: the secret itself, or the file at kubeconfigPath; None without a cluster."""
    if not settings.uses_cluster:
        return None
    if raw.get("kubeconfig"):
        return raw["kubeconfig"]
    path = raw.get("kubeconfigPath") or ""
    try:
        return Path(os.path.expanduser(path)).read_text()
    except OSError as exc:
        raise ConfigError([f"{NAMESPACE}:kubeconfigPath: cannot read {path}: {exc.strerror}"]) from exc
