"""`python -m components.cli drift`: exit 0 when clean, 2 when any node drifted,
1 on errors (unreachable or blocked node, unreadable config, cluster unreadable)."""
from __future__ import annotations

import json

import pytest

from components import cli, cli_stack
from components.config import ConfigError
from components.facts import NodeFacts
from components.kube import KubectlError
from components.ssh import ProbeResult
from tests.conftest import HOST_KEY, docker_era_facts, migrated_facts


def drifted_facts() -> NodeFacts:
    clean = migrated_facts()
    return NodeFacts(facts={**clean.facts, "unit.docker.service": "enabled/active"}, files=clean.files)


def no_kubelet_facts() -> NodeFacts:
    facts = docker_era_facts()
    return NodeFacts(facts={**facts.facts, "kubelet.version": ""}, files=facts.files)


STATES = {
    "clean": lambda name: ProbeResult(name, migrated_facts()),
    "drifted": lambda name: ProbeResult(name, drifted_facts()),
    "unreachable": lambda name: ProbeResult(name, None, "ssh root@10.0.0.9:22: Connection refused"),
    "blocked": lambda name: ProbeResult(name, no_kubelet_facts()),
}


@pytest.fixture
def stack(monkeypatch):
    """A stack of nodes w1, w2 whose probes answer as `states` says."""
    def configure(*states: str, cluster: dict | None = None):
        raw = {"nodes": [{"name": f"w{i}", "host": f"10.0.0.{i}", "hostKey": HOST_KEY} for i in (1, 2)],
               "sshPrivateKey": "KEY", "cluster": cluster or {"mode": "none"}}
        if cluster:
            raw["kubeconfig"] = "apiVersion: v1\n"
        monkeypatch.setattr(cli_stack, "load_stack_config",
                            lambda name: (raw, {"sshPrivateKey", "kubeconfig"}))
        monkeypatch.setattr(cli_stack, "probe_nodes", lambda nodes, keys, max_parallel: {
            node.name: STATES[state](node.name) for node, state in zip(nodes, states)})
    return configure


@pytest.mark.parametrize("states, code", [
    (("clean", "clean"), 0),
    (("clean", "drifted"), 2),
    (("drifted", "unreachable"), 1),
    (("clean", "blocked"), 1),
])
def test_exit_codes(stack, states, code, capsys):
    stack(*states)
    assert cli.main(["drift", "--stack", "unit", "--json"]) == code
    report = json.loads(capsys.readouterr().out)
    assert report["exitCode"] == code
    assert [report["nodes"][name]["status"] for name in ("w1", "w2")] == [
        {"clean": "clean", "drifted": "drifted", "unreachable": "unreachable", "blocked": "blocked"}[s]
        for s in states]


def test_the_table_names_node_and_fact(stack, capsys):
    stack("clean", "drifted")
    assert cli.main(["drift", "--stack", "unit"]) == 2
    out = capsys.readouterr().out
    # node, fact, expected, found
    assert ["w2", "docker.service", "enabled", "disabled", "enabled"] in [line.split() for line in out.splitlines()]
    assert out.rstrip().endswith("stack unit: 2 nodes, 1 drifted (w2), 0 errors")


def test_an_unreadable_cluster_is_an_error(stack, monkeypatch, capsys):
    stack("clean", "clean", cluster={"mode": "kubeconfig"})

    def refuse(settings, kubeconfig):
        raise KubectlError("connection refused")
    monkeypatch.setattr(cli_stack, "cluster_drift", refuse)
    assert cli.main(["drift", "--stack", "unit", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["errors"] == {"(cluster)": "kubectl get nodes: connection refused"}


def test_a_stack_that_cannot_be_read_is_an_error(monkeypatch, capsys):
    def unreadable(name):
        raise ConfigError(["Pulumi.unit.yaml: invalid YAML"])
    monkeypatch.setattr(cli_stack, "load_stack_config", unreadable)
    assert cli.main(["drift", "--stack", "unit"]) == 1
    assert capsys.readouterr().err == "shimless drift: Pulumi.unit.yaml: invalid YAML\n"
