"""Runtime file rendering: parsed back with tomllib, and checked by a real containerd."""
from __future__ import annotations

import shutil
import subprocess
import tomllib
from dataclasses import replace

import pytest

from components.config import parse_target
from components.daemon_json import translate_daemon_json
from components.model import RegistryMirror, RuntimeTarget
from components.render import (
    containerd_config_version,
    parse_version,
    render_runtime_files,
    toml_string,
)

CONFIG = "/etc/containerd/config.toml"
CRIO_CONF = "/etc/crio/crio.conf.d/20-shimless.conf"
CRIO_REGISTRIES = "/etc/containers/registries.conf.d/20-shimless.conf"

DAEMON = {
    "registry-mirrors": ["https://mirror.gcr.io"],
    "insecure-registries": ["registry.lab:5000"],
    "exec-opts": ["native.cgroupdriver=systemd"],
    "data-root": "/data/docker",
    "default-ulimits": {"nofile": {"Name": "nofile", "Hard": 65536, "Soft": 1024}},
    "proxies": {"http-proxy": "http://proxy.lab:3128", "no-proxy": "localhost,.svc"},
}


def containerd(**overrides) -> RuntimeTarget:
    return replace(parse_target({"runtime": "containerd"}), **overrides)


def crio(**overrides) -> RuntimeTarget:
    return replace(parse_target({"runtime": "cri-o", "source": "package"}), **overrides)


def render(target, version="1.6.20", driver="systemd", translation=None):
    return render_runtime_files(
        target, containerd_version=version, cgroup_driver=driver, translation=translation
    )


# --- versions ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("1.6.20", (1, 6, 20)),
        ("v1.7.24", (1, 7, 24)),
        ("2.0.4", (2, 0, 4)),
        ("1.6.20~ds1-1+deb12u1", (1, 6, 20)),
        ("1.7", (1, 7, 0)),
        ("containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3", (1, 6, 20)),
    ],
)
def test_parse_version(text, expected):
    assert parse_version(text) == expected


@pytest.mark.parametrize("text", ["", "latest", "v", "one.two"])
def test_parse_version_rejects_garbage(text):
    with pytest.raises(ValueError, match="no version number"):
        parse_version(text)


@pytest.mark.parametrize(
    "version,expected",
    [("1.6.20", 2), ("v1.7.24", 2), ("1.6.20~ds1-1+deb12u1", 2), ("", 2), ("2.0.4", 3), ("v2.1.1", 3),
     ("2.2.3", 3), ("2.3.0", 4), ("v2.4.2", 4), ("2.4.2+unknown", 4)],
)
def test_containerd_config_version(version, expected):
    assert containerd_config_version(version) == expected


def test_containerd_too_old_or_garbage():
    with pytest.raises(ValueError, match="1.5"):
        containerd_config_version("1.4.13")
    with pytest.raises(ValueError):
        containerd_config_version("stable")


# --- containerd --------------------------------------------------------------


@pytest.mark.parametrize("driver,systemd", [("systemd", True), ("cgroupfs", False)])
def test_containerd_v2_shape(driver, systemd):
    text = render(containerd(pause_image="registry.k8s.io/pause:3.9"), "1.7.24", driver)[CONFIG]
    assert text.startswith("# Managed by shimless; rendered for containerd 1.7.24 (config version 2)\n")
    config = tomllib.loads(text)
    assert config["version"] == 2
    assert config["disabled_plugins"] == []
    assert "root" not in config
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.9"
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"] == {"SystemdCgroup": systemd}
    assert cri["cni"] == {"bin_dir": "/opt/cni/bin", "conf_dir": "/etc/cni/net.d"}
    assert cri["registry"] == {"config_path": "/etc/containerd/certs.d"}
    assert set(config["plugins"]) == {"io.containerd.grpc.v1.cri"}


@pytest.mark.parametrize("driver,systemd", [("systemd", True), ("cgroupfs", False)])
def test_containerd_v3_shape(driver, systemd):
    target = containerd(cni_bin_dir="/usr/libexec/cni", cni_conf_dir="/etc/cni/custom.d")
    text = render(target, "2.0.4", driver)[CONFIG]
    assert "(config version 3)" in text.splitlines()[0]
    config = tomllib.loads(text)
    assert config["version"] == 3
    assert config["disabled_plugins"] == []
    images = config["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"] == {"sandbox": "registry.k8s.io/pause:3.6"}
    assert images["registry"] == {"config_path": "/etc/containerd/certs.d"}
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["containerd"]["runtimes"]["runc"]["runtime_type"] == "io.containerd.runc.v2"
    assert runtime["containerd"]["runtimes"]["runc"]["options"] == {"SystemdCgroup": systemd}
    assert runtime["cni"] == {"bin_dir": "/usr/libexec/cni", "conf_dir": "/etc/cni/custom.d"}
    assert "io.containerd.grpc.v1.cri" not in config["plugins"]


def test_containerd_2_1_uses_bin_dirs():
    config = tomllib.loads(render(containerd(), "2.1.3")[CONFIG])
    assert config["plugins"]["io.containerd.cri.v1.runtime"]["cni"]["bin_dirs"] == ["/opt/cni/bin"]


def test_unknown_containerd_version_renders_v2():
    text = render(containerd(), "")[CONFIG]
    assert "containerd 1.x (version unknown) (config version 2)" in text
    assert tomllib.loads(text)["version"] == 2


def test_containerd_with_translation_files():
    translation = translate_daemon_json(DAEMON, "containerd")
    target = containerd(
        registry_mirrors=(
            RegistryMirror("docker.io", ("https://own-mirror.example/", "https://mirror.gcr.io")),
            RegistryMirror("quay.io", ("https://quay-mirror.example",)),
        ),
        insecure_registries=("10.0.0.5:5000",),
    )
    files = render(target, "1.6.20", "systemd", translation)
    assert sorted(files) == [
        "/etc/containerd/certs.d/10.0.0.5:5000/hosts.toml",
        "/etc/containerd/certs.d/docker.io/hosts.toml",
        "/etc/containerd/certs.d/quay.io/hosts.toml",
        "/etc/containerd/certs.d/registry.lab:5000/hosts.toml",
        CONFIG,
        "/etc/crictl.yaml",
        "/etc/systemd/system/containerd.service.d/http-proxy.conf",
    ]
    assert tomllib.loads(files[CONFIG])["root"] == "/data/containerd"

    docker_hub = tomllib.loads(files["/etc/containerd/certs.d/docker.io/hosts.toml"])
    assert docker_hub["server"] == "https://registry-1.docker.io"
    # The target's endpoints first, then daemon.json's, without duplicates.
    assert list(docker_hub["host"]) == ["https://own-mirror.example", "https://mirror.gcr.io"]
    assert docker_hub["host"]["https://mirror.gcr.io"] == {"capabilities": ["pull", "resolve"]}

    quay = tomllib.loads(files["/etc/containerd/certs.d/quay.io/hosts.toml"])
    assert quay["server"] == "https://quay.io"

    for registry in ("registry.lab:5000", "10.0.0.5:5000"):
        insecure = tomllib.loads(files[f"/etc/containerd/certs.d/{registry}/hosts.toml"])
        assert insecure["server"] == f"http://{registry}"
        assert insecure["host"][f"http://{registry}"] == {
            "capabilities": ["pull", "resolve", "push"],
            "skip_verify": True,
        }

    proxy = files["/etc/systemd/system/containerd.service.d/http-proxy.conf"]
    assert "[Service]\n" in proxy
    assert 'Environment="HTTP_PROXY=http://proxy.lab:3128"\n' in proxy
    assert 'Environment="NO_PROXY=localhost,.svc"\n' in proxy


def test_crictl_yaml():
    for target in (containerd(), crio()):
        text = render(target)["/etc/crictl.yaml"]
        lines = [line for line in text.splitlines() if not line.startswith("#")]
        assert lines == [
            f"runtime-endpoint: {target.cri_endpoint}",
            f"image-endpoint: {target.cri_endpoint}",
            "timeout: 10",
            "debug: false",
        ]


def test_values_are_toml_escaped():
    nasty = 'registry.k8s.io/pause:3.9"\n[evil]\\'
    config = tomllib.loads(render(containerd(pause_image=nasty))[CONFIG])
    assert config["plugins"]["io.containerd.grpc.v1.cri"]["sandbox_image"] == nasty
    assert "evil" not in config
    assert tomllib.loads(f"x = {toml_string(chr(1) + 'é' + chr(127))}")["x"] == chr(1) + "é" + chr(127)


def test_proxy_values_are_systemd_escaped():
    translation = translate_daemon_json({"proxies": {"http-proxy": 'http://u:p%40"x@proxy:3128'}}, "containerd")
    proxy = render(containerd(), translation=translation)[
        "/etc/systemd/system/containerd.service.d/http-proxy.conf"
    ]
    assert 'Environment="HTTP_PROXY=http://u:p%%40\\"x@proxy:3128"' in proxy


@pytest.mark.parametrize(
    "target",
    [
        containerd(registry_mirrors=(RegistryMirror("docker.io", ("ftp://mirror",)),)),
        containerd(registry_mirrors=(RegistryMirror("../etc", ("https://mirror",)),)),
        containerd(insecure_registries=("bad/registry",)),
    ],
)
def test_bad_registries_are_refused(target):
    with pytest.raises(ValueError):
        render(target)


def test_bad_arguments():
    with pytest.raises(ValueError, match="cgroup driver"):
        render(containerd(), driver="auto")
    with pytest.raises(ValueError, match="translated for cri-o"):
        render(containerd(), translation=translate_daemon_json({}, "cri-o"))
    with pytest.raises(ValueError, match="unknown runtime"):
        render(containerd(runtime="docker"))


# --- CRI-O -------------------------------------------------------------------


@pytest.mark.parametrize("driver", ["systemd", "cgroupfs"])
def test_crio_drop_in(driver):
    files = render(crio(pause_image="registry.k8s.io/pause:3.9"), driver=driver)
    assert sorted(files) == ["/etc/crictl.yaml", CRIO_CONF]
    config = tomllib.loads(files[CRIO_CONF])
    runtime = config["crio"]["runtime"]
    assert runtime["cgroup_manager"] == driver
    if driver == "cgroupfs":
        assert runtime["conmon_cgroup"] == "pod"
    else:
        assert "conmon_cgroup" not in runtime
    assert config["crio"]["image"] == {"pause_image": "registry.k8s.io/pause:3.9"}
    assert config["crio"]["network"] == {"network_dir": "/etc/cni/net.d", "plugin_dirs": ["/opt/cni/bin"]}
    assert "root" not in config["crio"]


def test_crio_with_translation():
    translation = translate_daemon_json(
        {**DAEMON, "registry-mirrors": ["https://mirror.gcr.io", "http://cache.lab:5000/hub"]}, "cri-o"
    )
    target = crio(registry_mirrors=(RegistryMirror("quay.io", ("https://quay-mirror.example",)),))
    files = render(target, driver="systemd", translation=translation)
    assert sorted(files) == [
        CRIO_REGISTRIES,
        "/etc/crictl.yaml",
        CRIO_CONF,
        "/etc/systemd/system/crio.service.d/http-proxy.conf",
    ]
    config = tomllib.loads(files[CRIO_CONF])
    assert config["crio"]["root"] == "/data/containers/storage"
    assert config["crio"]["runtime"]["default_ulimits"] == ["nofile=1024:65536"]

    registries = tomllib.loads(files[CRIO_REGISTRIES])["registry"]
    assert registries == [
        {
            "prefix": "docker.io",
            "location": "docker.io",
            "insecure": False,
            "mirror": [
                {"location": "mirror.gcr.io", "insecure": False},
                {"location": "cache.lab:5000/hub", "insecure": True},
            ],
        },
        {
            "prefix": "quay.io",
            "location": "quay.io",
            "insecure": False,
            "mirror": [{"location": "quay-mirror.example", "insecure": False}],
        },
        {"prefix": "registry.lab:5000", "location": "registry.lab:5000", "insecure": True},
    ]


# --- determinism -------------------------------------------------------------


def test_rendering_is_deterministic():
    translation = translate_daemon_json(DAEMON, "containerd")
    reordered = translate_daemon_json(dict(reversed(list(DAEMON.items()))), "containerd")
    target = containerd(insecure_registries=("b.lab", "a.lab"))
    first = render(target, translation=translation)
    assert first == render(target, translation=reordered)
    assert list(first) == sorted(first)
    assert render(containerd(insecure_registries=("a.lab", "b.lab")), translation=translation) == first


# --- the real containerd -----------------------------------------------------


def test_real_containerd_accepts_the_v2_config(tmp_path):
    binary = shutil.which("containerd")
    if binary is None:
        pytest.fail("no containerd on PATH (the host's 1.6): run `make setup`")
    translation = translate_daemon_json({"registry-mirrors": ["https://mirror.gcr.io"]}, "containerd")
    files = render(containerd(pause_image="registry.k8s.io/pause:3.9"), "1.6.20", "systemd", translation)
    config_file = tmp_path / "config.toml"
    config_file.write_text(files[CONFIG])
    dumped = subprocess.run(
        [binary, "--config", str(config_file), "config", "dump"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert dumped.returncode == 0, dumped.stderr
    effective = tomllib.loads(dumped.stdout)
    assert "cri" not in effective.get("disabled_plugins", [])
    assert "io.containerd.grpc.v1.cri" not in effective.get("disabled_plugins", [])
    cri = effective["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["sandbox_image"] == "registry.k8s.io/pause:3.9"
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert cri["registry"]["config_path"] == "/etc/containerd/certs.d"
    assert cri["cni"]["bin_dir"] == "/opt/cni/bin"
