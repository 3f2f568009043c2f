"""Stack-level commands: `check-config` (validate a stack file) and `drift`
(probe every node read-only and compare it with what would be rendered now)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from components.config import (
    NAMESPACE, PROJECT_FILE, ConfigError, encrypted_keys, kubeconfig_text, parse_settings, private_keys, read_stack_file,
    schema_defaults,
)
from components.model import Settings
from components.kube import KubectlError, kubectl_json
from components.plan import Drift, api_drift, plan_node
from components.ssh import MAX_PARALLEL_PROBES, probe_nodes

STACKS_DIR = PROJECT_FILE.parent / "stacks"


def stack_file(stack: str) -> Path:
    return STACKS_DIR / f"Pulumi.{stack}.yaml"


def _fail(command: str, problems: list[str], code: int = 2) -> int:
    for problem in problems:
        print(f"shimless {command}: {problem}", file=sys.stderr)
    return code


def stack_settings(stack: str) -> tuple[dict, Settings]:
    """The stack file's raw config (secrets as placeholders) and its validated settings."""
    path = stack_file(stack)
    if not path.is_file():
        raise ConfigError([f"no stack file {path}"])
    raw = read_stack_file(path)
    return raw, parse_settings(raw, schema_defaults(), encrypted=encrypted_keys(raw))


def add_check_config(subparsers) -> None:
    parser = subparsers.add_parser("check-config", help="validate a stack's config without touching any node")
    parser.add_argument("--stack", required=True, help="stack name: reads stacks/Pulumi.NAME.yaml")
    parser.set_defaults(handler=check_config)


def check_config(args) -> int:
    """The checks preview makes before touching anything, from the stack file alone."""
    try:
        raw, settings = stack_settings(args.stack)
        private_keys(raw, settings)
        if raw.get("kubeconfigPath"):
            kubeconfig_text(raw, settings)
    except ConfigError as exc:
        return _fail("check-config", exc.problems)
    roles = sum(node.is_control_plane for node in settings.nodes)
    print(f"stack {args.stack}: config valid: {len(settings.nodes)} nodes ({roles} control-plane), "
          f"target {settings.nodes[0].target.runtime}, cluster.mode {settings.cluster_mode}")
    return 0


def add_drift(subparsers) -> None:
    parser = subparsers.add_parser("drift", help="read-only: does every node still match its target?")
    parser.add_argument("--stack", required=True, help="stack name: reads stacks/Pulumi.NAME.yaml")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--parallel", type=int, default=MAX_PARALLEL_PROBES, help="nodes probed at once")
    parser.set_defaults(handler=drift)


def load_stack_config(stack: str) -> tuple[dict, set[str]]:
    """The stack's config with secrets decrypted through the Pulumi CLI when the
    stack holds any (plain files need no CLI), and the keys stored encrypted."""
    raw = read_stack_file(stack_file(stack))
    encrypted = encrypted_keys(raw)
    if encrypted and shutil.which("pulumi"):
        done = subprocess.run(["pulumi", "config", "--show-secrets", "--json", "--stack", stack],
                              cwd=PROJECT_FILE.parent, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            raise ConfigError([f"cannot decrypt the stack's secrets with `pulumi config`: {last}"])
        for full_key, entry in json.loads(done.stdout).items():
            namespace, _, key = full_key.partition(":")
            if namespace == NAMESPACE and key in encrypted:
                value = entry.get("objectValue", entry.get("value"))
                raw[key] = value
    return raw, encrypted


def cluster_drift(settings: Settings, kubeconfig: str) -> dict[str, list[Drift]]:
    """Per node: the cri-socket annotation, the runtime label and the runtime the node reports."""
    items = {item["metadata"]["name"]: item for item in kubectl_json(kubeconfig, "get", "nodes").get("items", [])}
    return {node.name: api_drift(items.get(node.name), node.target) for node in settings.nodes}


def drift(args) -> int:
    try:
        raw, encrypted = load_stack_config(args.stack)
        settings = parse_settings(raw, schema_defaults(), encrypted=encrypted)
        keys = private_keys(raw, settings)
        kubeconfig = kubeconfig_text(raw, settings)
    except (ConfigError, FileNotFoundError) as exc:
        return _fail("drift", getattr(exc, "problems", [str(exc)]), code=1)
    results = probe_nodes(list(settings.nodes), keys, max_parallel=args.parallel)
    api: dict[str, list[Drift]] = {}
    errors: dict[str, str] = {}
    if kubeconfig:
        try:
            api = cluster_drift(settings, kubeconfig)
        except KubectlError as exc:
            errors["(cluster)"] = f"kubectl get nodes: {exc}"
    report = {}
    for node in settings.nodes:
        result = results[node.name]
        if result.facts is None:
            errors[node.name] = result.error
            report[node.name] = {"status": "unreachable", "error": result.error, "drift": []}
            continue
        # The same plan as preview's, so a node preview blocks shows blocked here too.
        plan = plan_node(node, result.facts, docker=settings.docker, api_drift=tuple(api.get(node.name, ())))
        drifts = list(plan.drift)
        status = "blocked" if plan.action == "blocked" else ("drifted" if drifts else "clean")
        report[node.name] = {"status": status, "runtime": plan.runtime_before, "reason": plan.reason,
                             "drift": [d._asdict() for d in drifts]}
    code = 1 if errors or any(r["status"] == "blocked" for r in report.values()) else (
        2 if any(r["status"] == "drifted" for r in report.values()) else 0)
    if args.json:
        print(json.dumps({"stack": args.stack, "exitCode": code, "nodes": report,
                          "errors": errors}, indent=2, sort_keys=True))
    else:
        _print_table(args.stack, report, errors)
    return code


def _print_table(stack: str, report: dict, errors: dict) -> None:
    rows = [("NODE", "FACT", "EXPECTED", "FOUND")]
    for name, entry in report.items():
        if entry["status"] == "unreachable":
            rows.append((name, "ssh", "reachable", entry["error"]))
        elif entry["status"] == "blocked":
            rows.append((name, "plan", "migratable", entry["reason"]))
        elif not entry["drift"]:
            rows.append((name, "(all)", "in sync", "in sync"))
        for item in entry["drift"]:
            rows.append((name, item["fact"], item["expected"], item["found"]))
    if "(cluster)" in errors:
        rows.append(("(cluster)", "API", "reachable", errors["(cluster)"]))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3])
    drifted = sorted(name for name, entry in report.items() if entry["drift"])
    print(f"\nstack {stack}: {len(report)} nodes, {len(drifted)} drifted"
          + (f" ({', '.join(drifted)})" if drifted else "") + f", {len(errors)} errors")
