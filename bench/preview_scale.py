"""Engine `pulumi preview` time and peak memory for synthetic fleets.

Runs the real CLI on bench/program (shimless's real components, synthetic
Docker-era facts, cluster.mode none) for each fleet size, sampling the RSS of
the whole process tree (CLI, language host, Python program, plugins).
Usage: python bench/preview_scale.py [SIZES...]   (default 10 100 300 1000)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROGRAM = Path(__file__).resolve().parent / "program"


def tree_rss_kib(root_pid: int) -> int:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/status") as handle:
                vm = next((line for line in handle if line.startswith("VmRSS:")), "VmRSS: 0 kB")
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = int(vm.split()[1])
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def preview(size: int, backend: str) -> dict:
    env = dict(os.environ, PULUMI_BACKEND_URL=f"file://{backend}", PULUMI_CONFIG_PASSPHRASE="bench")
    stack = f"n{size}"
    subprocess.run(["pulumi", "stack", "select", "--create", stack], cwd=PROGRAM, env=env, check=True,
                   capture_output=True)
    subprocess.run(["pulumi", "config", "set", "nodes", str(size), "--stack", stack], cwd=PROGRAM, env=env,
                   check=True, capture_output=True)
    start = time.monotonic()
    process = subprocess.Popen(["pulumi", "preview", "--stack", stack, "--json"], cwd=PROGRAM, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_kib(process.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    stdout, stderr = process.communicate()
    elapsed = time.monotonic() - start
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"preview of {size} nodes failed:\n{stderr[-3000:]}")
    steps = json.loads(stdout).get("steps", [])
    node_resources = [s for s in steps if s.get("newState", {}).get("type", "").startswith("command:")]
    return {"nodes": size, "seconds": round(elapsed, 1), "peak_rss_mib": round(peak / 1024),
            "resources": len(steps), "per_node": round(len(node_resources) / size + 1, 1)}


def main() -> None:
    sizes = [int(arg) for arg in sys.argv[1:]] or [10, 100, 300, 1000]
    print(f"{'nodes':>6} {'seconds':>8} {'peak MiB':>9} {'resources':>10} {'per node':>9}")
    with tempfile.TemporaryDirectory(prefix="shimless-bench-") as backend:
        for size in sizes:
            row = preview(size, backend)
            print(f"{row['nodes']:>6} {row['seconds']:>8} {row['peak_rss_mib']:>9} {row['resources']:>10} "
                  f"{row['per_node']:>9}", flush=True)


if __name__ == "__main__":
    main()
