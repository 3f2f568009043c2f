"""Read-only SSH probes run while the program plans (preview and up), with the
pinned host keys, many nodes at a time with a bound."""
from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from components.bundle import REMOTE_COMMAND, probe_script
from components.facts import NodeFacts, ProbeError, parse_probe_output
from components.model import NodeSpec

PROBE_TIMEOUT_SECONDS = 60
MAX_PARALLEL_PROBES = 16


@dataclass(frozen=True)
class ProbeResult:
    node: str
    facts: NodeFacts | None
    error: str = ""
    # Refused credentials or a host key that differs from the pinned one: never
    # just "unreachable", even in preview.
    fatal: bool = False


def _known_host(host: str, port: int, key: str) -> str:
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {key}\n"


def _hop_options(host_key: str, key_file: str, known_hosts: str, port: int) -> list[str]:
    """ssh options for one hop: its host key is checked exactly when it is pinned
    (config.py allows an unpinned one only under allowUnpinnedHostKeys), as
    pulumi-command does for the same hop (host_key given or None)."""
    # -F /dev/null: no ~/.ssh/config or /etc/ssh/ssh_config can add a ProxyCommand,
    # another key or a relaxed host key check.
    return [
        "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5",
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes" if host_key else "StrictHostKeyChecking=no",
        "-o", "IdentitiesOnly=yes", "-i", key_file, "-p", str(port),
    ]


def ssh_argv(node: NodeSpec, key_file: str, known_hosts: str) -> list[str]:
    """ssh's argv for `node`, through its bastion if any; "--" ends the options
    before each destination (user names are validated too)."""
    options = _hop_options(node.host_key, key_file, known_hosts, node.port)
    if node.bastion is not None:
        b = node.bastion
        jump = ["ssh", *_hop_options(b.host_key, key_file, known_hosts, b.port), "-W", "%h:%p", "--",
                f"{b.user}@{b.host}"]
        options += ["-o", "ProxyCommand=" + shlex.join(jump)]
    return ["ssh", *options, "--", f"{node.user}@{node.host}", REMOTE_COMMAND]


def run_over_ssh(node: NodeSpec, private_key: str, stdin: str, *, timeout: int) -> subprocess.CompletedProcess:
    """Run the remote launcher on `node` with `stdin`, checking the pinned host keys.
    The key and known_hosts live in a private temp dir only for the call."""
    with tempfile.TemporaryDirectory(prefix="shimless-ssh-") as tmp:
        key_file = os.path.join(tmp, "key")
        with open(os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as handle:
            handle.write(private_key if private_key.endswith("\n") else private_key + "\n")
        known_hosts = os.path.join(tmp, "known_hosts")
        lines = []
        if node.host_key:
            lines.append(_known_host(node.host, node.port, node.host_key))
        if node.bastion is not None and node.bastion.host_key:
            lines.append(_known_host(node.bastion.host, node.bastion.port, node.bastion.host_key))
        Path(known_hosts).write_text("".join(lines))
        # Files come back base64-encoded; a stray byte in a fact or in ssh's
        # own messages must not end the whole plan.
        return subprocess.run(ssh_argv(node, key_file, known_hosts), input=stdin, capture_output=True,
                              encoding="utf-8", errors="replace", timeout=timeout, check=False)


def probe_node(node: NodeSpec, private_key: str, *, timeout: int = PROBE_TIMEOUT_SECONDS) -> ProbeResult:
    try:
        done = run_over_ssh(node, private_key, probe_script(node.target.pause_image, node.target.runtime), timeout=timeout)
    except subprocess.TimeoutExpired:
        return ProbeResult(node.name, None, f"ssh {node.user}@{node.host}:{node.port} timed out after {timeout}s")
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        fatal = False
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in done.stderr or "Host key verification failed" in done.stderr:
            detail, fatal = "host key verification failed: the node's SSH host key differs from the pinned hostKey", True
        elif "Permission denied" in done.stderr:
            detail, fatal = f"the SSH key was refused for user {node.user} ({detail})", True
        return ProbeResult(node.name, None, f"ssh {node.user}@{node.host}:{node.port}: {detail}", fatal)
    try:
        return ProbeResult(node.name, parse_probe_output(done.stdout))
    except ProbeError as exc:
        return ProbeResult(node.name, None, f"probe output unreadable: {exc}")


def probe_nodes(nodes: list[NodeSpec], private_keys: dict[str, str], *,
                max_parallel: int = MAX_PARALLEL_PROBES) -> dict[str, ProbeResult]:
    """Probe every node, at most `max_parallel` at once; never raises per node."""
    with ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(nodes) or 1))) as pool:
        results = pool.map(lambda n: probe_node(n, private_keys[n.name]), nodes)
        return {result.node: result for result in results}
