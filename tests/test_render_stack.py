"""`render --stack NAME --node NODE --from DIR`: exactly the files `plan_node`
gives the node (and so what `pulumi up` writes), byte for byte."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from components import cli, cli_stack
from components.config import parse_settings, read_stack_file
from components.facts import NodeFacts
from components.plan import plan_node

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKQ"
FLAGS_123 = 'KUBELET_KUBEADM_ARGS="--network-plugin=cni --pod-infra-container-image=k8s.gcr.io/pause:3.5 ' \
            '--cni-bin-dir=/usr/libexec/cni"\n'
FLAGS_128 = 'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///var/run/cri-dockerd.sock"\n'
CONFIG = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n"
DAEMON = json.dumps({"registry-mirrors": ["https://mirror.gcr.io"], "insecure-registries": ["registry.lab:5000"],
                     "exec-opts": ["native.cgroupdriver=systemd"], "log-opts": {"max-size": "10m"},
                     "data-root": "/data/docker", "live-restore": True})
# The target keys the CLI used to take from kubeadm-flags.env instead of the stack.
TARGET = {"pauseImage": "registry.example/pause:3.9", "cniBinDir": "/opt/cni/bin",
          "registryMirrors": {"quay.io": ["https://quay-mirror.example"]}}

CASES = {
    "containerd 1.6 on kubelet 1.23": (
        {"runtime": "containerd"}, FLAGS_123, ["--kubelet-version", "v1.23.17", "--containerd-version", "1.6.20"],
        {"kubelet.version": "Kubernetes v1.23.17", "containerd.version": "1.6.20"}),
    "containerd 2.0 from target.version": (
        {"runtime": "containerd", "version": "2.0.4"}, FLAGS_123, ["--kubelet-version", "v1.23.17"],
        {"kubelet.version": "Kubernetes v1.23.17"}),
    "cri-o on kubelet 1.28": (
        {"runtime": "cri-o", "source": "package"}, FLAGS_128,
        ["--kubelet-version", "v1.28.15", "--crio-version", "1.28.2"],
        {"kubelet.version": "Kubernetes v1.28.15", "crio.version": "1.28.2"}),
}


@pytest.fixture
def stacks(tmp_path, monkeypatch):
    monkeypatch.setattr(cli_stack, "STACKS_DIR", tmp_path / "stacks")
    (tmp_path / "stacks").mkdir()

    def write(name: str, target: dict) -> Path:
        path = tmp_path / "stacks" / f"Pulumi.{name}.yaml"
        path.write_text(yaml.safe_dump({"config": {
            "shimless:nodes": [{"name": "w1", "host": "10.0.0.1", "hostKey": HOST_KEY},
                               {"name": "w2", "host": "10.0.0.2", "hostKey": HOST_KEY}],
            "shimless:sshPrivateKeyPath": "/nonexistent/key", "shimless:cluster": {"mode": "none"},
            "shimless:target": {**TARGET, **target}}}))
        return path
    return write


def node_dir(root: Path, flags: str) -> Path:
    """A node's files at their node paths, as a copy of backup/original/ holds them."""
    for path, content in {"var/lib/kubelet/kubeadm-flags.env": flags, "var/lib/kubelet/config.yaml": CONFIG,
                          "etc/docker/daemon.json": DAEMON}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(content)
    return root


def written(out: Path) -> dict[str, str]:
    return {"/" + str(path.relative_to(out)): path.read_text() for path in out.rglob("*")
            if path.is_file() and path.name != cli.REPORT_NAME}


@pytest.mark.parametrize("case", sorted(CASES))
def test_render_of_a_stack_node_is_byte_identical_to_plan_node(case, stacks, tmp_path, capsys):
    target, flags, options, versions = CASES[case]
    stack_path = stacks("lab", target)
    source = node_dir(tmp_path / "original", flags)
    out = tmp_path / "out"
    code = cli.main(["render", "--stack", "lab", "--node", "w2", "--from", str(source), "--out", str(out), *options])
    assert code == 0, capsys.readouterr().err

    # The same node, its facts written out by hand as the probe reports them.
    settings = parse_settings(read_stack_file(stack_path))
    facts = NodeFacts(facts={"sudo": "yes", **versions},
                      files={"/var/lib/kubelet/kubeadm-flags.env": flags, "/var/lib/kubelet/config.yaml": CONFIG,
                             "/etc/docker/daemon.json": DAEMON})
    plan = plan_node(settings.nodes[1], facts)
    assert plan.action == "migrate", plan.reason
    assert written(out) == plan.files
    report = json.loads((out / cli.REPORT_NAME).read_text())
    assert report["pause_image"] == {"value": "registry.example/pause:3.9", "source": "target.pauseImage"}


def test_pause_image_option_overrides_the_stack_and_nothing_else(stacks, tmp_path, capsys):
    stacks("lab", {"runtime": "containerd"})
    source = node_dir(tmp_path / "original", FLAGS_123)
    base = ["render", "--stack", "lab", "--node", "w1", "--from", str(source), "--kubelet-version", "v1.23.17"]
    assert cli.main([*base, "--out", str(tmp_path / "a")]) == 0
    assert cli.main([*base, "--pause-image", "registry.k8s.io/pause:3.10", "--out", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    a, b = written(tmp_path / "a"), written(tmp_path / "b")
    assert [path for path in a if a[path] != b[path]] == ["/etc/containerd/config.toml"]
    assert 'sandbox_image = "registry.k8s.io/pause:3.10"' in b["/etc/containerd/config.toml"]


def test_containerd_version_comes_from_a_config_shimless_rendered(stacks, tmp_path, capsys):
    stacks("lab", {"runtime": "containerd"})
    source = node_dir(tmp_path / "live", FLAGS_123)
    (source / "etc/containerd").mkdir(parents=True)
    (source / "etc/containerd/config.toml").write_text(
        "# Managed by shimless; rendered for containerd 2.1.0 (config version 3)\nversion = 3\n")
    assert cli.main(["render", "--stack", "lab", "--node", "w1", "--from", str(source),
                     "--kubelet-version", "v1.23.17", "--out", str(tmp_path / "out")]) == 0, capsys.readouterr().err
    config = (tmp_path / "out/etc/containerd/config.toml").read_text()
    assert "rendered for containerd 2.1.0" in config and "bin_dirs" in config


def test_stack_form_problems_are_reported_together(stacks, tmp_path, capsys):
    stacks("lab", {"runtime": "containerd"})
    code = cli.main(["render", "--stack", "lab", "--node", "w9", "--from", str(tmp_path / "missing"),
                     "--runtime", "cri-o", "--out", str(tmp_path / "out")])
    assert code == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "shimless render: --runtime: not with --stack (the stack and --from decide it)",
        "shimless render: --kubelet-version is required (e.g. v1.23.17)",
        "shimless render: --node w9: not a node of stack lab (w1, w2)",
        f"shimless render: --from {tmp_path / 'missing'}: not a directory",
    ]
    assert not (tmp_path / "out").exists()


def test_a_bad_file_under_from_is_named_by_its_path(stacks, tmp_path, capsys):
    stacks("lab", {"runtime": "containerd"})
    source = node_dir(tmp_path / "original", FLAGS_123)
    (source / "etc/docker/daemon.json").write_text('{"log-opts": {"max-file": "0"}}')
    code = cli.main(["render", "--stack", "lab", "--node", "w1", "--from", str(source),
                     "--kubelet-version", "v1.23.17", "--out", str(tmp_path / "out")])
    assert code == 2
    assert capsys.readouterr().err == (
        f"shimless render: --from {source}/etc/docker/daemon.json: daemon.json: "
        "'log-opts.max-file' must be a positive integer, not '0'\n")


def test_unknown_stack(stacks, tmp_path, capsys):
    assert cli.main(["render", "--stack", "nope", "--node", "w1", "--from", str(tmp_path),
                     "--kubelet-version", "v1.23.17", "--out", str(tmp_path / "out")]) == 2
    assert "--stack nope: no stack file" in capsys.readouterr().err


def test_every_file_the_plan_reads_is_read_from_the_from_directory(stacks, tmp_path, capsys):
    # kubeadm's instance-config too (NodeLocalCRISocket): render reads the manifest's READ_PATHS.
    stack_path = stacks("lab", {"runtime": "containerd"})
    instance = ("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                "containerRuntimeEndpoint: unix:///var/run/cri-dockerd.sock\n")
    source = node_dir(tmp_path / "original", FLAGS_128)
    (source / "var/lib/kubelet/instance-config.yaml").write_text(instance)
    assert cli.main(["render", "--stack", "lab", "--node", "w1", "--from", str(source), "--kubelet-version",
                     "v1.31.2", "--containerd-version", "1.7.22", "--out", str(tmp_path / "out")]) == 0, \
        capsys.readouterr().err
    facts = NodeFacts(facts={"kubelet.version": "Kubernetes v1.31.2", "containerd.version": "1.7.22"},
                      files={"/var/lib/kubelet/kubeadm-flags.env": FLAGS_128, "/var/lib/kubelet/config.yaml": CONFIG,
                             "/etc/docker/daemon.json": DAEMON, "/var/lib/kubelet/instance-config.yaml": instance})
    plan = plan_node(parse_settings(read_stack_file(stack_path)).nodes[0], facts)
    assert written(tmp_path / "out") == plan.files
    assert "unix:///run/containerd/containerd.sock" in plan.files["/var/lib/kubelet/instance-config.yaml"]
