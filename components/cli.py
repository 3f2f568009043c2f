"""Command-line entry points that need no Pulumi engine: `python -m components.cli <command>`.

`render` shows, offline, exactly which files a node would get (the runtime
config, the rewritten kubelet flags/config) and the daemon.json translation
report: it computes them with the same `desired.desired_state` the program uses.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import sys
import tempfile
import re
from dataclasses import replace
from typing import Callable, NamedTuple

from components import cli_stack, kubelet_flags
from components.config import ConfigError, parse_target
from components.daemon_json import CONTAINERD_CONFIG, load_daemon_json, translate_daemon_json
from components.desired import Blocked, DesiredState, desired_state
from components.facts import NodeFacts
from components.manifest import (
    BACKUP_ORIGINAL, DAEMON_JSON, KUBEADM_FLAGS, KUBELET_CONFIG, ORIGINAL_DAEMON_JSON, READ_PATHS,
)
from components.model import CGROUP_DRIVERS, RUNTIMES, NodeSpec, RuntimeTarget, check_image
from components.render import containerd_config_version

REPORT_NAME = "translation-report.json"


class _Problems(list):
    """Everything wrong with the input, reported together, one line each."""

    def report(self, command: str) -> int:
        for problem in self:
            print(f"shimless {command}: {problem}", file=sys.stderr)
        return 2


def _read(path: str | None, option: str, problems: _Problems) -> str | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        problems.append(f"{option} {path}: cannot read: {reason}")
        return None


# --- render ------------------------------------------------------------------

# The node files render reads, at their node paths (under --from, or given one
# by one): those the desired state is computed from (the manifest's READ_PATHS),
# and a containerd config shimless rendered, for the version it names.
_FROM_FILES = (*READ_PATHS, CONTAINERD_CONFIG)
# shimless' own header in a containerd config it rendered names the version it was rendered for.
_RENDERED_FOR = re.compile(r"^# Managed by shimless; rendered for containerd (\S+) ", re.M)


def _add_render(subparsers) -> None:
    render = subparsers.add_parser(
        "render",
        help="render a node's runtime config and kubelet files into a directory",
        description="Render, without touching any node, the files shimless would write to a "
        "node (at their node paths under --out) plus translation-report.json. With --stack, "
        "--node and --from: exactly what `pulumi up` would write to that node.",
    )
    # Nothing is `required=`/`choices=` here: _render validates everything itself so
    # that all problems are reported at once, one line each.
    render.add_argument("--stack", help="stack name: the node's target from stacks/Pulumi.NAME.yaml")
    render.add_argument("--node", help="with --stack: the node's name in the stack")
    render.add_argument("--from", dest="from_dir", metavar="DIR", help="with --stack: a directory holding "
                        f"the node's current files at their node paths (e.g. a copy of {BACKUP_ORIGINAL}/)")
    render.add_argument("--runtime", help="containerd or cri-o (without --stack)")
    render.add_argument(
        "--containerd-version",
        default="",
        help="containerd version on the node, e.g. 1.6.20 or 2.0.4 (default: the version a "
        "shimless-rendered config.toml under --from names, else assume 1.x)",
    )
    render.add_argument("--crio-version", default="", help="CRI-O version on the node (shown in the report)")
    render.add_argument("--kubelet-version", help="kubelet version, e.g. v1.23.17")
    render.add_argument("--kubelet-flags", metavar="FILE", help="the node's kubeadm-flags.env")
    render.add_argument("--kubelet-config", metavar="FILE", help="the node's /var/lib/kubelet/config.yaml")
    render.add_argument("--daemon-json", metavar="FILE", help="the node's /etc/docker/daemon.json")
    render.add_argument("--cgroup-driver", help="auto (the kubelet's), systemd or cgroupfs; default: the "
                        "target's cgroupDriver (without --stack)")
    render.add_argument("--pause-image", help="pause image (default: the target's pauseImage)")
    render.add_argument("--out", metavar="DIR", help="directory to write the files into")
    render.set_defaults(handler=_render)


class _RenderInputs(NamedTuple):
    """A node as render sees it: its facts and target, and where each came from."""

    facts: NodeFacts
    target: RuntimeTarget
    labels: dict[str, str]  # node path -> the option and file it was read from
    pause_source: str
    driver_source: str


def _render(args: argparse.Namespace) -> int:
    problems = _Problems()
    inputs = _stack_inputs(args, problems) if args.stack or args.node or args.from_dir \
        else _file_inputs(args, problems)
    if problems or inputs is None:
        return problems.report("render")
    try:
        desired = desired_state(inputs.facts, inputs.target)
    except Blocked as exc:
        problems.append(_labelled(str(exc), inputs.labels))
        return problems.report("render")
    report = _render_report(inputs, desired)
    files_and_report = {**desired.files, "/" + REPORT_NAME: json.dumps(report, indent=2, sort_keys=True) + "\n"}
    try:
        _write_all(args.out, files_and_report)
    except OSError as err:
        problems.append(f"--out {args.out}: cannot write: {err.strerror or err}")
        return problems.report("render")
    for warning in desired.warnings:
        print(f"shimless render: warning: {warning}", file=sys.stderr)
    for node_path in sorted(desired.files):
        print(os.path.join(args.out, node_path.lstrip("/")))
    print(os.path.join(args.out, REPORT_NAME))
    return 0


def _labelled(reason: str, labels: dict[str, str]) -> str:
    """A reason naming a node path, naming the option and file it was read from instead."""
    for node_path, label in labels.items():
        if reason.startswith(node_path + ": "):
            return label + reason[len(node_path):]
    return reason


def _check_common_options(args: argparse.Namespace, problems: _Problems) -> str | None:
    """The options both forms take; returns the kubelet version as `kubelet --version` prints it."""
    version = None
    if args.kubelet_version is None:
        problems.append("--kubelet-version is required (e.g. v1.23.17)")
    else:
        try:
            version = "v{}.{}.{}".format(*kubelet_flags.parse_kubelet_version(args.kubelet_version))
        except ValueError as err:
            problems.append(f"--kubelet-version: {err}")
    if args.containerd_version:
        try:
            containerd_config_version(args.containerd_version)
        except ValueError as err:
            problems.append(f"--containerd-version: {err}")
    if args.pause_image is not None:
        try:
            check_image(args.pause_image)
        except ValueError as err:
            problems.append(f"--pause-image: {err}")
    if not args.out:
        problems.append("--out is required (directory to write into)")
    return version


def _check_node_files(files: dict[str, str], labels: dict[str, str], runtime: str | None,
                      problems: _Problems) -> None:
    """Each node file on its own, so that every bad one is reported at once, named by its option."""
    checks = {
        KUBEADM_FLAGS: lambda text: kubelet_flags.kubeadm_flag_value(text, kubelet_flags.POD_INFRA_FLAG),
        KUBELET_CONFIG: kubelet_flags.kubelet_cgroup_driver,
        DAEMON_JSON: lambda text: translate_daemon_json(load_daemon_json(text), runtime) if runtime
        else load_daemon_json(text),
    }
    checks[ORIGINAL_DAEMON_JSON] = checks[DAEMON_JSON]
    for node_path, check in checks.items():
        if node_path in files:
            try:
                check(files[node_path])
            except ValueError as err:
                problems.append(f"{labels[node_path]}: {err}")


def _node_facts(kubelet_version: str | None, runtime_versions: dict[str, str],
                files: dict[str, str]) -> NodeFacts:
    """What the probe would report of a node holding `files`, for desired_state."""
    facts = {"kubelet.version": kubelet_version or "", **runtime_versions}
    return NodeFacts(facts=facts, files=files)


def _file_inputs(args: argparse.Namespace, problems: _Problems) -> _RenderInputs | None:
    """render --runtime ... --kubelet-flags FILE [--kubelet-config FILE] [--daemon-json FILE]:
    the target is Pulumi.yaml's default target with --runtime, --cgroup-driver and --pause-image."""
    runtime = args.runtime
    if runtime is None:
        problems.append("--runtime is required (containerd or cri-o)")
    elif runtime not in RUNTIMES:
        problems.append(f"--runtime: unknown runtime {runtime!r} (expected {' or '.join(RUNTIMES)})")
        runtime = None
    version = _check_common_options(args, problems)
    if args.cgroup_driver is not None and args.cgroup_driver not in CGROUP_DRIVERS:
        problems.append(f"--cgroup-driver: {args.cgroup_driver!r} is not one of {', '.join(CGROUP_DRIVERS)}")
    if args.kubelet_flags is None:
        problems.append("--kubelet-flags is required (the node's kubeadm-flags.env)")
    files: dict[str, str] = {}
    labels: dict[str, str] = {}
    for node_path, option, path in ((KUBEADM_FLAGS, "--kubelet-flags", args.kubelet_flags),
                                    (KUBELET_CONFIG, "--kubelet-config", args.kubelet_config),
                                    (DAEMON_JSON, "--daemon-json", args.daemon_json)):
        text = _read(path, option, problems)
        if text is not None:
            files[node_path], labels[node_path] = text, f"{option} {path}"
    _check_node_files(files, labels, runtime, problems)
    if problems:
        return None
    # render writes files only: the install source plays no part, and the
    # runtime is the one the node has (--containerd-version).
    overrides = {"runtime": runtime, "source": "preinstalled"}
    for key, value in (("cgroupDriver", args.cgroup_driver), ("pauseImage", args.pause_image)):
        if value:
            overrides[key] = value
    target = parse_target(overrides)
    facts = _node_facts(version, _runtime_versions(args, files), files)
    return _RenderInputs(facts, target, labels, "--pause-image" if args.pause_image else "target.pauseImage default",
                         _driver_source(target, files, "--cgroup-driver"))


def _stack_inputs(args: argparse.Namespace, problems: _Problems) -> _RenderInputs | None:
    """render --stack NAME --node NODE --from DIR: the node's target from the
    stack, its files from DIR at their node paths."""
    for option, value in (("--stack", args.stack), ("--node", args.node), ("--from", args.from_dir)):
        if not value:
            problems.append(f"{option} is required with --stack, --node and --from")
    for option, value in (("--runtime", args.runtime), ("--cgroup-driver", args.cgroup_driver),
                          ("--kubelet-flags", args.kubelet_flags), ("--kubelet-config", args.kubelet_config),
                          ("--daemon-json", args.daemon_json)):
        if value is not None:
            problems.append(f"{option}: not with --stack (the stack and --from decide it)")
    version = _check_common_options(args, problems)
    node = _stack_node(args.stack, args.node, problems) if args.stack and args.node else None
    files: dict[str, str] = {}
    labels: dict[str, str] = {}
    if args.from_dir and not os.path.isdir(args.from_dir):
        problems.append(f"--from {args.from_dir}: not a directory")
    elif args.from_dir:
        for node_path in _FROM_FILES:
            path = os.path.join(args.from_dir, node_path.lstrip("/"))
            text = _read(path, "--from", problems) if os.path.isfile(path) else None
            if text is not None:
                files[node_path], labels[node_path] = text, f"--from {path}"
    if node is None or problems:
        return None
    _check_node_files(files, labels, node.target.runtime, problems)
    if problems:
        return None
    target = replace(node.target, pause_image=args.pause_image) if args.pause_image else node.target
    facts = _node_facts(version, _runtime_versions(args, files), files)
    return _RenderInputs(facts, target, labels, "--pause-image" if args.pause_image else "target.pauseImage",
                         _driver_source(target, files, "target.cgroupDriver"))


def _stack_node(stack: str, name: str, problems: _Problems) -> NodeSpec | None:
    """The node `name` of the stack, its target validated as preview validates it."""
    try:
        _, settings = cli_stack.stack_settings(stack)
    except ConfigError as exc:
        problems.extend(f"--stack {stack}: {problem}" for problem in exc.problems)
        return None
    node = next((node for node in settings.nodes if node.name == name), None)
    if node is None:
        problems.append(f"--node {name}: not a node of stack {stack} "
                        f"({', '.join(node.name for node in settings.nodes)})")
    return node


def _runtime_versions(args: argparse.Namespace, files: dict[str, str]) -> dict[str, str]:
    """The runtime versions as the probe reports them: from the options, else
    from the header of a containerd config shimless rendered."""
    rendered = _RENDERED_FOR.search(files.get(CONTAINERD_CONFIG, ""))
    containerd = args.containerd_version or (rendered.group(1) if rendered else "")
    return {"containerd.version": containerd, "crio.version": args.crio_version}


def _driver_source(target: RuntimeTarget, files: dict[str, str], explicit: str) -> str:
    if target.cgroup_driver != "auto":
        return explicit
    return "kubelet config" if KUBELET_CONFIG in files else "kubelet default"


def _render_report(inputs: _RenderInputs, desired: DesiredState) -> dict:
    """translation-report.json: what was rendered, from what, and what was not carried over."""
    target, facts = inputs.target, inputs.facts
    return {
        "runtime": target.runtime,
        "kubelet_version": facts.kubelet_version,
        "containerd_version": desired.runtime_version if target.runtime == "containerd" else None,
        "cgroup_driver": {"value": desired.cgroup_driver, "source": inputs.driver_source},
        "pause_image": {"value": target.pause_image, "source": inputs.pause_source},
        "daemon_json": desired.translation.report() if desired.translation else None,
        "kubelet_flags": {"added": list(desired.flags.added), "removed": list(desired.flags.removed),
                          "notes": list(desired.flags.notes)},
        "kubelet_config": _kubelet_config_report(facts, target, desired),
        "warnings": desired.warnings,
        "files": sorted(desired.files),
    }


def _kubelet_config_report(facts: NodeFacts, target: RuntimeTarget, desired: DesiredState) -> dict | None:
    """Which daemon.json settings went into config.yaml and which the kubelet already had."""
    if KUBELET_CONFIG not in desired.files:
        return None
    settings = desired.translation.kubelet_settings if desired.translation else {}
    old = facts.files.get(KUBELET_CONFIG, "")
    existing = {key: kubelet_flags.kubelet_config_value(old, key) for key in settings} if old else {}
    existing = {key: value for key, value in existing.items() if value is not None}
    return {
        "containerRuntimeEndpoint": target.cri_endpoint if desired.endpoint_in_config else None,
        "applied": sorted(key for key in settings if key not in existing),
        "kept_existing": {key: existing[key] for key in sorted(existing)},
    }


def _write_all(out: str, files: dict[str, str]) -> None:
    """Every file under `out`, or none: written into a temporary directory
    beside it, which then takes its place. An existing `out` is replaced only
    when empty or an earlier render's output, never a directory of other files."""
    out = os.path.abspath(out)
    if os.path.lexists(out) and not os.path.isdir(out):
        raise OSError(errno.ENOTDIR, "exists and is not a directory")
    if os.path.isdir(out) and os.listdir(out) and not os.path.isfile(os.path.join(out, REPORT_NAME)):
        raise OSError(errno.ENOTEMPTY, "not empty and not an earlier render's output; give a new or empty directory")
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", dir=parent)
    previous = staging + ".previous"
    try:
        for node_path, content in sorted(files.items()):
            path = os.path.join(staging, node_path.lstrip("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(content)
        os.chmod(staging, 0o755)  # mkdtemp's 0700 is for while it is incomplete
        if os.path.isdir(out):
            os.rename(out, previous)
        try:
            os.rename(staging, out)
        except OSError:
            if os.path.isdir(previous):
                os.rename(previous, out)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(previous, ignore_errors=True)


# --- entry point -------------------------------------------------------------

# Each subcommand registers itself here: (add_parser function).
SUBCOMMANDS: list[Callable] = [_add_render, cli_stack.add_check_config, cli_stack.add_drift]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m components.cli", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse's own usage errors (2) and --help (0)
        return int(exit_.code or 0)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
