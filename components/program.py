"""The program's steps before any resource exists: read and validate config,
probe the nodes (read-only), scan for Docker-socket workloads, plan. Then
build the fleet component. `__main__.py` calls `run()`; tests call `build()`
with facts of their own."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Callable

import pulumi

from components.config import (
    NAMESPACE, kubeconfig_text, parse_settings, private_keys, schema_defaults, schema_types,
)
from components.facts import NodeFacts
from components.migration import RuntimeMigration, RuntimeMigrationArgs
from components.kube import KubectlError, kubectl_json
from components.model import NodeSpec, Settings
from components.plan import api_drift, docker_socket_pods, plan_node
from components.ssh import ProbeResult, probe_nodes


class PlanError(Exception):
    """The program cannot plan safely; nothing has been changed on any node."""


Prober = Callable[[list[NodeSpec], dict[str, str]], dict[str, ProbeResult]]


def read_raw_config() -> tuple[dict, set[str]]:
    """Every shimless:* key the stack sets, decoded by its schema type (secrets in plain
    text: they stay in this process and reach resources only as secret Outputs), and
    the keys Pulumi holds as secrets (parse_settings refuses credentials elsewhere)."""
    raw = {}
    encrypted = set()
    for key, kind in schema_types().items():
        text = pulumi.runtime.get_config(f"{NAMESPACE}:{key}")
        if text is None:
            continue
        if pulumi.runtime.is_config_secret(f"{NAMESPACE}:{key}"):
            encrypted.add(key)
        if kind == "string":
            raw[key] = text
        else:
            try:
                raw[key] = json.loads(text)
            except json.JSONDecodeError:
                raw[key] = text  # e.g. a bare integer set by `pulumi config set`
    return raw, encrypted


def read_cluster(kubeconfig: str) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """The Node objects by name, and the pods reaching the Docker socket by node."""
    try:
        nodes = kubectl_json(kubeconfig, "get", "nodes")
        pods = kubectl_json(kubeconfig, "get", "pods", "-A")
    except KubectlError as exc:
        raise PlanError(f"cannot read the cluster with shimless:kubeconfig: {exc}") from exc
    return {item["metadata"]["name"]: item for item in nodes.get("items", [])}, docker_socket_pods(pods)


def unpinned_hosts(settings: Settings) -> dict[str, list[str]]:
    """Each SSH endpoint reached without a pinned host key ("host:port" -> what
    reaches it: "node w1", "bastion of w1"), each endpoint once."""
    found: dict[str, list[str]] = {}
    for node in settings.nodes:
        if not node.host_key:
            found.setdefault(f"{node.host}:{node.port}", []).append(f"node {node.name}")
        if node.bastion is not None and not node.bastion.host_key:
            found.setdefault(f"{node.bastion.host}:{node.bastion.port}", []).append(f"bastion of {node.name}")
    return found


def build(settings: Settings, keys: dict[str, str], results: dict[str, ProbeResult],
          kubeconfig: str | None, socket_pods: dict[str, list[str]], stamp: str = "",
          api_nodes: dict[str, dict] | None = None) -> RuntimeMigration:
    """Plan every node and build the fleet. `api_nodes` (Node objects by name)
    is None when the API was not read (cluster.mode none, or probing off)."""
    stamp = stamp or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    refused = [r for r in results.values() if r.fatal]
    if refused:
        raise PlanError("SSH refused, nothing was changed on any node:\n" +
                        "\n".join(f"  node {r.node}: {r.error}" for r in refused))
    for endpoint, users in unpinned_hosts(settings).items():
        pulumi.log.warn(f"SSH host key of {endpoint} ({', '.join(users)}) is not pinned: it is not checked, "
                        "in the probe or in any step (shimless:allowUnpinnedHostKeys); pin it with hostKey")
    plans = []
    for node in settings.nodes:
        result = results.get(node.name)
        facts: NodeFacts | None = result.facts if result else None
        plans.append(plan_node(node, facts, probe_error=result.error if result else "",
                               docker_socket_pods=tuple(socket_pods.get(node.name, ())),
                               allow_docker_socket_workloads=settings.rollout.allow_docker_socket_workloads,
                               api_drift=tuple(api_drift(api_nodes.get(node.name), node.target))
                               if api_nodes is not None else (),
                               stamp=stamp, docker=settings.docker))
    unknown = [p for p in plans if p.action == "unknown"]
    if unknown and not pulumi.runtime.is_dry_run():
        raise PlanError("cannot update, nothing was changed: nodes not probed: " +
                        "; ".join(f"{p.node.name}: {p.reason}" for p in unknown))
    for plan in plans:
        message = f"{plan.node.name}: {plan.describe()}"
        for line in plan.drift if plan.action == "repair" else ():
            message += f"\n    drift: {line}"
        for line in plan.warnings:
            message += f"\n    warning: {line}"
        not_carried = plan.translation.get("not_carried") or []
        if not_carried:
            message += "\n    not carried over from daemon.json: " + ", ".join(item["key"] for item in not_carried)
        (pulumi.log.warn if plan.action in ("blocked", "unknown") else pulumi.log.info)(message)
    if not settings.uses_cluster:
        pulumi.log.warn("cluster.mode is none: cordon, drain, the cri-socket annotation and Ready checks through "
                        "the API are SKIPPED; nodes switch while pods are still scheduled on them")
    secret_keys = {name: pulumi.Output.secret(key) for name, key in keys.items()}
    return RuntimeMigration(
        "shimless",
        RuntimeMigrationArgs(settings=settings, plans=tuple(plans), private_keys=secret_keys,
                             kubeconfig=pulumi.Output.secret(kubeconfig) if kubeconfig else None),
    )


def run(prober: Prober = probe_nodes) -> RuntimeMigration:
    raw, encrypted = read_raw_config()
    settings = parse_settings(raw, schema_defaults(), encrypted=encrypted)
    keys = private_keys(raw, settings)
    kubeconfig = kubeconfig_text(raw, settings)
    if os.environ.get("SHIMLESS_PROBE") == "off":
        # Plan without contacting any node or the API (e.g. a CI preview of an
        # example stack): every node shows as not probed, and `up` refuses.
        pulumi.log.warn("SHIMLESS_PROBE=off: no node probed and no Docker-socket scan; `up` will refuse")
        results = {node.name: ProbeResult(node.name, None, "probing disabled by SHIMLESS_PROBE=off")
                   for node in settings.nodes}
        socket_pods: dict[str, list[str]] = {}
        api_nodes = None
    else:
        results = prober(list(settings.nodes), keys)
        api_nodes, socket_pods = read_cluster(kubeconfig) if kubeconfig else (None, {})
    return build(settings, keys, results, kubeconfig, socket_pods, api_nodes=api_nodes)
