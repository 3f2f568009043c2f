"""The rendered files equal the golden files under tests/golden/ (regenerate
with `python -m tests.golden --update`, see tests/golden/README.md)."""
from __future__ import annotations

import pytest

from tests import golden


@pytest.mark.parametrize("case", sorted(golden.CASES))
def test_rendered_files_match_the_golden_files(case):
    assert golden.stored(case), f"no golden files for {case}: run python -m tests.golden --update"
    diff = golden.differences(case)
    assert not diff, "rendered files differ from tests/golden (python -m tests.golden --update if intended):\n" + diff


def test_every_kind_of_rendered_file_has_a_golden_copy():
    paths = {path for case in golden.CASES for path in golden.stored(case)}
    assert {"/etc/containerd/config.toml", "/etc/containerd/certs.d/docker.io/hosts.toml",
            "/etc/crio/crio.conf.d/20-shimless.conf", "/etc/containers/registries.conf.d/20-shimless.conf",
            "/var/lib/kubelet/kubeadm-flags.env", "/var/lib/kubelet/config.yaml", "/etc/crictl.yaml",
            "/etc/systemd/system/containerd.service.d/http-proxy.conf"} <= paths
    configs = [golden.stored(case).get("/etc/containerd/config.toml", "") for case in golden.CASES]
    assert {line for config in configs for line in config.splitlines() if line.startswith("version =")} == {
        "version = 2", "version = 3"}


def test_a_changed_golden_file_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(golden, "GOLDEN_DIR", tmp_path)
    golden.update("cri-o")
    assert golden.differences("cri-o") == ""
    (tmp_path / "cri-o/etc/crictl.yaml").write_text("timeout: 2\n")
    assert "-timeout: 2" in golden.differences("cri-o")
    assert golden.main([]) == 1
