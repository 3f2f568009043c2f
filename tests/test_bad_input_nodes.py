"""Bad files on one node: that node is blocked with a one-line reason naming
the file, and the other nodes are still planned (plan, program, drift CLI)."""
from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from components.config import parse_settings
from components.facts import DAEMON_JSON, KUBEADM_FLAGS, KUBELET_CONFIG, NodeFacts, parse_probe_output
from components.plan import plan_node
from tests.conftest import docker_era_facts

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKQ"


def with_file(path: str, content: str, **facts) -> NodeFacts:
    base = docker_era_facts()
    return NodeFacts(facts={**base.facts, **facts}, files={**base.files, path: content})


DEEP_JSON = '{"a": ' + "[" * 2000 + "]" * 2000 + "}"
BAD_FILES = {
    "kubelet config not YAML": (with_file(KUBELET_CONFIG, "cgroupDriver: [systemd\n"), KUBELET_CONFIG, "invalid YAML"),
    "kubelet config two documents": (with_file(KUBELET_CONFIG, "a: 1\n---\nb: 2\n"), KUBELET_CONFIG,
                                     "more than one YAML document"),
    "cgroupDriver Systemd": (with_file(KUBELET_CONFIG, "cgroupDriver: Systemd\n"), KUBELET_CONFIG, "'Systemd'"),
    "kubelet config alias bomb": (with_file(KUBELET_CONFIG, "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8))), KUBELET_CONFIG, "expands to more than"),
    "unterminated quote": (with_file(KUBEADM_FLAGS, 'KUBELET_KUBEADM_ARGS="--network-plugin=cni\n'), KUBEADM_FLAGS,
                           "unterminated \" quote"),
    "daemon.json 2000 deep": (with_file(DAEMON_JSON, DEEP_JSON), DAEMON_JSON, "nested more than 32 levels"),
    "daemon.json lone surrogate": (with_file(DAEMON_JSON, '{"proxies": {"http-proxy": "http://a\\ud800b"}}'),
                                   DAEMON_JSON, "lone surrogate"),
    "daemon.json surrogate key": (with_file(DAEMON_JSON, '{"x\\udfff": 1}'), DAEMON_JSON, "lone surrogate"),
    "daemon.json not JSON": (with_file(DAEMON_JSON, "{"), DAEMON_JSON, "invalid JSON"),
    "daemon.json max-file superscript": (with_file(DAEMON_JSON, '{"log-opts": {"max-file": "\\u00b2"}}'),
                                         DAEMON_JSON, "max-file"),
    "containerd 1.4": (replace(docker_era_facts(containerd="1.4.13")), "`containerd --version` on the node",
                       "containerd 1.4.13 is too old"),
    "containerd garbage": (replace(docker_era_facts(containerd="garbage")), "`containerd --version` on the node",
                           "no version number"),
    "kubelet 2.x": (replace(docker_era_facts(kubelet="v2.0.0")), "kubelet --version", "only Kubernetes 1.x"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_node_file_blocks_the_node_naming_the_file(node, case):
    facts, source, problem = BAD_FILES[case]
    plan = plan_node(node, facts)
    assert plan.action == "blocked", plan.reason
    assert plan.reason.startswith(f"{source}: ") and problem in plan.reason
    assert "\n" not in plan.reason and len(plan.reason) < 400
    plan.reason.encode("utf-8")  # printable anywhere: no surrogate in the reason itself


def test_containerd_1_4_is_upgraded_only_when_target_version_asks(node):
    upgrade = replace(node, target=replace(node.target, version="1.7.24"))
    plan = plan_node(upgrade, docker_era_facts(containerd="1.4.13"))
    assert plan.action == "migrate" and plan.runtime_version == "1.7.24"
    assert "shimless:target.version" in plan_node(node, docker_era_facts(containerd="1.4.13")).reason


def probe_line(path: str, content: bytes) -> str:
    return f"file {path} {base64.b64encode(content).decode()}\n"


def test_non_utf8_kubeadm_flags_is_never_replaced_silently(node):
    text = "fact os.id debian\n" + "".join(f"fact {k} {v}\n" for k, v in docker_era_facts().facts.items())
    text += probe_line(KUBEADM_FLAGS, b'KUBELET_KUBEADM_ARGS="--node-labels=caf\xe9"\n')
    facts = parse_probe_output(text)
    assert KUBEADM_FLAGS not in facts.files
    assert facts.unreadable[KUBEADM_FLAGS] == "not UTF-8 text (byte 0xe9 at offset 39)"
    plan = plan_node(node, facts)
    assert plan.action == "blocked"
    assert plan.reason.startswith(f"{KUBEADM_FLAGS}: not UTF-8 text")


def test_probe_lines_split_on_newline_only():
    facts = parse_probe_output("fact os.id debian\nfact kubelet.cmdline kubelet --a=x\x85y --b=\u2028z\n"
                               + probe_line("/etc/crictl.yaml", "a\u2028b\x85c\n".encode()))
    assert facts.get("kubelet.cmdline") == "kubelet --a=x\x85y --b=\u2028z"
    assert facts.files["/etc/crictl.yaml"] == "a\u2028b\x85c\n"


def test_a_line_separator_in_kubeadm_flags_stays_in_its_line(node):
    facts = with_file(KUBEADM_FLAGS, 'KUBELET_KUBEADM_ARGS="--network-plugin=cni --node-labels=a\u2028b"\n')
    flags = plan_node(node, facts).files[KUBEADM_FLAGS]
    assert flags.count("\n") == 1 and "--node-labels=a\u2028b" in flags and "--network-plugin" not in flags


def two_node_settings():
    return parse_settings({"nodes": [{"name": "w1", "host": "10.0.0.1", "hostKey": HOST_KEY},
                                     {"name": "w2", "host": "10.0.0.2", "hostKey": HOST_KEY}],
                           "sshPrivateKey": "k", "cluster": {"mode": "none"}})


def test_program_plans_the_other_nodes_when_one_has_bad_files(pulumi_mocks):
    import pulumi
    from components.program import build
    from components.ssh import ProbeResult
    settings = two_node_settings()
    results = {"w1": ProbeResult("w1", with_file(DAEMON_JSON, DEEP_JSON)),
               "w2": ProbeResult("w2", docker_era_facts())}
    built = {}
    pulumi.runtime.test(lambda: built.setdefault(
        "m", build(settings, {"w1": "k", "w2": "k"}, results, None, {})))()
    assert built["m"].summary["counts"] == {"blocked": 1, "migrate": 1}
    assert built["m"].summary["plannedOrder"] == [["w2"]]
    names = {r.name for r in pulumi_mocks}
    assert "shimless-w2-switch" in names and not any(n.startswith("shimless-w1") for n in names)


def test_drift_cli_reports_the_blocked_node_and_checks_the_others(monkeypatch, capsys):
    from components import cli, cli_stack
    from components.ssh import ProbeResult
    settings = two_node_settings()
    raw = {"nodes": [{"name": n.name, "host": n.host, "hostKey": HOST_KEY} for n in settings.nodes],
           "sshPrivateKey": "k", "cluster": {"mode": "none"}}
    monkeypatch.setattr(cli_stack, "load_stack_config", lambda stack: (raw, {"sshPrivateKey"}))
    monkeypatch.setattr(cli_stack, "probe_nodes", lambda nodes, keys, max_parallel: {
        "w1": ProbeResult("w1", with_file(KUBELET_CONFIG, "cgroupDriver: Systemd\n")),
        "w2": ProbeResult("w2", docker_era_facts())})
    assert cli.main(["drift", "--stack", "any"]) == 1
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["w1", "plan", "migratable", f"{KUBELET_CONFIG}:", "kubelet", "cgroupDriver", "must"] in [
        row[:7] for row in rows]
    assert ["w2", "kubelet", "runtime", "containerd", "docker"] in rows


def test_a_node_missing_from_the_api_is_blocked_not_the_whole_preview(pulumi_mocks):
    import pulumi
    from components.program import build
    from components.ssh import ProbeResult
    settings = parse_settings({"nodes": [{"name": "lab-cp1", "host": "10.0.0.1", "hostKey": HOST_KEY,
                                          "role": "control-plane"},
                                         {"name": "lab-w1", "host": "10.0.0.2", "hostKey": HOST_KEY}],
                               "sshPrivateKey": "k", "kubeconfig": "apiVersion: v1\n"})
    results = {n.name: ProbeResult(n.name, docker_era_facts()) for n in settings.nodes}
    api_nodes = {"lab-w1": {"metadata": {"name": "lab-w1"}, "status": {}}}
    built = {}
    pulumi.runtime.test(lambda: built.setdefault("m", build(
        settings, {"lab-cp1": "k", "lab-w1": "k"}, results, "apiVersion: v1\n", {}, api_nodes=api_nodes)))()
    assert built["m"].summary["counts"] == {"blocked": 1, "migrate": 1}
    patches = {r.name for r in pulumi_mocks if r.type == "kubernetes:core/v1:NodePatch"}
    assert patches == {"shimless-lab-w1-node-patch"}
    from components.plan import api_drift
    plan = plan_node(settings.nodes[0], docker_era_facts(),
                     api_drift=tuple(api_drift(None, settings.nodes[0].target)))
    assert plan.action == "blocked"
    assert plan.reason == ("the API has no Node lab-cp1 (re-installed and not re-joined?): "
                           "join it to the cluster first, then re-run")
