"""Stdin for node-side steps: the launcher script, then the step's files and
variables, one gzip+base64 line each (see scripts/entry.sh). Pure.

Compressed because every command's stdin is kept twice in the Pulumi state."""
from __future__ import annotations

import base64
import gzip
import shlex
from pathlib import Path

from components.daemon_json import PROXY_DROP_INS
from components.facts import KNOWN_CRI_SOCKETS, PROBED_UNITS, source_units

SCRIPTS = Path(__file__).resolve().parent / "scripts"
# The remote command itself: read the launcher and bundle from stdin, as root.
REMOTE_COMMAND = 'if [ "$(id -u)" -eq 0 ]; then exec bash -s; else exec sudo -n bash -s; fi'


# Rendered files that can hold a credential (a proxy URL's user:password@):
# a bundle carrying one must only ever be a secret input.
CREDENTIAL_FILES = frozenset(PROXY_DROP_INS.values())


def holds_credentials(files: dict[str, str] | None) -> bool:
    return any(path in CREDENTIAL_FILES for path in files or {})


def script(name: str) -> str:
    return (SCRIPTS / name).read_text()


def bundle_line(kind: str, name: str, content: str) -> str:
    packed = gzip.compress(content.encode(), compresslevel=9, mtime=0)  # mtime=0: same input, same bytes
    return f"{kind} {name} {base64.b64encode(packed).decode()}\n"


def runtime_variables(runtime: str) -> dict[str, str]:
    """What every step moving a node to `runtime` knows of the node's units and
    sockets, decided once in components/facts.py: `source_units` (stopped and
    disabled by the switch, in that order, restored by a rollback) and
    `cri_sockets` ("PATH UNIT..." lines: kubeadm's known CRI sockets)."""
    return {
        "source_units": " ".join(source_units(runtime)),
        "cri_sockets": "".join(f"{path} {' '.join(units)}\n" for path, units in KNOWN_CRI_SOCKETS.items()),
    }


def probe_script(pause_image: str = "") -> str:
    """scripts/probe.sh, told which units to report and the target's sandbox
    image, after scripts/node-lib.sh: the probe counts Docker's images with the
    selection pre-stage copies them by."""
    return (f"PROBE_UNITS='{' '.join(PROBED_UNITS)}'\nPROBE_PAUSE_IMAGE={shlex.quote(pause_image)}\n"
            + script("node-lib.sh") + script("probe.sh"))


def bundle(step: str, variables: dict[str, object], files: dict[str, str] | None = None) -> str:
    """The launcher followed by a bundle that runs `step` with `variables` (with
    `runtime_variables` when they name the runtime), the shared library, and
    `files` (node path -> content) under root/."""
    if "runtime" in variables:
        variables = {**runtime_variables(str(variables["runtime"])), **variables}
    lines = [bundle_line("file", name, script(name)) for name in (step, "node-lib.sh")]
    lines += [bundle_line("file", f"var/{key}", str(value)) for key, value in sorted(variables.items())]
    lines += [bundle_line("file", f"root{path}", content) for path, content in sorted((files or {}).items())]
    lines.append(f"step {step} -\n")
    return script("entry.sh") + "".join(lines)
