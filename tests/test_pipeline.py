"""The pipelined rollout's resource graph under Pulumi mocks: pre-stage runs
ahead of the batch being switched, bounded by rollout.prestageAhead and
rollout.prestageParallel; the disruptive chain keeps the batch order; and
prestageAhead 0 is the graph from before the pipeline."""
from __future__ import annotations

import asyncio
import gc
import threading

import pulumi
import pytest

from components.config import ConfigError, parse_settings
from components.plan import plan_batches
from tests.test_components import build, raw_config, run_program

# The graph as the rollout built it before pre-staging could run ahead,
# recorded from the code of dd0cd4b for 2 control-plane nodes and 5 workers,
# canary 1, maxUnavailable 2 (batches cp1 | cp2 | w1 | w2 w3 | w4 w5): each
# node's steps and what they wait for within the node, and the edges between
# nodes (the same with and without a cluster). One change since, on purpose:
# node-patch follows verify (a node rolled back keeps its old annotation).
NODES = ("cp1", "cp2", "w1", "w2", "w3", "w4", "w5")
WITHIN_NODE_WITH_CLUSTER = """
cleanup: uncordon
drain: preflight prestage
node-patch: verify
prestage: preflight
switch: drain
uncordon: drain node-patch
verify: switch
"""
WITHIN_NODE_WITHOUT_CLUSTER = """
cleanup: switch
prestage: preflight
switch: prestage
"""
BETWEEN_NODES = """
cp2-preflight: cp1-cleanup
w1-preflight: cp2-cleanup
w2-preflight: w1-cleanup
w3-preflight: w1-cleanup
w4-preflight: w2-cleanup w3-cleanup
w5-preflight: w2-cleanup w3-cleanup
"""


def graph(registrations) -> dict[str, set[str]]:
    """Resource name -> the names it depends on, without the "shimless-" prefix."""
    def short(urn_or_name: str) -> str:
        return urn_or_name.rsplit("::", 1)[-1].removeprefix("shimless-")
    return {short(r.name): {short(d) for d in r.dependencies} for r in registrations}


def recorded(within_node: str) -> dict[str, set[str]]:
    """The recorded graph: every node's own steps, then the edges between nodes."""
    edges: dict[str, set[str]] = {}
    for line in within_node.strip().splitlines():
        step, deps = line.split(":", 1)
        edges.update({f"{node}-{step}": {f"{node}-{dep}" for dep in deps.split()} for node in NODES})
    for line in BETWEEN_NODES.strip().splitlines():
        step, deps = line.split(":", 1)
        edges[step] = edges.get(step, set()) | set(deps.split())
    return edges


def ancestors(edges: dict[str, set[str]], name: str) -> set[str]:
    """Everything `name` waits for, directly or not."""
    seen: set[str] = set()
    stack = list(edges[name])
    while stack:
        dep = stack.pop()
        if dep not in seen:
            seen.add(dep)
            stack.extend(edges.get(dep, ()))
    return seen


def built(pulumi_mocks, workers: int = 5, control_planes: int = 2, cluster: bool = True, **rollout):
    """Build the fleet under mocks; its graph, its batches and the migration."""
    raw = raw_config(workers=workers, control_planes=control_planes,
                     rollout={"canary": 1, "maxUnavailable": 2, **rollout})
    if not cluster:
        raw["cluster"] = {"mode": "none"}
        del raw["kubeconfig"]
    settings = parse_settings(raw)
    migration = {}
    run_program(lambda: migration.setdefault("m", build(settings)))
    return graph(pulumi_mocks), plan_batches(settings.nodes, settings.rollout), migration["m"]


@pytest.mark.parametrize("cluster, before", [(True, WITHIN_NODE_WITH_CLUSTER), (False, WITHIN_NODE_WITHOUT_CLUSTER)],
                         ids=["with-cluster", "without-cluster"])
def test_prestage_ahead_0_gives_the_graph_from_before_the_pipeline(pulumi_mocks, cluster, before):
    edges, _, _ = built(pulumi_mocks, cluster=cluster, prestageAhead=0, prestageParallel=1)
    assert {name: deps for name, deps in edges.items() if deps} == recorded(before)


def test_prestage_of_batch_k_plus_2_does_not_wait_for_the_switch_of_batch_k(pulumi_mocks):
    edges, batches, _ = built(pulumi_mocks, workers=9)
    assert len(batches) == 7
    for k, batch in enumerate(batches):
        for later in batches[k + 1:k + 3]:
            for node in later:
                waits = ancestors(edges, f"{node}-prestage")
                assert not any(f"{earlier}-{step}" in waits for earlier in batch
                               for step in ("drain", "switch", "verify", "uncordon", "cleanup")), (node, batch)
        # Not further ahead than that: batch k+3 pre-stages only once batch k is done.
        for node in (batches[k + 3] if k + 3 < len(batches) else []):
            assert {f"{earlier}-cleanup" for earlier in batch} <= edges[f"{node}-preflight"], node


@pytest.mark.parametrize("cluster, first_disruptive", [(True, "drain"), (False, "switch")])
def test_switch_of_batch_k_plus_1_waits_for_batch_k_and_its_own_prestage(pulumi_mocks, cluster, first_disruptive):
    edges, batches, _ = built(pulumi_mocks, workers=9, cluster=cluster)
    for previous, batch in zip(batches, batches[1:]):
        for node in batch:
            waits = edges[f"{node}-{first_disruptive}"]
            assert f"{node}-prestage" in waits
            assert {f"{earlier}-cleanup" for earlier in previous} <= waits, node
            switch_waits = ancestors(edges, f"{node}-switch")
            assert {f"{earlier}-uncordon" for earlier in previous if cluster} <= switch_waits


def test_a_batch_is_declared_only_once_the_batch_its_pre_stage_waits_for_is_done(pulumi_mocks):
    # Bounds what the SDK holds pending to prestageAhead + 1 batches (migration.py's docstring).
    _, batches, _ = built(pulumi_mocks, workers=9, prestageAhead=1)
    order = [r.name for r in pulumi_mocks]
    for gate, batch in zip(batches, batches[2:]):
        first = min(order.index(f"shimless-{node}") for node in batch)
        assert all(order.index(f"shimless-{node}-cleanup") < first for node in gate), batch


def widest_prestage_set(edges: dict[str, set[str]], nodes: list[str]) -> int:
    """The most pre-stages the graph lets run at once: the largest set of nodes
    none of whose pre-stage (preflight .. prestage) waits for another's. By
    Dilworth's theorem, the node count minus a maximum matching of "a's
    prestage comes before b's preflight"."""
    after = {a: [b for b in nodes if b != a and f"{a}-prestage" in ancestors(edges, f"{b}-preflight")]
             for a in nodes}
    match: dict[str, str] = {}  # b -> a

    def augment(a: str, seen: set[str]) -> bool:
        for b in after[a]:
            if b not in seen:
                seen.add(b)
                if b not in match or augment(match[b], seen):
                    match[b] = a
                    return True
        return False

    return len(nodes) - sum(augment(a, set()) for a in nodes)


@pytest.mark.parametrize("parallel", [1, 3, 5])
def test_never_more_than_prestage_parallel_pre_stages_in_flight(pulumi_mocks, parallel):
    edges, batches, _ = built(pulumi_mocks, workers=17, maxUnavailable=4, prestageAhead=3, prestageParallel=parallel)
    nodes = [node for batch in batches for node in batch]
    assert widest_prestage_set(edges, nodes) == parallel


def test_without_the_bound_pre_stages_would_overlap_more(pulumi_mocks):
    # The measure above can fail: with lanes wider than the window, the window decides
    # (batches w2-w5 .. w14-w17 pre-stage together while w1 is switched).
    edges, batches, _ = built(pulumi_mocks, workers=17, maxUnavailable=4, prestageAhead=3, prestageParallel=100)
    assert widest_prestage_set(edges, [node for batch in batches for node in batch]) == 4 * 4


def test_nodes_output_says_how_far_ahead_each_node_may_pre_stage(pulumi_mocks):
    _, _, migration = built(pulumi_mocks, workers=5)
    reports = {}

    async def collect():
        reports.update(await migration.reports.future())

    run_program(lambda: pulumi.Output.from_input(collect()))
    # Batches cp1 | cp2 | w1 | w2 w3 | w4 w5, prestageAhead 2 by default.
    assert {name: report["prestageAhead"] for name, report in reports.items()} == {
        "cp1": 0, "cp2": 1, "w1": 2, "w2": 2, "w3": 2, "w4": 2, "w5": 2}


def test_prestage_keys_default_from_the_schema_and_are_validated():
    raw = raw_config(workers=1, control_planes=0)
    assert (parse_settings(raw).rollout.prestage_ahead, parse_settings(raw).rollout.prestage_parallel) == (2, 8)
    with pytest.raises(ConfigError) as info:
        parse_settings({**raw, "rollout": {"prestageAhead": -1, "prestageParallel": 0}})
    assert info.value.problems == ["shimless:rollout.prestageAhead: must be >= 0, got -1",
                                   "shimless:rollout.prestageParallel: must be >= 1, got 0"]
    with pytest.raises(ConfigError) as info:
        parse_settings({**raw, "rollout": {"prestageAhead": "two"}})
    assert info.value.problems == ["shimless:rollout.prestageAhead: must be an integer, got 'two'"]


def run_mocked(settings, registered: list[tuple[str, set[str]]], create=None, preview: bool = False) -> None:
    """Build the fleet under mocks whose resource creation is `create(name)`
    (it may block, or raise); `registered` gets every registration, as (name,
    dependencies), in the order the program sent them."""
    from pulumi.runtime.mocks import MockMonitor

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args):
            if create is not None:
                create(args.name.removeprefix("shimless-"))
            return f"{args.name}-id", {**args.inputs, "stdout": "ok\n", "stderr": ""}

        def call(self, args):
            return {}

    class Recording(MockMonitor):
        def RegisterResource(self, request):
            registered.append((request.name.removeprefix("shimless-"),
                               {dep.rsplit("::", 1)[1].removeprefix("shimless-") for dep in request.dependencies}))
            return super().RegisterResource(request)

    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="shimless", stack="unit", preview=preview, monitor=Recording(mocks))
    try:
        run_program(lambda: build(settings))
    finally:
        pulumi.runtime.settings.configure(pulumi.runtime.settings.Settings(project="shimless", stack="unit"))


def test_preview_plans_the_same_graph_as_up():
    # migration.py declares batches on another schedule in preview; the engine must not see a difference.
    settings = parse_settings(raw_config(workers=9, control_planes=2,
                                         rollout={"canary": 1, "maxUnavailable": 2, "prestageParallel": 3}))
    up: list[tuple[str, set[str]]] = []
    preview: list[tuple[str, set[str]]] = []
    run_mocked(settings, up)
    run_mocked(settings, preview, preview=True)
    assert dict(preview) == dict(up) and len(preview) == len(up) > 11 * 8
    assert dict(up)["w7-preflight"] == {"w4-prestage", "w1-cleanup"}  # a lane and the batch window


def test_in_up_a_later_batch_pre_stages_while_an_earlier_one_is_switched():
    # Batches cp1 | w1 | w2 w3 | w4 w5, prestageAhead 2: w4 may pre-stage once cp1 is done.
    settings = parse_settings(raw_config(workers=5, control_planes=1, rollout={"maxUnavailable": 2}))
    registered: list[tuple[str, set[str]]] = []
    w4_prestaged = threading.Event()
    seen_during_w1_switch: list[str] = []

    def create(name: str) -> None:
        if name == "w4-prestage":
            w4_prestaged.set()
        if name == "w1-switch":  # held until w4 has pre-staged, or for 20 s if it never does
            w4_prestaged.wait(timeout=20)
            seen_during_w1_switch.extend(registered_name for registered_name, _ in registered)

    run_mocked(settings, registered, create)
    assert "w4-prestage" in seen_during_w1_switch
    # Nothing disruptive started on a later batch while w1 was being switched.
    assert not any(name.endswith(("-drain", "-switch")) and not name.startswith(("cp1", "w1"))
                   for name in seen_during_w1_switch)


def test_a_failed_switch_stops_the_rollout_with_only_pre_stages_ahead_of_it():
    def create(name: str) -> None:
        if name == "w1-switch":
            raise RuntimeError("switch failed on w1")

    # Batches cp1 | w1 | w2 w3 | w4 w5 | w6, prestageAhead 2 by default.
    settings = parse_settings(raw_config(workers=6, control_planes=1, rollout={"maxUnavailable": 2}))
    registered: list[tuple[str, set[str]]] = []
    loop = asyncio.get_event_loop()
    previous_handler = loop.get_exception_handler()
    # The steps after the failed one fail with it, in futures nobody reads: expected, so not logged.
    loop.set_exception_handler(lambda _loop, context: None if "switch failed on w1" in str(context.get("exception"))
                               else _loop.default_exception_handler(context))
    try:
        with pytest.raises(RuntimeError, match="switch failed on w1"):
            run_mocked(settings, registered, create)
        gc.collect()
    finally:
        loop.set_exception_handler(previous_handler)
    names = [name for name, _ in registered]
    # How many of w2..w5 got as far as prestage before the program stopped is a race; w6 never can.
    assert {"cp1", "w1"} <= {name.split("-")[0] for name in names if name.endswith("-prestage")} <= {
        "cp1", "w1", "w2", "w3", "w4", "w5"}
    assert not any(name.startswith("w6") for name in names)
    assert [name for name in names if name.endswith(("-drain", "-switch"))] == [
        "cp1-drain", "cp1-switch", "w1-drain", "w1-switch"]
