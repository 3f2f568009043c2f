"""containerd 2.x reads the config shimless renders for it: the real binary
(tools/versions.sh CONTAINERD2_VERSION, built into ~/.cache/shimless by
`make setup`) runs `containerd config dump` on the rendered file."""
from __future__ import annotations

import os
import re
import subprocess
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from components.config import parse_target
from components.daemon_json import translate_daemon_json
from components.render import containerd_config_version, render_runtime_files

ROOT = Path(__file__).resolve().parent.parent
CONFIG = "/etc/containerd/config.toml"


def pinned_version() -> str:
    match = re.search(r"^CONTAINERD2_VERSION=(\S+)$", (ROOT / "tools/versions.sh").read_text(), re.M)
    assert match, "tools/versions.sh pins no CONTAINERD2_VERSION"
    return match.group(1)


VERSION = pinned_version()


def containerd2() -> Path:
    """The cached binary; a missing one fails (make setup provides it), never skips."""
    cache = Path(os.environ.get("SHIMLESS_CACHE", Path.home() / ".cache/shimless"))
    binary = cache / "containerd" / VERSION / "containerd"
    if not (binary.parent / ".complete").is_file() or not os.access(binary, os.X_OK):
        pytest.fail(f"containerd {VERSION} is not built at {binary}: run `make setup`")
    return binary


def dump(tmp_path: Path, config: str) -> subprocess.CompletedProcess:
    config_file = tmp_path / "config.toml"
    config_file.write_text(config)
    return subprocess.run([str(containerd2()), "--config", str(config_file), "config", "dump"],
                          capture_output=True, text=True, timeout=60, check=False)


def rendered(version: str, driver: str, daemon: dict | None = None, **target) -> str:
    base = parse_target({"runtime": "containerd"})
    translation = translate_daemon_json(daemon, "containerd") if daemon is not None else None
    return render_runtime_files(replace(base, **target), containerd_version=version, cgroup_driver=driver,
                                translation=translation)[CONFIG]


def test_the_binary_is_the_pinned_release():
    out = subprocess.run([str(containerd2()), "--version"], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.split()[1:3] == ["github.com/containerd/containerd/v2", f"v{VERSION}"]


@pytest.mark.parametrize("driver,systemd", [("systemd", True), ("cgroupfs", False)])
def test_containerd_2_reads_the_rendered_config_natively(tmp_path, driver, systemd):
    config = rendered(VERSION, driver, {"registry-mirrors": ["https://mirror.gcr.io"], "data-root": "/data/docker"},
                      pause_image="registry.k8s.io/pause:3.10", cni_conf_dir="/etc/cni/custom.d")
    result = dump(tmp_path, config)
    assert result.returncode == 0, result.stderr
    # Read as written, not migrated from an older schema at every start.
    assert "migrated" not in result.stderr, result.stderr
    effective = tomllib.loads(result.stdout)
    assert effective["version"] == containerd_config_version(VERSION) == tomllib.loads(config)["version"]
    assert effective["disabled_plugins"] == []
    assert effective["root"] == tomllib.loads(config)["root"]
    images = effective["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == "registry.k8s.io/pause:3.10"
    assert images["registry"]["config_path"] == "/etc/containerd/certs.d"
    runtime = effective["plugins"]["io.containerd.cri.v1.runtime"]
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"]["SystemdCgroup"] is systemd
    assert runtime["cni"]["bin_dirs"] == ["/opt/cni/bin"]
    assert runtime["cni"]["conf_dir"] == "/etc/cni/custom.d"
    # Nothing left in the 1.x CRI plugin that a 2.x containerd would ignore.
    assert "io.containerd.grpc.v1.cri" not in tomllib.loads(config)["plugins"]


def test_a_config_rendered_for_an_older_2_x_keeps_its_values_in_the_pinned_release(tmp_path):
    # Rendered for 2.0-2.2 (config version 3): a node upgraded to a newer
    # containerd migrates it; every value shimless set survives.
    config = rendered("2.2.0", "systemd", pause_image="registry.k8s.io/pause:3.10")
    assert tomllib.loads(config)["version"] == 3
    result = dump(tmp_path, config)
    assert result.returncode == 0, result.stderr
    effective = tomllib.loads(result.stdout)
    assert effective["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == \
        "registry.k8s.io/pause:3.10"
    assert effective["plugins"]["io.containerd.cri.v1.images"]["registry"]["config_path"] == "/etc/containerd/certs.d"
    runtime = effective["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert runtime["cni"]["bin_dirs"] == ["/opt/cni/bin"]


def test_containerd_2_refuses_a_config_it_cannot_read(tmp_path):
    # The check above could fail: a broken file is refused.
    result = dump(tmp_path, 'version = 4\n[plugins."io.containerd.cri.v1.images".pinned_images\n')
    assert result.returncode != 0
