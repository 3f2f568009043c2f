"""RuntimeMigration: the fleet. Orders the nodes into batches (control plane
one at a time, canaries, then workers by maxUnavailable). A batch's disruptive
chain (drain -> switch -> verify -> uncordon -> cleanup) waits for the whole
previous batch, so a failure stops the rollout there.

Pipelined rollout: a batch's pre-stage (preflight and prestage: nothing the
node serves with changes) runs up to `rollout.prestageAhead` batches ahead of
the batch being switched. The pre-stage of batch k waits for batch
k - prestageAhead - 1 to be done, so while batch j is switched, batches
j+1 .. j+prestageAhead may pre-stage; its drain (or switch, without a
cluster) waits for its own prestage and for batch k-1. At most
`rollout.prestageParallel` pre-stages run at once: in pre-stage order (batch
by batch, node by node) node i's pre-stage waits for node i-prestageParallel's
prestage, so pre-stages run in that many lanes, each one at a time (a slow
node holds up its own lane only). prestageAhead 0 is the unpipelined order:
a batch's pre-stage waits for the previous batch, and no lanes.

A batch's resources are declared only once the batch its pre-stage waits
for has its last steps registered (in `up`: done). The engine sees the same
resources and the same dependencies as if everything were declared at once;
the Python SDK does not. Its end-of-program loop re-arms a callback on every
pending Output each time any Output resolves, and each step's dependency
declaration walks everything the dependency depends on. Declared all at
once, a rollout (one chain of batches) makes both grow with the square of the
fleet: 660 s for a 1,000-node preview. Declared batch by batch, with every
dependency on another node through a by-URN stand-in, both stay within the
prestageAhead + 1 batches declared at a time (bench/preview_scale.py, README).
In preview, where nothing runs, a batch is declared once the batch before it
is: the same graph, and no Outputs left waiting on a batch still being
planned, which would wake that loop at every step of the fleet."""
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
        rollout = settings.rollout

        def declare(plan: NodePlan, after: list[pulumi.Output[pulumi.Resource]],
                    disrupt_after: list[pulumi.Output[pulumi.Resource]]) -> NodeRuntime:
            node = NodeRuntime(
                f"{name}-{plan.node.name}",
                NodeRuntimeArgs(plan=plan, settings=settings, private_key=args.private_keys[plan.node.name],
                                kubeconfig=args.kubeconfig, k8s_provider=provider, after=tuple(after),
                                disrupt_after=tuple(disrupt_after)),
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.nodes[plan.node.name] = node
            return node

        async def roll_out() -> dict[str, dict]:
            declared: list[list[NodeRuntime]] = []
            ends: dict[int, list[pulumi.Output[pulumi.Resource]]] = {}
            prestage_order: list[tuple[int, NodeRuntime]] = []  # (batch, node), in the order pre-stages start
            ahead: dict[str, int] = {}

            def end_of(batch: int) -> list[pulumi.Output[pulumi.Resource]]:
                """Stand-ins for the batch's last steps, made once per batch."""
                if batch not in ends:
                    ends[batch] = [by_urn(node.done) for node in declared[batch]]
                return ends[batch]

            for index, batch in enumerate(batches):
                gate = index - rollout.prestage_ahead - 1  # the batch this batch's pre-stage waits for
                # Registered means done in `up`: the batch is declared as its pre-stage may start. In
                # preview nothing starts, and once the batch before is planned is cheapest (see above).
                declare_after = index - 1 if pulumi.runtime.is_dry_run() else gate
                if declare_after >= 0:
                    await asyncio.gather(*(node.done.urn.future() for node in declared[declare_after]))
                after = end_of(gate) if gate >= 0 else []
                # With prestageAhead 0 the pre-stage already waits for the previous batch.
                disrupt_after = end_of(index - 1) if rollout.prestage_ahead and index else []
                nodes = []
                for plan in batch:
                    lane: list[pulumi.Output[pulumi.Resource]] = []
                    if rollout.prestage_ahead and len(prestage_order) >= rollout.prestage_parallel:
                        lane_batch, lane_node = prestage_order[-rollout.prestage_parallel]
                        if lane_batch > gate:  # else its prestage is done before the gate batch is
                            lane = [by_urn(lane_node.steps["prestage"])]
                    node = declare(plan, after + lane, disrupt_after)
                    prestage_order.append((index, node))
                    nodes.append(node)
                    ahead[plan.node.name] = min(rollout.prestage_ahead, index)
                declared.append(nodes)
            # prestageAhead: how many batches before its own this node's pre-stage may overlap; when the
            # rollout stops at a failed batch, nodes up to that many batches further on may be pre-staged.
            return {node_name: {**node.report, "prestageAhead": ahead[node_name]}
                    for node_name, node in self.nodes.items()}

        self.reports = _output_of(roll_out())
        self.summary = fleet_settings_summary(settings, list(args.plans))
        self.register_outputs({"summary": self.summary})
