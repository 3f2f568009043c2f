"""Stack config validation: every problem at once, each naming key and node."""
from __future__ import annotations

from pathlib import Path

import pytest

from components.config import ConfigError, parse_settings, read_stack_file, schema_defaults

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKQ"
ROOT = Path(__file__).resolve().parent.parent


def node(name="w1", host="10.0.0.1", **extra):
    return {"name": name, "host": host, "hostKey": HOST_KEY, **extra}


def problems(raw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_settings(raw)
    return info.value.problems


def test_valid_config_gets_schema_defaults():
    settings = parse_settings({"nodes": [node()], "sshPrivateKey": "k", "cluster": {"mode": "none"},
                               "drain": {"retries": 5}})
    defaults = schema_defaults()
    assert settings.drain.retries == 5
    assert settings.drain.timeout_seconds == defaults["drain"]["timeoutSeconds"]
    assert settings.nodes[0].port == defaults["sshPort"] and settings.nodes[0].user == defaults["sshUser"]
    assert settings.nodes[0].target.runtime == defaults["target"]["runtime"]
    assert settings.nodes[0].role == "worker"


def test_every_problem_is_reported_together_with_key_and_node():
    found = problems({
        "nodes": [
            node("w1", port=70000),
            node("w1", host="10.0.0.1"),
            node("w3", target={"runtime": "rkt"}),
            {"name": "w4", "host": "10.0.0.4"},
        ],
        "rollout": {"maxUnavailable": 0},
    })
    text = "\n".join(found)
    assert "shimless:nodes[0].port (node w1): must be between 1 and 65535, got 70000" in found
    assert "shimless:nodes[1].name (node w1): duplicate node name (also nodes[0])" in found
    assert "shimless:nodes[1].host (node w1): 10.0.0.1:22 is also node w1's SSH address" not in found  # port differs
    assert any(p.startswith("shimless:nodes[2].target.runtime (node w3): must be one of containerd, cri-o") for p in found)
    assert any(p.startswith("shimless:nodes[3].hostKey (node w4): is required") for p in found)
    assert any(p.startswith("shimless:rollout.maxUnavailable: must be >= 1") for p in found)
    assert any(p.startswith("shimless:kubeconfig: is required") for p in found)
    assert "shimless:nodes[0].privateKey (node w1): no SSH private key" in text


def test_duplicate_host_and_port():
    found = problems({"nodes": [node("a"), node("b")], "sshPrivateKey": "k", "cluster": {"mode": "none"}})
    assert found == ["shimless:nodes[1].host (node b): 10.0.0.1:22 is also node a's SSH address"]


@pytest.mark.parametrize("raw_node, expected", [
    (node(name="Bad_Name"), "shimless:nodes[0].name (node Bad_Name): is not a valid Kubernetes node name"),
    (node(host="not a host"), "shimless:nodes[0].host (node w1): is not an IP address or host name"),
    (node(hostKey="AAAA"), "shimless:nodes[0].hostKey (node w1): must be 'TYPE BASE64'"),
    (node(role="master"), "shimless:nodes[0].role (node w1): must be one of control-plane, worker"),
    (node(colour="blue"), "shimless:nodes[0].colour (node w1): unknown key"),
    (node(target={"cgroupDriver": "auto-ish"}), "shimless:nodes[0].target.cgroupDriver (node w1): must be one of auto"),
    (node(target={"registryMirrors": {"docker.io": ["ftp://x"]}}),
     "shimless:nodes[0].target.registryMirrors.docker.io (node w1): is not an http(s) URL: 'ftp://x'"),
    (node(target={"runtime": "cri-o", "source": "distro"}), "shimless:nodes[0].target.source (node w1): cri-o has no distro package"),
])
def test_bad_node_values(raw_node, expected):
    found = problems({"nodes": [raw_node], "sshPrivateKey": "k", "cluster": {"mode": "none"}})
    assert any(p.startswith(expected) for p in found), found


def test_cluster_mode_none_needs_no_kubeconfig_but_must_be_explicit():
    parse_settings({"nodes": [node()], "sshPrivateKey": "k", "cluster": {"mode": "none"}})
    assert any("kubeconfig: is required" in p for p in problems({"nodes": [node()], "sshPrivateKey": "k"}))


def test_unknown_top_level_key_and_empty_nodes():
    found = problems({"nodez": [], "cluster": {"mode": "none"}})
    assert found[0].startswith("shimless:nodez: unknown key")
    assert "shimless:nodes: must list at least one node" in found


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_example_stacks_validate(stack):
    settings = parse_settings(read_stack_file(ROOT / "stacks" / f"Pulumi.{stack}.yaml"))
    assert settings.nodes


def test_target_images_defaults_to_pods_and_takes_a_node_override():
    settings = parse_settings({"nodes": [node("w1"), node("w2", host="10.0.0.2", target={"images": "none"})],
                               "sshPrivateKey": "k", "cluster": {"mode": "none"}, "target": {"images": "all"}})
    assert schema_defaults()["target"]["images"] == "pods"
    assert [n.target.images for n in settings.nodes] == ["all", "none"]
    assert parse_settings({"nodes": [node()], "sshPrivateKey": "k",
                           "cluster": {"mode": "none"}}).nodes[0].target.images == "pods"


def test_target_images_rejects_an_unknown_mode_naming_key_and_node():
    found = problems({"nodes": [node("w1", target={"images": "some"})], "sshPrivateKey": "k",
                      "cluster": {"mode": "none"}})
    assert len(found) == 1 and "target.images" in found[0] and "w1" in found[0] and "'some'" in found[0], found
