"""kubeadm-flags.env and KubeletConfiguration rewriting across kubelet 1.20-1.31."""
from __future__ import annotations

import pytest
import yaml

from components.kubelet_flags import (
    FlagsRewrite,
    dockershim_in_use,
    endpoint_belongs_in_config,
    kubeadm_flag_value,
    kubelet_cgroup_driver,
    kubelet_config_value,
    parse_kubelet_version,
    rewrite_kubeadm_flags,
    rewrite_kubelet_config,
)

CONTAINERD = "unix:///run/containerd/containerd.sock"
CRIO = "unix:///var/run/crio/crio.sock"
HEADER = (
    "# This is a file that \"kubeadm init\" and \"kubeadm join\" generates at runtime, populating\n"
    "# the KUBELET_KUBEADM_ARGS variable dynamically\n"
)


def env(args: str, quote: str = '"') -> str:
    return f"{HEADER}KUBELET_KUBEADM_ARGS={quote}{args}{quote}\n"


# (kubelet version, kubeadm-flags.env args on the Docker node, expected args after the rewrite)
VERSION_TABLE = [
    (
        "v1.20.15",
        "--network-plugin=cni --pod-infra-container-image=k8s.gcr.io/pause:3.2",
        f"--container-runtime=remote --container-runtime-endpoint={CONTAINERD}",
    ),
    (
        "v1.21.14",
        "--cgroup-driver=systemd --network-plugin=cni --pod-infra-container-image=k8s.gcr.io/pause:3.4.1",
        f"--cgroup-driver=systemd --container-runtime=remote --container-runtime-endpoint={CONTAINERD}",
    ),
    (
        "v1.22.17",
        "--network-plugin cni --pod-infra-container-image k8s.gcr.io/pause:3.5 --node-ip=10.0.0.11",
        f"--node-ip=10.0.0.11 --container-runtime=remote --container-runtime-endpoint={CONTAINERD}",
    ),
    (
        "v1.23.17",
        "--network-plugin=cni --cni-bin-dir=/opt/cni/bin --cni-conf-dir=/etc/cni/net.d "
        "--network-plugin-mtu=1450 --docker-endpoint=unix:///var/run/docker.sock "
        "--image-pull-progress-deadline=2m --pod-infra-container-image=k8s.gcr.io/pause:3.6 "
        "--resolv-conf=/run/systemd/resolve/resolv.conf",
        "--resolv-conf=/run/systemd/resolve/resolv.conf --container-runtime=remote "
        f"--container-runtime-endpoint={CONTAINERD}",
    ),
    (
        # A 1.23 node whose kubeadm already wrote --container-runtime=docker explicitly.
        "1.23",
        "--container-runtime=docker --network-plugin=cni --node-labels=tier=web",
        f"--container-runtime=remote --node-labels=tier=web --container-runtime-endpoint={CONTAINERD}",
    ),
    (
        # 1.24-1.26: a Docker node behind cri-dockerd.
        "v1.24.17",
        "--container-runtime=remote --container-runtime-endpoint=unix:///var/run/cri-dockerd.sock "
        "--pod-infra-container-image=registry.k8s.io/pause:3.7",
        f"--container-runtime=remote --container-runtime-endpoint={CONTAINERD}",
    ),
    (
        "v1.25.16",
        "--container-runtime=remote --container-runtime-endpoint=unix:///run/cri-dockerd.sock "
        "--pod-infra-container-image=registry.k8s.io/pause:3.8 --node-ip=10.0.0.12",
        f"--container-runtime=remote --container-runtime-endpoint={CONTAINERD} --node-ip=10.0.0.12",
    ),
    (
        "v1.26.15",
        "--container-runtime-endpoint=unix:///var/run/cri-dockerd.sock "
        "--pod-infra-container-image=registry.k8s.io/pause:3.9",
        f"--container-runtime-endpoint={CONTAINERD} --container-runtime=remote",
    ),
    (
        # 1.27 removed --container-runtime; a leftover one must go or the kubelet will not start.
        "v1.27.16",
        "--container-runtime=remote --container-runtime-endpoint=unix:///var/run/cri-dockerd.sock "
        "--pod-infra-container-image=registry.k8s.io/pause:3.9",
        f"--container-runtime-endpoint={CONTAINERD}",
    ),
    (
        "v1.28.15",
        "--container-runtime-endpoint=unix:///var/run/cri-dockerd.sock "
        "--pod-infra-container-image=registry.k8s.io/pause:3.9",
        f"--container-runtime-endpoint={CONTAINERD}",
    ),
    (
        "v1.29.10",
        "--container-runtime-endpoint unix:///var/run/cri-dockerd.sock --node-ip=10.0.0.13",
        f"--container-runtime-endpoint={CONTAINERD} --node-ip=10.0.0.13",
    ),
    (
        "v1.30.6",
        "--container-runtime-endpoint=unix:///var/run/cri-dockerd.sock "
        "--pod-infra-container-image=registry.k8s.io/pause:3.9 --max-pods=200",
        f"--container-runtime-endpoint={CONTAINERD} --max-pods=200",
    ),
    (
        "v1.31.2",
        "--node-ip=10.0.0.14 --container-runtime-endpoint=unix:///var/run/cri-dockerd.sock",
        f"--node-ip=10.0.0.14 --container-runtime-endpoint={CONTAINERD}",
    ),
]


@pytest.mark.parametrize("version,before,after", VERSION_TABLE, ids=[row[0] for row in VERSION_TABLE])
def test_rewrite_by_kubelet_version(version, before, after):
    result = rewrite_kubeadm_flags(env(before), version, CONTAINERD, endpoint_in_config=False)
    assert result.text == env(after)
    again = rewrite_kubeadm_flags(result.text, version, CONTAINERD, endpoint_in_config=False)
    assert again == FlagsRewrite(result.text, (), (), ())


@pytest.mark.parametrize("version,before,after", VERSION_TABLE, ids=[row[0] for row in VERSION_TABLE])
@pytest.mark.parametrize("quote", ["'", ""], ids=["single-quoted", "unquoted"])
def test_quoting_style_is_kept(version, before, after, quote):
    result = rewrite_kubeadm_flags(env(before, quote), version, CONTAINERD, endpoint_in_config=False)
    assert result.text == env(after, quote)


def test_added_and_removed_are_reported():
    result = rewrite_kubeadm_flags(
        env("--container-runtime=docker --network-plugin cni --pod-infra-container-image=k8s.gcr.io/pause:3.6"),
        "v1.23.17",
        CRIO,
        endpoint_in_config=False,
    )
    assert result.added == ("--container-runtime=remote", f"--container-runtime-endpoint={CRIO}")
    assert result.removed == (
        "--network-plugin=cni",
        "--pod-infra-container-image=k8s.gcr.io/pause:3.6",
        "--container-runtime=docker",
    )
    assert any(note.startswith("--pod-infra-container-image:") and "runtime config" in note for note in result.notes)


def test_endpoint_in_config_removes_the_flag():
    before = env("--container-runtime-endpoint=unix:///var/run/cri-dockerd.sock --node-ip=10.0.0.5")
    result = rewrite_kubeadm_flags(before, "v1.28.15", CONTAINERD, endpoint_in_config=True)
    assert result.text == env("--node-ip=10.0.0.5")
    assert result.removed == ("--container-runtime-endpoint=unix:///var/run/cri-dockerd.sock",)
    assert result.added == ()


def test_other_lines_and_crlf_and_missing_newline_are_kept():
    text = "# comment\nFOO=bar\nKUBELET_KUBEADM_ARGS=\"--network-plugin=cni\"\r\nOTHER='x y'"
    result = rewrite_kubeadm_flags(text, "v1.23.0", CONTAINERD, endpoint_in_config=False)
    assert result.text == (
        "# comment\nFOO=bar\n"
        f'KUBELET_KUBEADM_ARGS="--container-runtime=remote --container-runtime-endpoint={CONTAINERD}"\r\n'
        "OTHER='x y'"
    )


def test_missing_args_line_is_appended():
    result = rewrite_kubeadm_flags("# nothing here", "v1.22.0", CONTAINERD, endpoint_in_config=False)
    assert result.text == (
        "# nothing here\n"
        f'KUBELET_KUBEADM_ARGS="--container-runtime=remote --container-runtime-endpoint={CONTAINERD}"\n'
    )
    assert rewrite_kubeadm_flags("", "v1.29.0", CONTAINERD, endpoint_in_config=False).text == (
        f'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint={CONTAINERD}"\n'
    )


def test_empty_value_and_duplicates():
    result = rewrite_kubeadm_flags(env(""), "v1.23.0", CONTAINERD, endpoint_in_config=False)
    assert result.text == env(f"--container-runtime=remote --container-runtime-endpoint={CONTAINERD}")
    dup = env(f"--container-runtime-endpoint={CONTAINERD} --v=2 --container-runtime-endpoint=unix:///old.sock")
    result = rewrite_kubeadm_flags(dup, "v1.28.0", CONTAINERD, endpoint_in_config=False)
    assert result.text == env(f"--container-runtime-endpoint={CONTAINERD} --v=2")
    assert result.removed == ("--container-runtime-endpoint=unix:///old.sock",)


def test_image_service_endpoint_only_removed_when_it_points_at_docker():
    docker = env("--image-service-endpoint=unix:///var/run/dockershim.sock")
    assert "--image-service-endpoint" not in rewrite_kubeadm_flags(
        docker, "v1.23.0", CONTAINERD, endpoint_in_config=False
    ).text
    other = env("--image-service-endpoint=unix:///run/images.sock")
    assert "--image-service-endpoint=unix:///run/images.sock" in rewrite_kubeadm_flags(
        other, "v1.23.0", CONTAINERD, endpoint_in_config=False
    ).text


def test_bad_inputs():
    with pytest.raises(ValueError, match="unterminated"):
        rewrite_kubeadm_flags('KUBELET_KUBEADM_ARGS="--v=2\n', "v1.23.0", CONTAINERD, endpoint_in_config=False)
    with pytest.raises(ValueError, match="not a kubelet version"):
        rewrite_kubeadm_flags(env(""), "latest", CONTAINERD, endpoint_in_config=False)
    with pytest.raises(ValueError, match="CRI endpoint"):
        rewrite_kubeadm_flags(env(""), "v1.23.0", "", endpoint_in_config=False)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("v1.23.17", (1, 23, 17)),
        ("Kubernetes v1.23.17", (1, 23, 17)),
        ("1.23", (1, 23, 0)),
        (" v1.28.3-eks-1234 ", (1, 28, 3)),
        ("v1.30.1+k3s1", (1, 30, 1)),
    ],
)
def test_parse_kubelet_version(text, expected):
    assert parse_kubelet_version(text) == expected


@pytest.mark.parametrize("text", ["", "latest", "1", "v1.x", "2.0.0", "Kubernetes", "1.23.4.5"])
def test_parse_kubelet_version_rejects_garbage(text):
    with pytest.raises(ValueError, match=repr(text)[1:-1] or "version"):
        parse_kubelet_version(text)


@pytest.mark.parametrize(
    "flags,version,expected",
    [
        (env("--network-plugin=cni"), "v1.23.17", True),
        (env("--container-runtime=docker"), "v1.20.0", True),
        (env(f"--container-runtime=remote --container-runtime-endpoint={CONTAINERD}"), "v1.23.17", False),
        (env(f"--container-runtime remote --container-runtime-endpoint={CONTAINERD}"), "1.22", False),
        # A later assignment wins, as in systemd's EnvironmentFile.
        (env("--container-runtime=remote") + 'KUBELET_EXTRA_ARGS="--container-runtime=docker"\n', "1.21", True),
        ("/usr/bin/kubelet --container-runtime=remote --container-runtime-endpoint=x", "v1.23.1", False),
        (env("--network-plugin=cni"), "v1.24.0", False),
        (env(""), (1, 31, 0), False),
    ],
)
def test_dockershim_in_use(flags, version, expected):
    assert dockershim_in_use(flags, version) is expected


def test_kubeadm_flag_value():
    text = env("--pod-infra-container-image k8s.gcr.io/pause:3.6 --cni-bin-dir=/usr/lib/cni")
    assert kubeadm_flag_value(text, "pod-infra-container-image") == "k8s.gcr.io/pause:3.6"
    assert kubeadm_flag_value(text, "cni-bin-dir") == "/usr/lib/cni"
    assert kubeadm_flag_value(text, "network-plugin") is None


# --- KubeletConfiguration ----------------------------------------------------

KUBELET_CONFIG = """\
apiVersion: kubelet.config.k8s.io/v1beta1
# kubeadm wrote this
authentication:
  anonymous:
    enabled: false
cgroupDriver: systemd
containerLogMaxFiles: 4   # ops decided
kind: KubeletConfiguration
"""


def test_rewrite_kubelet_config_appends_and_keeps_existing_values():
    settings = {"containerLogMaxSize": "50Mi", "containerLogMaxFiles": 3}
    result = rewrite_kubelet_config(KUBELET_CONFIG, cri_endpoint=CONTAINERD, settings=settings)
    assert result == KUBELET_CONFIG + f"containerRuntimeEndpoint: {CONTAINERD}\ncontainerLogMaxSize: 50Mi\n"
    assert rewrite_kubelet_config(result, cri_endpoint=CONTAINERD, settings=settings) == result
    parsed = yaml.safe_load(result)
    assert parsed["containerLogMaxFiles"] == 4  # the kubelet's explicit value wins
    assert parsed["authentication"] == {"anonymous": {"enabled": False}}


def test_rewrite_kubelet_config_replaces_endpoint_in_place():
    text = "kind: KubeletConfiguration\ncontainerRuntimeEndpoint: unix:///var/run/cri-dockerd.sock\nmaxPods: 110\n"
    result = rewrite_kubelet_config(text, cri_endpoint=CRIO, settings={})
    assert result == f"kind: KubeletConfiguration\ncontainerRuntimeEndpoint: {CRIO}\nmaxPods: 110\n"
    # No endpoint asked for: the text is untouched.
    assert rewrite_kubelet_config(text, cri_endpoint=None, settings={}) == text


def test_rewrite_kubelet_config_without_trailing_newline_and_empty():
    assert rewrite_kubelet_config("kind: KubeletConfiguration", cri_endpoint=None, settings={"maxPods": 50}) == (
        "kind: KubeletConfiguration\nmaxPods: 50\n"
    )
    assert rewrite_kubelet_config("", cri_endpoint=CONTAINERD, settings={}) == (
        f"containerRuntimeEndpoint: {CONTAINERD}\n"
    )


@pytest.mark.parametrize(
    "text,match",
    [
        ("- a\n- b\n", "mapping"),
        ("a: [\n", "invalid YAML"),
        ("a: 1\n---\nb: 2\n", "more than one"),
        ('{"kind": "KubeletConfiguration"}', "JSON"),
    ],
)
def test_rewrite_kubelet_config_rejects_what_it_cannot_edit(text, match):
    with pytest.raises(ValueError, match=match):
        rewrite_kubelet_config(text, cri_endpoint=CONTAINERD, settings={})


def test_kubelet_config_values_and_cgroup_driver():
    assert kubelet_config_value(KUBELET_CONFIG, "containerLogMaxFiles") == 4
    assert kubelet_config_value(KUBELET_CONFIG, "missing") is None
    assert kubelet_cgroup_driver(KUBELET_CONFIG) == "systemd"
    assert kubelet_cgroup_driver("kind: KubeletConfiguration\n") == "cgroupfs"
    with pytest.raises(ValueError, match="cgroupDriver"):
        kubelet_cgroup_driver("cgroupDriver: docker\n")


@pytest.mark.parametrize(
    "version,config,expected",
    [
        ("v1.26.15", "kind: KubeletConfiguration\n", False),
        ("v1.27.0", "kind: KubeletConfiguration\n", True),
        ("v1.31.2", "", True),
        ("v1.26.15", f"containerRuntimeEndpoint: {CONTAINERD}\n", True),
    ],
)
def test_endpoint_belongs_in_config(version, config, expected):
    assert endpoint_belongs_in_config(version, config) is expected
