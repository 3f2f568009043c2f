"""Shared fixtures: Pulumi mocks that record every registration, and facts of
Docker-era and migrated nodes as the probe would report them."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKQ"
DOCKER_DAEMON_JSON = """{
  "exec-opts": ["native.cgroupdriver=systemd"],
  "log-driver": "json-file",
  "log-opts": {"max-size": "50m", "max-file": "3"},
  "registry-mirrors": ["https://mirror.example.com"],
  "insecure-registries": ["registry.internal:5000"],
  "live-restore": true
}
"""
KUBELET_CONFIG = """apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
clusterDNS:
- 10.96.0.10
"""


def docker_era_facts(kubelet: str = "v1.23.17", containerd: str = "1.6.20"):
    from components.facts import NodeFacts
    return NodeFacts(
        facts={
            "os.id": "debian", "os.version": "12", "pkg.manager": "apt", "user.uid": "0", "sudo": "yes",
            "kubelet.version": f"Kubernetes {kubelet}", "containerd.version": containerd,
            "unit.kubelet.service": "enabled/active", "unit.docker.service": "enabled/active",
            "unit.docker.socket": "enabled/active", "unit.containerd.service": "enabled/active",
            "unit.crio.service": "not-found/inactive",
        },
        files={
            "/var/lib/kubelet/kubeadm-flags.env":
                'KUBELET_KUBEADM_ARGS="--network-plugin=cni --pod-infra-container-image=k8s.gcr.io/pause:3.6"\n',
            "/var/lib/kubelet/config.yaml": KUBELET_CONFIG,
            "/etc/docker/daemon.json": DOCKER_DAEMON_JSON,
            "/etc/containerd/config.toml": 'disabled_plugins = ["cri"]\n',
        },
    )


# What a docker_era_facts node holds after its switch to containerd 1.6 (the
# stack's default target), written out by hand rather than taken from plan_node,
# so that tests comparing the plan with it can fail.
MIGRATED_FILES = {
    "/etc/containerd/certs.d/docker.io/hosts.toml": """# Managed by shimless; local edits are overwritten.
server = "https://registry-1.docker.io"

[host."https://mirror.example.com"]
  capabilities = ["pull", "resolve"]
""",
    "/etc/containerd/certs.d/registry.internal:5000/hosts.toml": """# Managed by shimless; local edits are overwritten.
server = "http://registry.internal:5000"

[host."http://registry.internal:5000"]
  capabilities = ["pull", "resolve", "push"]
  skip_verify = true
""",
    "/etc/containerd/config.toml": """# Managed by shimless; rendered for containerd 1.6.20 (config version 2)
version = 2
disabled_plugins = []

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.6"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/opt/cni/bin"
  conf_dir = "/etc/cni/net.d"

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
""",
    "/etc/crictl.yaml": """# Managed by shimless; local edits are overwritten.
runtime-endpoint: unix:///run/containerd/containerd.sock
image-endpoint: unix:///run/containerd/containerd.sock
timeout: 10
debug: false
""",
    "/var/lib/kubelet/config.yaml": KUBELET_CONFIG + "containerLogMaxFiles: 3\ncontainerLogMaxSize: 50Mi\n",
    "/var/lib/kubelet/kubeadm-flags.env": 'KUBELET_KUBEADM_ARGS="--container-runtime=remote '
                                          '--container-runtime-endpoint=unix:///run/containerd/containerd.sock"\n',
}
# The token the migration planned at 20260101T000000Z carried, which its switch recorded.
MIGRATION_TOKEN = "2320029828991c75-20260101T000000Z"


def migrated_facts(token: str = MIGRATION_TOKEN):
    """The facts of a docker_era_facts node right after a successful switch to
    containerd that recorded `token`."""
    from components.facts import NodeFacts
    before = docker_era_facts()
    facts = {**before.facts, "unit.docker.service": "disabled/inactive", "unit.docker.socket": "disabled/inactive",
             "shimless.token": token}
    files = {**before.files, **MIGRATED_FILES,
             "/var/lib/shimless/backup/original/etc/docker/daemon.json": DOCKER_DAEMON_JSON}
    return NodeFacts(facts=facts, files=files)


@pytest.fixture
def node():
    """Worker w1 with a pinned host key, in a stack without a cluster."""
    from components.config import parse_settings
    settings = parse_settings({"nodes": [{"name": "w1", "host": "10.0.0.1", "hostKey": HOST_KEY}],
                               "sshPrivateKey": "k", "cluster": {"mode": "none"}})
    return settings.nodes[0]


@dataclass
class Registration:
    type: str
    name: str
    parent: str
    dependencies: list[str]
    inputs: dict = field(default_factory=dict)
    additional_secret_outputs: list[str] = field(default_factory=list)


@pytest.fixture
def pulumi_mocks():
    """Install Pulumi mocks for one test; yields the list of registrations."""
    import pulumi
    from pulumi.runtime.mocks import MockMonitor

    from components.protocol import format_drain, format_preflight

    registrations: list[Registration] = []

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args):
            outputs = dict(args.inputs)
            if args.typ == "command:remote:Command":
                outputs["stdout"] = format_preflight("switch") + "\n" if args.name.endswith("-preflight") else "ok\n"
                outputs["stderr"] = ""
            if args.typ == "command:local:Command":
                outputs["stdout"] = format_drain("false") + "\n" if args.name.endswith("-drain") else "ok\n"
                outputs["stderr"] = ""
            return f"{args.name}-id", outputs

        def call(self, args):
            return {}

    class RecordingMonitor(MockMonitor):
        def RegisterResource(self, request):
            registrations.append(Registration(request.type, request.name, request.parent,
                                              list(request.dependencies),
                                              additional_secret_outputs=list(request.additionalSecretOutputs)))
            return super().RegisterResource(request)

    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="shimless", stack="unit", preview=False,
                             monitor=RecordingMonitor(mocks))
    yield registrations
    pulumi.runtime.settings.configure(pulumi.runtime.settings.Settings(project="shimless", stack="unit"))
