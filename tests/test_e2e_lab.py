"""End to end on the lab's real nodes (systemd-nspawn, real systemd, sshd,
Docker and containerd, the real kubelet 1.23 standalone with static pods),
through the real Pulumi engine (Automation API).

Runs in file order: refusals first on fresh nodes, then a full migration,
idempotence, a runtime failure with rollback, and a dropped SSH session."""
from __future__ import annotations

import base64
import copy
import io
import json
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from components.cli import REPORT_NAME
from components.manifest import BACKUP_ORIGINAL
from tests import lab

pytestmark = pytest.mark.e2e

MANAGED_FILES = ("/etc/containerd/config.toml", "/etc/containerd/certs.d/docker.io/hosts.toml",
                 "/etc/crictl.yaml", "/var/lib/kubelet/kubeadm-flags.env", "/var/lib/kubelet/config.yaml")
FAULT_DROP_IN = "/etc/systemd/system/containerd.service.d/99-e2e-fault.conf"


@pytest.fixture(scope="module")
def lab_config():
    # A plain lab stack (cluster.mode none), whatever an earlier module left.
    lab.script("lab-up.sh")
    config = lab.require_lab()
    assert config["config"]["shimless:cluster"] == {"mode": "none"}
    lab.reset()
    return config


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="module")
def stack(lab_config, backend, tmp_path_factory):
    work = lab.project_copy(tmp_path_factory.mktemp("lab"))
    return lab.engine_stack(work, backend)


def untouched(node: str) -> bool:
    return lab.ssh(node, "test -e /var/lib/shimless", check=False).returncode != 0



def variant(lab_config, tmp_path, mutate, stack_name="lab"):
    config = copy.deepcopy(lab_config)
    mutate(config["config"])
    work = lab.project_copy(tmp_path, config, stack_name)
    return lab.engine_stack(work, tmp_path / "state", stack_name)


def test_invalid_config_is_refused_before_any_node_is_touched(lab_config, tmp_path):
    from pulumi.automation import errors

    def break_it(config):
        config["shimless:rollout"] = {"maxUnavailable": 0}
        config["shimless:nodes"][1]["port"] = 70000
    stack = variant(lab_config, tmp_path, break_it)
    with pytest.raises(errors.CommandError) as info:
        stack.up(color="never")
    message = str(info.value)
    assert "shimless:rollout.maxUnavailable: must be >= 1, got 0" in message
    assert "shimless:nodes[1].port (node lab-w1): must be between 1 and 65535, got 70000" in message
    assert all(untouched(node) for node in lab.NODES)


@pytest.mark.parametrize("what", ["host key", "private key"])
def test_wrong_ssh_credentials_are_refused_before_any_node_is_touched(lab_config, tmp_path, what):
    from pulumi.automation import errors

    def break_it(config):
        nodes = config["shimless:nodes"]
        if what == "host key":
            nodes[2]["hostKey"] = nodes[1]["hostKey"]  # lab-w2 pinned to lab-w1's key
        else:
            wrong = tmp_path / "wrong_key"
            import subprocess
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
            config["shimless:sshPrivateKeyPath"] = str(wrong)
    stack = variant(lab_config, tmp_path, break_it)
    with pytest.raises(errors.CommandError) as info:
        stack.up(color="never")
    message = str(info.value)
    assert "SSH refused, nothing was changed on any node" in message
    if what == "host key":
        assert "node lab-w2" in message and "differs from the pinned hostKey" in message
    else:
        assert "the SSH key was refused for user root" in message
    assert all(untouched(node) for node in lab.NODES)


def run_prestage(node: str, images: str) -> str:
    """scripts/prestage.sh on `node` as the program runs it (its bundle on stdin)."""
    import subprocess
    from components.bundle import REMOTE_COMMAND, bundle
    stdin = bundle("prestage.sh", {"node": node, "runtime": "containerd", "token": "e2e", "source": "preinstalled",
                                   "version": "", "images": images, "pause_image": "registry.k8s.io/pause:3.6"})
    done = subprocess.run([str(lab.ROOT / "lab" / "ssh"), node, REMOTE_COMMAND], input=stdin,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_prestage_carries_docker_images_once_and_only_what_is_asked():
    lab.reset("lab-w2")  # in the Docker era, whatever ran before
    # A Docker-only image (its own ID) that no pod uses: `pods` leaves it, `all` carries it.
    lab.out("lab-w2", "printf 'FROM registry.k8s.io/pause:3.6\\nLABEL e2e=unused\\n' | "
                      "DOCKER_BUILDKIT=0 docker build -q -t lab.invalid/e2e/unused:1 - >/dev/null")
    def in_containerd(ref):
        return ref in lab.out("lab-w2", "ctr -n k8s.io images ls -q").split()
    assert not in_containerd("registry.k8s.io/pause:3.6")
    assert run_prestage("lab-w2", "none").endswith("images=0 image_bytes=0 image_seconds=0")
    assert not in_containerd("registry.k8s.io/pause:3.6")
    first = run_prestage("lab-w2", "pods")
    assert " images=2 " in first, first  # the pause image (two tags) and the static pod's
    assert in_containerd("registry.k8s.io/pause:3.6") and in_containerd("k8s.gcr.io/pause:3.6")
    assert in_containerd(lab.WORKLOAD_IMAGE)
    assert not in_containerd("lab.invalid/e2e/unused:1")
    # Same image ID already there under every wanted tag: nothing is copied again.
    assert " images=0 " in run_prestage("lab-w2", "pods")
    assert " images=1 " in run_prestage("lab-w2", "all")
    assert in_containerd("lab.invalid/e2e/unused:1")
    assert " images=0 " in run_prestage("lab-w2", "all")
    lab.reset("lab-w2")  # a Docker-era node again for the rollout below


@pytest.fixture(scope="module")
def pinned():
    """The image names lab-w2's e2e-pinned pod runs, once the test below made them."""
    return {}


def test_images_pinned_by_digest_run_on_docker(lab_config, pinned, tmp_path):
    # Two images of lab-w2's own, pushed to a registry on loopback and taken
    # back as production manifests pin them: one Docker knows only by its
    # registry digest, one by a tag and that digest. The registry is gone
    # before the rollout: after the switch the pod runs only on what pre-stage
    # carried.
    with lab.registry(tmp_path) as registry:
        for name in ("pinned", "tagged"):
            lab.out("lab-w2", f"printf 'FROM registry.k8s.io/pause:3.6\\nLABEL e2e={name}\\n' | "
                              f"DOCKER_BUILDKIT=0 docker build -q -t {registry}/e2e/{name}:1 - >/dev/null && "
                              f"docker push {registry}/e2e/{name}:1 >/dev/null")
        digests = {name: lab.out("lab-w2", "docker image inspect --format '{{index .RepoDigests 0}}' "
                                           f"{registry}/e2e/{name}:1").strip() for name in ("pinned", "tagged")}
        lab.out("lab-w2", f"docker rmi {registry}/e2e/pinned:1 >/dev/null && docker pull -q {digests['pinned']} >/dev/null")
    assert lab.out("lab-w2", f"docker image inspect --format '{{{{.RepoTags}}}}' {digests['pinned']}").strip() == "[]"
    pinned.update(pinned=digests["pinned"], tagged=digests["tagged"].replace("@", ":1@"), digests=digests)
    containers = "".join(f"  - name: {name}\n    image: {ref}\n    imagePullPolicy: IfNotPresent\n"
                         "    command: [/pause]\n" for name, ref in (("pinned", pinned["pinned"]),
                                                                     ("tagged", pinned["tagged"])))
    lab.out("lab-w2", "cat >/etc/kubernetes/manifests/e2e-pinned.yaml <<'EOF'\n"
                      "apiVersion: v1\nkind: Pod\nmetadata:\n  name: e2e-pinned\n  namespace: default\n"
                      f"spec:\n  hostNetwork: true\n  containers:\n{containers}EOF")
    status = lab.kubelet("lab-w2", attempts=90)
    assert status["pods"].get("e2e-pinned-lab-w2") == {"runtime": "docker", "running": True}, status


def test_up_migrates_every_node(stack, pinned):
    preview = stack.preview(color="never")
    assert "switch from docker to containerd" in preview.stdout
    result = stack.up(color="never", on_output=print)
    assert result.summary.result == "succeeded"
    for node in lab.NODES:
        lab.out(node, "crictl --runtime-endpoint unix:///run/containerd/containerd.sock info >/dev/null")
        config = lab.out(node, "cat /etc/containerd/config.toml")
        assert 'disabled_plugins = ["cri"]' not in config
        assert "SystemdCgroup = false" in config  # the lab kubelet's cgroupDriver: cgroupfs
        assert 'sandbox_image = "registry.k8s.io/pause:3.6"' in config
        assert 'config_path = "/etc/containerd/certs.d"' in config
        assert "https://mirror.lab.invalid" in lab.out(node, "cat /etc/containerd/certs.d/docker.io/hosts.toml")
        assert "skip_verify = true" in lab.out(node, "cat /etc/containerd/certs.d/registry.lab.invalid:5000/hosts.toml")
        flags = lab.out(node, "cat /var/lib/kubelet/kubeadm-flags.env")
        assert "--container-runtime=remote" in flags
        assert "--container-runtime-endpoint=unix:///run/containerd/containerd.sock" in flags
        assert "--network-plugin" not in flags and "--pod-infra-container-image" not in flags
        assert "containerLogMaxSize: 50Mi" in lab.out(node, "cat /var/lib/kubelet/config.yaml")
        for unit in ("docker.service", "docker.socket"):
            assert lab.ssh(node, f"systemctl is-enabled {unit}", check=False).stdout.strip() != "enabled"
            assert lab.ssh(node, f"systemctl is-active {unit}", check=False).stdout.strip() != "active"
        original = lab.out(node, "cat /var/lib/shimless/backup/original/var/lib/kubelet/kubeadm-flags.env")
        assert "--network-plugin=cni" in original
        status = lab.kubelet(node)
        assert status["mode"] == "remote" and status["runtime"] == "containerd" and status["ready"] is True, status
        assert f"lab-static-{node}" in status["pods"]
        pods = lab.out(node, "crictl --runtime-endpoint unix:///run/containerd/containerd.sock pods --state ready -o json")
        assert f"lab-static-{node}" in {p["metadata"]["name"] for p in json.loads(pods)["items"]}
    outputs = stack.outputs()
    nodes = outputs["nodes"].value
    assert set(nodes) == set(lab.NODES)
    assert all(n["runtimeBefore"] == "docker" and n["runtimeAfter"] == "containerd" for n in nodes.values())
    assert all(n["result"].startswith("switched runtime=containerd") for n in nodes.values())
    # The pause image and the workload's image existed only in Docker: pre-stage
    # carried both (every tag) into containerd, and the workload pod (which may
    # pull, from a registry that does not exist) runs on them.
    # lab-w2 also has the e2e-pinned pod's two images (test_images_pinned_by_digest_run_on_docker).
    assert {node: n["imagesCarried"]["images"] for node, n in nodes.items()} == {
        "lab-cp1": 2, "lab-w1": 2, "lab-w2": 4 if pinned else 2}, nodes
    for node in lab.NODES:
        images = json.loads(lab.out(node, "crictl --runtime-endpoint unix:///run/containerd/containerd.sock images -o json"))
        tags = {tag for image in images["images"] for tag in image["repoTags"]}
        assert {"registry.k8s.io/pause:3.6", "k8s.gcr.io/pause:3.6", lab.WORKLOAD_IMAGE} <= tags, tags
    if pinned:
        # the pod pinned by digest runs on containerd with no registry anywhere:
        # both images carried under their registry digest (and the tag)
        assert lab.kubelet("lab-w2")["pods"].get("e2e-pinned-lab-w2") == {"runtime": "containerd", "running": True}
        images = json.loads(lab.out("lab-w2", "crictl --runtime-endpoint unix:///run/containerd/containerd.sock "
                                              "images -o json"))["images"]
        assert set(pinned["digests"].values()) <= {name for image in images for name in image["repoDigests"]}
        assert pinned["tagged"].split("@")[0] in {tag for image in images for tag in image["repoTags"]}



def test_second_preview_and_up_change_nothing(stack):
    before = {node: lab.fingerprint(node, MANAGED_FILES) for node in lab.NODES}
    preview = stack.preview(color="never")
    assert lab.changes(preview.change_summary) == {}
    result = stack.up(color="never")
    assert lab.changes(result.summary.resource_changes) == {}
    assert {node: lab.fingerprint(node, MANAGED_FILES) for node in lab.NODES} == before


def fetch_tree(node: str, directory: str, into: Path) -> None:
    """A copy of `directory` on `node` under `into`, as tar carries it."""
    done = subprocess.run([str(lab.ROOT / "lab" / "ssh"), node, f"tar -C {directory} -cf - ."],
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        tar.extractall(into, filter="data")


def node_file(node: str, path: str) -> bytes:
    """The bytes of `path` on `node` (base64 over ssh: text-safe)."""
    return base64.b64decode(lab.out(node, f"base64 -w0 {path}"))


def test_render_from_the_original_files_is_exactly_what_up_wrote(stack, tmp_path):
    """`render --stack lab --node N --from DIR` on a copy of the node's
    backup/original/ (its files before the switch), with the kubelet and
    containerd versions the node reports, gives byte for byte the files
    `pulumi up` left on the node, and no other."""
    planned = stack.outputs()["nodes"].value
    for node in lab.NODES:
        original, out = tmp_path / node / "original", tmp_path / node / "rendered"
        fetch_tree(node, BACKUP_ORIGINAL, original)
        assert (original / ".complete").is_file(), node
        kubelet_version = lab.out(node, "kubelet --version").split()[-1]
        containerd_version = lab.out(node, "containerd --version").split()[2]
        done = subprocess.run([sys.executable, "-m", "components.cli", "render", "--stack", "lab", "--node", node,
                               "--from", str(original), "--out", str(out), "--kubelet-version", kubelet_version,
                               "--containerd-version", containerd_version],
                              cwd=lab.ROOT, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        rendered = {"/" + str(path.relative_to(out)): path.read_bytes()
                    for path in sorted(out.rglob("*")) if path.is_file() and path.name != REPORT_NAME}
        assert sorted(rendered) == planned[node]["files"], node
        for path, content in rendered.items():
            assert node_file(node, path) == content, f"{node}:{path}"


DRIFTS = {
    "runtime config edited": ("echo '# local edit' >> /etc/containerd/config.toml", "/etc/containerd/config.toml"),
    "runtime service disabled": ("systemctl disable containerd 2>/dev/null", "containerd.service enabled"),
    "docker re-enabled": ("systemctl enable --now docker.socket docker.service 2>/dev/null", "docker.service enabled"),
    # Unrelated flags are the operator's; the runtime flags are shimless's.
    "kubelet endpoint edited": ("sed -i 's|--container-runtime-endpoint=[^ \"]*|"
                                "--container-runtime-endpoint=unix:///var/run/dockershim.sock|' "
                                "/var/lib/kubelet/kubeadm-flags.env", "/var/lib/kubelet/kubeadm-flags.env"),
    "crictl.yaml edited": ("sed -i 's/^timeout: .*/timeout: 2/' /etc/crictl.yaml", "/etc/crictl.yaml"),
}


def drift_report() -> tuple[int, dict]:
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "components.cli", "drift", "--stack", "lab", "--json"],
                          cwd=lab.ROOT, capture_output=True, text=True, timeout=300)
    return done.returncode, json.loads(done.stdout)


def updated_urns(stack) -> list[str]:
    urns = []

    def on_event(event):
        pre = event.resource_pre_event
        if pre is not None and pre.metadata.op.value not in ("same", "read"):
            urns.append(pre.metadata.urn)

    stack.preview(color="never", on_event=on_event)
    return urns


def test_no_false_drift_right_after_up(stack):
    code, report = drift_report()
    assert code == 0, report
    assert {name: entry["status"] for name, entry in report["nodes"].items()} == dict.fromkeys(lab.NODES, "clean")


@pytest.mark.parametrize("kind", list(DRIFTS))
def test_drift_is_detected_on_that_node_only_and_repaired(stack, kind):
    tamper, fact = DRIFTS[kind]
    lab.out("lab-w1", tamper)
    code, report = drift_report()
    assert code == 2
    assert report["nodes"]["lab-cp1"]["status"] == "clean" and report["nodes"]["lab-w2"]["status"] == "clean"
    assert fact in [item["fact"] for item in report["nodes"]["lab-w1"]["drift"]]
    changed = updated_urns(stack)
    assert changed and all("::shimless-lab-w1-" in urn or urn.endswith("::shimless-lab-w1") for urn in changed), changed
    stack.up(color="never")
    assert lab.changes(stack.preview(color="never").change_summary) == {}
    assert drift_report()[0] == 0
    assert lab.kubelet("lab-w1")["runtime"] == "containerd"


def test_runtime_failure_rolls_back_that_node_and_stops_the_rollout(stack):
    from pulumi.automation import errors
    lab.reset()
    # containerd on lab-w1 refuses to start once shimless's config is active.
    lab.out("lab-w1", f"mkdir -p {FAULT_DROP_IN.rsplit('/', 1)[0]} && printf '%s\\n' '[Service]' "
                      "\"ExecStartPre=/bin/sh -c '! grep -q \\\"Managed by shimless\\\" /etc/containerd/config.toml'\" "
                      f"> {FAULT_DROP_IN} && systemctl daemon-reload")
    with pytest.raises(errors.CommandError) as info:
        stack.up(color="never")
    message = str(info.value)
    assert "lab-w1" in message and "step 'start-runtime' failed" in message and "ROLLED BACK" in message
    # lab-w1: fully old again.
    status = lab.kubelet("lab-w1")
    assert status["mode"] == "dockershim" and status["runtime"] == "docker" and status["ready"] is True, status
    assert "--network-plugin=cni" in lab.out("lab-w1", "cat /var/lib/kubelet/kubeadm-flags.env")
    assert 'disabled_plugins = ["cri"]' in lab.out("lab-w1", "cat /etc/containerd/config.toml")
    assert lab.out("lab-w1", "systemctl is-enabled docker.service") == "enabled"
    assert lab.out("lab-w1", "systemctl is-active docker.service") == "active"
    # lab-cp1 (an earlier batch) is fully new; lab-w2 (a later batch) may have
    # been pre-staged ahead (rollout.prestageAhead) but was never switched.
    assert lab.kubelet("lab-cp1")["runtime"] == "containerd"
    assert lab.kubelet("lab-w2")["runtime"] == "docker"
    assert lab.ssh("lab-w2", "test -e /var/lib/shimless/backup", check=False).returncode != 0
    assert lab.out("lab-w2", "systemctl is-active docker.service") == "active"
    # Fault removed: the same `up` resumes and completes.
    lab.out("lab-w1", f"rm {FAULT_DROP_IN} && systemctl daemon-reload")
    result = stack.up(color="never")
    assert result.summary.result == "succeeded"
    assert all(lab.kubelet(node)["runtime"] == "containerd" for node in lab.NODES)
    assert lab.changes(stack.preview(color="never").change_summary) == {}


def test_ssh_drop_during_the_switch_converges_on_rerun(stack):
    from pulumi.automation import errors
    lab.reset()
    outcome = {}

    def run_up():
        try:
            outcome["result"] = stack.up(color="never")
        except errors.CommandError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run_up)
    thread.start()
    # Wait until lab-cp1's switch runs, then kill the sshd process of the SSH
    # session that waits for it (an ancestor of the switch's log `tail`).
    find_sshd = ("p=$(pgrep -f 'tail -n [+]1 -f --pid' | head -1); "
                 "while [ -n \"$p\" ] && [ \"$p\" != 1 ]; do "
                 "[ \"$(ps -o comm= -p \"$p\")\" = sshd ] && { echo \"$p\"; break; }; "
                 "p=$(ps -o ppid= -p \"$p\" | tr -d ' '); done")
    deadline = time.monotonic() + 300
    sshd = ""
    while time.monotonic() < deadline and not sshd:
        sshd = lab.ssh("lab-cp1", find_sshd, check=False).stdout.strip()
        time.sleep(0.5)
    assert sshd, "the switch never started on lab-cp1"
    lab.ssh("lab-cp1", f"kill -9 {sshd}", check=False)
    thread.join(timeout=900)
    assert "error" in outcome, "up should fail when its SSH session is cut"
    # The switch finished on its own; a re-run converges and completes the rollout.
    result = stack.up(color="never")
    assert result.summary.result == "succeeded"
    assert all(lab.kubelet(node)["runtime"] == "containerd" for node in lab.NODES)
    assert lab.changes(stack.preview(color="never").change_summary) == {}


def test_docker_default_oci_runtime_is_carried_and_runs_the_pods(lab_config, tmp_path):
    lab.reset("lab-w2")
    lab.install_oci_recorder("lab-w2")
    config = copy.deepcopy(lab_config)
    config["config"]["shimless:nodes"] = [n for n in config["config"]["shimless:nodes"] if n["name"] == "lab-w2"]
    stack = lab.engine_stack(lab.project_copy(tmp_path, config), tmp_path / "state")
    preview = stack.preview(color="never")
    assert f"runtime handlers: {lab.OCI_RECORDER_NAME} (default)" in preview.stdout, preview.stdout
    assert stack.up(color="never").summary.result == "succeeded"
    dump = lab.out("lab-w2", "containerd config dump")
    assert f'default_runtime_name = "{lab.OCI_RECORDER_NAME}"' in dump
    assert f'BinaryName = "{lab.OCI_RECORDER}"' in dump
    status = lab.kubelet("lab-w2")
    assert status["runtime"] == "containerd" and status["ready"] is True, status
    ids, seen = lab.through_oci_recorder("lab-w2", "unix:///run/containerd/containerd.sock")
    assert ids and seen == ids, (ids, seen)  # every pod sandbox and container went through it
    translation = stack.outputs()["nodes"].value["lab-w2"]["translation"]
    assert translation["oci_runtimes"]["default"] == lab.OCI_RECORDER_NAME
    assert lab.changes(stack.preview(color="never").change_summary) == {}

