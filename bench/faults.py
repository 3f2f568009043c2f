"""The fault matrix (issue 10): every command of the switch fails once, a power
cut at every step boundary, SIGINT and SIGKILL of `pulumi up` in every phase,
and a second operator; on the lab with the control plane, real kubelets and a
workload with a PodDisruptionBudget. Prints one row per case and the counts:
fully old, fully new, in between (must be 0), converged on re-run, left
cordoned (must be 0).

    source tools/env.sh && python bench/faults.py [--kinds command,powercut,operator,concurrent]
        [--every N]   (command kind: every N-th call only; default 1: all)
        [--resets N]  (also: N migrate/lab-reset cycles in a row; default 10)

Run it with the lab's cluster up or not (it brings it up); it takes about two
minutes a case. Rows also go to bench/out/faults.txt."""
from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import faults  # noqa: E402
from tests.test_e2e_cluster import deploy_workload  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="command,powercut,operator,concurrent")
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--first", type=int, default=1, help="command kind: the first call to fail")
    parser.add_argument("--resets", type=int, default=10)
    options = parser.parse_args()
    kinds = options.kinds.split(",")
    out_file = ROOT / "bench" / "out" / "faults.txt"
    out_file.parent.mkdir(parents=True, exist_ok=True)
    config = faults.lab_config()
    deploy_workload()
    outcomes: list[faults.Outcome] = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, out_file.open("w") as rows:
        def record(outcome: faults.Outcome) -> None:
            outcomes.append(outcome)
            print(outcome.row(), flush=True)
            rows.write(outcome.row() + "\n")
            rows.flush()
            if outcome.verdict == "between" or outcome.left_cordoned or not outcome.converged:
                print(outcome.detail, flush=True)

        def attempt(kind: str, point: str, case, *args) -> None:
            """Run one case; a case the harness could not finish is a row too."""
            try:
                record(case(op, *args))
            except Exception as error:  # noqa: BLE001 - the matrix goes on
                verdict, state = faults.settle(timeout=60)
                record(faults.Outcome(kind, point, verdict, False, False,
                                      state.get("unschedulable") == "True",
                                      f"harness error: {error}"[-3000:]))

        op = faults.Operator.create(Path(tmp), config)
        calls, text = faults.counting_run(op)
        if not calls:
            print(text[-3000:])
            return 1
        boundaries = faults.step_boundaries(calls)
        print(f"a clean switch runs {len(calls)} external commands; step boundaries: {boundaries}")
        print(faults.HEADER)
        rows.write(faults.HEADER + "\n")
        # The kinds with the fewest cases first: rows are written as they come.
        if "powercut" in kinds:
            for step, k in boundaries:
                attempt("powercut", f"before {step} (call {k})", faults.powercut_case, step, k)
        if "operator" in kinds:
            for phase in faults.PHASES:
                for sig in (signal.SIGINT, signal.SIGKILL):
                    attempt("operator", f"{sig.name} during {phase}", faults.operator_case, phase, sig)
        if "concurrent" in kinds:
            attempt("concurrent", "second up during prestage", faults.concurrent_case)
        if "command" in kinds:
            for k in range(options.first, len(calls) + 1, options.every):
                attempt("command", f"call {k}", faults.command_case, k)
        resets_ok = 0
        for cycle in range(options.resets):
            code, _ = op.up()
            try:
                faults.reset_node()
                resets_ok += code == 0
            except AssertionError as error:
                print(f"cycle {cycle + 1}: {error}", flush=True)
        if options.resets:
            print(f"migrate/lab-reset cycles: {resets_ok} of {options.resets} passed", flush=True)
            rows.write(f"migrate/lab-reset cycles: {resets_ok} of {options.resets} passed\n")
        line = faults.summary(outcomes) + f" ({time.monotonic() - t0:.0f} s)"
        print(line)
        rows.write(line + "\n")
    bad = [o for o in outcomes if o.verdict == "between" or o.left_cordoned or not o.converged]
    return 1 if bad or resets_ok < options.resets else 0


if __name__ == "__main__":
    sys.exit(main())
