"""Engine `pulumi preview` time and peak memory for synthetic fleets, beside
the engine's floor for the same resources.

For each fleet size, runs the real CLI on bench/program (shimless's real
components, synthetic Docker-era facts, cluster.mode none) and on
bench/floor (the same resources per node, of the same kinds, with stdin of
the same sizes, and nothing else: no planning, probing, bundling, logs or
outputs), sampling the RSS of the whole process tree (CLI, language host,
Python program, plugins). The floor's steps, command and stdin sizes are read
from the first shimless preview of that size, and the two previews' resources
are counted by kind: the bench refuses to compare different graphs.

Runs alternate in the order shimless, floor, floor, shimless (and again for
more rounds) so that load on the machine drifting during a run weighs on both
alike; each side's figure is its fastest run and its lowest peak.
Usage: python bench/preview_scale.py [--rounds 2] [SIZES...]   (default 10 100 300 1000)
Figures go to bench/out/preview-<UTC stamp>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PROGRAMS = {"shimless": BENCH / "program", "floor": BENCH / "floor"}
OUT_DIR = BENCH / "out"
COMMAND_TYPE = "command:remote:Command"


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


def project_name(program_dir: Path) -> str:
    return next(line.split(":", 1)[1].strip() for line in (program_dir / "Pulumi.yaml").read_text().splitlines()
                if line.startswith("name:"))


def preview(program: str, size: int, backend: str, config: dict[str, object]) -> dict:
    """One timed `pulumi preview --json` of `program` at `size` nodes: seconds,
    peak RSS of the process tree, and the steps it printed."""
    cwd = PROGRAMS[program]
    env = dict(os.environ, PULUMI_BACKEND_URL=f"file://{backend}", PULUMI_CONFIG_PASSPHRASE="bench")
    stack = f"n{size}"
    subprocess.run(["pulumi", "stack", "select", "--create", stack], cwd=cwd, env=env, check=True,
                   capture_output=True)
    values = {f"{project_name(cwd)}:{key}": {"value": json.dumps(value), "objectValue": value}
              if isinstance(value, list) else {"value": str(value)}
              for key, value in {"nodes": size, **config}.items()}
    subprocess.run(["pulumi", "config", "set-all", "--json", json.dumps(values), "--stack", stack], cwd=cwd, env=env,
                   check=True, capture_output=True)
    start = time.monotonic()
    process = subprocess.Popen(["pulumi", "preview", "--stack", stack, "--json"], cwd=cwd, env=env,
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
        raise SystemExit(f"{program} preview of {size} nodes failed:\n{stderr[-3000:]}")
    return {"seconds": elapsed, "peak_kib": peak, "steps": json.loads(stdout).get("steps", [])}


def resource_kinds(steps: list[dict]) -> Counter:
    """Resources by kind: the remote Commands by type, every component as one kind."""
    kinds = Counter()
    for step in steps:
        kind = step.get("newState", {}).get("type", "")
        kinds[kind if kind.startswith(("command:", "pulumi:")) else "component"] += 1
    return kinds


def floor_config(steps: list[dict]) -> dict[str, object]:
    """The floor's command and its per-node steps ({name, stdinBytes}, in
    declaration order, each the mean over the nodes), from shimless's preview."""
    sizes: dict[str, list[int]] = {}
    command = ""
    for step in steps:
        state = step.get("newState", {})
        if state.get("type") != COMMAND_TYPE:
            continue
        inputs = state.get("inputs", {})
        command = inputs["create"]
        sizes.setdefault(step["urn"].rsplit("-", 1)[1], []).append(len(inputs.get("stdin", "")))
    return {"command": command,
            "steps": [{"name": name, "stdinBytes": round(sum(lengths) / len(lengths))}
                      for name, lengths in sizes.items()]}


def compare(size: int, rounds: int, backend: str) -> dict:
    """Floor and shimless at one size, alternating (shimless first: it tells
    the floor what to declare)."""
    runs: dict[str, list[dict]] = {"shimless": [], "floor": []}
    config: dict[str, dict[str, object]] = {"shimless": {}}
    for round_index in range(rounds):
        order = ("shimless", "floor") if round_index % 2 == 0 else ("floor", "shimless")
        for program in order:
            run = preview(program, size, backend, config.get(program, {}))
            if program == "shimless" and "floor" not in config:
                config["floor"] = floor_config(run["steps"])
            runs[program].append({"seconds": run["seconds"], "peak_kib": run["peak_kib"],
                                  "kinds": resource_kinds(run["steps"])})
    kinds = {program: runs[program][0]["kinds"] for program in runs}
    if kinds["shimless"] != kinds["floor"]:
        raise SystemExit(f"{size} nodes: the floor does not declare shimless's resources: "
                         f"shimless {dict(kinds['shimless'])}, floor {dict(kinds['floor'])}")
    row: dict = {"nodes": size, "resources": sum(kinds["shimless"].values()),
                 "per_node": round((kinds["shimless"][COMMAND_TYPE] + kinds["shimless"]["component"] - 1) / size, 1),
                 "floor_steps": config["floor"]["steps"]}
    for program, program_runs in runs.items():
        row[program] = {"seconds": round(min(r["seconds"] for r in program_runs), 1),
                        "peak_mib": round(min(r["peak_kib"] for r in program_runs) / 1024),
                        "runs": [{"seconds": round(r["seconds"], 2), "peak_mib": round(r["peak_kib"] / 1024)}
                                 for r in program_runs]}
    row["time_ratio"] = round(row["shimless"]["seconds"] / row["floor"]["seconds"], 2)
    row["memory_ratio"] = round(row["shimless"]["peak_mib"] / row["floor"]["peak_mib"], 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[10, 100, 300, 1000])
    parser.add_argument("--rounds", type=int, default=2, help="previews of each program per size")
    options = parser.parse_args()
    header = (f"{'nodes':>6} {'floor s':>8} {'shimless s':>10} {'time x':>7} {'floor MiB':>10} "
              f"{'shimless MiB':>13} {'memory x':>9} {'resources':>10} {'per node':>9}")
    print(header)
    rows = []
    with tempfile.TemporaryDirectory(prefix="shimless-bench-") as backend:
        for size in options.sizes:
            row = compare(size, options.rounds, backend)
            rows.append(row)
            print(f"{row['nodes']:>6} {row['floor']['seconds']:>8} {row['shimless']['seconds']:>10} "
                  f"{row['time_ratio']:>7} {row['floor']['peak_mib']:>10} {row['shimless']['peak_mib']:>13} "
                  f"{row['memory_ratio']:>9} {row['resources']:>10} {row['per_node']:>9}", flush=True)
    OUT_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = OUT_DIR / f"preview-{stamp}.json"
    out.write_text(json.dumps({"stamp": stamp, "rounds": options.rounds, "rows": rows}, indent=2) + "\n")
    print(f"figures: {out}")


if __name__ == "__main__":
    main()
