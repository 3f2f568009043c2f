"""daemon.json translation: every key accounted for, sizes converted, bad input refused."""
from __future__ import annotations

import json

import pytest

from components.daemon_json import (
    DaemonJsonError,
    DaemonTranslation,
    docker_size_to_quantity,
    runtime_root_for,
    translate_daemon_json,
)
from components.model import RegistryMirror

# A daemon.json as found on long-lived Docker nodes.
FULL = {
    "registry-mirrors": ["https://mirror.gcr.io/", "https://dockerhub.mirror.example"],
    "insecure-registries": ["registry.lab:5000", "10.20.0.0/16"],
    "exec-opts": ["native.cgroupdriver=systemd", "native.umask=normal"],
    "data-root": "/data/docker",
    "log-driver": "json-file",
    "log-opts": {"max-size": "50m", "max-file": "3", "compress": "true", "labels": "app"},
    "default-ulimits": {"nofile": {"Name": "nofile", "Hard": 65536, "Soft": 65536}},
    "proxies": {
        "http-proxy": "http://proxy.lab:3128",
        "https-proxy": "http://proxy.lab:3128",
        "no-proxy": "localhost,127.0.0.1,.svc",
    },
    "live-restore": True,
    "userns-remap": "default",
    "storage-driver": "overlay2",
    "storage-opts": ["overlay2.override_kernel_check=true"],
    "iptables": True,
    "bridge": "none",
    "ip-forward": True,
    "dns": ["10.0.0.2"],
    "debug": False,
    "some-future-option": 1,
}


def accounted_keys(translation: DaemonTranslation) -> list[str]:
    return [key for key, _ in translation.carried] + [key for key, _ in translation.not_carried]


def expected_keys(daemon: dict) -> list[str]:
    """Top-level keys, with log-opts/proxies/exec-opts entries counted one by one."""
    keys = []
    for key, value in daemon.items():
        if key in ("log-opts", "proxies"):
            keys += [f"{key}.{name}" for name in value]
        elif key == "exec-opts":
            keys += [f"exec-opts.{option.split('=')[0]}" for option in value]
        elif key == "insecure-registries":
            keys += ["insecure-registries", "insecure-registries[10.20.0.0/16]"]
        else:
            keys.append(key)
    return keys


@pytest.mark.parametrize("runtime", ["containerd", "cri-o"])
def test_every_key_is_accounted_for_exactly_once(runtime):
    translation = translate_daemon_json(FULL, runtime)
    keys = accounted_keys(translation)
    assert sorted(keys) == sorted(expected_keys(FULL))
    assert len(keys) == len(set(keys))


def test_containerd_translation():
    t = translate_daemon_json(FULL, "containerd")
    assert t.registry_mirrors == (
        RegistryMirror("docker.io", ("https://mirror.gcr.io", "https://dockerhub.mirror.example")),
    )
    assert t.insecure_registries == ("registry.lab:5000",)
    assert t.cgroup_driver == "systemd" and t.docker_cgroup_driver == "systemd"
    assert t.data_root == "/data/docker"
    assert t.runtime_root == "/data/containerd"
    assert t.kubelet_settings == {"containerLogMaxSize": "50Mi", "containerLogMaxFiles": 3}
    assert t.proxies["no-proxy"] == "localhost,127.0.0.1,.svc"
    assert t.default_ulimits == {"nofile": {"Name": "nofile", "Hard": 65536, "Soft": 65536}}
    carried = dict(t.carried)
    assert carried["registry-mirrors"] == "/etc/containerd/certs.d/docker.io/hosts.toml"
    assert carried["insecure-registries"] == "/etc/containerd/certs.d/registry.lab:5000/hosts.toml"
    assert carried["log-opts.max-size"] == "kubelet containerLogMaxSize"
    assert carried["log-opts.max-file"] == "kubelet containerLogMaxFiles"
    assert "containerd.service.d/http-proxy.conf" in carried["proxies.https-proxy"]
    assert "top-level root = /data/containerd" in carried["data-root"]
    not_carried = dict(t.not_carried)
    assert "base runtime spec" in not_carried["default-ulimits"]
    assert "hostUsers" in not_carried["userns-remap"]
    assert "CNI" in not_carried["iptables"] and "CNI" in not_carried["bridge"]
    assert "clusterDNS" in not_carried["dns"]
    assert not_carried["some-future-option"] == "no equivalent in containerd"
    assert "CIDR" in not_carried["insecure-registries[10.20.0.0/16]"]
    assert "exec-opts.native.umask" in not_carried


def test_crio_translation():
    t = translate_daemon_json(FULL, "cri-o")
    carried = dict(t.carried)
    assert carried["default-ulimits"] == "default_ulimits in /etc/crio/crio.conf.d/20-shimless.conf"
    assert carried["registry-mirrors"] == "/etc/containers/registries.conf.d/20-shimless.conf"
    assert "[crio] root = /data/containers/storage" in carried["data-root"]
    assert "crio.service.d/http-proxy.conf" in carried["proxies.http-proxy"]
    assert "cgroup_manager" in carried["exec-opts.native.cgroupdriver"]
    assert t.runtime_root == "/data/containers/storage"
    assert dict(t.not_carried)["some-future-option"] == "no equivalent in cri-o"


def test_report_is_json_and_sorted():
    report = translate_daemon_json(FULL, "containerd").report()
    assert json.loads(json.dumps(report)) == report
    assert [entry["key"] for entry in report["carried"]] == sorted(entry["key"] for entry in report["carried"])
    assert {"key", "to"} == set(report["carried"][0])
    assert {"key", "reason"} == set(report["not_carried"][0])
    assert report["kubelet_settings"] == {"containerLogMaxFiles": 3, "containerLogMaxSize": "50Mi"}


def test_translation_is_deterministic_regardless_of_key_order():
    reordered = dict(reversed(list(FULL.items())))
    assert translate_daemon_json(reordered, "containerd").report() == translate_daemon_json(FULL, "containerd").report()


def test_empty_daemon_json_means_docker_defaults():
    t = translate_daemon_json({}, "containerd")
    assert t.cgroup_driver is None
    assert t.docker_cgroup_driver == "cgroupfs"
    assert t.carried == () and t.not_carried == ()
    assert t.kubelet_settings == {} and t.registry_mirrors == ()


@pytest.mark.parametrize(
    "size,quantity",
    [
        ("50m", "50Mi"),
        ("1g", "1Gi"),
        ("100k", "100Ki"),
        ("10M", "10Mi"),
        ("20mb", "20Mi"),
        ("1048576", "1048576"),
        ("1.5g", "1536Mi"),
        ("0.5m", "512Ki"),
    ],
)
def test_docker_sizes_become_kubelet_quantities(size, quantity):
    assert docker_size_to_quantity(size) == quantity


@pytest.mark.parametrize("size", ["", "ten", "5x", "-5m", "0"])
def test_bad_docker_sizes(size):
    with pytest.raises(ValueError):
        docker_size_to_quantity(size)


@pytest.mark.parametrize("driver", [None, "json-file", "local"])
def test_log_opts_carried_for_file_drivers(driver):
    daemon = {"log-opts": {"max-size": "100k", "max-file": "5"}}
    if driver:
        daemon["log-driver"] = driver
    t = translate_daemon_json(daemon, "containerd")
    assert t.kubelet_settings == {"containerLogMaxSize": "100Ki", "containerLogMaxFiles": 5}
    if driver:
        assert "log-driver" in dict(t.carried)


def test_log_opts_not_carried_for_other_drivers():
    t = translate_daemon_json({"log-driver": "journald", "log-opts": {"max-size": "10m", "tag": "x"}}, "cri-o")
    assert t.kubelet_settings == {}
    not_carried = dict(t.not_carried)
    assert "journald" in not_carried["log-driver"] and "log agent" in not_carried["log-driver"]
    assert not_carried["log-opts.max-size"] == "applies to the journald log driver only"
    assert "log-opts.tag" in not_carried


def test_max_file_one_is_raised_to_kubelet_minimum_and_unlimited_size_dropped():
    t = translate_daemon_json({"log-opts": {"max-file": "1", "max-size": "-1"}}, "containerd")
    assert t.kubelet_settings == {"containerLogMaxFiles": 2}
    assert "raised to 2" in dict(t.carried)["log-opts.max-file"]
    assert "unlimited" in dict(t.not_carried)["log-opts.max-size"]


def test_default_data_root_keeps_runtime_default():
    t = translate_daemon_json({"data-root": "/var/lib/docker/"}, "containerd")
    assert t.data_root == "/var/lib/docker" and t.runtime_root is None
    assert "data-root" in dict(t.not_carried)


@pytest.mark.parametrize(
    "data_root,runtime,expected",
    [
        ("/data/docker", "containerd", "/data/containerd"),
        ("/mnt/disk1", "containerd", "/mnt/disk1/containerd"),
        ("/var/lib/docker", "cri-o", None),
        ("/srv/docker", "cri-o", "/srv/containers/storage"),
    ],
)
def test_runtime_root_for(data_root, runtime, expected):
    assert runtime_root_for(data_root, runtime) == expected


@pytest.mark.parametrize("runtime", ["containerd", "cri-o"])
@pytest.mark.parametrize("key", ["data-root", "graph"])
def test_empty_data_root_is_docker_s_default(key, runtime):
    # Docker's own documented daemon.json example has "data-root": "".
    t = translate_daemon_json({key: ""}, runtime)
    assert t.data_root is None and t.runtime_root is None
    assert dict(t.not_carried)[key] == f"empty: Docker's default /var/lib/docker; {runtime} keeps its default root"


def test_max_concurrent_downloads_goes_to_containerd_s_cri_and_not_to_crio():
    t = translate_daemon_json({"max-concurrent-downloads": 10}, "containerd")
    assert t.max_concurrent_downloads == 10
    assert dict(t.carried)["max-concurrent-downloads"] == \
        "CRI max_concurrent_downloads = 10 in /etc/containerd/config.toml"
    t = translate_daemon_json({"max-concurrent-downloads": 10}, "cri-o")
    assert t.max_concurrent_downloads is None
    assert "CRI-O has no setting for concurrent layer downloads" in dict(t.not_carried)["max-concurrent-downloads"]
    t = translate_daemon_json({"max-concurrent-downloads": 0}, "containerd")
    assert t.max_concurrent_downloads is None and "default (3) is kept" in dict(t.not_carried)["max-concurrent-downloads"]


def test_graph_is_an_alias_for_data_root():
    assert translate_daemon_json({"graph": "/data/docker"}, "containerd").runtime_root == "/data/containerd"
    with pytest.raises(DaemonJsonError, match="both"):
        translate_daemon_json({"graph": "/a/docker", "data-root": "/b/docker"}, "containerd")


@pytest.mark.parametrize(
    "daemon,key",
    [
        ([], "object"),
        ("{}", "object"),
        ({"registry-mirrors": "https://mirror"}, "registry-mirrors"),
        ({"registry-mirrors": ["mirror.example"]}, "registry-mirrors"),
        ({"insecure-registries": [5000]}, "insecure-registries"),
        ({"insecure-registries": ["bad host"]}, "insecure-registries"),
        ({"exec-opts": "native.cgroupdriver=systemd"}, "exec-opts"),
        ({"exec-opts": ["native.cgroupdriver=docker"]}, "native.cgroupdriver"),
        ({"data-root": "relative/path"}, "data-root"),
        ({"data-root": 5}, "data-root"),
        ({"log-driver": 1}, "log-driver"),
        ({"log-opts": {"max-size": 10}}, "log-opts"),
        ({"log-opts": ["max-size=10m"]}, "log-opts"),
        ({"log-opts": {"max-size": "big"}}, "log-opts.max-size"),
        ({"log-opts": {"max-file": "three"}}, "log-opts.max-file"),
        ({"default-ulimits": {"nofile": {"Hard": "x", "Soft": 1}}}, "default-ulimits.nofile.Hard"),
        ({"default-ulimits": []}, "default-ulimits"),
        ({"proxies": {"http-proxy": 3128}}, "proxies"),
        ({"proxies": {"http-proxy": "http://a\nb"}}, "proxies.http-proxy"),
        ({"max-concurrent-downloads": -1}, "max-concurrent-downloads"),
        ({"max-concurrent-downloads": "3"}, "max-concurrent-downloads"),
        ({"max-concurrent-downloads": True}, "max-concurrent-downloads"),
        ({"data-root": None}, "data-root"),
    ],
)
def test_malformed_input_names_the_key(daemon, key):
    with pytest.raises(DaemonJsonError, match=key.replace(".", r"\.")):
        translate_daemon_json(daemon, "containerd")


def test_unknown_runtime():
    with pytest.raises(ValueError, match="unknown runtime"):
        translate_daemon_json({}, "docker")
