"""The rollout plan: per node, what to write and why; fleet-wide, in what order.

Pure: takes validated settings and each node's probed facts, returns plans the
components turn into resources and the CLI prints. Nothing here talks to a node.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from typing import NamedTuple

from components.daemon_json import DEFAULT_ROOTS, DOCKER_DEFAULT_DATA_ROOT
from components.desired import Blocked, desired_state
from components.facts import ImagesToCarry, NodeFacts
from components.manifest import DOCKER_SOCKET, DOCKERSHIM_SOCKET, KUBELET_CONFIG, STATE_DIR, target_units
from components.model import (
    CRI_SOCKET_ANNOTATION, RUNTIME_LABEL, RUNTIME_VERSION_PREFIX, DockerPolicy, NodeSpec, RolloutPolicy, RuntimeTarget,
    Settings,
)

# The fact api_drift reports when the API has no Node of that name.
NODE_OBJECT = "Node object"


class Drift(NamedTuple):
    """One fact on a node that differs from the desired state."""

    fact: str
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.fact}: {self.found}, expected {self.expected}"


# What each action means for the node, in words preview can show.
ACTIONS = {
    "migrate": "switch from {before} to {after} (cordon, drain, switch, verify, uncordon)",
    "repair": "drift on a migrated node: re-apply the {after} config and restart",
    "in-sync": "already on {after} with the desired config: left alone",
    "blocked": "not migrated: {reason}",
    "unknown": "not probed ({reason}); the plan is decided on the node at `up`",
}


@dataclass(frozen=True)
class NodePlan:
    node: NodeSpec
    action: str  # one of ACTIONS
    runtime_before: str = "unknown"
    reason: str = ""  # why blocked / unknown
    files: dict[str, str] = field(default_factory=dict, hash=False)  # node path -> desired content
    cgroup_driver: str = ""
    kubelet_version: str = ""
    runtime_version: str = ""
    flags_added: tuple[str, ...] = ()
    flags_removed: tuple[str, ...] = ()
    translation: dict = field(default_factory=dict, hash=False)
    drift: tuple[Drift, ...] = ()
    warnings: tuple[str, ...] = ()
    token: str = ""  # see plan_node
    docker_data_root: str = DOCKER_DEFAULT_DATA_ROOT  # what docker.removeData deletes
    # What pre-stage will copy from Docker into the target's store (target.images).
    images_to_carry: ImagesToCarry = ImagesToCarry(0, 0)

    @property
    def needs_work(self) -> bool:
        return self.action in ("migrate", "repair")

    def describe(self) -> str:
        text = ACTIONS[self.action].format(before=self.runtime_before, after=self.node.target.runtime,
                                           reason=self.reason)
        count, size = self.images_to_carry
        if count:
            text += f"; carry {count} image{'s' if count != 1 else ''} ({size / 2**20:.1f} MiB) from Docker"
        return text

    def summary(self) -> dict:
        return {
            "action": self.action,
            "plan": self.describe(),
            "runtimeBefore": self.runtime_before,
            "runtimeAfter": self.node.target.runtime if self.action != "blocked" else self.runtime_before,
            "kubeletVersion": self.kubelet_version,
            "runtimeVersion": self.runtime_version,
            "cgroupDriver": self.cgroup_driver,
            "kubeletFlagsAdded": list(self.flags_added),
            "kubeletFlagsRemoved": list(self.flags_removed),
            "files": sorted(self.files),
            "imagesToCarry": {"images": self.images_to_carry.images, "bytes": self.images_to_carry.bytes},
            "drift": [str(d) for d in self.drift],
            "warnings": list(self.warnings),
            "translation": self.translation,
        }


def plan_node(node: NodeSpec, facts: NodeFacts | None, *, probe_error: str = "",
              docker_socket_pods: tuple[str, ...] = (), allow_docker_socket_workloads: bool = False,
              api_drift: tuple[Drift, ...] = (), stamp: str = "",
              docker: DockerPolicy | None = None) -> NodePlan:
    """Decide what the node needs.

    Whatever the node's files hold, one node never fails the plan of the
    others: what cannot be read or rewritten safely blocks that node, with the
    file (or command) and the problem as its reason.

    The plan's `token` is an input of every per-node command, so it decides
    what Pulumi sees as changed: a node in sync gets the token its last switch
    recorded on it (no change, even on a fresh backend); a node that needs work
    gets a new one, `stamp` (the planning time) included, so even a node reset
    to exactly its pre-migration state shows as a change. The switch records
    the token it ran with, and the next plan finds it there.
    """
    if facts is None:
        return NodePlan(node=node, action="unknown", reason=probe_error or "node not reachable")
    target, before, version = node.target, facts.runtime, facts.kubelet_version

    def blocked(reason: str) -> NodePlan:
        return NodePlan(node=node, action="blocked", runtime_before=before, kubelet_version=version, reason=reason)

    if reason := _unplannable(node, facts, api_drift):
        return blocked(reason)
    try:
        desired = desired_state(facts, target)
    except Blocked as exc:
        return blocked(str(exc))
    translation = desired.translation
    if translation is not None and translation.blocking:
        # Before anything runs: a switch would leave pods without the runtime Docker ran them on.
        return blocked(f"{facts.daemon_json_path}: " + "; ".join(f"{key}: {reason}"
                                                                 for key, reason in translation.blocking))
    data_root = translation.data_root if translation and translation.data_root else DOCKER_DEFAULT_DATA_ROOT
    runtime_root = (translation.runtime_root if translation else None) or DEFAULT_ROOTS[target.runtime]
    if docker is not None and docker.remove_data and (problem := _data_removal_problem(data_root, runtime_root)):
        return blocked(f"shimless:docker.removeData would delete Docker's data-root {data_root}: {problem}; "
                       "set shimless:docker.removeData: false")
    drift = tuple(_drift(facts, desired.files, target.runtime)) + tuple(api_drift)
    if drift and docker_socket_pods and not allow_docker_socket_workloads:
        return blocked("pods mount the Docker socket: " + ", ".join(docker_socket_pods) +
                       " (move them, or set shimless:rollout.allowDockerSocketWorkloads: true)")
    action, token = _action_and_token(facts, target.runtime, desired.files, drift, stamp)
    warnings = list(desired.warnings)
    if translation is not None and translation.runtimes_summary():
        warnings.append(translation.runtimes_summary())
    if docker_socket_pods:
        warnings.append("pods mount the Docker socket and will break: " + ", ".join(docker_socket_pods))
    images = ImagesToCarry(0, 0)
    if action in ("migrate", "repair"):
        images = facts.images_to_carry(target.images)
        warnings.extend(_image_warnings(facts, target.images, action))
    return NodePlan(
        node=node, action=action, runtime_before=before, files=desired.files, cgroup_driver=desired.cgroup_driver,
        kubelet_version=version, runtime_version=desired.runtime_version, flags_added=desired.flags.added,
        flags_removed=desired.flags.removed, translation=translation.report() if translation else {},
        drift=drift, warnings=tuple(warnings), token=token, docker_data_root=data_root, images_to_carry=images,
    )


def _image_warnings(facts: NodeFacts, mode: str, action: str) -> list[str]:
    """What pre-stage will not carry from Docker that the pods may miss after the switch."""
    if mode == "none" or "images.docker" not in facts.facts:  # not asked, or an older probe
        return []
    if not facts.docker_running:
        if action == "migrate" and facts.runtime in ("docker", "cri-dockerd"):
            return [f"Docker is not running: no image to carry (target.images: {mode}); "
                    "the pods pull theirs again after the switch"]
        return []
    warnings = []
    digests, nameless = facts.digests_not_carried(mode)
    if digests:
        lost = f"; {nameless} image{'s' if nameless != 1 else ''} Docker knows only by digest not carried at all" \
            if nameless else ""
        warnings.append(f"{digests} registry digest name{'s' if digests != 1 else ''} (repo@sha256:...) not carried "
                        f"into CRI-O{lost}: a copy out of Docker cannot have the digest its registry gave it, so pods "
                        "that name an image by digest pull it again after the switch")
    if mode == "all" and facts.untagged_images:
        warnings.append(f"{facts.untagged_images} of Docker's images are dangling (no tag, no digest) "
                        "and are not carried")
    return warnings


def _unplannable(node: NodeSpec, facts: NodeFacts, api_drift: tuple[Drift, ...]) -> str:
    """Why nothing can be planned for the node before reading its files, or ""."""
    if not facts.kubelet_version:
        return "no kubelet answered `kubelet --version` on the node"
    if facts.get("sudo") == "no":
        return f"user {node.user} is not root and `sudo -n` is refused"
    if any(item.fact == NODE_OBJECT and item.found == "missing" for item in api_drift):
        return (f"the API has no Node {node.name} (re-installed and not re-joined?): "
                "join it to the cluster first, then re-run")
    return ""


def _action_and_token(facts: NodeFacts, runtime: str, files: dict[str, str], drift: tuple[Drift, ...],
                      stamp: str) -> tuple[str, str]:
    """in-sync with the token the node recorded (or a stable adopted one), or
    migrate/repair with a fresh token; see plan_node."""
    digest = _digest_of(runtime, files)[:16]
    if not drift:
        recorded = facts.get("shimless.token")
        return "in-sync", recorded if recorded.startswith(digest) else f"{digest}-adopted"
    return ("migrate" if facts.runtime != runtime else "repair"), f"{digest}-{stamp or 'unstamped'}"


# What removing Docker's data-root must never take with it.
_KEPT_BY_PURGE = ("/etc", "/usr", "/boot", "/root", "/var/log", posixpath.dirname(KUBELET_CONFIG), STATE_DIR)


def _data_removal_problem(data_root: str, runtime_root: str) -> str:
    """Why `rm -rf data_root` after the switch would be unsafe, or ""."""
    def within(path: str, tree: str) -> bool:
        return path == tree or path.startswith(tree.rstrip("/") + "/")

    if within(runtime_root, data_root):
        return f"it holds the new runtime's root {runtime_root} (daemon.json data-root is carried beneath it)"
    kept = [path for path in _KEPT_BY_PURGE if within(path, data_root) or within(data_root, path)]
    return f"it is a system directory or lies in one ({kept[0]})" if kept else ""


def _drift(facts: NodeFacts, files: dict[str, str], runtime: str) -> list[Drift]:
    """Each fact on the node that differs from its target state: a desired file
    not live as rendered, a unit not as the manifest's `target_units` has it.
    The node decides with the same rule (scripts/node-lib.sh in_target_state:
    the bundle's files, the manifest's TARGET_UNITS), so a node the switch
    finds in sync never shows drift here, and the other way round."""
    found = []
    for path, content in sorted(files.items()):
        live = facts.files.get(path)
        if live != content:
            seen = facts.unreadable.get(path) or ("missing" if live is None else f"differs ({_digest(live)})")
            found.append(Drift(path, f"rendered ({_digest(content)})", seen))
    for expected in target_units(runtime):
        unit = facts.unit(expected.unit)
        found.extend(Drift(*difference) for difference in expected.differences(unit.enabled, unit.active))
    if found and facts.runtime != runtime:
        # No rule of its own (the files and units above decide): what the
        # kubelet runs on now, to read beside them.
        found.append(Drift("kubelet runtime", runtime, facts.runtime))
    return found


def api_drift(item: dict | None, target: RuntimeTarget) -> list[Drift]:
    """What the Node object (from `kubectl get node -o json`) shows that differs
    from the target: the cri-socket annotation, the runtime label, the runtime."""
    if item is None:
        return [Drift(NODE_OBJECT, "present", "missing")]
    meta = item.get("metadata") or {}
    runtime = ((item.get("status") or {}).get("nodeInfo") or {}).get("containerRuntimeVersion", "")
    checks = [
        (f"annotation {CRI_SOCKET_ANNOTATION}", target.cri_endpoint,
         (meta.get("annotations") or {}).get(CRI_SOCKET_ANNOTATION, "(none)")),
        (f"label {RUNTIME_LABEL}", target.runtime, (meta.get("labels") or {}).get(RUNTIME_LABEL, "(none)")),
    ]
    found = [Drift(fact, expected, seen) for fact, expected, seen in checks if seen != expected]
    prefix = RUNTIME_VERSION_PREFIX[target.runtime]
    if not runtime.startswith(prefix):
        found.append(Drift("containerRuntimeVersion", prefix + "...", runtime or "(none)"))
    return found


def _digest_of(runtime: str, files: dict[str, str]) -> str:
    """Hash of the desired state: changes exactly when what we would write changes."""
    return hashlib.sha256(json.dumps({"runtime": runtime, "files": files}, sort_keys=True).encode()).hexdigest()


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:12]


def plan_batches(nodes: tuple[NodeSpec, ...], rollout: RolloutPolicy) -> list[list[str]]:
    """Control-plane nodes first, one at a time; then `canary` workers alone;
    then the remaining workers in batches of at most `max_unavailable`."""
    batches: list[list[str]] = [[node.name] for node in nodes if node.is_control_plane]
    workers = [node.name for node in nodes if not node.is_control_plane]
    canaries, rest = workers[:rollout.canary], workers[rollout.canary:]
    batches.extend([name] for name in canaries)
    size = rollout.max_unavailable
    batches.extend(rest[i:i + size] for i in range(0, len(rest), size))
    return batches


def docker_socket_pods(pods: dict) -> dict[str, list[str]]:
    """Pods (from `kubectl get pods -A -o json`) whose hostPath volumes reach
    docker.sock or dockershim.sock, directly or through a parent directory."""
    sockets = tuple(prefix + path.removeprefix("/run") for path in (DOCKER_SOCKET, DOCKERSHIM_SOCKET)
                    for prefix in ("/var/run", "/run"))
    found: dict[str, list[str]] = {}
    for pod in pods.get("items", []):
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            continue
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            host_path = (volume.get("hostPath") or {}).get("path")
            if not host_path:
                continue
            path = host_path.rstrip("/") or "/"
            if any(sock == path or sock.startswith(path + "/") or path == "/" for sock in sockets):
                meta = pod.get("metadata") or {}
                found.setdefault(node, []).append(f"{meta.get('namespace', 'default')}/{meta.get('name', '?')} (hostPath {path})")
                break
    return found


def fleet_settings_summary(settings: Settings, plans: list[NodePlan]) -> dict:
    counts: dict[str, int] = {}
    for plan in plans:
        counts[plan.action] = counts.get(plan.action, 0) + 1
    batches = plan_batches(settings.nodes, settings.rollout)
    by_name = {plan.node.name: plan for plan in plans}
    order = [[name for name in batch if by_name[name].action not in ("in-sync", "blocked")] for batch in batches]
    return {
        "nodes": len(plans),
        "counts": counts,
        "plannedOrder": [batch for batch in order if batch],
        "clusterMode": settings.cluster_mode,
    }
