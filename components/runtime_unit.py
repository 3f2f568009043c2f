"""Which containerd binary containerd.service runs: the one pre-stage validated.

Pre-stage validates the `containerd` systemd finds first on its PATH (a site
installs a newer containerd into /usr/local/bin or /opt beside Docker's in
/usr/bin). When the unit's own ExecStart names another binary (Docker's
containerd 1.6, which cannot read the config rendered for 2.x), the node gets a
managed drop-in that runs the validated binary instead, and gives it a PATH
that finds the runc shim beside it first: containerd looks its shim up on PATH
before its own directory (containerd v2.4.2 core/runtime/v2/shim_manager.go,
resolveRuntimePath), and a 2.3+ shim refuses a 1.x daemon and the other way
round. The drop-in is one of the node's desired files, so preview lists it,
the switch backs it up (absent: a rollback removes it, and containerd.service
runs Docker's containerd again) and drift sees it. `render` works from files
alone, without the probe's facts below, so it never writes one. Pure.
"""
from __future__ import annotations

import posixpath
import re
from typing import NamedTuple

from components.facts import NodeFacts
from components.manifest import CONTAINERD_BINARY_DROP_IN, RUNTIME_SERVICES
from components.model import RuntimeTarget
from components.render import MANAGED_HEADER, _systemd_env_value

CONTAINERD_UNIT = RUNTIME_SERVICES["containerd"]

# Probe facts (scripts/probe.sh): the PATH systemd gives services, the first
# `containerd` on it and that file's real path, and the unit's own files in the
# order systemd reads them (fragment, then drop-ins), each also sent as a file.
SYSTEMD_PATH_FACT = "systemd.path"
CONTAINERD_PATH_FACT = "containerd.path"
CONTAINERD_REALPATH_FACT = "containerd.realpath"
UNIT_FILES_FACT = f"unitfiles.{CONTAINERD_UNIT}"

# An ExecStart command's prefixes (systemd.service(5): "-", "@", ":", "+", "!", "!!").
_PREFIX = re.compile(r"^[-@:+!]*")


class ExecCommand(NamedTuple):
    """An ExecStart= command: its prefixes, its executable, the rest of the line as written."""

    prefix: str
    executable: str
    arguments: str

    def with_executable(self, executable: str) -> str:
        """The command line with another executable and everything else kept."""
        return self.prefix + executable.replace("%", "%%") + (" " + self.arguments if self.arguments else "")


def _logical_lines(text: str) -> list[str]:
    """A unit file's lines with backslash continuations joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.split("\n"):
        line = raw.strip()
        if not pending and line.startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def parse_exec_command(value: str) -> ExecCommand:
    """"-/usr/bin/containerd --log-level debug" -> ("-", "/usr/bin/containerd", "--log-level debug")."""
    value = value.strip()
    prefix = _PREFIX.match(value).group(0)
    rest = value[len(prefix):]
    if rest[:1] in ('"', "'"):
        end = rest.find(rest[0], 1)
        if end < 0:
            raise ValueError(f"unterminated quote in ExecStart={value}")
        return ExecCommand(prefix, rest[1:end], rest[end + 1:].strip())
    executable, _, arguments = rest.partition(" ")
    return ExecCommand(prefix, executable, arguments.strip())


def exec_start(unit_files: list[tuple[str, str]]) -> ExecCommand | None:
    """The command ExecStart= gives the service after reading `unit_files`
    ((path, text) in systemd's order): an empty assignment resets the list,
    the first command of what is left runs (a notify service has one). None
    when no ExecStart is left."""
    commands: list[str] = []
    for _path, text in unit_files:
        section = ""
        for line in _logical_lines(text):
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
            elif section == "Service" and re.match(r"ExecStart\s*=", line):
                value = line.split("=", 1)[1].strip()
                commands = commands + [value] if value else []
    return parse_exec_command(commands[0]) if commands else None


def unit_files(facts: NodeFacts) -> list[tuple[str, str]]:
    """containerd.service's unit file and drop-ins as the probe read them, in
    the order systemd applies them, without shimless' own drop-in."""
    paths = [path for path in facts.get(UNIT_FILES_FACT).split() if path != CONTAINERD_BINARY_DROP_IN]
    if not paths:
        return []
    fragment, drop_ins = paths[0], sorted(paths[1:], key=posixpath.basename)
    return [(path, facts.files[path]) for path in [fragment, *drop_ins] if path in facts.files]


def validated_containerd(facts: NodeFacts, target: RuntimeTarget) -> str:
    """The containerd pre-stage will validate and keep, as the probe found it
    first on systemd's PATH; "" when pre-stage will install one instead (none
    there, or not of target.version: the package's own unit runs what it
    installs) or the target is not containerd. Matches target.version the way
    pre-stage's version_ok does: as a prefix."""
    path = facts.get(CONTAINERD_PATH_FACT)
    if target.runtime != "containerd" or not path:
        return ""
    if target.version and not facts.containerd_version.startswith(target.version):
        return ""
    return path


def binary_drop_in(facts: NodeFacts, target: RuntimeTarget) -> dict[str, str]:
    """{CONTAINERD_BINARY_DROP_IN: content} when containerd.service must be told to run
    the validated containerd; {} when its own ExecStart already runs it (or
    nothing is known to run). A drop-in shimless wrote earlier stays managed,
    rewritten for the binary validated now: it is never left behind naming an
    older one."""
    binary = validated_containerd(facts, target)
    path = facts.get(SYSTEMD_PATH_FACT)
    own = exec_start(unit_files(facts))
    if not binary or not path or own is None:
        return {}
    real = facts.get(CONTAINERD_REALPATH_FACT) or binary
    if own.executable in (binary, real) and CONTAINERD_BINARY_DROP_IN not in facts.files:
        return {}
    return {CONTAINERD_BINARY_DROP_IN: render_binary_drop_in(own.with_executable(binary), posixpath.dirname(real), path)}


def service_path(shim_dir: str, systemd_path: str) -> str:
    """systemd's PATH for services with `shim_dir` (the validated containerd's
    own directory) first, so that containerd starts the shim beside it."""
    rest = [entry for entry in systemd_path.split(":") if entry and entry != shim_dir]
    return ":".join([shim_dir, *rest])


def render_binary_drop_in(command: str, shim_dir: str, systemd_path: str) -> str:
    return "\n".join([
        MANAGED_HEADER,
        "# containerd.service runs the containerd pre-stage validated (the first on systemd's",
        "# PATH) and starts the runc shim beside it: containerd looks for its shim on PATH",
        "# before its own directory.",
        "[Service]",
        "ExecStart=",
        f"ExecStart={command}",
        _systemd_env_value("PATH", service_path(shim_dir, systemd_path)),
    ]) + "\n"
