"""The resource graph under Pulumi mocks: types, parents, ordering, counts,
cluster.mode none, skipped nodes and secrets."""
from __future__ import annotations

import pulumi

from components.config import parse_settings
from components.ssh import ProbeResult
from tests.conftest import docker_era_facts, migrated_facts

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n-----END OPENSSH PRIVATE KEY-----\n"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKQ"


def raw_config(workers: int = 4, control_planes: int = 2, **overrides) -> dict:
    nodes = [{"name": f"cp{i}", "host": f"10.0.0.{i}", "role": "control-plane", "hostKey": HOST_KEY}
             for i in range(1, control_planes + 1)]
    nodes += [{"name": f"w{i}", "host": f"10.0.1.{i}", "hostKey": HOST_KEY} for i in range(1, workers + 1)]
    raw = {"nodes": nodes, "sshPrivateKey": KEY, "kubeconfig": "apiVersion: v1\nkind: Config\n"}
    raw.update(overrides)
    return raw


def build(settings, facts_by_node=None):
    from components.program import build as build_program
    facts_by_node = facts_by_node or {}
    results = {n.name: ProbeResult(n.name, facts_by_node.get(n.name, docker_era_facts())) for n in settings.nodes}
    keys = {n.name: KEY for n in settings.nodes}
    kubeconfig = "apiVersion: v1\nkind: Config\n" if settings.uses_cluster else None
    return build_program(settings, keys, results, kubeconfig, {})


def by_name(registrations):
    return {r.name: r for r in registrations}


def run_program(fn):
    """Run fn inside the mocked program and wait for every registration."""
    return pulumi.runtime.test(fn)()


def test_each_node_has_its_steps_as_children_in_order(pulumi_mocks):
    settings = parse_settings(raw_config(workers=1, control_planes=1))
    run_program(lambda: build(settings))
    regs = by_name(pulumi_mocks)
    node = "shimless-w1"
    assert regs[node].type == "shimless:index:NodeRuntime"
    steps = ["preflight", "prestage", "drain", "switch", "node-patch", "verify", "uncordon", "cleanup"]
    for step in steps:
        assert regs[f"{node}-{step}"].parent.endswith(f"::{node}"), step
    urn = {r.name: r for r in pulumi_mocks}
    def deps(step):
        return [d.rsplit("::", 1)[1] for d in urn[f"{node}-{step}"].dependencies]
    assert f"{node}-preflight" in deps("prestage")
    assert f"{node}-prestage" in deps("drain")
    assert f"{node}-drain" in deps("switch")
    assert f"{node}-switch" in deps("verify")
    # the new annotation and label only once the node is verified (a rolled-back node keeps its old ones)
    assert f"{node}-verify" in deps("node-patch")
    assert f"{node}-node-patch" in deps("uncordon")
    assert f"{node}-uncordon" in deps("cleanup")
    types = {regs[f"{node}-{s}"].type for s in steps}
    assert types == {"command:remote:Command", "command:local:Command", "kubernetes:core/v1:NodePatch"}
    per_node = [r for r in pulumi_mocks if r.parent.endswith(f"::{node}")]
    assert len(per_node) == 8 <= 15


def test_batches_respect_max_unavailable_and_control_plane_is_serial(pulumi_mocks):
    settings = parse_settings(raw_config(workers=7, control_planes=3,
                                         rollout={"canary": 1, "maxUnavailable": 2}))
    run_program(lambda: build(settings))
    regs = by_name(pulumi_mocks)

    def waits_for(node):
        # The disruptive chain starts at the drain; what it waits for besides the node's own pre-stage.
        deps = regs[f"shimless-{node}-drain"].dependencies
        return sorted(d.rsplit("::", 1)[1].removeprefix("shimless-").removesuffix("-cleanup") for d in deps
                      if not d.endswith((f"::shimless-{node}-preflight", f"::shimless-{node}-prestage")))

    assert waits_for("cp1") == []
    assert waits_for("cp2") == ["cp1"]
    assert waits_for("cp3") == ["cp2"]
    assert waits_for("w1") == ["cp3"]  # the canary, alone
    assert waits_for("w2") == ["w1"] and waits_for("w3") == ["w1"]
    assert waits_for("w4") == ["w2", "w3"] and waits_for("w5") == ["w2", "w3"]
    assert waits_for("w6") == ["w4", "w5"] and waits_for("w7") == ["w4", "w5"]


def test_a_batch_is_declared_only_after_the_previous_batch_is_done(pulumi_mocks):
    # Unpipelined; tests/test_pipeline.py has the window of batches pre-staging ahead.
    settings = parse_settings(raw_config(workers=4, control_planes=1,
                                         rollout={"canary": 1, "maxUnavailable": 3, "prestageAhead": 0}))
    run_program(lambda: build(settings))
    order = [r.name for r in pulumi_mocks]
    first_of_batch = min(order.index(f"shimless-{n}-preflight") for n in ("w2", "w3", "w4"))
    # Every step of the canary (w1) and the control plane registered before any of the batch after.
    for node in ("cp1", "w1"):
        assert order.index(f"shimless-{node}-cleanup") < first_of_batch
    assert order.index("shimless-w1") > order.index("shimless-cp1-cleanup")


def test_cluster_mode_none_has_no_api_steps(pulumi_mocks):
    raw = raw_config(workers=2, control_planes=1, cluster={"mode": "none"})
    del raw["kubeconfig"]
    settings = parse_settings(raw)
    run_program(lambda: build(settings))
    types = {r.type for r in pulumi_mocks}
    assert "command:local:Command" not in types
    assert "kubernetes:core/v1:NodePatch" not in types
    assert "pulumi:providers:kubernetes" not in types
    assert sum(r.type == "command:remote:Command" for r in pulumi_mocks) == 3 * 4


def test_node_on_target_is_in_sync_and_out_of_the_planned_order(pulumi_mocks):
    settings = parse_settings(raw_config(workers=2, control_planes=1))
    w1 = next(n for n in settings.nodes if n.name == "w1")
    migration = {}
    run_program(lambda: migration.setdefault("m", build(settings, {"w1": migrated_facts()})))
    summary = migration["m"].summary
    assert summary["counts"] == {"migrate": 2, "in-sync": 1}
    assert summary["plannedOrder"] == [["cp1"], ["w2"]]


def secret_flags(outputs: dict) -> dict:
    """is_secret() of each Output, awaited inside the mocked program."""
    flags = {}

    async def collect():
        for key, output in outputs.items():
            flags[key] = await output.is_secret()

    run_program(lambda: pulumi.Output.from_input(collect()))
    return flags


def test_secrets_stay_secret(pulumi_mocks):
    settings = parse_settings(raw_config(workers=1, control_planes=1))
    built = {}
    run_program(lambda: built.setdefault("migration", build(settings)))
    # Nodes are declared batch by batch, so they are all there once the program ran.
    steps = built["migration"].nodes["w1"].steps
    flags = secret_flags({
        "ssh connection": steps["switch"].connection,
        "drain kubeconfig": steps["drain"].stdin,
        "verify kubeconfig": steps["verify"].stdin,
        "switch stdin (config files)": steps["switch"].stdin,
    })
    assert flags == {"ssh connection": True, "drain kubeconfig": True, "verify kubeconfig": True,
                     "switch stdin (config files)": False}


def test_proxy_credentials_travel_only_in_secret_inputs(pulumi_mocks):
    from components.facts import NodeFacts
    settings = parse_settings(raw_config(workers=2, control_planes=0))
    era = docker_era_facts()
    proxied = NodeFacts(facts=era.facts, files={**era.files, "/etc/docker/daemon.json":
                                                '{"proxies": {"https-proxy": "http://user:s3cret@proxy:3128"}}'})
    built = {}
    run_program(lambda: built.setdefault("migration", build(settings, {"w1": proxied})))
    with_proxy, without = built["migration"].nodes["w1"].steps, built["migration"].nodes["w2"].steps
    flags = secret_flags({f"w1 {step}": with_proxy[step].stdin for step in ("preflight", "prestage", "switch")}
                         | {f"w2 {step}": without[step].stdin for step in ("preflight", "switch")}
                         | {"w1 cleanup": with_proxy["cleanup"].stdin})
    assert flags == {"w1 preflight": True, "w1 prestage": True, "w1 switch": True,
                     "w2 preflight": False, "w2 switch": False, "w1 cleanup": False}
    regs = by_name(pulumi_mocks)
    assert {"stdout", "stderr"} <= set(regs["shimless-w1-switch"].additional_secret_outputs)
    assert "stdout" not in regs["shimless-w2-switch"].additional_secret_outputs
    # Nothing else the program exports or logs holds the credential.
    summary = repr(built["migration"].summary) + repr(built["migration"].nodes["w1"].report)
    assert "s3cret" not in summary
