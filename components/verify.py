"""The verify step, run where Pulumi runs (`python3 -m components.verify`, a
local command): wait until the Node is Ready with a heartbeat newer than the
switch and reports the target runtime; if it never does, roll the node back
over SSH (scripts/rollback.sh) and fail naming node and step.

Input: one JSON object on stdin (it holds the kubeconfig and the SSH key, so
the command's stdin is a secret)."""
from __future__ import annotations

import json
import re
import sys
import time
from datetime import datetime, timezone

from components.kube import KubectlError, kubectl_json
from components.model import Bastion, NodeSpec, RuntimeTarget
from components.ssh import run_over_ssh


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


def rollback(payload: dict) -> str:
    spec = payload["ssh"]
    bastion = Bastion(**spec["bastion"]) if spec.get("bastion") else None
    node = NodeSpec(name=spec["name"], host=spec["host"], port=spec["port"], user=spec["user"], role="worker",
                    host_key=spec["host_key"], target=RuntimeTarget(), bastion=bastion)
    done = run_over_ssh(node, payload["private_key"], payload["rollback_bundle"],
                        timeout=payload["health_timeout"] + 120)
    sys.stderr.write(done.stderr)
    return "rolled back to its previous runtime" if done.returncode == 0 else \
        f"ROLLBACK FAILED (exit {done.returncode}): restore it from /var/lib/shimless/backup/previous"


def main() -> int:
    payload = json.load(sys.stdin)
    name = payload["node"]
    if "switched" not in payload["switch_output"] and "in-sync" not in payload["switch_output"]:
        print(f"shimless[{name}] the switch reported nothing to verify", file=sys.stderr)
        return 1
    match = re.search(r"docker_stopped_ms=(\d+)", payload["switch_output"])
    since = datetime.fromtimestamp(int(match.group(1)) / 1000, timezone.utc) if match else \
        datetime.fromtimestamp(0, timezone.utc)
    deadline = time.monotonic() + payload["health_timeout"]
    seen = "no answer from the API"
    while time.monotonic() < deadline:
        node = node_status(payload["kubeconfig"], name)
        if node:
            ok, seen = verdict(node, payload["runtime_prefix"], since)
            if ok:
                print(f"verified {seen}")
                return 0
        time.sleep(2)
    print(f"shimless[{name}] step 'verify' failed after {payload['health_timeout']}s: {seen}", file=sys.stderr)
    if match:  # this run switched the node: undo it
        outcome = rollback(payload)
        print(f"shimless[{name}] node {name}: {outcome}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
