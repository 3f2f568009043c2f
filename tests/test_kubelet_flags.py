"""kubeadm-flags.env, KubeletConfiguration and kubeadm instance-config rewriting across
kubelet 1.20-1.31, from dockershim and cri-dockerd to containerd and CRI-O."""
from __future__ import annotations

import pytest
import yaml

from components.config import parse_target
from components.desired import desired_state
from components.manifest import KUBEADM_FLAGS as FLAGS_PATH
from components.manifest import KUBEADM_INSTANCE_CONFIG as INSTANCE_PATH
from components.manifest import KUBELET_CONFIG as CONFIG_PATH
from components.facts import NodeFacts
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


# --- every supported (kubelet minor, source, target) -------------------------
# What a node's kubelet files look like on each source, and what they must be
# after the rewrite, through desired_state (the function preview, up and the
# render CLI share). {endpoint} is the target's CRI endpoint; an expected
# config of None means config.yaml carries no containerRuntimeEndpoint.

CRI_DOCKERD = "unix:///var/run/cri-dockerd.sock"
DOCKERSHIM_ARGS = "--network-plugin=cni --pod-infra-container-image=k8s.gcr.io/pause:{pause}"
CRI_DOCKERD_ARGS = f"--container-runtime=remote --container-runtime-endpoint={CRI_DOCKERD} " \
    "--pod-infra-container-image=registry.k8s.io/pause:{pause}"
CRI_DOCKERD_ARGS_127 = f"--container-runtime-endpoint={CRI_DOCKERD} " \
    "--pod-infra-container-image=registry.k8s.io/pause:{pause}"
REMOTE = "--container-runtime=remote --container-runtime-endpoint={endpoint}"
PLAIN_CONFIG = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n"

# (kubelet version, source, kubeadm-flags.env args before, args after, config endpoint after)
MATRIX = [
    ("v1.20.15", "dockershim", DOCKERSHIM_ARGS.format(pause="3.2"), REMOTE, None),
    ("v1.21.14", "dockershim", DOCKERSHIM_ARGS.format(pause="3.4.1"), REMOTE, None),
    ("v1.22.17", "dockershim", DOCKERSHIM_ARGS.format(pause="3.5"), REMOTE, None),
    ("v1.23.17", "dockershim", DOCKERSHIM_ARGS.format(pause="3.6"), REMOTE, None),
    # 1.24-1.26: --container-runtime=remote is still valid (deprecated).
    ("v1.24.17", "cri-dockerd", CRI_DOCKERD_ARGS.format(pause="3.7"), REMOTE, None),
    ("v1.25.16", "cri-dockerd", CRI_DOCKERD_ARGS.format(pause="3.8"), REMOTE, None),
    ("v1.26.15", "cri-dockerd", CRI_DOCKERD_ARGS.format(pause="3.9"), REMOTE, None),
    # 1.27 refuses --container-runtime (a node upgraded from 1.26 still has it)
    # and ignores --pod-infra-container-image: both go, the endpoint moves to
    # the KubeletConfiguration.
    ("v1.27.16", "cri-dockerd", CRI_DOCKERD_ARGS.format(pause="3.9"), "", "{endpoint}"),
    ("v1.28.15", "cri-dockerd", CRI_DOCKERD_ARGS_127.format(pause="3.9"), "", "{endpoint}"),
    ("v1.29.10", "cri-dockerd", CRI_DOCKERD_ARGS_127.format(pause="3.9"), "", "{endpoint}"),
    ("v1.30.6", "cri-dockerd", CRI_DOCKERD_ARGS_127.format(pause="3.9"), "", "{endpoint}"),
    ("v1.31.2", "cri-dockerd", CRI_DOCKERD_ARGS_127.format(pause="3.10"), "", "{endpoint}"),
]
TARGETS = {
    "containerd": lambda: parse_target({"runtime": "containerd"}),
    "cri-o": lambda: parse_target({"runtime": "cri-o", "source": "package"}),
}


def node_facts(version: str, flags: str, config: str = PLAIN_CONFIG, **files: str) -> NodeFacts:
    return NodeFacts(facts={"os.id": "debian", "kubelet.version": f"Kubernetes {version}",
                            "containerd.version": "1.6.20"},
                     files={FLAGS_PATH: env(flags), CONFIG_PATH: config, **files})


def _matrix_ids():
    return [f"{row[0]}-{row[1]}" for row in MATRIX]


@pytest.mark.parametrize("target_name", sorted(TARGETS))
@pytest.mark.parametrize("version,source,before,after,config_endpoint", MATRIX, ids=_matrix_ids())
def test_every_version_source_and_target(version, source, before, after, config_endpoint, target_name):
    target = TARGETS[target_name]()
    facts = node_facts(version, before)
    assert facts.runtime == ("docker" if source == "dockershim" else "cri-dockerd")
    desired = desired_state(facts, target)
    files = desired.files
    assert files[FLAGS_PATH] == env(after.format(endpoint=target.cri_endpoint))
    config = yaml.safe_load(files[CONFIG_PATH])
    expected = config_endpoint.format(endpoint=target.cri_endpoint) if config_endpoint else None
    assert config.get("containerRuntimeEndpoint") == expected
    assert config["cgroupDriver"] == "systemd"
    # What the kubelet would read afterwards: no dockershim flag, no pause
    # image flag, --container-runtime only where 1.24-1.26 still accept it.
    flags = files[FLAGS_PATH]
    assert "--pod-infra-container-image" not in flags and "--network-plugin" not in flags
    assert ("--container-runtime=" in flags) == (parse_kubelet_version(version)[:2] <= (1, 26))
    assert flags.count("--container-runtime-endpoint") == (0 if config_endpoint else 1)
    # The node as rewritten reads as being on the target, and rewriting again changes nothing.
    after_facts = node_facts(version, "", files[CONFIG_PATH])
    after_facts.files[FLAGS_PATH] = flags
    assert after_facts.runtime == target.runtime
    assert desired_state(after_facts, target).files == files


@pytest.mark.parametrize("target_name", sorted(TARGETS))
@pytest.mark.parametrize("version", ["v1.24.17", "v1.26.15", "v1.27.16", "v1.31.2"])
def test_repeated_endpoint_flags_collapse_to_one(version, target_name):
    # Seen on real nodes: the same --container-runtime-endpoint four times.
    target = TARGETS[target_name]()
    before = " ".join([f"--container-runtime-endpoint={CRI_DOCKERD}"] * 4 + ["--node-ip=10.0.0.9"])
    result = rewrite_kubeadm_flags(env(before), version, target.cri_endpoint,
                                   endpoint_in_config=endpoint_belongs_in_config(version, PLAIN_CONFIG))
    in_config = parse_kubelet_version(version)[:2] >= (1, 27)
    expected = "--node-ip=10.0.0.9" if in_config else \
        f"--container-runtime-endpoint={target.cri_endpoint} --node-ip=10.0.0.9 --container-runtime=remote"
    assert result.text == env(expected)
    assert result.removed == (f"--container-runtime-endpoint={CRI_DOCKERD}",)


@pytest.mark.parametrize("target_name", sorted(TARGETS))
@pytest.mark.parametrize("version", ["v1.24.17", "v1.26.15"])
def test_an_endpoint_already_in_the_config_is_rewritten_there_before_1_27(version, target_name):
    target = TARGETS[target_name]()
    config = PLAIN_CONFIG + f"containerRuntimeEndpoint: {CRI_DOCKERD}\n"
    files = desired_state(node_facts(version, "--container-runtime=remote", config), target).files
    assert yaml.safe_load(files[CONFIG_PATH])["containerRuntimeEndpoint"] == target.cri_endpoint
    assert files[FLAGS_PATH] == env("--container-runtime=remote")


INSTANCE_CONFIG = ("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                   f"containerRuntimeEndpoint: {CRI_DOCKERD}\n")


@pytest.mark.parametrize("target_name", sorted(TARGETS))
def test_kubeadm_instance_config_endpoint_is_rewritten_there(target_name):
    target = TARGETS[target_name]()
    facts = node_facts("v1.31.2", "", PLAIN_CONFIG, **{INSTANCE_PATH: INSTANCE_CONFIG})
    files = desired_state(facts, target).files
    assert files[INSTANCE_PATH] == INSTANCE_CONFIG.replace(CRI_DOCKERD, target.cri_endpoint)
    # Once rewritten it stays a managed file (and unchanged), so drift on it is seen.
    facts.files[INSTANCE_PATH] = files[INSTANCE_PATH]
    assert desired_state(facts, target).files[INSTANCE_PATH] == files[INSTANCE_PATH]


def test_an_instance_config_without_an_endpoint_is_left_alone():
    text = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
    facts = node_facts("v1.31.2", "", PLAIN_CONFIG, **{INSTANCE_PATH: text})
    assert INSTANCE_PATH not in desired_state(facts, TARGETS["containerd"]()).files
