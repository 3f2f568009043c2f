"""components/kube.py: kubectl with a kubeconfig given as text."""
from __future__ import annotations

import json
import os
import stat

import pytest

from components import kube

# A stand-in kubectl: records its argv and the kubeconfig it was given, then
# answers as told by $FAKE_KUBECTL_EXIT.
FAKE_KUBECTL = """#!/usr/bin/env python3
import json, os, sys
args = sys.argv[1:]
config = args[args.index("--kubeconfig") + 1]
with open(os.environ["FAKE_KUBECTL_LOG"], "w") as log:
    json.dump({"args": args, "config": open(config).read(), "config_path": config}, log)
if os.environ.get("FAKE_KUBECTL_EXIT", "0") != "0":
    sys.stderr.write("I0101 noise\\nError from server (NotFound): nodes \\"w9\\" not found\\n")
    sys.exit(1)
print(json.dumps({"kind": "Node", "metadata": {"name": args[4]}}))
"""


@pytest.fixture
def fake_kubectl(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(FAKE_KUBECTL)
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KUBECTL_LOG", str(tmp_path / "log.json"))
    return tmp_path / "log.json"


def test_kubectl_gets_the_kubeconfig_as_a_file_only_for_the_call(fake_kubectl):
    assert kube.kubectl_json("apiVersion: v1\n", "get", "node", "w1", timeout=7) == {
        "kind": "Node", "metadata": {"name": "w1"}}
    log = json.loads(fake_kubectl.read_text())
    assert log["config"] == "apiVersion: v1\n" and not os.path.exists(log["config_path"])
    assert log["args"][2:] == ["get", "node", "w1", "-o", "json", "--request-timeout=7s"]


def test_a_kubectl_failure_is_its_last_line(fake_kubectl, monkeypatch):
    monkeypatch.setenv("FAKE_KUBECTL_EXIT", "1")
    with pytest.raises(kube.KubectlError, match=r'^Error from server \(NotFound\): nodes "w9" not found$'):
        kube.kubectl_json("c", "get", "node", "w9")


def test_no_kubectl_on_path(monkeypatch):
    monkeypatch.setattr(kube.shutil, "which", lambda name: None)
    with pytest.raises(kube.KubectlError, match="kubectl is not on PATH"):
        kube.kubectl_json("c", "get", "nodes")
