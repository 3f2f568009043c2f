"""The lab's runc wrapper (lab/kubelet-real/runc-wrapper, a lab-only
compromise listed in lab/README.md) has Go unit tests of its own: run them."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

WRAPPER = Path(__file__).resolve().parent.parent / "lab" / "kubelet-real" / "runc-wrapper"


def go_binary() -> str:
    found = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)
    if found is None:
        raise AssertionError("no Go toolchain: the lab needs one (make lab-up installs golang-go)")
    return found


def test_runc_wrapper_go_tests_pass():
    done = subprocess.run([go_binary(), "test", "-count=1", "-v", "./..."], cwd=WRAPPER, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"})
    assert done.returncode == 0, done.stdout + done.stderr
    # every test ran and passed (none skipped or missing)
    for name in ("TestBundleOf", "TestFitSpecRaisesOOMScoreAdjToTheFloorOnly",
                 "TestFitSpecDropsOnlyLimitsOfMissingControllers", "TestFitBundleRewritesConfigOnlyWhenChanged"):
        assert f"--- PASS: {name}" in done.stdout, done.stdout
