"""The lab's public passphrase is for the lab stack only: the Makefile's stack
targets refuse any other stack without a passphrase or secrets provider of its
own, in one line, before pulumi runs."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def recipe(target: str, stack: str) -> str:
    """The shell line `make TARGET STACK=stack` runs for the target itself (make -n runs nothing)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    printed = subprocess.run(["make", "-n", "--no-print-directory", target, f"STACK={stack}"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    return printed[printed.index("export SHIMLESS_STACK="):].replace("\\\n", " ")


def run_target(target: str, stack: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Run the target's line with stand-ins for pulumi and python that only say they ran."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("pulumi", "python"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} ran, passphrase ${{PULUMI_CONFIG_PASSPHRASE-unset}}"\n')
        (bin_dir / tool).chmod(0o755)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_CONFIG_PASSPHRASE", "SHIMLESS_"))}
    # env.sh puts .tools/bin and .venv/bin first: the stand-ins go after it, on a line of their own.
    line = recipe(target, stack).replace("source tools/env.sh &&", f'source tools/env.sh && PATH="{bin_dir}:$PATH" &&')
    return subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=ROOT, capture_output=True, text=True,
                          env={**clean, **env}, check=False)


@pytest.mark.parametrize("target", ["preview", "up", "destroy", "refresh", "drift"])
def test_other_stacks_are_refused_without_their_own_passphrase(target, tmp_path):
    done = run_target(target, "prod", tmp_path)
    assert done.returncode == 1 and "ran" not in done.stdout
    assert done.stderr.strip().splitlines() == [
        "shimless: stack prod: set PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE (or a secretsprovider "
        "in stacks/Pulumi.prod.yaml); the lab's default is for the lab stack only"]


def test_the_lab_passphrase_inherited_from_the_shell_is_refused_too(tmp_path):
    done = run_target("preview", "prod", tmp_path, PULUMI_CONFIG_PASSPHRASE="shimless-lab")
    assert done.returncode == 1 and "the lab's public passphrase" in done.stderr


@pytest.mark.parametrize("stack, env, passphrase", [
    ("lab", {}, "shimless-lab"),
    ("prod", {"PULUMI_CONFIG_PASSPHRASE": "correct horse"}, "correct horse"),
    ("prod", {"PULUMI_CONFIG_PASSPHRASE_FILE": "/run/secrets/prod"}, "unset"),
])
def test_lab_and_stacks_with_their_own_secrets_run(stack, env, passphrase, tmp_path):
    done = run_target("preview", stack, tmp_path, **env)
    assert done.returncode == 0, done.stderr
    # `pulumi stack select` prints to /dev/null: this is `pulumi preview`.
    assert done.stdout.splitlines() == [f"pulumi ran, passphrase {passphrase}"]


def test_a_kms_secrets_provider_in_the_stack_file_needs_no_passphrase(tmp_path):
    (tmp_path / "Pulumi.prod.yaml").write_text("secretsprovider: awskms://alias/shimless\nconfig: {}\n")
    done = run_target("up", "prod", tmp_path, SHIMLESS_STACKS_DIR=str(tmp_path))
    assert done.returncode == 0 and "pulumi ran" in done.stdout


def test_check_config_needs_no_passphrase_and_sets_none(tmp_path):
    done = run_target("check-config", "prod", tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "python ran, passphrase unset"
