"""The rollout report (components/report.py) on event logs built here in the
format `pulumi up --event-log` writes (one apitype.EngineEvent per line, as
recorded from CLI v3.259.0): a rollout that succeeds, one whose switch fails
and is rolled back, an interrupted one, and a re-run that changes nothing."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from components import report

ROOT = Path(__file__).resolve().parent.parent
NODES = ("lab-cp1", "lab-w1", "lab-w2")
BATCHES = [["lab-cp1"], ["lab-w1"], ["lab-w2"]]
MIRROR = "https://mirror.example.com"  # user-supplied text that may show in the report
STEP_TYPES = {"drain": "command:local:Command", "verify": "command:local:Command",
              "uncordon": "command:local:Command", "node-patch": "kubernetes:core/v1:NodePatch"}
SWITCHED = "switched runtime=containerd docker_stopped_ms=1796000100000 kubelet_up_ms=1796000105400 window_ms=5400"
PRESTAGED = "prestaged runtime=containerd version=1.6.20 images=3 image_bytes=1048576 image_seconds=2"
STDOUT = {"preflight": "action=switch", "prestage": PRESTAGED, "drain": "was_unschedulable=false",
          "switch": SWITCHED, "verify": "verified Ready=True runtime=containerd://1.6.20",
          "uncordon": "uncordoned", "cleanup": "docker kept: stopped and disabled"}


def plan_report(node: str) -> dict:
    """A node's entry of the `nodes` output (NodeRuntime.report)."""
    return {
        "action": "migrate", "plan": "migrate docker -> containerd", "runtimeBefore": "docker",
        "runtimeAfter": "containerd", "kubeletVersion": "v1.23.17", "runtimeVersion": "1.6.20",
        "warnings": [f"{node}: registry mirror {MIRROR} is carried as a hosts.toml"],
        "translation": {"not_carried": [{"key": "live-restore", "reason": "containerd has no live-restore"},
                                        {"key": "userns-remap", "reason": "not supported by the CRI"}]},
        "result": SWITCHED, "imagesCarried": {"images": 3, "bytes": 1048576, "seconds": 2}, "prestageAhead": 2,
    }


def outputs() -> dict:
    return {"fleet": {"nodes": 3, "counts": {"migrate": 3}, "plannedOrder": BATCHES, "clusterMode": "kubeconfig"},
            "nodes": {node: plan_report(node) for node in NODES}}


class EventLog:
    """Writes events as the CLI's event logger does: a sequence number and a unix-seconds timestamp each."""

    def __init__(self, start: int = 1_796_000_000):
        self.now = start
        self.events: list[dict] = []
        self.add(preludeEvent={"config": {}})

    def add(self, **event) -> None:
        self.events.append({"sequence": len(self.events), "timestamp": self.now, **event})

    @staticmethod
    def urn(node: str, step: str | None = None) -> str:
        base = "urn:pulumi:lab::shimless::shimless:index:RuntimeMigration$shimless:index:NodeRuntime"
        if step is None:
            return f"{base}::shimless-{node}"
        return f"{base}${STEP_TYPES.get(step, 'command:remote:Command')}::shimless-{node}-{step}"

    def metadata(self, op: str, urn: str, kind: str, outputs: dict | None = None) -> dict:
        return {"op": op, "urn": urn, "type": kind, "old": None,
                "new": {"type": kind, "urn": urn, "id": "", "parent": "", "inputs": {}, "outputs": outputs or {},
                        "provider": ""},
                "detailedDiff": None, "logical": True, "provider": ""}

    def component(self, node: str, done: bool = False) -> None:
        meta = self.metadata("create", self.urn(node), report.NODE_TYPE,
                             {"report": plan_report(node)} if done else None)
        self.add(**{"resOutputsEvent" if done else "resourcePreEvent": {"metadata": meta}})

    def step(self, node: str, step: str, seconds: int = 1, op: str = "create", error: str | None = None,
             stdout: str | None = None, finish: bool = True) -> None:
        urn, kind = self.urn(node, step), STEP_TYPES.get(step, "command:remote:Command")
        self.add(resourcePreEvent={"metadata": self.metadata(op, urn, kind)})
        if op == "same":
            self.add(resOutputsEvent={"metadata": self.metadata(op, urn, kind, {"stdout": STDOUT.get(step, "")})})
            return
        printed = STDOUT.get(step, "") if stdout is None else stdout
        for line in printed.splitlines():
            self.add(diagnosticEvent={"urn": urn, "message": line + "\n", "color": "never", "severity": "info",
                                      "ephemeral": True})
        self.now += seconds
        if not finish:
            return
        if error is not None:
            self.add(diagnosticEvent={"urn": urn, "prefix": "error: ", "message": error, "color": "never",
                                      "severity": "error"})
            self.add(resOpFailedEvent={"metadata": self.metadata(op, urn, kind), "status": 0, "steps": 3})
            return
        self.add(resOutputsEvent={"metadata": self.metadata(op, urn, kind, {"stdout": printed})})

    def node(self, node: str, op: str = "create") -> None:
        self.component(node)
        for step in report.STEPS:
            self.step(node, step, seconds=2 if step == "drain" else 6 if step == "switch" else 1, op=op)
        self.component(node, done=True)

    def end(self, result: str, changes: dict) -> None:
        if result != "succeeded":
            self.add(diagnosticEvent={"prefix": "error: ", "message": "update failed\n", "color": "never",
                                      "severity": "error"})
        self.add(summaryEvent={"maybeCorrupt": False, "durationSeconds": self.now - self.events[0]["timestamp"],
                               "resourceChanges": changes, "PolicyPacks": {}, "isPreview": False, "result": result})
        self.add(cancelEvent={})

    def lines(self) -> list[str]:
        return [json.dumps(event) + "\n" for event in self.events]


def render(log: EventLog, stack_outputs: dict | None = None, batches=BATCHES) -> tuple[report.Rollout, str]:
    rollout = report.build_rollout("lab", report.read_events(log.lines()),
                                   outputs() if stack_outputs is None else stack_outputs, batches,
                                   events_path=".state/events/lab-20261130T232600Z.jsonl")
    return rollout, report.render_html(rollout)


def bars(page: str, node: str) -> dict[str, str]:
    """step -> outcome of the node's bars in the timeline."""
    group = re.search(rf'<g class="node" data-node="{node}">(.*?)</g>', page, re.S).group(1)
    return {step: outcome for outcome, step in re.findall(r'<rect class="bar (\S+)" data-step="([\w-]+)"', group)}


def row(page: str, node: str) -> list[str]:
    cells = re.search(rf'<tr data-node="{node}">(.*?)</tr>', page, re.S).group(1)
    return [html.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in re.findall(r"<td[^>]*>.*?</td>", cells)]


def assert_self_contained(page: str) -> None:
    assert "<script" not in page.lower()
    for tag in ("<link", "<img", "<iframe", "<object", "@import", "@font-face", "url("):
        assert tag not in page.lower(), tag
    # The only web addresses are the ones the user's own config put in a warning.
    assert re.findall(r"https?://[^\s<\"']+", page.replace(MIRROR, "")) == []


def whole_rollout(op: str = "create") -> EventLog:
    """Every node through every step, batch after batch, and the update's end."""
    log = EventLog()
    for node in NODES:
        log.node(node, op=op)
    log.end("succeeded", {op: 27})
    return log


def test_a_rollout_that_succeeds_has_every_step_green_in_its_batch():
    rollout, page = render(whole_rollout())
    assert rollout.outcome == "succeeded"
    for node in NODES:
        assert bars(page, node) == {step: "succeeded" for step in report.STEPS}, node
        assert row(page, node)[2:] == ["docker", "containerd", "v1.23.17", "3 images, 1.0 MiB, 2 s", "2 s",
                                       "5.4 s", "switched to containerd"]
    assert [r.batch for r in rollout.nodes] == [1, 2, 3]
    for label in ("batch 1", "batch 2", "batch 3"):
        assert f">{label}</text>" in page
    assert 'fill="#2e7d32"' in page and 'class="bar failed"' not in page
    assert "<code>live-restore</code>: containerd has no live-restore" in page
    assert f"registry mirror {MIRROR} is carried" in page
    assert_self_contained(page)


def test_a_failed_switch_says_where_and_that_it_rolled_back_and_later_nodes_did_not_start():
    log = EventLog()
    log.node("lab-cp1")
    log.component("lab-w1")
    for step in ("preflight", "prestage", "drain"):
        log.step("lab-w1", step)
    stderr = ("shimless[lab-w1] step 'kubelet' failed (exit 1): rolling back to the previous runtime\n"
              "shimless[lab-w1] ROLLED BACK: node is on its previous runtime again (kubelet active on its old flags)")
    log.step("lab-w1", "switch", seconds=9, stdout=stderr + "\nfailed step=kubelet rolled_back=yes",
             error=f"Process exited with status 1: running \"bash -s\":\nfailed step=kubelet rolled_back=yes\n{stderr}\n")
    log.end("failed", {"create": 12})
    # The stack's outputs after a failed update are those of an earlier one (here: none yet).
    rollout, page = render(log, stack_outputs={})
    assert rollout.outcome == "failed"
    assert bars(page, "lab-cp1") == {step: "succeeded" for step in report.STEPS}
    assert bars(page, "lab-w1") == {"preflight": "succeeded", "prestage": "succeeded", "drain": "succeeded",
                                    "switch": "failed"}
    assert "lab-w1 switch: failed (create, 9 s): switch failed at &#x27;kubelet&#x27;; rolled back" in page
    assert "not started: verify, node-patch, uncordon, cleanup" in page
    assert bars(page, "lab-w2") == {}
    w2 = re.search(r'<g class="node" data-node="lab-w2">(.*?)</g>', page, re.S).group(1)
    assert 'class="bar not-started"' in w2 and ">not started</text>" in w2
    assert row(page, "lab-w1")[-1] == "switch failed at 'kubelet'; rolled back"
    assert row(page, "lab-w2")[-1] == "not started"
    # lab-cp1's component registered its report in this update: its facts are fresh.
    assert row(page, "lab-cp1")[2:5] == ["docker", "containerd", "v1.23.17"]
    assert 'class="bar failed"' in page and 'fill="#c62828"' in page
    assert_self_contained(page)


def test_a_verify_that_rolls_back_and_a_rollback_that_fails_are_told_apart():
    def failed_verify(message: str) -> str:
        log = EventLog()
        log.component("lab-cp1")
        for step in ("preflight", "prestage", "drain", "switch", "node-patch"):
            log.step("lab-cp1", step)
        log.step("lab-cp1", "verify", seconds=30, stdout="", error=(
            "exit status 1: running \"python3 -m components.verify\":\n"
            f"shimless[lab-cp1] step 'verify' failed after 30s: Ready=False\nshimless[lab-cp1] node lab-cp1: {message}\n"))
        log.end("failed", {"create": 5})
        return row(render(log)[1], "lab-cp1")[-1]

    assert failed_verify("rolled back to its previous runtime") == "verify failed; rolled back"
    assert failed_verify("ROLLBACK FAILED (exit 1): restore it from /var/lib/shimless/backup/previous") == \
        "verify failed; ROLLBACK FAILED"


def test_an_interrupted_run_without_a_summary_still_gives_a_report():
    log = EventLog()
    log.node("lab-cp1")
    log.component("lab-w1")
    log.step("lab-w1", "preflight")
    log.step("lab-w1", "prestage")
    log.step("lab-w1", "drain", seconds=4, finish=False)  # the CLI was killed here: no summary, no cancel
    lines = log.lines()
    lines.append('{"sequence": 999, "timestamp": 17960')  # the half-written line a kill leaves
    rollout = report.build_rollout("lab", report.read_events(lines), outputs(), BATCHES)
    page = report.render_html(rollout)
    assert rollout.outcome == "interrupted"
    assert "interrupted: the update did not finish" in page
    assert bars(page, "lab-w1") == {"preflight": "succeeded", "prestage": "succeeded", "drain": "interrupted"}
    assert row(page, "lab-w1")[-1] == "interrupted during drain"
    assert row(page, "lab-w2")[-1] == "not started"
    assert 'fill="#ef6c00"' in page
    # Facts of nodes this update never finished come from an earlier update's outputs, and the page says so.
    assert "stack outputs of an earlier update" in page
    assert_self_contained(page)


def test_a_rerun_on_migrated_nodes_shows_nothing_changed():
    rollout, page = render(whole_rollout(op="same"))
    assert {r.result for r in rollout.nodes} == {"no change: already on its target"}
    for node in NODES:
        assert set(bars(page, node).values()) == {"unchanged"}
        assert row(page, node)[5:7] == ["—", "—"]  # no images carried, no drain this time


def test_without_a_cluster_a_node_has_only_its_remote_steps():
    log = EventLog()
    log.component("lab-cp1")
    for step in ("preflight", "prestage", "switch", "cleanup"):
        log.step("lab-cp1", step)
    log.end("succeeded", {"create": 4})
    rollout, page = render(log, stack_outputs={"fleet": {"plannedOrder": [["lab-cp1"]], "clusterMode": "none"}},
                           batches=None)
    assert list(rollout.nodes[0].steps) == ["preflight", "prestage", "switch", "cleanup"]
    assert bars(page, "lab-cp1") == dict.fromkeys(("preflight", "prestage", "switch", "cleanup"), "succeeded")
    assert rollout.nodes[0].batch == 1


def test_batches_unknown_are_said_and_nodes_keep_the_order_they_started_in():
    log = EventLog()
    for node in ("lab-w2", "lab-cp1"):
        log.node(node)
    log.end("succeeded", {"create": 18})
    rollout, page = render(log, stack_outputs={}, batches=None)
    assert [r.name for r in rollout.nodes] == ["lab-w2", "lab-cp1"]
    assert "Batches unknown" in page


def test_text_from_the_node_is_escaped():
    log = EventLog()
    log.component("lab-cp1")
    log.step("lab-cp1", "preflight", error="exit status 1: <script>alert(1)</script> step 'preflight' failed\n",
             stdout="")
    log.end("failed", {})
    _, page = render(log)
    assert "<script" not in page and "&lt;script&gt;" in page


def test_the_steps_are_node_runtimes_children(pulumi_mocks):
    """report.STEPS names the steps NodeRuntime registers, in its order."""
    from components.config import parse_settings
    from tests.test_components import build, raw_config, run_program
    settings = parse_settings(raw_config(workers=1, control_planes=0))
    run_program(lambda: build(settings))
    children = [r.name[len("shimless-w1-"):] for r in pulumi_mocks if r.name.startswith("shimless-w1-")]
    assert children == list(report.STEPS)


def test_the_failure_texts_the_report_reads_are_what_the_steps_print():
    scripts = ROOT / "components" / "scripts"
    switch = (scripts / "switch.sh").read_text()
    assert "step '$failed_step' failed" in switch and "step '$STEP' failed" in switch
    assert "ROLLED BACK" in (scripts / "node-lib.sh").read_text()
    assert "step 'drain' failed" in (scripts / "drain.sh").read_text()
    verify = (ROOT / "components" / "verify.py").read_text()
    assert "step 'verify' failed" in verify
    assert all(mark in verify for mark in ("rolled back to its previous runtime", report.ROLLBACK_FAILED_MARK))


def test_the_newest_event_log_of_the_stack_is_used(tmp_path):
    for name in ("lab-20261130T100000Z.jsonl", "lab-20261130T230000Z.jsonl", "lab-2-20261201T000000Z.jsonl",
                 "lab-notes.jsonl"):
        (tmp_path / name).write_text("")
    assert report.latest_event_log("lab", tmp_path).name == "lab-20261130T230000Z.jsonl"
    assert report.latest_event_log("prod", tmp_path) is None


def test_cli_writes_the_page(tmp_path, monkeypatch, capsys):
    log = EventLog()
    log.node("lab-cp1")
    log.end("succeeded", {"create": 9})
    events = tmp_path / "lab-20261130T232600Z.jsonl"
    events.write_text("".join(log.lines()))
    monkeypatch.setattr(report, "_stack_outputs", lambda stack: (outputs(), ""))
    monkeypatch.setattr(report, "_stack_batches", lambda stack: (None, None))
    out = tmp_path / "lab-report.html"
    assert report.main(["--stack", "lab", "--events", str(events), "--out", str(out)]) == 0
    assert f"report: {out}" in capsys.readouterr().out
    page = out.read_text()
    assert bars(page, "lab-cp1") == {step: "succeeded" for step in report.STEPS}


def test_cli_without_an_event_log_says_how_to_get_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(report, "EVENTS_DIR", tmp_path)
    assert report.main(["--stack", "lab"]) == 1
    assert "make up STACK=lab" in capsys.readouterr().err


@pytest.mark.parametrize("line", ["", "not json", "[1, 2]"])
def test_lines_that_are_no_event_are_skipped(line):
    assert report.read_events([line, '{"sequence": 0, "timestamp": 1, "cancelEvent": {}}']) == \
        [{"sequence": 0, "timestamp": 1, "cancelEvent": {}}]


def test_the_terminal_table_has_pods_before_and_after():
    rollout, _ = render(whole_rollout())
    before = report.read_pod_counts("      6 lab-cp1\n      2 lab-w1\n      2 lab-w2\n")
    after = report.read_pod_counts("      6 lab-cp1\n      3 lab-w1\n")
    lines = report.text_table(rollout, before, after).splitlines()
    assert lines[0].split() == ["NODE", "BATCH", "BEFORE", "AFTER", "KUBELET", "PODS", "BEFORE", "PODS", "AFTER",
                                "IMAGES", "CARRIED", "DRAIN", "WINDOW", "RESULT"]
    assert lines[2].split() == ["lab-w1", "2", "docker", "containerd", "v1.23.17", "2", "3", "3", "images,", "1.0",
                                "MiB,", "2", "s", "2", "s", "5.4", "s", "switched", "to", "containerd"]
    assert lines[3].split()[5:7] == ["2", "0"]  # counted, and none running


def test_the_next_event_log_is_the_one_the_report_finds_first(tmp_path, monkeypatch):
    from datetime import datetime, timezone
    monkeypatch.setattr(report, "EVENTS_DIR", tmp_path / "events")
    old = report.new_event_log("lab", datetime(2026, 11, 30, 10, 0, tzinfo=timezone.utc))
    new = report.new_event_log("lab", datetime(2026, 11, 30, 23, 0, tzinfo=timezone.utc))
    for path in (new, old):
        path.write_text("")
    assert report.latest_event_log("lab") == new
