"""Stdin for node-side steps: the launcher script, then the step's files and
variables, one gzip+base64 line each (see scripts/entry.sh). Pure.

Compressed because every command's stdin is kept twice in the Pulumi state."""
from __future__ import annotations

import base64
import functools
import gzip
import shlex
from pathlib import Path

from components import manifest
from components.daemon_json import PROXY_DROP_INS

SCRIPTS = Path(__file__).resolve().parent / "scripts"
# The remote command itself: read the launcher and bundle from stdin, as root.
REMOTE_COMMAND = 'if [ "$(id -u)" -eq 0 ]; then exec bash -s; else exec sudo -n bash -s; fi'


# Rendered files that can hold a credential (a proxy URL's user:password@):
# a bundle carrying one must only ever be a secret input.
CREDENTIAL_FILES = frozenset(PROXY_DROP_INS.values())


def holds_credentials(files: dict[str, str] | None) -> bool:
    return any(path in CREDENTIAL_FILES for path in files or {})


@functools.lru_cache(maxsize=None)  # the scripts do not change during a run; every step of every node reads them
def script(name: str) -> str:
    return (SCRIPTS / name).read_text()


# Most lines are the same on every node (the scripts, the manifest, rendered
# files, fleet-wide variables): compressed once per run, not per node and step.
@functools.lru_cache(maxsize=4096)
def bundle_line(kind: str, name: str, content: str) -> str:
    packed = gzip.compress(content.encode(), compresslevel=9, mtime=0)  # mtime=0: same input, same bytes
    return f"{kind} {name} {base64.b64encode(packed).decode()}\n"


def launcher() -> str:
    """scripts/entry.sh, told where to unpack the bundle (manifest.RUN_DIR)."""
    return f"SHIMLESS_RUN={shlex.quote(manifest.RUN_DIR)}\n" + script("entry.sh")


def probe_script(pause_image: str = "", runtime: str = "") -> str:
    """scripts/probe.sh after the manifest (which units and files to report),
    the target runtime and its sandbox image, and after scripts/node-lib.sh:
    the probe counts Docker's images with the selection pre-stage copies them
    by, less what the target's store already holds."""
    return (manifest.shell() + f"PROBE_PAUSE_IMAGE={shlex.quote(pause_image)}\n"
            + f"PROBE_RUNTIME={shlex.quote(runtime)}\n" + script("node-lib.sh") + script("probe.sh"))


def bundle(step: str, variables: dict[str, object], files: dict[str, str] | None = None) -> str:
    """The launcher followed by a bundle that runs `step` with `variables`, the
    shared library, the manifest (for the target `runtime` when the variables
    name it) as manifest.sh, and `files` (node path -> content) under root/."""
    runtime = variables.get("runtime")
    lines = [bundle_line("file", name, script(name)) for name in (step, "node-lib.sh")]
    lines.append(bundle_line("file", "manifest.sh", manifest.shell(str(runtime) if runtime is not None else None)))
    lines += [bundle_line("file", f"var/{key}", str(value)) for key, value in sorted(variables.items())]
    lines += [bundle_line("file", f"root{path}", content) for path, content in sorted((files or {}).items())]
    lines.append(f"step {step} -\n")
    return launcher() + "".join(lines)
