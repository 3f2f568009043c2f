"""Benchmark program: shimless's real components for N synthetic nodes whose
facts are those of a Docker-era kubeadm node (no SSH: preview needs no hosts)."""
import os
import sys
from pathlib import Path

import pulumi

if os.environ.get("BENCH_PROFILE"):  # a cProfile of the whole program run, SDK included
    import atexit
    import cProfile

    _profile = cProfile.Profile()
    _profile.enable()
    atexit.register(lambda: (_profile.disable(), _profile.dump_stats(os.environ["BENCH_PROFILE"])))

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from components.config import parse_settings  # noqa: E402
from components.program import build  # noqa: E402
from components.ssh import ProbeResult  # noqa: E402
from tests.conftest import docker_era_facts  # noqa: E402

count = pulumi.Config().require_int("nodes")
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKQ"
nodes = [{"name": f"node-{i:04d}", "host": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", "hostKey": HOST_KEY,
          "role": "control-plane" if i < 3 else "worker"} for i in range(count)]
settings = parse_settings({"nodes": nodes, "sshPrivateKey": "bench-key", "cluster": {"mode": "none"},
                           "rollout": {"canary": 1, "maxUnavailable": 10}})
facts = docker_era_facts()
migration = build(settings, {n.name: "bench-key" for n in settings.nodes},
                  {n.name: ProbeResult(n.name, facts) for n in settings.nodes}, None, {})
pulumi.export("fleet", migration.summary)
pulumi.export("nodes", migration.reports)
