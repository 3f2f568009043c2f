"""What a node looks like now, parsed from `scripts/probe.sh` output. Pure."""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from components.manifest import (
    CRI_DOCKERD_ENDPOINT, CRI_DOCKERD_UNITS, DAEMON_JSON, KUBEADM_FLAGS, KUBELET_CONFIG, ORIGINAL_DAEMON_JSON,
)
from components.model import CRI_ENDPOINTS, IMAGE_CARRY


class ImagesToCarry(NamedTuple):
    """Docker's images pre-stage would copy into the target's store, and their bytes."""

    images: int
    bytes: int


class ProbeError(Exception):
    pass


@dataclass(frozen=True)
class UnitState:
    enabled: str  # enabled | disabled | masked | static | not-found
    active: str  # active | inactive | failed | activating ...

    @property
    def is_enabled(self) -> bool:
        return self.enabled == "enabled"

    @property
    def is_active(self) -> bool:
        return self.active == "active"


@dataclass(frozen=True)
class NodeFacts:
    facts: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)
    # Files the node has but that are not UTF-8 text: path -> why. Never decoded
    # with replacement characters, which would change them silently.
    unreadable: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str:
        return self.facts.get(key, "")

    def unit(self, name: str) -> UnitState:
        enabled, _, active = self.get(f"unit.{name}").partition("/")
        return UnitState(enabled or "not-found", active or "inactive")

    @property
    def kubelet_version(self) -> str:
        """"v1.23.17" from "Kubernetes v1.23.17"; "" when no kubelet answered."""
        match = re.search(r"v?(\d+\.\d+\.\d+)", self.get("kubelet.version"))
        return f"v{match.group(1)}" if match else ""

    @property
    def containerd_version(self) -> str:
        return self.get("containerd.version").lstrip("v")

    @property
    def runtime_paths(self) -> dict[str, str]:
        """Each OCI runtime path daemon.json names, as written -> the absolute
        path the node runs for it ("" = no such executable there), from the
        probe's "ociruntime.N.path" / "ociruntime.N.found" facts."""
        paths = {}
        for key, path in self.facts.items():
            number = re.fullmatch(r"ociruntime\.(\d+)\.path", key)
            if number and path:
                paths[path] = self.get(f"ociruntime.{number.group(1)}.found")
        return paths

    @property
    def docker_running(self) -> bool:
        """Docker answered the probe's image questions (it counts images only then)."""
        return self.get("images.docker") == "running"

    def images_to_carry(self, mode: str) -> ImagesToCarry:
        """What pre-stage would carry from Docker under target.images `mode`, as
        the probe counted it with pre-stage's own selection (node-lib.sh
        images_to_carry, images_wanted): the images with a name the target can
        take and does not hold yet under the same ID. Nothing for `none`, when
        Docker is not running or when the probe did not say."""
        if mode not in IMAGE_CARRY:
            raise ValueError(f"unknown target.images {mode!r}")
        if mode == "none":
            return ImagesToCarry(0, 0)
        return ImagesToCarry(self._count(f"images.{mode}.count"), self._count(f"images.{mode}.bytes"))

    def digests_not_carried(self, mode: str) -> tuple[int, int]:
        """Under target.images `mode`, the registry digest names (repo@sha256:...)
        of the selected images the target cannot take, and how many of those
        images get no name at all (known only by digest): CRI-O's, which checks
        that what it stores has the digest; the probe reports 0 for containerd."""
        if mode not in ("pods", "all"):
            return 0, 0
        return self._count(f"images.{mode}.digests"), self._count(f"images.{mode}.nameless")

    @property
    def untagged_images(self) -> int:
        """Docker's dangling images (neither a tag nor a registry digest), which
        no target.images mode carries."""
        return self._count("images.untagged")

    def _count(self, key: str) -> int:
        """A whole number the probe reported; 0 when it did not (an older
        probe, Docker gone) or reported something else."""
        value = self.get(key)
        return int(value) if value.isascii() and value.isdigit() else 0

    @property
    def daemon_json_path(self) -> str:
        """Where Docker's settings as they were before shimless touched the node are."""
        return ORIGINAL_DAEMON_JSON if ORIGINAL_DAEMON_JSON in self.files or \
            ORIGINAL_DAEMON_JSON in self.unreadable else DAEMON_JSON

    @property
    def kubelet_endpoint(self) -> str:
        """The CRI endpoint the kubelet is configured for; "" means dockershim.

        A flag wins over the KubeletConfiguration, and of repeated flags the
        last, as for the kubelet; the running kubelet's command line counts
        when kubeadm-flags.env says nothing."""
        for flags in (self.files.get(KUBEADM_FLAGS, ""), self.get("kubelet.cmdline")):
            found = re.findall(r"--container-runtime-endpoint(?:=|\s+)[\"']?([^\s\"']+)", flags)
            if found:
                return found[-1]
        match = re.search(r"^containerRuntimeEndpoint:\s*[\"']?([^\s\"']+)", self.files.get(KUBELET_CONFIG, ""), re.M)
        return match.group(1) if match else ""

    @property
    def runtime(self) -> str:
        """The runtime the kubelet uses: docker, containerd, cri-o, cri-dockerd or unknown."""
        endpoint = self.kubelet_endpoint
        if not endpoint or "dockershim" in endpoint:
            return "docker" if self.kubelet_version else "unknown"
        for runtime, cri_endpoint in {**CRI_ENDPOINTS, "cri-dockerd": CRI_DOCKERD_ENDPOINT}.items():
            if _socket(endpoint) == _socket(cri_endpoint):
                return runtime
        # cri-dockerd listening elsewhere (its --container-runtime-endpoint):
        # known by its units.
        if any(self.unit(unit).is_active for unit in CRI_DOCKERD_UNITS) or "cri-dockerd" in endpoint:
            return "cri-dockerd"
        return "unknown"


def _socket(endpoint: str) -> str:
    """Socket path of a CRI endpoint; /var/run is /run on every systemd host."""
    path = endpoint.removeprefix("unix://")
    return "/run/" + path[len("/var/run/"):] if path.startswith("/var/run/") else path


def parse_probe_output(text: str) -> NodeFacts:
    facts: dict[str, str] = {}
    files: dict[str, str] = {}
    unreadable: dict[str, str] = {}
    # probe.sh ends every line with "\n"; str.splitlines would also split a
    # value at \x85 or \u2028.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        kind, _, rest = line.partition(" ")
        key, _, value = rest.partition(" ")
        if kind == "fact" and key:
            facts[key] = value
        elif kind == "file" and key.startswith("/"):
            try:
                content = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ProbeError(f"probe line {number}: bad base64 for {key}: {exc}") from exc
            try:
                files[key] = content.decode("utf-8")
            except UnicodeDecodeError as exc:
                unreadable[key] = f"not UTF-8 text (byte 0x{content[exc.start]:02x} at offset {exc.start})"
        else:
            raise ProbeError(f"probe line {number}: unexpected output {ascii(line[:80])}")
    if "os.id" not in facts:
        raise ProbeError("probe printed no facts (did the script run?)")
    return NodeFacts(facts=facts, files=files, unreadable=unreadable)
