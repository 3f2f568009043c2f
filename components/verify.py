"""The verify step, run where Pulumi runs (`python3 -m components.verify`, a
local command): wait until the Node is Ready with a heartbeat newer than the
switch and reports the target runtime; if it never does and this run switched
the node, roll it back over SSH (scripts/rollback.sh) and fail naming node and step.

Input: a VerifyRequest as JSON on stdin (it holds the kubeconfig and the SSH
key, so the command's stdin is a secret)."""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from components import protocol
from components.kube import KubectlError, kubectl_json
from components.manifest import BACKUP_PREVIOUS
from components.model import RUNTIME_VERSION_PREFIX, NodeSpec, node_from_dict
from components.ssh import run_over_ssh

POLL_SECONDS = 2


@dataclass(frozen=True)
class VerifyRequest:
    """Everything the verify step needs about one node and its switch."""

    node: NodeSpec
    kubeconfig: str
    private_key: str
    switch_output: str  # the switch step's stdout (scripts/switch.sh)
    health_timeout: int  # seconds
    rollback_bundle: str  # stdin for scripts/rollback.sh

    @property
    def runtime_prefix(self) -> str:
        return RUNTIME_VERSION_PREFIX[self.node.target.runtime]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> VerifyRequest:
        payload = json.loads(text)
        return cls(**{**payload, "node": node_from_dict(payload["node"])})


def node_status(kubeconfig: str, name: str) -> dict:
    try:
        return kubectl_json(kubeconfig, "get", "node", name, timeout=10)
    except KubectlError:
        return {}


def verdict(node: dict, runtime_prefix: str, since: datetime) -> tuple[bool, str]:
    status = node.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    runtime = (status.get("nodeInfo") or {}).get("containerRuntimeVersion", "")
    beat = ready.get("lastHeartbeatTime", "")
    fresh = bool(beat) and datetime.fromisoformat(beat.replace("Z", "+00:00")) >= since
    ok = ready.get("status") == "True" and runtime.startswith(runtime_prefix) and fresh
    return ok, f"Ready={ready.get('status', '?')} runtime={runtime or '?'} heartbeat={beat or '?'}"


def rollback(request: VerifyRequest) -> str:
    done = run_over_ssh(request.node, request.private_key, request.rollback_bundle,
                        timeout=request.health_timeout + 120)
    sys.stderr.write(done.stderr)
    try:
        restored = done.returncode == 0 and protocol.parse_rollback(done.stdout) == "yes"
    except protocol.ProtocolError:
        restored = False
    return "rolled back to its previous runtime" if restored else \
        f"ROLLBACK FAILED (exit {done.returncode}): restore it from {BACKUP_PREVIOUS}"


def verify(request: VerifyRequest, *, read_node: Callable[[str, str], dict] = node_status,
           undo: Callable[[VerifyRequest], str] = rollback, sleep: Callable[[float], None] = time.sleep,
           clock: Callable[[], float] = time.monotonic) -> int:
    """0 once the API shows the node healthy on its runtime; otherwise 1, after
    rolling the node back when this run switched it (never a node left in sync)."""
    name = request.node.name
    try:
        switch = protocol.parse_switch(request.switch_output)
    except protocol.ProtocolError as exc:
        print(f"shimless[{name}] the switch's result is unreadable: {exc}", file=sys.stderr)
        return 1
    if switch is None or switch.outcome not in ("switched", "in-sync"):
        print(f"shimless[{name}] the switch reported nothing to verify", file=sys.stderr)
        return 1
    since = datetime.fromtimestamp(switch.docker_stopped_ms / 1000, timezone.utc)
    deadline = clock() + request.health_timeout
    seen = "no answer from the API"
    while clock() < deadline:
        node = read_node(request.kubeconfig, name)
        if node:
            ok, seen = verdict(node, request.runtime_prefix, since)
            if ok:
                print(f"verified {seen}")
                return 0
        sleep(POLL_SECONDS)
    print(f"shimless[{name}] step 'verify' failed after {request.health_timeout}s: {seen}", file=sys.stderr)
    if switch.switched:
        print(f"shimless[{name}] node {name}: {undo(request)}", file=sys.stderr)
    return 1


def main() -> int:
    return verify(VerifyRequest.from_json(sys.stdin.read()))


if __name__ == "__main__":
    sys.exit(main())
