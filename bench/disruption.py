"""Disruption on the lab (needs `make lab-up`; resets the lab's nodes).

1. Pre-staged (shimless) against naive (install after stopping Docker), on
   the same node, same package, same switch: the window from "Docker stopped"
   to "kubelet up on containerd".
2. Whole `pulumi up` of the lab through the real engine, per-node time and
   window, for worker batch sizes 1 and 2.
Usage: python bench/disruption.py [ROUNDS]   (default 3)
"""
from __future__ import annotations

import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.bundle import bundle_line, bundle  # noqa: E402
from components.config import parse_settings, private_keys, read_stack_file  # noqa: E402
from components.plan import plan_node  # noqa: E402
from components.ssh import probe_nodes, run_over_ssh  # noqa: E402
from tests import lab  # noqa: E402

NODE = "lab-w2"
INSTALL = "DEBIAN_FRONTEND=noninteractive apt-get install --reinstall -y -q containerd >/dev/null"


def run_on(node, key: str, text: str) -> str:
    done = run_over_ssh(node, key, text, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{node.name}: step failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def switch_window(mode: str) -> float:
    lab.reset(NODE)
    raw = read_stack_file(lab.LAB_STACK)
    settings = parse_settings(raw)
    node = next(n for n in settings.nodes if n.name == NODE)
    key = private_keys(raw, settings)[NODE]
    plan = plan_node(node, probe_nodes([node], {NODE: key})[NODE].facts, stamp="bench")
    variables = {"node": NODE, "runtime": "containerd",
                 "token": plan.token, "health_timeout": 120, "settle_seconds": 5}
    if mode == "pre-staged":
        lab.out(NODE, INSTALL)  # the install happens while Docker still serves
        output = run_on(node, key, bundle("switch.sh", variables, plan.files))
        stopped = int(re.search(r"docker_stopped_ms=(\d+)", output).group(1))
    else:
        naive = (ROOT / "bench" / "naive-switch.sh").read_text()
        text = bundle("switch.sh", variables, plan.files).replace(
            "step switch.sh -\n", bundle_line("file", "naive-switch.sh", naive) + "step naive-switch.sh -\n")
        output = run_on(node, key, text)
        stopped = int(re.search(r"naive docker_stopped_ms=(\d+)", output).group(1))
    kubelet_up = int(re.search(r"kubelet_up_ms=(\d+)", output).group(1))
    return (kubelet_up - stopped) / 1000


def fleet(batch: int) -> tuple[float, dict]:
    import yaml
    lab.reset()
    config = yaml.safe_load(lab.LAB_STACK.read_text())
    config["config"]["shimless:rollout"] = {"canary": 0, "maxUnavailable": batch}
    return timed_up(config)


def timed_up(config: dict) -> tuple[float, dict]:
    """`pulumi up` of the lab with this stack config: the whole run, and per
    node (first to last engine event of its steps, the switch's window)."""
    with tempfile.TemporaryDirectory() as tmp:
        stack = lab.engine_stack(lab.project_copy(Path(tmp), config), Path(tmp) / "state")
        first: dict[str, float] = {}
        last: dict[str, float] = {}

        def on_event(event):
            meta = event.resource_pre_event or event.res_outputs_event
            if meta is None:
                return
            match = re.search(r"::shimless-(lab-[a-z0-9]+)-", meta.metadata.urn)
            if match:
                first.setdefault(match.group(1), event.timestamp)
                last[match.group(1)] = event.timestamp

        start = time.monotonic()
        stack.up(color="never", on_event=on_event)
        total = time.monotonic() - start
        nodes = stack.outputs()["nodes"].value
    per_node = {}
    for name, report in nodes.items():
        window = re.search(r"window_ms=(\d+)", report["result"])
        per_node[name] = (last[name] - first[name], int(window.group(1)) / 1000 if window else float("nan"))
    return total, per_node


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    lab.require_lab()
    print(f"1. switch window on {NODE}, {rounds} rounds each (seconds from Docker stopped to kubelet up)")
    results = {mode: [switch_window(mode) for _ in range(rounds)] for mode in ("pre-staged", "naive")}
    for mode, values in results.items():
        print(f"   {mode:>10}: median {statistics.median(values):5.1f}  all {', '.join(f'{v:.1f}' for v in values)}")
    ratio = statistics.median(results["naive"]) / statistics.median(results["pre-staged"])
    print(f"   naive / pre-staged = {ratio:.2f}")
    print("2. pulumi up of the lab (3 nodes: control plane alone, then workers by batch)")
    for batch in (1, 2):
        total, per_node = fleet(batch)
        cells = ", ".join(f"{name} {whole:.0f}s (window {window:.1f}s)" for name, (whole, window) in sorted(per_node.items()))
        print(f"   maxUnavailable={batch}: total {total:.0f}s; per node: {cells}", flush=True)


if __name__ == "__main__":
    main()
