"""Planning from probed facts: actions, drift, tokens, batches, socket scan."""
from __future__ import annotations

from dataclasses import replace

import pytest

from components.config import parse_settings
from components.facts import NodeFacts, parse_probe_output
from components.plan import docker_socket_pods, plan_batches, plan_node
from tests.conftest import docker_era_facts, migrated_facts

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKQ"


def test_docker_node_is_migrated_with_translated_settings(node):
    plan = plan_node(node, docker_era_facts())
    assert plan.action == "migrate" and plan.runtime_before == "docker"
    assert plan.token.endswith("-unstamped")
    config = plan.files["/etc/containerd/config.toml"]
    assert "SystemdCgroup = true" in config and 'disabled_plugins = ["cri"]' not in config
    assert "https://mirror.example.com" in plan.files["/etc/containerd/certs.d/docker.io/hosts.toml"]
    flags = plan.files["/var/lib/kubelet/kubeadm-flags.env"]
    assert "--container-runtime=remote" in flags and "--network-plugin" not in flags
    assert "containerLogMaxSize: 50Mi" in plan.files["/var/lib/kubelet/config.yaml"]
    assert {item["key"] for item in plan.translation["not_carried"]} >= {"live-restore"}


def test_migrated_node_is_in_sync_with_the_token_it_recorded(node):
    first = plan_node(node, docker_era_facts(), stamp="20260101T000000Z")
    after = plan_node(node, migrated_facts())
    assert after.action == "in-sync" and after.drift == ()
    assert after.token == first.token  # the next preview shows no change


def test_a_node_reset_to_docker_gets_a_new_token(node):
    # Same node, same facts as the first migration: still a change for Pulumi.
    first = plan_node(node, docker_era_facts(), stamp="20260101T000000Z")
    again = plan_node(node, docker_era_facts(), stamp="20260102T000000Z")
    assert first.token != again.token


def test_adopted_node_already_on_target_gets_a_stable_token(node):
    adopted = migrated_facts()
    adopted.facts.pop("shimless.token")
    first, second = plan_node(node, adopted, stamp="a"), plan_node(node, adopted, stamp="b")
    assert first.action == "in-sync" and first.token == second.token and first.token.endswith("-adopted")


@pytest.mark.parametrize("tamper, expected", [
    (lambda f: f.files.update({"/etc/containerd/config.toml": "version = 2\n"}), "/etc/containerd/config.toml"),
    (lambda f: f.facts.update({"unit.docker.service": "enabled/active"}), "docker.service enabled"),
    (lambda f: f.facts.update({"unit.containerd.service": "disabled/inactive"}), "containerd.service active"),
    (lambda f: f.files.pop("/etc/crictl.yaml"), "/etc/crictl.yaml"),
])
def test_drift_is_named_and_moves_the_token(node, tamper, expected):
    clean = migrated_facts()
    drifted = NodeFacts(facts=dict(clean.facts), files=dict(clean.files))
    tamper(drifted)
    plan = plan_node(node, drifted)
    assert plan.action == "repair"
    assert expected in [d.fact for d in plan.drift]
    assert plan.token != plan_node(node, clean).token
    # After the repair the node records the repair's token: in sync, same token.
    repaired = NodeFacts(facts={**clean.facts, "shimless.token": plan.token}, files=clean.files)
    assert plan_node(node, repaired).token == plan.token


def test_blocked_by_docker_socket_pods_unless_allowed(node):
    plan = plan_node(node, docker_era_facts(), docker_socket_pods=("ci/runner (hostPath /var/run)",))
    assert plan.action == "blocked" and "ci/runner" in plan.reason
    allowed = plan_node(node, docker_era_facts(), docker_socket_pods=("ci/runner (hostPath /var/run)",),
                        allow_docker_socket_workloads=True)
    assert allowed.action == "migrate" and any("ci/runner" in w for w in allowed.warnings)


def test_explicit_cgroup_driver_different_from_kubelet_blocks(node):
    node = replace(node, target=replace(node.target, cgroup_driver="cgroupfs"))
    plan = plan_node(node, docker_era_facts())
    assert plan.action == "blocked" and "kubelet uses systemd" in plan.reason


def test_unreachable_node_is_unknown(node):
    plan = plan_node(node, None, probe_error="ssh: connection refused")
    assert plan.action == "unknown" and "connection refused" in plan.describe()


def test_docker_socket_scan_finds_parents_and_ignores_others():
    pods = {"items": [
        {"metadata": {"namespace": "ci", "name": "dind"}, "spec": {"nodeName": "w1", "volumes": [
            {"name": "s", "hostPath": {"path": "/var/run/docker.sock"}}]}},
        {"metadata": {"namespace": "mon", "name": "agent"}, "spec": {"nodeName": "w2", "volumes": [
            {"name": "s", "hostPath": {"path": "/run/"}}]}},
        {"metadata": {"namespace": "app", "name": "web"}, "spec": {"nodeName": "w2", "volumes": [
            {"name": "d", "hostPath": {"path": "/var/log"}}, {"name": "e", "emptyDir": {}}]}},
    ]}
    assert docker_socket_pods(pods) == {"w1": ["ci/dind (hostPath /var/run/docker.sock)"],
                                        "w2": ["mon/agent (hostPath /run)"]}


def test_batches_never_exceed_max_unavailable():
    raw_nodes = [{"name": f"w{i}", "host": f"10.0.0.{i}", "hostKey": HOST_KEY} for i in range(1, 12)]
    raw_nodes[5]["role"] = "control-plane"
    settings = parse_settings({"nodes": raw_nodes, "sshPrivateKey": "k", "cluster": {"mode": "none"},
                               "rollout": {"canary": 2, "maxUnavailable": 3}})
    batches = plan_batches(settings.nodes, settings.rollout)
    assert batches[0] == ["w6"]
    assert batches[1:3] == [["w1"], ["w2"]]
    assert all(len(b) <= 3 for b in batches)
    assert sorted(n for b in batches for n in b) == sorted(n.name for n in settings.nodes)


def test_probe_output_parses_and_rejects_garbage():
    facts = parse_probe_output("fact os.id debian\nfact unit.kubelet.service enabled/active\n"
                               "file /etc/crictl.yaml cnVudGltZS1lbmRwb2ludDogeAo=\n")
    assert facts.files["/etc/crictl.yaml"] == "runtime-endpoint: x\n"
    assert facts.unit("kubelet.service").is_active
    with pytest.raises(Exception, match="unexpected output"):
        parse_probe_output("bash: kubelet: command not found\n")


def test_verify_needs_ready_fresh_heartbeat_and_the_target_runtime():
    from datetime import datetime, timezone
    from components.verify import verdict
    since = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)

    def node(ready="True", runtime="containerd://1.6.20", beat="2026-11-22T12:00:05Z"):
        return {"status": {"conditions": [{"type": "Ready", "status": ready, "lastHeartbeatTime": beat}],
                           "nodeInfo": {"containerRuntimeVersion": runtime}}}

    assert verdict(node(), "containerd://", since)[0]
    assert not verdict(node(ready="False"), "containerd://", since)[0]
    assert not verdict(node(runtime="docker://20.10.24"), "containerd://", since)[0]
    assert not verdict(node(beat="2026-11-22T11:59:59Z"), "containerd://", since)[0]
    assert verdict({}, "containerd://", since) == (False, "Ready=? runtime=? heartbeat=?")


def test_api_drift_names_annotation_label_and_runtime(node):
    from components.plan import api_drift
    good = {"metadata": {"annotations": {"kubeadm.alpha.kubernetes.io/cri-socket": "unix:///run/containerd/containerd.sock"},
                         "labels": {"shimless.io/container-runtime": "containerd"}},
            "status": {"nodeInfo": {"containerRuntimeVersion": "containerd://1.6.20"}}}
    assert api_drift(good, node.target) == []
    bad = {"metadata": {"annotations": {"kubeadm.alpha.kubernetes.io/cri-socket": "/var/run/dockershim.sock"}},
           "status": {"nodeInfo": {"containerRuntimeVersion": "docker://20.10.24"}}}
    assert [d.fact for d in api_drift(bad, node.target)] == [
        "annotation kubeadm.alpha.kubernetes.io/cri-socket", "label shimless.io/container-runtime",
        "containerRuntimeVersion"]
    assert [d.fact for d in api_drift(None, node.target)] == ["Node object"]
    # A migrated node whose label was changed is a repair, with a new token.
    clean = migrated_facts()
    relabelled = {**good, "metadata": {**good["metadata"], "labels": {"shimless.io/container-runtime": "docker"}}}
    plan = plan_node(node, clean, api_drift=tuple(api_drift(relabelled, node.target)), stamp="x")
    assert plan.action == "repair" and plan.token != plan_node(node, clean).token
