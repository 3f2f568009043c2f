"""The pipelined rollout on a fleet (issue 14): `pulumi up` of a 6-node lab
(control plane, real 1.23 kubelets, the e2e workload with its PDB) with
`prestageAhead: 0` and with the default, each from fresh disks, and the
critical path computed from the pipelined run's own engine event log.

Every node runs a DaemonSet pod of a large image built in its Docker
(--image-mb of random data on the lab's pause image), so every pre-stage
carries it. Prints
    fleet: sequential S s, pipelined P s, critical path C s, P/C = x
where S and P span the first to the last event of each run's event log, and
C = the longest pre-stage of one node (preflight + prestage) + per batch the
longest node's chain (drain, switch, verify, node-patch, uncordon, cleanup: every
step the next batch waits for), all from the pipelined run. The issue's
narrower sum (drain + switch + verify + uncordon) is printed beside it.
Figures go to bench/out/fleet-<UTC stamp>.json, the event logs and the CLI's
output beside them.

    source tools/env.sh && python bench/fleet.py [--image-mb 500] [--nodes 6] [--keep-lab] [--dry-run]

Brings up the lab it needs (LAB_NODES=N LAB_CLUSTER=1 lab/lab-up.sh), resets
it before each run, and gives the plain 3-node lab back at the end (like the
cluster e2e), unless --keep-lab.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components import report  # noqa: E402
from components.config import parse_settings, read_stack_file  # noqa: E402
from components.plan import plan_batches  # noqa: E402
from tests import lab  # noqa: E402

OUT_DIR = ROOT / "bench" / "out"
PRESTAGE_STEPS = ("preflight", "prestage")
# A batch's chain: every step after the pre-stage, in the order they run (the
# next batch's drain waits for this batch's cleanup, NodeRuntime.done).
CHAIN_STEPS = tuple(step for step in report.STEPS if step not in PRESTAGE_STEPS)
# The sum issue 14 names; printed beside the chain for comparison.
ISSUE_CHAIN_STEPS = ("drain", "switch", "verify", "uncordon")
ROLLOUTS = {  # label -> the stack's shimless:rollout (other keys: Pulumi.yaml's defaults)
    "sequential": {"maxUnavailable": 1, "prestageAhead": 0},
    "pipelined": {"maxUnavailable": 1},
}
# lab/lib.sh's LAB_PAUSE_IMAGE: in every lab node's Docker, so the build needs no registry.
PAUSE_IMAGE = os.environ.get("LAB_PAUSE_IMAGE", "registry.k8s.io/pause:3.6")
BALLAST_IMAGE = "lab.invalid/shimless/fleet-ballast:1"  # in no registry: only a pre-stage can carry it
BALLAST = "fleet-ballast"


def ballast_build(image_mb: int) -> str:
    """Node-side: a layer of `image_mb` MiB of random data (incompressible) on the pause image."""
    return (f"set -euo pipefail; dir=$(mktemp -d); head -c {image_mb}M /dev/urandom > \"$dir/ballast\"; "
            f"printf 'FROM {PAUSE_IMAGE}\\nCOPY ballast /ballast\\n' > \"$dir/Dockerfile\"; "
            f"DOCKER_BUILDKIT=0 docker build -q -t {BALLAST_IMAGE} \"$dir\" >/dev/null; rm -rf \"$dir\"; "
            f"docker image inspect --format '{{{{.Size}}}}' {BALLAST_IMAGE}")


def ballast_daemonset() -> dict:
    """One pod of the large image per node, so it is among the images of that node's pods."""
    labels = {"app": BALLAST}
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": BALLAST, "labels": labels},
        "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
            "tolerations": [{"operator": "Exists"}], "hostNetwork": True,
            "containers": [{"name": "ballast", "image": BALLAST_IMAGE, "imagePullPolicy": "IfNotPresent"}]}}},
    }


# --- figures from one run's event log (pure) ------------------------------------------


@dataclass(frozen=True)
class BatchPart:
    batch: int
    nodes: list[str]
    longest_node: str
    seconds: int  # the longest node's chain
    issue_seconds: int  # the longest node's drain + switch + verify + uncordon


@dataclass(frozen=True)
class RunFigures:
    label: str
    outcome: str
    wall_seconds: int  # first to last event of the run's event log (1 s resolution)
    longest_prestage: int
    longest_prestage_node: str
    batches: list[BatchPart]
    critical_path: int
    critical_path_issue: int
    steps: dict[str, dict[str, int | None]]  # node -> step -> seconds (None: did not run)
    carried: dict[str, dict | None]  # node -> images carried by its prestage


def _seconds(row: report.NodeRow, steps: tuple[str, ...]) -> int:
    """The steps' own durations summed; one that changed nothing (or never ran) counts 0."""
    return sum(row.steps[step].seconds or 0 for step in steps if step in row.steps)


def run_figures(label: str, rollout: report.Rollout) -> RunFigures:
    """Wall time and critical path of one update, from report.build_rollout's model of its log."""
    rows = rollout.nodes
    prestage = max(rows, key=lambda row: _seconds(row, PRESTAGE_STEPS), default=None)
    parts = []
    for batch in sorted({row.batch for row in rows if row.batch is not None}):
        members = [row for row in rows if row.batch == batch]
        longest = max(members, key=lambda row: _seconds(row, CHAIN_STEPS))
        parts.append(BatchPart(batch, [row.name for row in members], longest.name, _seconds(longest, CHAIN_STEPS),
                               max(_seconds(row, ISSUE_CHAIN_STEPS) for row in members)))
    longest_prestage = _seconds(prestage, PRESTAGE_STEPS) if prestage else 0
    wall = (rollout.ended - rollout.started) if rollout.started is not None and rollout.ended is not None else 0
    return RunFigures(
        label=label, outcome=rollout.outcome, wall_seconds=wall,
        longest_prestage=longest_prestage, longest_prestage_node=prestage.name if prestage else "",
        batches=parts,
        critical_path=longest_prestage + sum(part.seconds for part in parts),
        critical_path_issue=longest_prestage + sum(part.issue_seconds for part in parts),
        steps={row.name: {step: run.seconds for step, run in row.steps.items()} for row in rows},
        carried={row.name: row.images_carried for row in rows},
    )


def figures_from_log(label: str, events_path: Path, batches: list[list[str]]) -> RunFigures:
    with events_path.open(encoding="utf-8") as lines:
        events = report.read_events(lines)
    rollout = report.build_rollout("lab", events, {}, batches, events_path=str(events_path),
                                   cluster_mode="kubeconfig")
    return run_figures(label, rollout)


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def summary_line(sequential: RunFigures, pipelined: RunFigures) -> str:
    c = pipelined.critical_path
    p_c = _ratio(pipelined.wall_seconds, c)
    return (f"fleet: sequential {sequential.wall_seconds} s, pipelined {pipelined.wall_seconds} s, "
            f"critical path {c} s, P/C = {p_c if p_c is not None else '-'}")


def step_table(runs: list[RunFigures]) -> str:
    """Per node and step, the seconds of each run side by side ("S|P")."""
    first = runs[0]
    batch_of = {name: part.batch for part in first.batches for name in part.nodes}
    steps = list(dict.fromkeys(step for run in runs for node in run.steps.values() for step in node))

    def cell(value: int | None) -> str:
        return "-" if value is None else str(value)

    head = ["NODE", "BATCH", *(s.upper() for s in steps), "CARRIED MiB"]
    rows = [head]
    for name in first.steps:
        carried = [run.carried.get(name) or {} for run in runs]
        rows.append([name, str(batch_of.get(name, "-")),
                     *("|".join(cell(run.steps.get(name, {}).get(step)) for run in runs) for step in steps),
                     "|".join(str(int(c.get("bytes", 0)) >> 20) if c else "-" for c in carried)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines += [f"batch {part.batch} ({', '.join(part.nodes)}): " +
              " | ".join(f"{run.label} {next(p.seconds for p in run.batches if p.batch == part.batch)} s"
                         for run in runs)
              for part in first.batches]
    lines += ["longest pre-stage: " + " | ".join(f"{run.label} {run.longest_prestage} s ({run.longest_prestage_node})"
                                                  for run in runs)]
    return "\n".join(lines)


# --- the lab -------------------------------------------------------------------------


def lab_node_names(count: int) -> list[str]:
    """lab/lib.sh's lab_node_names: lab-cp1, lab-w1 .. lab-w(N-1)."""
    return ["lab-cp1", *(f"lab-w{i}" for i in range(1, count))]


def stack_batches(stack_file: Path) -> list[list[str]]:
    """The rollout order of the run's own stack file, by the planner's function (as report.py)."""
    settings = parse_settings(read_stack_file(stack_file))
    return plan_batches(settings.nodes, settings.rollout)


def build_ballast(nodes: list[str], image_mb: int) -> dict[str, int]:
    """The large image in every node's Docker, built in parallel; its size per node."""
    def build(node: str) -> int:
        return int(lab.ssh(node, ballast_build(image_mb), timeout=1800).stdout.split()[-1])
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        return dict(zip(nodes, pool.map(build, nodes)))


def pulumi_up(stack, events: Path, output: Path) -> tuple[int, float]:
    """`pulumi up` through the CLI, as `make up` runs it: the Automation API
    cannot write the engine's event log to a file (it streams it over gRPC)."""
    env = {**os.environ, **stack.workspace.env_vars, "PULUMI_DEBUG_COMMANDS": "true"}
    command = ["pulumi", "up", "--yes", "--skip-preview", "--non-interactive", "--color", "never",
               "--stack", stack.name, "--event-log", str(events)]
    started = time.monotonic()
    with output.open("w") as log:
        done = subprocess.run(command, cwd=stack.workspace.work_dir, env=env, stdout=log,
                              stderr=subprocess.STDOUT, check=False)
    return done.returncode, time.monotonic() - started


def run_once(cluster, label: str, config: dict, nodes: list[str], image_mb: int, stamp: str, tmp: Path) -> dict:
    """One `pulumi up` of `label`'s rollout from fresh disks; `cluster` is tests.test_e2e_cluster."""
    # Gone before the reset: on the fresh nodes its pods would look for the image
    # before it is built and wait out the kubelet's pull back-off.
    cluster.kubectl("-n", cluster.WORKLOAD, "delete", "daemonset", BALLAST, "--ignore-not-found", check=False)
    cluster.cluster_reset()
    cluster.deploy_workload()
    sizes = build_ballast(nodes, image_mb)
    cluster.kubectl("apply", "-n", cluster.WORKLOAD, "-f", "-", stdin=json.dumps(ballast_daemonset()))
    # Under the kubectl helper's own 180 s; the image is already in every node's Docker.
    cluster.kubectl("-n", cluster.WORKLOAD, "rollout", "status", f"daemonset/{BALLAST}", "--timeout=170s")
    stack = cluster.cluster_stack(config, tmp / label, **ROLLOUTS[label])
    events = OUT_DIR / f"fleet-{stamp}-{label}.jsonl"
    output = OUT_DIR / f"fleet-{stamp}-{label}.log"
    code, cli_seconds = pulumi_up(stack, events, output)
    if not events.is_file():
        tail = "\n".join(output.read_text().splitlines()[-30:])
        raise SystemExit(f"{label}: pulumi up (exit {code}) wrote no event log {events}:\n{tail}")
    batches = stack_batches(Path(stack.workspace.work_dir) / "stacks" / f"Pulumi.{stack.name}.yaml")
    figures = figures_from_log(label, events, batches)
    if code != 0 or figures.outcome != "succeeded":
        raise SystemExit(f"{label}: pulumi up {figures.outcome} (exit {code}); see {output} and {events}")
    short = [name for name, carried in figures.carried.items()
             if not carried or int(carried.get("bytes", 0)) < image_mb << 20]
    if short:
        print(f"warning: {label}: pre-stage carried less than {image_mb} MiB on {', '.join(short)}", flush=True)
    return {"figures": figures, "cli_seconds": round(cli_seconds, 1), "image_bytes": sizes,
            "events": str(events), "output": str(output), "rollout": ROLLOUTS[label]}


def dry_run(options) -> None:
    nodes = lab_node_names(options.nodes)
    env = f"LAB_NODES={options.nodes} LAB_CLUSTER=1"
    print(f"would run: {env} bash lab/lab-up.sh   (and check stacks/Pulumi.lab.yaml has {options.nodes} nodes "
          "and cluster.mode kubeconfig)")
    for label, rollout in ROLLOUTS.items():
        print(f"\n{label} (shimless:rollout {json.dumps(rollout)}):")
        print(f"  kubectl delete daemonset {BALLAST} (if there); {env} bash lab/lab-reset.sh; "
              "wait until lab-cp1, lab-w1, lab-w2 are Ready")
        print("  deploy the e2e workload (Deployment pause x2, PDB minAvailable 1, DaemonSet node-agent)")
        print(f"  on {', '.join(nodes)} in parallel, over lab/ssh: {ballast_build(options.image_mb)}")
        print(f"  kubectl apply: {json.dumps(ballast_daemonset())}; rollout status daemonset/{BALLAST}")
        print("  a private project copy and file backend; PULUMI_DEBUG_COMMANDS=true pulumi up --yes --skip-preview "
              f"--stack lab --event-log bench/out/fleet-<stamp>-{label}.jsonl")
    print("\nthen: figures from each event log (components.report), the summary line, the step table, "
          "bench/out/fleet-<stamp>.json")
    if options.keep_lab:
        print("--keep-lab: the lab stays as it is")
    else:
        print("finally: bash lab/lab-reset.sh; bash lab/lab-up.sh (LAB_NODES, LAB_CLUSTER, LAB_KUBELET unset): "
              f"the plain 3-node lab, {', '.join(nodes[3:]) or 'no extra nodes'} stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-mb", type=int, default=500, help="MiB of the image each node's pre-stage carries")
    parser.add_argument("--nodes", type=int, default=6, help="lab nodes (LAB_NODES)")
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab as the bench made it")
    parser.add_argument("--dry-run", action="store_true", help="print what it would do; touch nothing")
    options = parser.parse_args(argv)
    if options.nodes < 2 or options.image_mb < 1:
        parser.error("--nodes must be at least 2 and --image-mb at least 1")
    if options.dry_run:
        dry_run(options)
        return 0
    # Before importing the cluster e2e's helpers: its LAB_ENV (lab-up and
    # lab-reset with LAB_CLUSTER=1) is taken from the environment at import.
    os.environ["LAB_NODES"] = str(options.nodes)
    from tests import test_e2e_cluster as cluster
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    try:
        lab.script("lab-up.sh", env=cluster.LAB_ENV)
        config = lab.require_lab()
        names = [entry["name"] for entry in config["config"]["shimless:nodes"]]
        if config["config"].get("shimless:cluster") != {"mode": "kubeconfig"} or len(names) != options.nodes:
            raise SystemExit(f"lab-up did not give a {options.nodes}-node lab with its cluster: {names}")
        with tempfile.TemporaryDirectory() as tmp:
            runs = {label: run_once(cluster, label, config, names, options.image_mb, stamp, Path(tmp)) for label in ROLLOUTS}
    finally:
        if not options.keep_lab:
            os.environ.pop("LAB_NODES")
            cluster.restore_plain_lab()
    sequential, pipelined = runs["sequential"]["figures"], runs["pipelined"]["figures"]
    print(summary_line(sequential, pipelined))
    print(f"S/P = {_ratio(sequential.wall_seconds, pipelined.wall_seconds)}; critical path by the issue's sum "
          f"(drain + switch + verify + uncordon): {pipelined.critical_path_issue} s, "
          f"P/C = {_ratio(pipelined.wall_seconds, pipelined.critical_path_issue)}")
    print("seconds per step, sequential|pipelined (engine event log, 1 s resolution):")
    print(step_table([sequential, pipelined]))
    result = {
        "stamp": stamp, "image_mb": options.image_mb, "nodes": options.nodes,
        "wall": "first to last event of each run's event log",
        "sequential_s": sequential.wall_seconds, "pipelined_s": pipelined.wall_seconds,
        "critical_path_s": pipelined.critical_path, "critical_path_steps": [*PRESTAGE_STEPS, *CHAIN_STEPS],
        "critical_path_issue_s": pipelined.critical_path_issue,
        "p_over_c": _ratio(pipelined.wall_seconds, pipelined.critical_path),
        "s_over_p": _ratio(sequential.wall_seconds, pipelined.wall_seconds),
        "runs": {label: {**run, "figures": asdict(run["figures"])} for label, run in runs.items()},
    }
    out = OUT_DIR / f"fleet-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"figures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
