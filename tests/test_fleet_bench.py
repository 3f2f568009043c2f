"""bench/fleet.py's figures on event logs in the format `pulumi up --event-log`
writes (tests/test_report.py's EventLog): a pipelined rollout whose steps
overlap, the critical path from its per-step times, and a dry run that
touches no lab."""
from __future__ import annotations

import dataclasses
import subprocess

import pytest

from bench import fleet
from components import report
from tests import lab
from tests.test_report import STDOUT, STEP_TYPES, EventLog

BATCHES = [["lab-cp1"], ["lab-w1"], ["lab-w2", "lab-w3"]]
# node -> (step, start, end) in seconds from the start of the update. lab-cp1's
# pre-stage is the longest (20 s); batch 3's longest node is lab-w3 (18 s)
# although lab-w2 has the longest drain; pre-stages overlap batches 1 and 2.
SCHEDULE = {
    "lab-cp1": [("preflight", 0, 2), ("prestage", 2, 20), ("drain", 20, 22), ("switch", 22, 28),
                ("node-patch", 28, 29), ("verify", 29, 32), ("uncordon", 32, 33), ("cleanup", 33, 34)],
    "lab-w1": [("preflight", 0, 1), ("prestage", 1, 12), ("drain", 34, 37), ("switch", 37, 42),
               ("node-patch", 42, 43), ("verify", 43, 45), ("uncordon", 45, 46), ("cleanup", 46, 47)],
    "lab-w2": [("preflight", 12, 13), ("prestage", 13, 25), ("drain", 47, 55), ("switch", 55, 59),
               ("node-patch", 59, 60), ("verify", 60, 62), ("uncordon", 62, 63), ("cleanup", 63, 64)],
    "lab-w3": [("preflight", 20, 21), ("prestage", 21, 35), ("drain", 47, 49), ("switch", 49, 58),
               ("node-patch", 58, 59), ("verify", 59, 63), ("uncordon", 63, 64), ("cleanup", 64, 65)],
}
START = 1_796_000_000


def overlapping_log(schedule: dict, end: int = 66) -> EventLog:
    """Each step's start and end events at their own times, in time order, as the engine logs parallel steps."""
    log = EventLog(START)
    marks = sorted((t, kind, node, step) for node, steps in schedule.items()
                   for step, begin, finish in steps for t, kind in ((begin, 1), (finish, 0)))
    for t, starting, node, step in marks:
        log.now = START + t
        urn, kind = log.urn(node, step), STEP_TYPES.get(step, "command:remote:Command")
        if starting:
            log.add(resourcePreEvent={"metadata": log.metadata("create", urn, kind)})
        else:
            log.add(resOutputsEvent={"metadata": log.metadata("create", urn, kind, {"stdout": STDOUT.get(step, "")})})
    log.now = START + end
    log.end("succeeded", {"create": 32})
    return log


def figures(log: EventLog, label: str = "pipelined") -> fleet.RunFigures:
    rollout = report.build_rollout("lab", report.read_events(log.lines()), {}, BATCHES, cluster_mode="kubeconfig")
    return fleet.run_figures(label, rollout)


def test_critical_path_is_the_longest_prestage_plus_each_batchs_longest_chain():
    run = figures(overlapping_log(SCHEDULE))
    assert run.outcome == "succeeded"
    assert run.wall_seconds == 66
    assert (run.longest_prestage, run.longest_prestage_node) == (20, "lab-cp1")
    # The longest node's whole chain, not the sum of the batch's nodes (35) nor
    # of each step's longest (8 + 9 + 1 + 4 + 1 + 1 = 24).
    assert [(part.batch, part.longest_node, part.seconds) for part in run.batches] == [
        (1, "lab-cp1", 14), (2, "lab-w1", 13), (3, "lab-w3", 18)]
    assert run.critical_path == 20 + 14 + 13 + 18
    # The issue's sum leaves out node-patch and cleanup: batch 3 is lab-w3's 2 + 9 + 4 + 1.
    assert [part.issue_seconds for part in run.batches] == [12, 11, 16]
    assert run.critical_path_issue == 20 + 12 + 11 + 16
    assert run.steps["lab-w2"]["drain"] == 8
    assert run.carried["lab-w1"] == {"images": 3, "bytes": 1048576, "seconds": 2}


def test_a_step_that_changed_nothing_adds_nothing():
    log = overlapping_log({node: steps for node, steps in SCHEDULE.items() if node != "lab-w3"}, end=65)
    log.component("lab-w3")
    for step in report.STEPS:
        log.step("lab-w3", step, op="same")
    run = figures(log)
    assert run.steps["lab-w3"]["switch"] is None
    assert [(part.batch, part.longest_node, part.seconds) for part in run.batches][-1] == (3, "lab-w2", 17)
    assert run.critical_path == 20 + 14 + 13 + 17


def test_summary_line_and_table_put_the_two_runs_side_by_side():
    pipelined = figures(overlapping_log(SCHEDULE))
    sequential = dataclasses.replace(figures(overlapping_log(SCHEDULE), "sequential"), wall_seconds=120)
    assert fleet.summary_line(sequential, pipelined) == (
        "fleet: sequential 120 s, pipelined 66 s, critical path 65 s, P/C = 1.015")
    table = fleet.step_table([sequential, pipelined])
    row = next(line for line in table.splitlines() if line.startswith("lab-w3"))
    assert row.split()[:5] == ["lab-w3", "3", "1|1", "14|14", "2|2"]
    assert "batch 3 (lab-w2, lab-w3): sequential 18 s | pipelined 18 s" in table


def test_dry_run_prints_the_plan_and_touches_nothing(monkeypatch, tmp_path, capsys):
    def refuse(*args, **kwargs):
        raise AssertionError(f"the dry run ran something: {args}")

    for module, name in ((subprocess, "run"), (subprocess, "Popen"), (lab, "script"), (lab, "ssh")):
        monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(fleet, "OUT_DIR", tmp_path / "out")
    assert fleet.main(["--dry-run", "--nodes", "4", "--image-mb", "64"]) == 0
    printed = capsys.readouterr().out
    assert "LAB_NODES=4 LAB_CLUSTER=1 bash lab/lab-up.sh" in printed
    assert "head -c 64M /dev/urandom" in printed
    assert '{"maxUnavailable": 1, "prestageAhead": 0}' in printed and '{"maxUnavailable": 1}' in printed
    assert "lab-w3 stopped" in printed and "lab-w4" not in printed
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [["--nodes", "1"], ["--image-mb", "0"]])
def test_bad_options_are_refused_before_anything_runs(argv, monkeypatch):
    monkeypatch.setattr(lab, "script", lambda *a, **k: pytest.fail("ran a lab script"))
    with pytest.raises(SystemExit) as exit_:
        fleet.main(argv)
    assert exit_.value.code == 2
