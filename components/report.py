"""The rollout report: one `pulumi up`'s engine event log and the stack's
outputs -> a per-node model (`build_rollout`) -> one self-contained HTML page
(`render_html`: inline SVG and CSS, no script, nothing from the network).
Those are pure; `main` (`python -m components.report --stack NAME`) reads the
files and the stack's outputs for them.

Timings come only from Pulumi's own engine event log (`pulumi up --event-log
FILE`, a flag the CLI registers only with PULUMI_DEBUG_COMMANDS=true, see
pkg/cmd/pulumi/operations/up.go). Its format, as written by
pkg/backend/display/display.go (startEventLogger) from the types in
sdk/go/common/apitype/events.go (EngineEvent), and checked against a real log
of CLI v3.259.0: one JSON object per line; the fields read here are
  sequence                                   total order of the events
  timestamp                                  unix seconds, when the CLI logged the event
  resourcePreEvent.metadata.{op,urn,type}    a step starts (op: same, create, update, ...)
  resOutputsEvent.metadata.{op,urn,type,new.outputs}   the step is done; a command's
                                             stdout, a component's registered outputs
  resOpFailedEvent.metadata.{op,urn}         the step failed
  diagnosticEvent.{urn,message,severity}     a command's streamed output ("info",
                                             "info#err") and its error ("error")
  summaryEvent.{durationSeconds,result}      the update finished (result: succeeded,
                                             failed, canceled; absent in older CLIs)
A run killed before its end has no summaryEvent (a cancelEvent ends every
log, finished or not, so it says nothing). Secret values are "[secret]" there.
"""
from __future__ import annotations

import argparse
import html
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from components import protocol

# NodeRuntime's children, in the order they run (components/node_runtime.py; a
# test checks the two agree). Without a cluster only the remote ones exist.
STEPS = ("preflight", "prestage", "drain", "switch", "verify", "node-patch", "uncordon", "cleanup")
CLUSTER_STEPS = ("drain", "node-patch", "verify", "uncordon")  # only with cluster.mode kubeconfig
NODE_TYPE = "shimless:index:NodeRuntime"
# program.py names the fleet "shimless"; each node's component is "shimless-<node>".
NODE_PREFIX = "shimless-"
# Ops that belong to a step's own run; a replaced resource's deletion runs at
# the end of the update and says nothing about the step.
STEP_OPS = ("same", "create", "update", "replace", "create-replacement", "import", "import-replacement")

OUTCOMES = {  # outcome -> (label, colour)
    "succeeded": ("succeeded", "#2e7d32"),
    "failed": ("failed", "#c62828"),
    "interrupted": ("interrupted", "#ef6c00"),
    "unchanged": ("unchanged (already done)", "#90a4ae"),
    "not-started": ("not started", "#ffffff"),
}

# What the steps print when they fail, besides the protocol lines (components/protocol.py):
# "shimless[NODE] step 'S' failed ..." (switch.sh, drain.sh, verify.py), "ROLLED BACK"
# (node-lib.sh's restore), "rolled back to its previous runtime" / "ROLLBACK FAILED" (verify.py).
FAILED_STEP = re.compile(r"step '([\w.-]+)' failed")
ROLLED_BACK_MARKS = ("ROLLED BACK", "rolled back to its previous runtime")
ROLLBACK_FAILED_MARK = "ROLLBACK FAILED"


@dataclass
class StepRun:
    """One step of one node in this update, as the event log shows it."""

    step: str
    outcome: str = "not-started"  # a key of OUTCOMES
    op: str = ""
    start: int | None = None  # unix seconds
    end: int | None = None
    stdout: str = ""  # the command's stdout output, when it finished
    text: str = ""  # everything it printed, its error included
    detail: str = ""  # why it failed, in words

    @property
    def seconds(self) -> int | None:
        if self.start is None or self.end is None or self.outcome == "unchanged":
            return None
        return self.end - self.start


@dataclass
class NodeRow:
    name: str
    batch: int | None = None  # 1-based; None when the order is not known
    steps: dict[str, StepRun] = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # the node's entry of the `nodes` output
    info_source: str = ""  # where `info` comes from
    result: str = "not started"
    outcome: str = "not-started"
    images_carried: dict | None = None
    window_ms: int | None = None

    @property
    def drain_seconds(self) -> int | None:
        drain = self.steps.get("drain")
        return drain.seconds if drain else None

    @property
    def first_start(self) -> int | None:
        starts = [s.start for s in self.steps.values() if s.start is not None]
        return min(starts) if starts else None


@dataclass
class Rollout:
    stack: str
    outcome: str  # succeeded | failed | interrupted
    started: int | None
    ended: int | None
    nodes: list[NodeRow]
    batches_known: bool
    errors: list[str] = field(default_factory=list)  # error diagnostics of no step
    events_path: str = ""
    notes: list[str] = field(default_factory=list)


# --- the event log -------------------------------------------------------------


def read_events(lines: Iterable[str]) -> list[dict]:
    """The events of a log, in sequence order. A line a killed CLI left half
    written is skipped."""
    events = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return sorted(events, key=lambda e: e.get("sequence", 0))


def _urn_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _node_step(urn: str) -> tuple[str, str] | None:
    """(node, step) of a NodeRuntime child's URN, e.g. ...$command:remote:Command::shimless-w1-switch."""
    if f"{NODE_TYPE}$" not in urn:
        return None
    name = _urn_name(urn)
    for step in sorted(STEPS, key=len, reverse=True):
        if name.startswith(NODE_PREFIX) and name.endswith(f"-{step}"):
            return name[len(NODE_PREFIX):-len(step) - 1], step
    return None


def _node_of_component(metadata: dict) -> str | None:
    if metadata.get("type") != NODE_TYPE:
        return None
    name = _urn_name(metadata.get("urn", ""))
    return name[len(NODE_PREFIX):] if name.startswith(NODE_PREFIX) else None


def _failure_detail(step: StepRun) -> str:
    """"failed at 'kubelet'; rolled back" and the like, from what the step printed."""
    text = step.text
    inner = ""
    rolled_back = ""
    if step.step == "switch":
        try:
            result = protocol.parse_switch(text)
        except protocol.ProtocolError:
            result = None
        if result is not None and result.outcome == "failed":
            inner = result.step
            rolled_back = {"yes": "rolled back", "incomplete": "ROLLBACK INCOMPLETE",
                           "not-needed": "node untouched, no rollback needed"}.get(result.rolled_back, "")
    if not inner:
        found = FAILED_STEP.findall(text)
        inner = found[-1] if found else ""
    if not rolled_back:
        if ROLLBACK_FAILED_MARK in text:
            rolled_back = "ROLLBACK FAILED"
        elif any(mark in text for mark in ROLLED_BACK_MARKS):
            rolled_back = "rolled back"
        elif STEPS.index(step.step) < STEPS.index("switch"):
            rolled_back = "node not switched"
    where = f"{step.step} failed" + (f" at '{inner}'" if inner and inner != step.step else "")
    return f"{where}; {rolled_back}" if rolled_back else where


def _collect(events: list[dict]) -> tuple[dict[str, dict[str, StepRun]], dict[str, dict], list[str]]:
    """Per node its steps, per node the report its component registered, and the
    error diagnostics that belong to no step."""
    steps: dict[str, dict[str, StepRun]] = {}
    reports: dict[str, dict] = {}
    errors: list[str] = []
    texts: dict[tuple[str, str], list[str]] = {}
    by_urn: dict[str, tuple[str, str]] = {}
    for event in events:
        stamp = event.get("timestamp")
        for kind in ("resourcePreEvent", "resOutputsEvent", "resOpFailedEvent"):
            payload = event.get(kind)
            if not isinstance(payload, dict):
                continue
            metadata = payload.get("metadata") or {}
            urn, op = metadata.get("urn", ""), metadata.get("op", "")
            component = _node_of_component(metadata)
            if component is not None:
                steps.setdefault(component, {})
                outputs = (metadata.get("new") or {}).get("outputs") or {}
                if kind == "resOutputsEvent" and isinstance(outputs.get("report"), dict):
                    reports[component] = outputs["report"]
                continue
            found = _node_step(urn)
            if found is None or op not in STEP_OPS:
                continue
            by_urn[urn] = found
            node, name = found
            run = steps.setdefault(node, {}).setdefault(name, StepRun(name))
            if kind == "resourcePreEvent":
                if run.start is None:
                    run.start, run.op, run.outcome = stamp, op, "interrupted"
                continue
            run.end = stamp
            if kind == "resOpFailedEvent":
                run.outcome = "failed"
            elif run.outcome != "failed":
                run.outcome = "unchanged" if run.op == "same" else "succeeded"
                stdout = ((metadata.get("new") or {}).get("outputs") or {}).get("stdout")
                run.stdout = stdout if isinstance(stdout, str) else ""
        diagnostic = event.get("diagnosticEvent")
        if isinstance(diagnostic, dict):
            urn = diagnostic.get("urn", "")
            message = diagnostic.get("message", "")
            if urn in by_urn:
                texts.setdefault(by_urn[urn], []).append(message)
            elif diagnostic.get("severity") == "error" and message.strip() and message.strip() != "update failed":
                errors.append(message.strip())
    for (node, name), parts in texts.items():
        steps[node][name].text = "".join(parts)
    for node_steps in steps.values():
        for run in node_steps.values():
            run.text = run.text or run.stdout
            if run.outcome == "failed":
                run.detail = _failure_detail(run)
            elif run.outcome == "interrupted":
                run.detail = f"{run.step} started and never finished in this log"
    return steps, reports, errors


def _outcome(events: list[dict], steps: dict[str, dict[str, StepRun]]) -> str:
    summary = next((e["summaryEvent"] for e in events if isinstance(e.get("summaryEvent"), dict)), None)
    failed = any(run.outcome == "failed" for node in steps.values() for run in node.values())
    if summary is None or summary.get("result") in ("canceled", "cancelled"):
        return "interrupted"
    if summary.get("result") == "failed" or failed:
        return "failed"
    if summary.get("result") not in (None, "succeeded"):
        return str(summary.get("result"))
    return "succeeded"


# --- the model -------------------------------------------------------------------


def _result(row: NodeRow) -> tuple[str, str]:
    """(what happened to the node in words, its outcome)."""
    runs = [row.steps[s] for s in STEPS if s in row.steps]
    failed = next((r for r in runs if r.outcome == "failed"), None)
    if failed:
        return failed.detail, "failed"
    interrupted = next((r for r in runs if r.outcome == "interrupted"), None)
    if interrupted:
        return f"interrupted during {interrupted.step}", "interrupted"
    if not runs or all(r.outcome == "not-started" for r in runs):
        return "not started", "not-started"
    switch = row.steps.get("switch")
    parsed = None
    if switch is not None and switch.outcome == "succeeded":
        try:
            parsed = protocol.parse_switch(switch.stdout or switch.text)
        except protocol.ProtocolError:
            parsed = None
    if parsed is not None and parsed.outcome == "switched":
        return f"switched to {parsed.runtime}", "succeeded"
    if parsed is not None and parsed.outcome == "in-sync":
        return f"already on {parsed.runtime}: left alone", "succeeded"
    if all(r.outcome == "unchanged" for r in runs):
        return "no change: already on its target", "unchanged"
    last_done = [r for r in runs if r.outcome in ("succeeded", "unchanged")]
    return f"stopped after {last_done[-1].step}" if last_done else "not started", "interrupted"


def _carried(row: NodeRow) -> dict | None:
    """What this update's pre-stage carried; None when it did not run in this update."""
    prestage = row.steps.get("prestage")
    if prestage is None or prestage.outcome != "succeeded":
        return None
    try:
        line = protocol.parse_prestage(prestage.stdout or prestage.text)
    except protocol.ProtocolError:  # e.g. a secret output: the component's report has it
        carried = row.info.get("imagesCarried")
        return carried if isinstance(carried, dict) and row.info_source == "this update" else None
    return {"images": line.images, "bytes": line.image_bytes, "seconds": line.image_seconds}


def _window(row: NodeRow) -> int | None:
    switch = row.steps.get("switch")
    if switch is None or switch.outcome not in ("succeeded", "failed"):
        return None
    try:
        parsed = protocol.parse_switch(switch.stdout or switch.text)
    except protocol.ProtocolError:
        return None
    return parsed.window_ms if parsed is not None and parsed.outcome == "switched" else None


def _expected_steps(steps: dict[str, dict[str, StepRun]], cluster_mode: str | None) -> tuple[str, ...]:
    """The steps each node has: without a cluster no drain, node-patch, verify or uncordon."""
    seen = {step for node in steps.values() for step in node}
    if cluster_mode == "none" or (cluster_mode is None and "switch" in seen and "drain" not in seen):
        return tuple(step for step in STEPS if step not in CLUSTER_STEPS)
    return STEPS


def build_rollout(stack: str, events: list[dict], outputs: dict, batches: list[list[str]] | None = None,
                  events_path: str = "", cluster_mode: str | None = None) -> Rollout:
    """The model of one update. `outputs` is `pulumi stack output --json`;
    `batches` the rollout order (node names per batch) when known, else the
    outputs' fleet.plannedOrder is used; `cluster_mode` the stack's
    cluster.mode when known, else the outputs' or what the log shows."""
    steps, reports, errors = _collect(events)
    outcome = _outcome(events, steps)
    stamps = [e["timestamp"] for e in events if isinstance(e.get("timestamp"), int)]
    nodes_output = outputs.get("nodes") if isinstance(outputs.get("nodes"), dict) else {}
    notes = []
    if batches is None:
        planned = (outputs.get("fleet") or {}).get("plannedOrder") if isinstance(outputs.get("fleet"), dict) else None
        batches = planned if isinstance(planned, list) else None
    if cluster_mode is None and isinstance(outputs.get("fleet"), dict):
        cluster_mode = outputs["fleet"].get("clusterMode")
    expected = _expected_steps(steps, cluster_mode)
    batch_of = {name: index for index, batch in enumerate(batches or [], 1) for name in batch}
    names = list(dict.fromkeys([*(n for b in batches or [] for n in b), *nodes_output, *steps]))
    rows = []
    for name in names:
        row = NodeRow(name, batch=batch_of.get(name))
        row.steps = {step: steps.get(name, {}).get(step, StepRun(step)) for step in expected}
        if name in reports:
            row.info, row.info_source = reports[name], "this update"
        elif isinstance(nodes_output.get(name), dict):
            row.info = nodes_output[name]
            row.info_source = "this update" if outcome == "succeeded" else "stack outputs of an earlier update"
        row.result, row.outcome = _result(row)
        row.images_carried = _carried(row)
        row.window_ms = _window(row)
        rows.append(row)
    if any(row.info_source.startswith("stack outputs of an earlier") for row in rows):
        notes.append("This update did not finish: a node's runtime, kubelet version, daemon.json account and "
                     "warnings come from the stack's outputs of the last update that did.")
    rows.sort(key=lambda r: (r.batch if r.batch is not None else len(batch_of) + 1,
                             r.first_start if r.first_start is not None else float("inf"), r.name))
    return Rollout(stack=stack, outcome=outcome, started=min(stamps) if stamps else None,
                   ended=max(stamps) if stamps else None, nodes=rows, batches_known=bool(batch_of),
                   errors=errors, events_path=events_path, notes=notes)


# --- HTML --------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem; color: #1b1b1b; }
h1 { font-size: 1.4rem; margin: 0 0 .3rem; } h2 { font-size: 1.1rem; margin-top: 1.6rem; }
.meta { color: #555; margin: 0 0 1rem; }
.outcome-succeeded { color: #2e7d32; } .outcome-failed { color: #c62828; } .outcome-interrupted { color: #ef6c00; }
.outcome-unchanged { color: #546e7a; } .outcome-not-started { color: #757575; }
svg text { font-size: 12px; fill: #1b1b1b; } svg .axis { fill: #666; font-size: 11px; }
svg .batch { fill: #555; font-weight: 600; } svg .barlabel { fill: #fff; font-size: 10px; }
svg .note { font-size: 11px; } svg .note.failed { fill: #c62828; } svg .note.interrupted { fill: #ef6c00; }
.legend span { display: inline-block; margin-right: 1rem; } .swatch { display: inline-block; width: .9rem;
  height: .9rem; vertical-align: -2px; margin-right: .3rem; border: 1px solid #9e9e9e; }
table { border-collapse: collapse; margin-top: .5rem; } th, td { border: 1px solid #ddd; padding: .3rem .6rem;
  text-align: left; vertical-align: top; } th { background: #f5f5f5; }
td.num { text-align: right; white-space: nowrap; } ul { margin: .2rem 0 .6rem; }
.details h3 { font-size: 1rem; margin: 1rem 0 .2rem; } .notes { color: #8d6e00; }
pre { white-space: pre-wrap; background: #fafafa; border: 1px solid #eee; padding: .5rem; }
"""

LABEL_WIDTH = 170
PLOT_WIDTH = 860
ROW_HEIGHT = 26
BAR_HEIGHT = 16
NOTE_HEIGHT = 14


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _utc(stamp: int | None) -> str:
    if stamp is None:
        return "?"
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _bytes(count: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def _images(carried: dict | None) -> str:
    if not carried:
        return "—"
    return f"{carried.get('images', 0)} images, {_bytes(int(carried.get('bytes', 0)))}, {carried.get('seconds', 0)} s"


def _timeline(rollout: Rollout) -> str:
    t0 = rollout.started or 0
    span = max((rollout.ended or t0) - t0, 1)
    scale = PLOT_WIDTH / span
    rows = rollout.nodes
    batch_gap = 18 if rollout.batches_known else 0
    parts: list[str] = []
    y = 10
    last_batch: object = object()
    for row in rows:
        if rollout.batches_known and row.batch != last_batch:
            label = f"batch {row.batch}" if row.batch is not None else "not in the rollout order"
            y += batch_gap if parts else 4
            parts.append(f'<line x1="0" x2="{LABEL_WIDTH + PLOT_WIDTH}" y1="{y - 14}" y2="{y - 14}" stroke="#ccc"/>'
                         f'<text class="batch" x="2" y="{y - 2}">{_esc(label)}</text>')
            last_batch = row.batch
        parts.append(f'<g class="node" data-node="{_esc(row.name)}">'
                     f'<text x="12" y="{y + BAR_HEIGHT + 1}">{_esc(row.name)}</text>')
        drawn = [run for run in row.steps.values() if run.start is not None]
        if not drawn:
            parts.append(f'<rect class="bar not-started" x="{LABEL_WIDTH}" y="{y + 4}" width="{PLOT_WIDTH}" '
                         f'height="{BAR_HEIGHT}" fill="#ffffff" stroke="#9e9e9e" stroke-dasharray="4 3">'
                         f'<title>{_esc(row.name)}: not started</title></rect>'
                         f'<text class="note" x="{LABEL_WIDTH + 8}" y="{y + BAR_HEIGHT + 1}">not started</text>')
        for run in drawn:
            end = run.end if run.end is not None else (rollout.ended or run.start)
            x = LABEL_WIDTH + (run.start - t0) * scale
            width = max((end - run.start) * scale, 4)
            label, colour = OUTCOMES[run.outcome]
            seconds = f", {end - run.start} s" if run.outcome != "unchanged" else ""
            title = f"{row.name} {run.step}: {label} ({run.op}{seconds})" + (f": {run.detail}" if run.detail else "")
            parts.append(f'<rect class="bar {run.outcome}" data-step="{_esc(run.step)}" x="{x:.1f}" y="{y + 4}" '
                         f'width="{width:.1f}" height="{BAR_HEIGHT}" fill="{colour}" stroke="#fff">'
                         f'<title>{_esc(title)}</title></rect>')
            if width >= 7 * len(run.step) + 6:
                parts.append(f'<text class="barlabel" x="{x + 3:.1f}" y="{y + BAR_HEIGHT}">{_esc(run.step)}</text>')
        notes = [run.detail for run in drawn if run.detail]
        missing = [run.step for run in row.steps.values() if run.start is None]
        if drawn and row.outcome in ("failed", "interrupted") and missing:
            notes.append("not started: " + ", ".join(missing))
        if notes:
            # Under the bars, so that a short rollout's bars leave it room.
            parts.append(f'<text class="note {row.outcome}" x="{LABEL_WIDTH}" y="{y + BAR_HEIGHT + 15}">'
                         f'{_esc("; ".join(notes))}</text>')
            y += NOTE_HEIGHT
        parts.append("</g>")
        y += ROW_HEIGHT
    # The time axis, in seconds since the update's first event.
    step = next(s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 10 ** 9) if span / s <= 12)
    axis_y = y + 6
    parts.append(f'<line x1="{LABEL_WIDTH}" x2="{LABEL_WIDTH + PLOT_WIDTH}" y1="{axis_y}" y2="{axis_y}" stroke="#999"/>')
    for tick in range(0, span + 1, step):
        x = LABEL_WIDTH + tick * scale
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{axis_y}" y2="{axis_y + 4}" stroke="#999"/>'
                     f'<text class="axis" x="{x:.1f}" y="{axis_y + 16}" text-anchor="middle">{tick} s</text>')
    height = axis_y + 24
    width = LABEL_WIDTH + PLOT_WIDTH + 10
    return (f'<svg class="timeline" role="img" aria-label="rollout timeline" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">' + "".join(parts) + "</svg>")


def _legend() -> str:
    return '<p class="legend">' + "".join(
        f'<span><span class="swatch" style="background:{colour}"></span>{_esc(label)}</span>'
        for label, colour in OUTCOMES.values()) + "</p>"


def _table(rollout: Rollout) -> str:
    head = ("node", "batch", "runtime before", "runtime after", "kubelet", "images carried", "drain",
            "switch window", "result")
    lines = ["<table class=\"nodes\"><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for row in rollout.nodes:
        info = row.info
        drain = row.drain_seconds
        cells = (
            f"<td>{_esc(row.name)}</td>",
            f"<td class=\"num\">{row.batch if row.batch is not None else '—'}</td>",
            f"<td>{_esc(info.get('runtimeBefore', '—'))}</td>",
            f"<td>{_esc(info.get('runtimeAfter', '—'))}</td>",
            f"<td>{_esc(info.get('kubeletVersion', '—'))}</td>",
            f"<td>{_esc(_images(row.images_carried))}</td>",
            f"<td class=\"num\">{f'{drain} s' if drain is not None else '—'}</td>",
            f"<td class=\"num\">{f'{row.window_ms / 1000:.1f} s' if row.window_ms is not None else '—'}</td>",
            f"<td class=\"outcome-{row.outcome}\">{_esc(row.result)}</td>",
        )
        lines.append(f'<tr data-node="{_esc(row.name)}">' + "".join(cells) + "</tr>")
    lines.append("</table>")
    return "".join(lines)


def _details(rollout: Rollout) -> str:
    parts = ['<div class="details">']
    for row in rollout.nodes:
        info = row.info
        translation = info.get("translation") if isinstance(info.get("translation"), dict) else {}
        not_carried = translation.get("not_carried") or []
        warnings = info.get("warnings") or []
        parts.append(f"<h3>{_esc(row.name)}</h3>")
        if row.info_source:
            parts.append(f"<p class=\"meta\">plan: {_esc(info.get('plan', '—'))} "
                         f"(from the {_esc(row.info_source)})</p>")
        if not_carried:
            parts.append("<p>daemon.json keys not carried over:</p><ul>" + "".join(
                f"<li><code>{_esc(item.get('key', '?'))}</code>: {_esc(item.get('reason', ''))}</li>"
                for item in not_carried if isinstance(item, dict)) + "</ul>")
        elif row.info_source:
            parts.append("<p>daemon.json: every key carried over.</p>")
        if warnings:
            parts.append("<p>warnings:</p><ul>" + "".join(f"<li>{_esc(w)}</li>" for w in warnings) + "</ul>")
        failed = [run for run in row.steps.values() if run.outcome == "failed"]
        for run in failed:
            tail = "\n".join(run.text.strip().splitlines()[-12:])
            parts.append(f"<p>{_esc(run.detail)}; what it printed last:</p><pre>{_esc(tail)}</pre>")
    parts.append("</div>")
    return "".join(parts)


def render_html(rollout: Rollout) -> str:
    """One self-contained page: no script, no external font, stylesheet or image."""
    duration = (rollout.ended - rollout.started) if rollout.started is not None and rollout.ended is not None else 0
    counts: dict[str, int] = {}
    for row in rollout.nodes:
        counts[row.outcome] = counts.get(row.outcome, 0) + 1
    summary = ", ".join(f"{n} {OUTCOMES.get(k, (k,))[0]}" for k, n in counts.items())
    verdict = {"interrupted": "interrupted: the update did not finish (no summary in its event log)"}.get(
        rollout.outcome, rollout.outcome)
    body = [
        f"<h1>shimless rollout: stack {_esc(rollout.stack)}</h1>",
        f'<p class="meta">update {_esc(_utc(rollout.started))}, {duration} s: '
        f'<strong class="outcome-{_esc(rollout.outcome)}">{_esc(verdict)}</strong>; nodes: {_esc(summary)}.'
        f"<br>timings from the engine event log {_esc(rollout.events_path)} (1 s resolution)</p>",
    ]
    body += [f'<p class="notes">{_esc(note)}</p>' for note in rollout.notes]
    if not rollout.batches_known:
        body.append('<p class="notes">Batches unknown: no stack config or fleet output to read the rollout '
                    "order from; nodes are in the order they started.</p>")
    body += ["<h2>Timeline</h2>", _legend(), _timeline(rollout), "<h2>Nodes</h2>", _table(rollout),
             _details(rollout)]
    if rollout.errors:
        body.append("<h2>Errors</h2>" + "".join(f"<pre>{_esc(e)}</pre>" for e in rollout.errors))
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>shimless rollout: {_esc(rollout.stack)}</title><style>{CSS}</style></head>"
            "<body>" + "\n".join(body) + "</body></html>\n")


# --- text --------------------------------------------------------------------------------


def read_pod_counts(text: str) -> dict[str, int]:
    """Running pods per node from `uniq -c` lines ("      3 lab-cp1")."""
    counts = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[0].isdigit():
            counts[words[1]] = int(words[0])
    return counts


def _pods(counts: dict[str, int] | None, node: str) -> str:
    """A node absent from the counts runs no pod; no counts at all: unknown."""
    return "-" if counts is None else str(counts.get(node, 0))


def text_table(rollout: Rollout, pods_before: dict[str, int] | None = None,
               pods_after: dict[str, int] | None = None) -> str:
    """The node table for a terminal; pods columns when counts are given."""
    pods = pods_before is not None or pods_after is not None
    head = ["NODE", "BATCH", "BEFORE", "AFTER", "KUBELET", *(["PODS BEFORE", "PODS AFTER"] if pods else []),
            "IMAGES CARRIED", "DRAIN", "WINDOW", "RESULT"]
    rows = [head]
    for row in rollout.nodes:
        drain = row.drain_seconds
        rows.append([
            row.name, str(row.batch) if row.batch is not None else "-",
            str(row.info.get("runtimeBefore", "-")), str(row.info.get("runtimeAfter", "-")),
            str(row.info.get("kubeletVersion", "-")),
            *([_pods(pods_before, row.name), _pods(pods_after, row.name)] if pods else []),
            _images(row.images_carried).replace("—", "-"), f"{drain} s" if drain is not None else "-",
            f"{row.window_ms / 1000:.1f} s" if row.window_ms is not None else "-", row.result,
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(r, widths)).rstrip() for r in rows)


# --- CLI -------------------------------------------------------------------------------

STATE_DIR = Path(__file__).resolve().parent.parent / ".state"
EVENTS_DIR = STATE_DIR / "events"


def latest_event_log(stack: str, directory: Path | None = None) -> Path | None:
    """The newest `<stack>-<UTC timestamp>.jsonl` (names sort by time)."""
    directory = directory or EVENTS_DIR
    pattern = re.compile(rf"{re.escape(stack)}-\d{{8}}T\d{{6}}Z\.jsonl")
    logs = sorted(p for p in directory.glob(f"{stack}-*.jsonl") if pattern.fullmatch(p.name))
    return logs[-1] if logs else None


def _stack_outputs(stack: str) -> tuple[dict, str]:
    """`pulumi stack output --json` (secrets stay "[secret]"), and a note when unreadable."""
    try:
        done = subprocess.run(["pulumi", "stack", "output", "--stack", stack, "--json"], capture_output=True,
                              text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {}, f"stack outputs unreadable: {exc}"
    if done.returncode != 0:
        return {}, f"stack outputs unreadable: {done.stderr.strip()}"
    try:
        return json.loads(done.stdout or "{}"), ""
    except json.JSONDecodeError as exc:
        return {}, f"stack outputs unreadable: {exc}"


def _stack_batches(stack: str) -> tuple[list[list[str]] | None, str | None]:
    """The rollout order (by the planner's own function) and cluster.mode from
    the stack file; (None, None) when it cannot be read."""
    from components.cli_stack import stack_settings
    from components.config import ConfigError
    from components.plan import plan_batches
    try:
        _, settings = stack_settings(stack)
    except ConfigError:
        return None, None
    return plan_batches(settings.nodes, settings.rollout), settings.cluster_mode


def new_event_log(stack: str, now: datetime | None = None) -> Path:
    """Where the next update of `stack` logs its events (the name latest_event_log finds)."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    EVENTS_DIR.mkdir(parents=True, exist_ok=True)
    return EVENTS_DIR / f"{stack}-{stamp}.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--events", help="event log (default: the newest .state/events/<stack>-*.jsonl)")
    parser.add_argument("--out", help="HTML file (default: .state/<stack>-report.html)")
    parser.add_argument("--new-event-log", action="store_true",
                        help="only print the path for the next update's --event-log")
    parser.add_argument("--summary", action="store_true", help="also print the node table")
    parser.add_argument("--pods-before", help="with --summary: Running pods per node (`uniq -c` lines)")
    parser.add_argument("--pods-after", help="with --summary: the same, after the update")
    args = parser.parse_args(argv)
    if args.new_event_log:
        print(new_event_log(args.stack))
        return 0
    events_path = Path(args.events) if args.events else latest_event_log(args.stack)
    if events_path is None or not events_path.is_file():
        print(f"shimless report: no event log {events_path or f'{EVENTS_DIR}/{args.stack}-*.jsonl'} "
              f"(`make up STACK={args.stack}` writes one)", file=sys.stderr)
        return 1
    with events_path.open(encoding="utf-8") as lines:
        events = read_events(lines)
    outputs, problem = _stack_outputs(args.stack)
    batches, cluster_mode = _stack_batches(args.stack)
    rollout = build_rollout(args.stack, events, outputs, batches, events_path=str(events_path),
                            cluster_mode=cluster_mode)
    if problem:
        rollout.notes.append(problem)
    out = Path(args.out) if args.out else STATE_DIR / f"{args.stack}-report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(rollout), encoding="utf-8")
    if args.summary:
        counts = [read_pod_counts(Path(path).read_text()) if path else None
                  for path in (args.pods_before, args.pods_after)]
        print(text_table(rollout, *counts))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
