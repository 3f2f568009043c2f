"""scripts/drain.sh, the kubectl steps run where Pulumi runs: its subcommand is
its argument (named in node_runtime.KUBECTL_COMMANDS, never taken from the
step's name), run here against a fake kubectl."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from components import protocol
from components.node_runtime import KUBECTL_COMMANDS, LOCAL_SCRIPTS
from tests.conftest import ROOT

BASH = shutil.which("bash") or "/bin/bash"

# kubectl as drain.sh calls it: the Node's annotation and spec.unschedulable
# from FAKE_MARK / FAKE_UNSCHEDULABLE; every call logged to FAKE_KUBECTL_LOG.
FAKE_KUBECTL = r'''#!/bin/sh
shift  # --kubeconfig=/dev/fd/3
echo "$*" >>"$FAKE_KUBECTL_LOG"
case "$*" in
  *jsonpath=\{.metadata.annotations.*) printf '%s' "${FAKE_MARK:-}" ;;
  *jsonpath=\{.spec.unschedulable\}*) printf '%s' "${FAKE_UNSCHEDULABLE:-}" ;;
esac
'''


@pytest.fixture
def kubectl(tmp_path: Path) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(FAKE_KUBECTL)
    (bin_dir / "kubectl").chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_KUBECTL_LOG": str(tmp_path / "kubectl.log"),
            "NODE": "w1", "SHIMLESS_TOKEN": "t-1", "CORDON_ANNOTATION": "shimless.io/cordoned",
            "DRAIN_TIMEOUT": "60", "DRAIN_GRACE_PERIOD": "-1", "DRAIN_DELETE_EMPTYDIR_DATA": "true",
            "DRAIN_FORCE": "false", "DRAIN_RETRIES": "0", "TMPDIR": str(tmp_path)}


def run(command: str, env: dict, **extra: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """`command` as the local step runs it, from the project directory, kubeconfig on stdin."""
    done = subprocess.run([BASH, "-c", command], cwd=ROOT, input="apiVersion: v1\n", capture_output=True,
                          text=True, env={**env, **extra}, timeout=30, check=False)
    log = Path(env["FAKE_KUBECTL_LOG"])
    return done, (log.read_text().splitlines() if log.exists() else [])


def test_each_kubectl_step_names_its_subcommand():
    assert KUBECTL_COMMANDS == {"drain": f"bash {LOCAL_SCRIPTS}/drain.sh drain",
                                "uncordon": f"bash {LOCAL_SCRIPTS}/drain.sh uncordon"}
    assert (ROOT / LOCAL_SCRIPTS / "drain.sh").is_file() and not (ROOT / LOCAL_SCRIPTS / "cordon.sh").exists()


@pytest.mark.parametrize("argument", ["", "cordon", "preflight"])
def test_without_a_known_subcommand_nothing_is_asked_of_the_api(kubectl, argument):
    done, calls = run(f"bash {LOCAL_SCRIPTS}/drain.sh {argument}", kubectl)
    assert done.returncode == 64 and "usage: drain.sh drain|uncordon" in done.stderr
    assert calls == []


def test_drain_cordons_marks_and_drains_a_node_that_needs_the_switch(kubectl):
    done, calls = run(KUBECTL_COMMANDS["drain"], kubectl,
                      SHIMLESS_PREFLIGHT=protocol.format_preflight("switch"))
    assert done.returncode == 0, done.stderr
    assert protocol.parse_drain(done.stdout) == "false"
    assert "annotate node w1 --overwrite shimless.io/cordoned=t-1" in calls
    assert calls.index("cordon w1") < next(i for i, call in enumerate(calls) if call.startswith("drain w1 "))


def test_drain_leaves_a_node_already_on_its_target_alone(kubectl):
    done, calls = run(KUBECTL_COMMANDS["drain"], kubectl,
                      SHIMLESS_PREFLIGHT=protocol.format_preflight("in-sync"))
    assert done.returncode == 0 and protocol.parse_drain(done.stdout) == "unchanged"
    assert calls == []


@pytest.mark.parametrize("mark, drain_output, expected, undone", [
    ("t-1", protocol.format_drain("false"), "uncordoned", True),
    ("", protocol.format_drain("true"), "left cordoned: it was unschedulable before shimless", False),
    ("", protocol.format_drain("unchanged"), "not cordoned by shimless: nothing to undo", False),
])
def test_uncordon_undoes_only_what_shimless_cordoned(kubectl, mark, drain_output, expected, undone):
    done, calls = run(KUBECTL_COMMANDS["uncordon"], kubectl, FAKE_MARK=mark, DRAIN_OUTPUT=drain_output)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected
    assert ("uncordon w1" in calls) is undone
    assert ("annotate node w1 shimless.io/cordoned-" in calls) is undone
