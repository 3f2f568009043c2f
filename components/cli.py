"""Command-line entry points that need no Pulumi engine: `python -m components.cli <command>`.

`render` shows, offline, exactly which files a node would get: the runtime
config, the rewritten kubelet flags/config and the daemon.json translation report.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import sys
import tempfile
from dataclasses import replace
from typing import Callable

from components import cli_stack, kubelet_flags
from components.facts import KUBEADM_FLAGS, KUBELET_CONFIG
from components.daemon_json import DaemonJsonError, DaemonTranslation, load_daemon_json, translate_daemon_json
from components.model import CGROUP_DRIVERS, RUNTIMES, RuntimeTarget, check_image
from components.render import containerd_config_version, render_runtime_files

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


def _add_render(subparsers) -> None:
    render = subparsers.add_parser(
        "render",
        help="render a node's runtime config and kubelet files into a directory",
        description="Render, without touching any node, the files shimless would write to a "
        "node (at their node paths under --out) plus translation-report.json.",
    )
    # Nothing is `required=`/`choices=` here: _render validates everything itself so
    # that all problems are reported at once, one line each.
    render.add_argument("--runtime", help="containerd or cri-o")
    render.add_argument(
        "--containerd-version",
        default="",
        help="containerd version on the node, e.g. 1.6.20 or 2.0.4 (default: assume 1.x)",
    )
    render.add_argument("--kubelet-version", help="kubelet version, e.g. v1.23.17")
    render.add_argument("--kubelet-flags", metavar="FILE", help="the node's kubeadm-flags.env")
    render.add_argument("--kubelet-config", metavar="FILE", help="the node's /var/lib/kubelet/config.yaml")
    render.add_argument("--daemon-json", metavar="FILE", help="the node's /etc/docker/daemon.json")
    render.add_argument(
        "--cgroup-driver",
        default="auto",
        help="auto (from --kubelet-config, else --daemon-json), systemd or cgroupfs",
    )
    render.add_argument("--pause-image", help="pause image (default: the node's "
                        "--pod-infra-container-image, else the project default)")
    render.add_argument("--out", metavar="DIR", help="directory to write the files into")
    render.set_defaults(handler=_render)


def _resolve_cgroup_driver(
    choice: str,
    config_text: str | None,
    translation: DaemonTranslation | None,
    problems: _Problems,
    warnings: list[str],
) -> tuple[str | None, str]:
    kubelet_driver = None
    if config_text is not None:
        kubelet_driver = kubelet_flags.kubelet_cgroup_driver(config_text)
    if translation is not None and kubelet_driver and translation.docker_cgroup_driver != kubelet_driver:
        warnings.append(
            f"daemon.json's cgroup driver ({translation.docker_cgroup_driver}) differs from the "
            f"kubelet's ({kubelet_driver}); the kubelet's is used"
        )
    if choice != "auto":
        if kubelet_driver and kubelet_driver != choice:
            problems.append(
                f"--cgroup-driver {choice} differs from the kubelet's cgroupDriver "
                f"({kubelet_driver}); the runtime and the kubelet must use the same driver"
            )
            return None, ""
        return choice, "--cgroup-driver"
    if kubelet_driver:
        return kubelet_driver, "kubelet config"
    if translation is not None:
        return translation.docker_cgroup_driver, "daemon.json"
    problems.append(
        "--cgroup-driver auto needs --kubelet-config or --daemon-json; "
        "or pass --cgroup-driver systemd|cgroupfs"
    )
    return None, ""


def _render(args: argparse.Namespace) -> int:
    problems = _Problems()
    warnings: list[str] = []

    runtime = args.runtime
    if runtime is None:
        problems.append("--runtime is required (containerd or cri-o)")
    elif runtime not in RUNTIMES:
        problems.append(f"--runtime: unknown runtime {runtime!r} (expected {' or '.join(RUNTIMES)})")
        runtime = None
    if args.kubelet_version is None:
        problems.append("--kubelet-version is required (e.g. v1.23.17)")
    else:
        try:
            kubelet_flags.parse_kubelet_version(args.kubelet_version)
        except ValueError as err:
            problems.append(f"--kubelet-version: {err}")
    if runtime == "containerd":
        try:
            containerd_config_version(args.containerd_version)
        except ValueError as err:
            problems.append(f"--containerd-version: {err}")
    if args.cgroup_driver not in CGROUP_DRIVERS:
        problems.append(
            f"--cgroup-driver: {args.cgroup_driver!r} is not one of {', '.join(CGROUP_DRIVERS)}"
        )
    if args.pause_image is not None:
        try:
            check_image(args.pause_image)
        except ValueError as err:
            problems.append(f"--pause-image: {err}")
    if not args.out:
        problems.append("--out is required (directory to write into)")
    if args.kubelet_flags is None:
        problems.append("--kubelet-flags is required (the node's kubeadm-flags.env)")

    flags_text = _read(args.kubelet_flags, "--kubelet-flags", problems)
    config_text = _read(args.kubelet_config, "--kubelet-config", problems)
    if config_text is not None:
        try:
            kubelet_flags.kubelet_cgroup_driver(config_text)
        except ValueError as err:
            problems.append(f"--kubelet-config {args.kubelet_config}: {err}")
            config_text = None
    daemon_text = _read(args.daemon_json, "--daemon-json", problems)
    translation = None
    if daemon_text is not None:
        try:
            daemon = load_daemon_json(daemon_text)
            if runtime is not None:
                translation = translate_daemon_json(daemon, runtime)
        except DaemonJsonError as err:
            problems.append(f"--daemon-json {args.daemon_json}: {err}")
    if problems:
        return problems.report("render")
    # Inputs are individually sound: now combine them.

    cgroup_driver, driver_source = _resolve_cgroup_driver(
        args.cgroup_driver, config_text, translation, problems, warnings
    )
    try:
        old_pause = kubelet_flags.kubeadm_flag_value(flags_text, kubelet_flags.POD_INFRA_FLAG)
        old_cni_bin = kubelet_flags.kubeadm_flag_value(flags_text, "cni-bin-dir")
        old_cni_conf = kubelet_flags.kubeadm_flag_value(flags_text, "cni-conf-dir")
    except ValueError as err:
        problems.append(f"--kubelet-flags {args.kubelet_flags}: {err}")
        return problems.report("render")
    target = RuntimeTarget(runtime=runtime)
    pause_source = "default"
    if args.pause_image:
        target, pause_source = replace(target, pause_image=args.pause_image), "--pause-image"
    elif old_pause:
        target, pause_source = replace(target, pause_image=old_pause), "--pod-infra-container-image"
    if old_cni_bin:
        # The kubelet took a comma-separated list; the runtime config takes its first dir.
        target = replace(target, cni_bin_dir=old_cni_bin.split(",")[0])
    if old_cni_conf:
        target = replace(target, cni_conf_dir=old_cni_conf)

    endpoint_in_config = config_text is not None and kubelet_flags.endpoint_belongs_in_config(
        args.kubelet_version, config_text
    )
    files: dict[str, str] = {}
    flags_report: dict = {}
    config_report: dict | None = None
    kubelet_settings = translation.kubelet_settings if translation else {}
    try:
        rewrite = kubelet_flags.rewrite_kubeadm_flags(
            flags_text, args.kubelet_version, target.cri_endpoint, endpoint_in_config=endpoint_in_config
        )
        files[KUBEADM_FLAGS] = rewrite.text
        flags_report = {
            "added": list(rewrite.added),
            "removed": list(rewrite.removed),
            "notes": list(rewrite.notes),
        }
    except ValueError as err:
        problems.append(f"--kubelet-flags {args.kubelet_flags}: {err}")
    if config_text is not None:
        try:
            files[KUBELET_CONFIG] = kubelet_flags.rewrite_kubelet_config(
                config_text,
                cri_endpoint=target.cri_endpoint if endpoint_in_config else None,
                settings=kubelet_settings,
            )
        except ValueError as err:
            problems.append(f"--kubelet-config {args.kubelet_config}: {err}")
        else:
            existing = {
                key: kubelet_flags.kubelet_config_value(config_text, key)
                for key in kubelet_settings
            }
            existing = {key: value for key, value in existing.items() if value is not None}
            config_report = {
                "containerRuntimeEndpoint": target.cri_endpoint if endpoint_in_config else None,
                "applied": sorted(key for key in kubelet_settings if key not in existing),
                "kept_existing": {
                    key: existing[key] for key in sorted(kubelet_settings) if key in existing
                },
            }
    elif kubelet_settings:
        warnings.append(
            "daemon.json log settings need the kubelet config; pass --kubelet-config to apply "
            + ", ".join(f"{key}={value}" for key, value in sorted(kubelet_settings.items()))
        )
    if cgroup_driver is not None:
        try:
            files.update(
                render_runtime_files(
                    target,
                    containerd_version=args.containerd_version,
                    cgroup_driver=cgroup_driver,
                    translation=translation,
                )
            )
        except ValueError as err:
            problems.append(f"render: {err}")
    if problems:
        return problems.report("render")

    report = {
        "runtime": runtime,
        "kubelet_version": args.kubelet_version,
        "containerd_version": args.containerd_version if runtime == "containerd" else None,
        "cgroup_driver": {"value": cgroup_driver, "source": driver_source},
        "pause_image": {"value": target.pause_image, "source": pause_source},
        "daemon_json": translation.report() if translation else None,
        "kubelet_flags": flags_report,
        "kubelet_config": config_report,
        "warnings": warnings,
        "files": sorted(files),
    }
    files_and_report = {**files, "/" + REPORT_NAME: json.dumps(report, indent=2, sort_keys=True) + "\n"}
    try:
        _write_all(args.out, files_and_report)
    except OSError as err:
        problems.append(f"--out {args.out}: cannot write: {err.strerror or err}")
        return problems.report("render")
    for warning in warnings:
        print(f"shimless render: warning: {warning}", file=sys.stderr)
    for node_path in sorted(files):
        print(os.path.join(args.out, node_path.lstrip("/")))
    print(os.path.join(args.out, REPORT_NAME))
    return 0


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
