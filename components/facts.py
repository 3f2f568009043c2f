"""What a node looks like now, parsed from `scripts/probe.sh` output. Pure."""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

from components.model import CRI_ENDPOINTS

KUBEADM_FLAGS = "/var/lib/kubelet/kubeadm-flags.env"
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"
DAEMON_JSON = "/etc/docker/daemon.json"
ORIGINAL_DAEMON_JSON = "/var/lib/shimless/backup/original/etc/docker/daemon.json"


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
    def daemon_json_path(self) -> str:
        """Where Docker's settings as they were before shimless touched the node are."""
        return ORIGINAL_DAEMON_JSON if ORIGINAL_DAEMON_JSON in self.files or \
            ORIGINAL_DAEMON_JSON in self.unreadable else DAEMON_JSON

    @property
    def kubelet_endpoint(self) -> str:
        """The CRI endpoint the kubelet is configured for; "" means dockershim."""
        flags = self.files.get(KUBEADM_FLAGS, "") + " " + self.get("kubelet.cmdline")
        match = re.search(r"--container-runtime-endpoint[= ]+[\"']?([^\s\"']+)", flags)
        if match:
            return match.group(1)
        match = re.search(r"^containerRuntimeEndpoint:\s*[\"']?([^\s\"']+)", self.files.get(KUBELET_CONFIG, ""), re.M)
        return match.group(1) if match else ""

    @property
    def runtime(self) -> str:
        """The runtime the kubelet uses: docker, containerd, cri-o, cri-dockerd or unknown."""
        endpoint = self.kubelet_endpoint
        if not endpoint or "dockershim" in endpoint:
            return "docker" if self.kubelet_version else "unknown"
        for runtime, cri_endpoint in CRI_ENDPOINTS.items():
            if _socket(endpoint) == _socket(cri_endpoint):
                return runtime
        return "cri-dockerd" if "cri-dockerd" in endpoint else "unknown"


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
