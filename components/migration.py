"""RuntimeMigration: the fleet. Orders the nodes into batches (control plane
one at a time, canaries, then workers by maxUnavailable) and makes each batch
wait for the whole previous one, so a failure stops the rollout there.

A batch's resources are declared only once the previous batch's last steps
are registered (in `up`: done). The engine sees the same resources and the
same dependencies as if everything were declared at once; the Python SDK does
not. Its end-of-program loop re-arms a callback on every pending Output each
time any Output resolves, and each step's dependency declaration walks
everything the dependency depends on. Declared all at once, a rollout (one
chain of batches) makes both grow with the square of the fleet: 660 s for a
1,000-node preview. Declared batch by batch, behind a by-URN stand-in for the
previous batch, both stay within a batch (bench/preview_scale.py, README)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Awaitable

import pulumi
import pulumi_kubernetes as k8s
from pulumi.resource import DependencyResource

from components.model import Settings
from components.node_runtime import NodeRuntime, NodeRuntimeArgs
from components.plan import NodePlan, fleet_settings_summary, plan_batches


def _output_of(awaitable: Awaitable[Any]) -> pulumi.Output[Any]:
    """A known Output of a coroutine's result, tracked by the SDK like any
    other (its failure fails the program), depending on no resource."""
    known: asyncio.Future[bool] = asyncio.get_event_loop().create_future()
    known.set_result(True)
    return pulumi.Output(set(), asyncio.ensure_future(awaitable), known)


def by_urn(resource: pulumi.Resource) -> pulumi.Output[pulumi.Resource]:
    """A `depends_on` entry for a step of the previous batch, by its URN.

    The engine gets exactly the dependency `depends_on=[resource]` gives it,
    and the SDK still waits for the step before registering the dependent. The
    stand-in has no recorded dependencies, so the SDK's cycle check stops at
    the batch boundary instead of walking the whole fleet before it. Batches
    cannot form a cycle: each depends only on the one before it."""

    async def stand_in() -> pulumi.Resource:
        return DependencyResource(await resource.urn.future())

    return _output_of(stand_in())


@dataclass(frozen=True)
class RuntimeMigrationArgs:
    settings: Settings
    plans: tuple[NodePlan, ...]
    private_keys: dict[str, pulumi.Output[str]]  # node name -> secret key
    kubeconfig: pulumi.Output[str] | None = None  # secret


class RuntimeMigration(pulumi.ComponentResource):
    nodes: dict[str, NodeRuntime]  # filled batch by batch, as the rollout reaches them
    reports: pulumi.Output[dict[str, dict]]  # every node's report, once every node is declared
    summary: dict

    def __init__(self, name: str, args: RuntimeMigrationArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("shimless:index:RuntimeMigration", name, None, opts)
        settings = args.settings
        provider = None
        if settings.uses_cluster:
            provider = k8s.Provider(f"{name}-cluster", kubeconfig=args.kubeconfig,
                                    opts=pulumi.ResourceOptions(parent=self))
        by_name = {plan.node.name: plan for plan in args.plans}
        batches: list[list[NodePlan]] = []
        for batch in plan_batches(settings.nodes, settings.rollout):
            plans = [by_name[node_name] for node_name in batch]
            for plan in plans:
                if plan.action == "blocked":
                    pulumi.log.warn(f"node {plan.node.name}: {plan.describe()}")
            runnable = [plan for plan in plans if plan.action != "blocked"]
            if runnable:
                batches.append(runnable)
        self.nodes = {}

        def declare(plan: NodePlan, previous: list[pulumi.Output[pulumi.Resource]]) -> NodeRuntime:
            node = NodeRuntime(
                f"{name}-{plan.node.name}",
                NodeRuntimeArgs(plan=plan, settings=settings, private_key=args.private_keys[plan.node.name],
                                kubeconfig=args.kubeconfig, k8s_provider=provider, after=tuple(previous)),
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.nodes[plan.node.name] = node
            return node

        async def roll_out() -> dict[str, dict]:
            previous: list[NodeRuntime] = []
            for batch in batches:
                # Registered means done in `up` (and planned in preview).
                await asyncio.gather(*(node.done.urn.future() for node in previous))
                stand_ins = [by_urn(node.done) for node in previous]
                previous = [declare(plan, stand_ins) for plan in batch]
            return {node_name: node.report for node_name, node in self.nodes.items()}

        self.reports = _output_of(roll_out())
        self.summary = fleet_settings_summary(settings, list(args.plans))
        self.register_outputs({"summary": self.summary})
