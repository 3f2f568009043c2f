"""The switch with real pods: `pulumi up` of the lab with its control plane
and real 1.23 kubelets (cordon, drain, switch, verify, uncordon), a
Deployment (2 replicas) + PDB + DaemonSet running on Docker before.

Needs `LAB_CLUSTER=1 make lab-up`; resets the nodes.
Prints, per round: the whole `up`, and per node the time from its first to
its last step and the switch window (kubelet and Docker's containers stopping
to the kubelet up on containerd).
Usage: LAB_CLUSTER=1 python bench/cluster_window.py [ROUNDS]
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.disruption import timed_up  # noqa: E402
from tests import lab  # noqa: E402
from tests.test_e2e_cluster import cluster_reset, deploy_workload, wait_workload_runs_on  # noqa: E402


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    config = lab.require_lab()
    if config["config"].get("shimless:cluster") != {"mode": "kubeconfig"}:
        raise SystemExit("the lab has no control plane: LAB_CLUSTER=1 make lab-up")
    windows: list[float] = []
    for round_ in range(1, rounds + 1):
        cluster_reset()
        deploy_workload()
        wait_workload_runs_on("docker")
        total, per_node = timed_up(config)
        wait_workload_runs_on("containerd")
        windows += [window for _, window in per_node.values()]
        cells = ", ".join(f"{name} {whole:.0f}s (window {window:.1f}s)"
                          for name, (whole, window) in sorted(per_node.items()))
        print(f"round {round_}: up {total:.0f}s; per node: {cells}", flush=True)
    print(f"switch window: median {statistics.median(windows):.1f}s, max {max(windows):.1f}s "
          f"over {len(windows)} node switches")


if __name__ == "__main__":
    main()
