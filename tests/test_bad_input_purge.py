"""docker.policy purge + removeData: what is removed is Docker's actual
data-root, never a tree that holds the new runtime's root or the system's."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from components.facts import DAEMON_JSON, NodeFacts
from components.model import DockerPolicy
from components.plan import plan_node
from tests.conftest import docker_era_facts

CLEANUP = Path(__file__).resolve().parent.parent / "components" / "scripts" / "cleanup.sh"
PURGE = DockerPolicy(mode="purge", remove_data=True)


def with_data_root(data_root: str) -> NodeFacts:
    base = docker_era_facts()
    return NodeFacts(facts=base.facts, files={**base.files, DAEMON_JSON: f'{{"data-root": "{data_root}"}}'})


@pytest.mark.parametrize("data_root, problem", [
    ("/var/lib/docker/data", "it holds the new runtime's root /var/lib/docker/data/containerd"),
    ("/mnt/disk", "it holds the new runtime's root /mnt/disk/containerd"),
    ("/var/lib", "it holds the new runtime's root /var/lib/containerd"),
    ("/var", "it holds the new runtime's root"),
    ("/etc/docker", "it is a system directory or lies in one (/etc)"),
    ("/srv", "it holds the new runtime's root /srv/containerd"),
    ("/", "it holds the new runtime's root"),
])
def test_removing_data_that_holds_the_new_root_or_the_system_blocks_the_node(node, data_root, problem):
    plan = plan_node(node, with_data_root(data_root), docker=PURGE)
    assert plan.action == "blocked"
    assert plan.reason.startswith(f"shimless:docker.removeData would delete Docker's data-root {data_root}: {problem}")
    # Without removeData the same node migrates, with the runtime's root carried next to Docker's data.
    assert plan_node(node, with_data_root(data_root), docker=DockerPolicy(mode="purge", remove_data=False)).action == "migrate"


@pytest.mark.parametrize("data_root, runtime_root", [
    ("/data/docker", "/data/containerd"),
    ("/var/lib/docker", None),
])
def test_purge_removes_docker_s_actual_data_root(node, data_root, runtime_root):
    plan = plan_node(node, with_data_root(data_root), docker=PURGE)
    assert plan.action == "migrate" and plan.docker_data_root == data_root
    config = plan.files["/etc/containerd/config.toml"]
    assert (f'root = "{runtime_root}"' in config) if runtime_root else "\nroot =" not in config


def test_cleanup_step_gets_the_data_root_in_its_bundle(pulumi_mocks):
    import base64
    import gzip

    import pulumi

    from components.config import parse_settings
    from components.program import build
    from components.ssh import ProbeResult
    from tests.conftest import HOST_KEY
    settings = parse_settings({"nodes": [{"name": "w1", "host": "10.0.0.1", "hostKey": HOST_KEY}],
                               "sshPrivateKey": "k", "cluster": {"mode": "none"},
                               "docker": {"policy": "purge", "removeData": True}})
    built = {}
    pulumi.runtime.test(lambda: built.setdefault("m", build(
        settings, {"w1": "k"}, {"w1": ProbeResult("w1", with_data_root("/data/docker"))}, None, {})))()
    stdin = {}
    pulumi.runtime.test(lambda: built["m"].nodes["w1"].steps["cleanup"].stdin.apply(
        lambda text: stdin.setdefault("text", text)))()
    variables = {}
    for line in stdin["text"].splitlines():
        parts = line.split(" ")
        if len(parts) == 3 and parts[0] == "file" and parts[1].startswith("var/"):
            variables[parts[1][4:]] = gzip.decompress(base64.b64decode(parts[2])).decode()
    assert variables["docker_data_root"] == "/data/docker" and variables["docker_remove_data"] == "true"


def remove_data_root(path: str) -> subprocess.CompletedProcess:
    """cleanup.sh's remove_data_root, on its own (no lab: nothing else of the script runs)."""
    script = ("set -euo pipefail; die() { echo \"$*\" >&2; exit 1; }; "
              f"eval \"$(sed -n '/^remove_data_root()/,/^}}/p' {CLEANUP})\"; remove_data_root \"$1\"")
    return subprocess.run(["bash", "-c", script, "bash", path], capture_output=True, text=True, check=False)


def test_cleanup_removes_the_data_root_it_is_given_and_refuses_odd_paths(tmp_path):
    data_root = tmp_path / "data" / "docker"
    (data_root / "overlay2").mkdir(parents=True)
    (tmp_path / "data" / "containerd").mkdir()
    assert remove_data_root(str(data_root)).returncode == 0
    assert not data_root.exists() and (tmp_path / "data" / "containerd").is_dir()
    for bad in ("/", "relative/docker", "/data/../etc", ""):
        done = remove_data_root(bad)
        assert done.returncode == 1 and "refusing to remove Docker's data-root" in done.stderr, bad
