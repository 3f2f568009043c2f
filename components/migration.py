"""RuntimeMigration: the fleet. Orders the nodes into batches (control plane
one at a time, canaries, then workers by maxUnavailable) and makes each batch
wait for the whole previous one, so a failure stops the rollout there."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.model import Settings
from components.node_runtime import NodeRuntime, NodeRuntimeArgs
from components.plan import NodePlan, fleet_settings_summary, plan_batches


@dataclass(frozen=True)
class RuntimeMigrationArgs:
    settings: Settings
    plans: tuple[NodePlan, ...]
    private_keys: dict[str, pulumi.Output[str]]  # node name -> secret key
    kubeconfig: pulumi.Output[str] | None = None  # secret


class RuntimeMigration(pulumi.ComponentResource):
    def __init__(self, name: str, args: RuntimeMigrationArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("shimless:index:RuntimeMigration", name, None, opts)
        settings = args.settings
        provider = None
        if settings.uses_cluster:
            provider = k8s.Provider(f"{name}-cluster", kubeconfig=args.kubeconfig,
                                    opts=pulumi.ResourceOptions(parent=self))
        by_name = {plan.node.name: plan for plan in args.plans}
        self.nodes: dict[str, NodeRuntime] = {}
        previous: list[pulumi.Resource] = []
        for batch in plan_batches(settings.nodes, settings.rollout):
            current: list[pulumi.Resource] = []
            for node_name in batch:
                plan = by_name[node_name]
                if plan.action == "blocked":
                    pulumi.log.warn(f"node {node_name}: {plan.describe()}")
                    continue
                node = NodeRuntime(
                    f"{name}-{node_name}",
                    NodeRuntimeArgs(plan=plan, settings=settings, private_key=args.private_keys[node_name],
                                    kubeconfig=args.kubeconfig, k8s_provider=provider, after=tuple(previous)),
                    opts=pulumi.ResourceOptions(parent=self),
                )
                self.nodes[node_name] = node
                current.append(node.done)
            previous = current or previous
        self.summary = fleet_settings_summary(settings, list(args.plans))
        self.register_outputs({"summary": self.summary})
