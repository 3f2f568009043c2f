"""What shimless deals with on a node, decided once: its own state and backup
paths, the node files it reads and writes, the units it stops and starts, the
CRI endpoint and sockets, and the units' states on the target. Pure.

The plan reads it here; every node-side step gets it in its bundle
(`shell`, sourced by scripts/node-lib.sh), so no script lists a path or a unit
of its own.

Backup layout (written by scripts/switch.sh `backup`, read by scripts/node-lib.sh
`restore_files`/`restore_units` and by the plan):

    backup/previous/            the last switch's backup; a rollback restores it
      <node path>               each file the switch replaced, as it was (cp -a: mode, owner)
      .absent                   one node path a line: files the switch created; a restore removes them
      .units                    "UNIT ENABLED ACTIVE" a line: each unit the switch stops or starts
                                (the node's source units and the runtime's service) as it was
    backup/original/            the first migration's backup/previous/, kept for good: the way back
      .complete                 to Docker, and where the plan reads daemon.json once Docker is gone;
                                present once the copy is whole
"""
from __future__ import annotations

import functools

import shlex
from typing import NamedTuple

from components.daemon_json import (
    CONTAINERD_CERTS_DIR, CONTAINERD_CONFIG, CRIO_DROP_IN, CRIO_REGISTRIES_DROP_IN, DOCKER_DEFAULT_DATA_ROOT,
    PROXY_DROP_INS,
)
from components.model import CRI_ENDPOINTS, RUNTIMES
from components.render import CRICTL_CONFIG

# --- shimless' own state on the node ------------------------------------------

STATE_DIR = "/var/lib/shimless"
RUN_DIR = f"{STATE_DIR}/run"  # where scripts/entry.sh unpacks a bundle, for one step
STAGED_DIR = f"{STATE_DIR}/staged"  # pre-stage's copy of the rendered files, which nothing reads
BACKUP_PREVIOUS = f"{STATE_DIR}/backup/previous"
BACKUP_ORIGINAL = f"{STATE_DIR}/backup/original"
# Present only while a switch (or its undoing) is under way: a copy of the
# switch's bundle and the phase reached, for the boot recovery units.
JOURNAL = f"{STATE_DIR}/journal"
TOKEN_FILE = f"{STATE_DIR}/token"  # the token of the last switch that completed
SWITCH_LOCK = f"{STATE_DIR}/switch.lock"
# The boot units that finish or undo a switch a power cut interrupted.
RECOVERY_UNIT_DIR = "/etc/systemd/system"
RECOVERY_UNIT = "shimless-recover.service"
RECOVERY_VERIFY_UNIT = "shimless-recover-verify.service"

# --- the node's files shimless reads -----------------------------------------

KUBEADM_FLAGS = "/var/lib/kubelet/kubeadm-flags.env"
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"
# Newer kubeadm (NodeLocalCRISocket) keeps the node's CRI socket here instead of
# in the Node annotation, as a KubeletConfiguration fragment.
KUBEADM_INSTANCE_CONFIG = "/var/lib/kubelet/instance-config.yaml"
DAEMON_JSON = "/etc/docker/daemon.json"
ORIGINAL_DAEMON_JSON = BACKUP_ORIGINAL + DAEMON_JSON
# What a node's desired state is computed from (components/desired.py).
READ_PATHS = (KUBEADM_FLAGS, KUBELET_CONFIG, KUBEADM_INSTANCE_CONFIG, DAEMON_JSON, ORIGINAL_DAEMON_JSON)

# --- the files shimless writes ------------------------------------------------

# containerd.service told to run the containerd pre-stage validated
# (components/runtime_unit.py). Sorted after every drop-in a site is likely to
# have (override.conf from `systemctl edit`, http-proxy.conf, NN-*.conf):
# systemd applies drop-ins in the lexical order of their names, and the last
# ExecStart wins.
CONTAINERD_BINARY_DROP_IN = "/etc/systemd/system/containerd.service.d/zz-shimless-binary.conf"
# Per target runtime, every file components/desired.py can give a node: a node
# path, or a pattern where a directory holds one file per registry (`*` stands
# for one path component, as in a shell glob).
MANAGED_PATHS = {
    "containerd": (CONTAINERD_CONFIG, f"{CONTAINERD_CERTS_DIR}/*/hosts.toml", PROXY_DROP_INS["containerd"],
                   CONTAINERD_BINARY_DROP_IN, CRICTL_CONFIG, KUBEADM_FLAGS, KUBELET_CONFIG, KUBEADM_INSTANCE_CONFIG),
    "cri-o": (CRIO_DROP_IN, CRIO_REGISTRIES_DROP_IN, PROXY_DROP_INS["cri-o"],
              CRICTL_CONFIG, KUBEADM_FLAGS, KUBELET_CONFIG, KUBEADM_INSTANCE_CONFIG),
}
# Backed up by the switch though it never writes them: Docker's settings, read
# from backup/original/ once the node has left Docker (and maybe purged it).
KEPT_PATHS = (DAEMON_JSON,)


def _unique(items) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


# What the probe reports (scripts/probe.sh): everything read, everything any target writes.
PROBED_PATHS = _unique((*READ_PATHS, *(path for paths in MANAGED_PATHS.values() for path in paths)))

# --- units and sockets ---------------------------------------------------------

KUBELET_UNIT = "kubelet.service"
# Units of what a node leaves behind, in the order the switch stops them and a
# rollback starts them again: Docker (its socket first, so socket activation
# cannot start it again) and cri-dockerd in front of it.
DOCKER_SERVICE = "docker.service"
DOCKER_UNITS = ("docker.socket", DOCKER_SERVICE)
CRI_DOCKERD_UNITS = ("cri-docker.socket", "cri-docker.service")
RUNTIME_SERVICES = {"containerd": "containerd.service", "cri-o": "crio.service"}
PROBED_UNITS = (KUBELET_UNIT,) + DOCKER_UNITS + CRI_DOCKERD_UNITS + tuple(RUNTIME_SERVICES.values())

# Mirantis cri-dockerd: Docker Engine behind CRI, the usual way to keep Docker on 1.24+.
CRI_DOCKERD_ENDPOINT = "unix:///run/cri-dockerd.sock"
DOCKER_SOCKET = "/run/docker.sock"
DOCKERSHIM_SOCKET = "/run/dockershim.sock"  # the kubelet's own, up to 1.23
# The CRI sockets kubeadm looks for when it has to guess a node's runtime
# (1.24+: containerd, CRI-O, cri-dockerd; up to 1.23 also dockershim's and
# Docker's), each with the units that serve it. With more than one present
# kubeadm refuses ("found multiple CRI endpoints on the host").
# Docker's and cri-dockerd's are served by a socket unit or by the service itself.
KNOWN_CRI_SOCKETS = {
    "/run/containerd/containerd.sock": ("containerd.service",),
    "/run/crio/crio.sock": ("crio.service",),
    "/run/cri-dockerd.sock": CRI_DOCKERD_UNITS,
    DOCKERSHIM_SOCKET: (KUBELET_UNIT,),
    DOCKER_SOCKET: DOCKER_UNITS,
}
# containerd's socket: Docker's own containerd listens there too, before any switch.
CONTAINERD_SOCKET = CRI_ENDPOINTS["containerd"].removeprefix("unix://")


def _check(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}")
    return runtime


def source_units(runtime: str) -> tuple[str, ...]:
    """The units the switch to `runtime` stops and disables, and a rollback
    restores: Docker's, cri-dockerd's and every other CRI runtime's (Docker's
    own containerd on a CRI-O node), so that the node ends with one CRI endpoint."""
    others = tuple(service for name, service in RUNTIME_SERVICES.items() if name != _check(runtime))
    return DOCKER_UNITS + CRI_DOCKERD_UNITS + others


def managed_paths(runtime: str) -> tuple[str, ...]:
    """The files (node paths or patterns) shimless may write for `runtime`."""
    return MANAGED_PATHS[_check(runtime)]


class UnitExpectation(NamedTuple):
    """A unit's state on a node that is on its target: `enabled` is enabled,
    disabled (anything but enabled) or any; `active` is active or inactive
    (anything but active)."""

    unit: str
    enabled: str
    active: str

    def differences(self, enabled: str, active: str) -> list[tuple[str, str, str]]:
        """(fact, expected, found) for each way a unit found `enabled`/`active` differs."""
        found = []
        if self.enabled != "any" and (enabled == "enabled") != (self.enabled == "enabled"):
            found.append((f"{self.unit} enabled", self.enabled, enabled))
        if (active == "active") != (self.active == "active"):
            found.append((f"{self.unit} active", self.active, active))
        return found


def target_units(runtime: str) -> tuple[UnitExpectation, ...]:
    """The units of a node on `runtime`: the runtime enabled and running, the
    kubelet running, everything the node left disabled and stopped. The plan's
    drift and the node's own check (scripts/node-lib.sh in_target_state) both
    apply this table, in this order."""
    return ((UnitExpectation(RUNTIME_SERVICES[_check(runtime)], "enabled", "active"),
             UnitExpectation(KUBELET_UNIT, "any", "active"))
            + tuple(UnitExpectation(unit, "disabled", "inactive") for unit in source_units(runtime)))


# --- for the scripts -----------------------------------------------------------

def _lines(rows) -> str:
    return "".join(" ".join(row) + "\n" for row in rows)


@functools.lru_cache(maxsize=None)  # constants: the same text for every bundle of a runtime
def shell(runtime: str | None = None) -> str:
    """The manifest as shell assignments: the bundle's manifest.sh, and the
    probe's preamble. Lists are space-separated words; tables are lines of
    words. Without a runtime, only what does not depend on it."""
    values = {
        "SHIMLESS_STATE": STATE_DIR,
        "STAGED_DIR": STAGED_DIR,
        "BACKUP_PREVIOUS": BACKUP_PREVIOUS,
        "BACKUP_ORIGINAL": BACKUP_ORIGINAL,
        "JOURNAL": JOURNAL,
        "TOKEN_FILE": TOKEN_FILE,
        "SWITCH_LOCK": SWITCH_LOCK,
        "RECOVERY_UNIT_DIR": RECOVERY_UNIT_DIR,
        "RECOVERY_UNIT": RECOVERY_UNIT,
        "RECOVERY_VERIFY_UNIT": RECOVERY_VERIFY_UNIT,
        "KUBEADM_FLAGS_ENV": KUBEADM_FLAGS,
        "DAEMON_JSONS": f"{DAEMON_JSON} {ORIGINAL_DAEMON_JSON}",
        "KEPT_PATHS": " ".join(KEPT_PATHS),
        "CONTAINERD_CONFIG": CONTAINERD_CONFIG,
        "CONTAINERD_SOCKET": CONTAINERD_SOCKET,
        "CONTAINERD_UNIT": RUNTIME_SERVICES["containerd"],
        "CONTAINERD_BINARY_DROP_IN": CONTAINERD_BINARY_DROP_IN,
        "DOCKER_DATA_ROOT": DOCKER_DEFAULT_DATA_ROOT,
        "DOCKER_SOCKETS": " ".join(path for path, units in KNOWN_CRI_SOCKETS.items()
                                   if set(units) <= set(DOCKER_UNITS + CRI_DOCKERD_UNITS)),
        "KUBELET_UNIT": KUBELET_UNIT,
        # As the scripts name it to systemctl, e.g. `systemctl stop kubelet`.
        "KUBELET": KUBELET_UNIT.removesuffix(".service"),
        "DOCKER_SERVICE": DOCKER_SERVICE,
        "RUNTIME_UNITS": " ".join(RUNTIME_SERVICES.values()),
        "CRI_SOCKETS": _lines((path, *units) for path, units in KNOWN_CRI_SOCKETS.items()),
        "PROBED_UNITS": " ".join(PROBED_UNITS),
        "PROBED_PATHS": _lines((path,) for path in PROBED_PATHS),
    }
    if runtime is not None:
        values |= {
            # As the scripts name it to systemctl, e.g. `systemctl enable containerd`.
            "RUNTIME_SERVICE": RUNTIME_SERVICES[_check(runtime)].removesuffix(".service"),
            "CRI_ENDPOINT": CRI_ENDPOINTS[runtime],
            "SOURCE_UNITS": " ".join(source_units(runtime)),
            "TARGET_UNITS": _lines(target_units(runtime)),
        }
    return "# What shimless deals with on this node (components/manifest.py).\n" + "".join(
        f"{name}={shlex.quote(value)}\n" for name, value in values.items())
