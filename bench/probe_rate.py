"""Drift-probe throughput on the lab: the read-only probe over SSH, for the
lab's nodes repeated up to N, sequentially and with the default bound.
Usage: python bench/probe_rate.py [N]   (default 60; needs `make lab-up`)
"""
from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.config import parse_settings, private_keys, read_stack_file  # noqa: E402
from components.ssh import MAX_PARALLEL_PROBES, probe_nodes  # noqa: E402


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    raw = read_stack_file(ROOT / "stacks" / "Pulumi.lab.yaml")
    settings = parse_settings(raw)
    key = private_keys(raw, settings)[settings.nodes[0].name]
    nodes = [replace(settings.nodes[i % len(settings.nodes)], name=f"probe-{i:03d}") for i in range(count)]
    keys = {node.name: key for node in nodes}
    print(f"{'parallel':>8} {'probes':>6} {'seconds':>8} {'probes/s':>9}")
    for parallel in (1, 4, MAX_PARALLEL_PROBES):
        start = time.monotonic()
        results = probe_nodes(nodes, keys, max_parallel=parallel)
        elapsed = time.monotonic() - start
        failed = [r.error for r in results.values() if r.facts is None]
        if failed:
            raise SystemExit(f"{len(failed)} probes failed, e.g. {failed[0]}")
        print(f"{parallel:>8} {count:>6} {elapsed:>8.1f} {count / elapsed:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
