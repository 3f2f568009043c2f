"""components/bundle.py: the stdin of every node-side step."""
from __future__ import annotations

import base64
import gzip
import subprocess
import pytest

from components import manifest
from components.bundle import (
    REMOTE_COMMAND, bundle, bundle_line, holds_credentials, launcher, probe_script, script,
)
from components.daemon_json import PROXY_DROP_INS
from components.model import CRI_ENDPOINTS

SCRIPTS = ("switch.sh", "cleanup.sh", "rollback.sh", "prestage.sh", "preflight.sh", "probe.sh", "node-lib.sh",
           "entry.sh")


def unpack(stdin: str) -> tuple[dict[str, str], list[str]]:
    """The bundle's files by name (as scripts/entry.sh unpacks them) and its step lines."""
    assert stdin.startswith(launcher())
    files, steps = {}, []
    for line in stdin[len(launcher()):].splitlines():
        kind, name, data = line.split(" ")
        if kind == "file":
            files[name] = gzip.decompress(base64.b64decode(data)).decode()
        else:
            assert (kind, data) == ("step", "-")
            steps.append(name)
    return files, steps


def test_a_bundle_carries_the_step_its_library_variables_and_files():
    stdin = bundle("switch.sh", {"runtime": "containerd", "health_timeout": 300},
                   {"/etc/crictl.yaml": "timeout: 10\n", "/etc/containerd/config.toml": "version = 2\n"})
    files, steps = unpack(stdin)
    assert steps == ["switch.sh"]
    assert files == {
        "switch.sh": script("switch.sh"), "node-lib.sh": script("node-lib.sh"),
        "manifest.sh": manifest.shell("containerd"),
        "var/health_timeout": "300", "var/runtime": "containerd",
        "root/etc/containerd/config.toml": "version = 2\n", "root/etc/crictl.yaml": "timeout: 10\n",
    }
    # entry.sh refuses absolute and ".." names: every name here is relative.
    assert not any(name.startswith("/") or ".." in name for name in files)


def test_the_same_input_gives_the_same_bytes():
    # Bundles are command inputs: a byte that changed would show as a change in preview.
    first = bundle("cleanup.sh", {"docker_policy": "keep"}, None)
    assert first == bundle("cleanup.sh", {"docker_policy": "keep"}, None)
    assert bundle_line("file", "var/x", "a") == bundle_line("file", "var/x", "a")
    assert first != bundle("cleanup.sh", {"docker_policy": "purge"}, None)


def test_only_proxy_drop_ins_count_as_credentials():
    assert not holds_credentials(None) and not holds_credentials({"/etc/crictl.yaml": "x"})
    assert all(holds_credentials({path: "x"}) for path in PROXY_DROP_INS.values())


def test_the_remote_command_runs_bash_as_root_or_through_sudo():
    assert REMOTE_COMMAND.startswith('if [ "$(id -u)" -eq 0 ]; then exec bash -s;')
    assert "sudo -n bash -s" in REMOTE_COMMAND


def test_every_bundle_carries_the_manifest_for_its_runtime():
    for step in ("switch.sh", "preflight.sh", "prestage.sh", "rollback.sh", "cleanup.sh"):
        files, _ = unpack(bundle(step, {"runtime": "cri-o"}))
        assert files["manifest.sh"] == manifest.shell("cri-o"), step
    # Without a runtime: what does not depend on it.
    files, _ = unpack(bundle("cleanup.sh", {"docker_policy": "keep"}))
    assert files["manifest.sh"] == manifest.shell()
    assert "SOURCE_UNITS=" not in files["manifest.sh"] and "SHIMLESS_STATE=" in files["manifest.sh"]


def test_the_launcher_unpacks_where_the_manifest_says():
    assert launcher().splitlines()[0] == f"SHIMLESS_RUN={manifest.RUN_DIR}"
    assert "/var/lib" not in script("entry.sh")


@pytest.mark.parametrize("name", SCRIPTS)
def test_no_script_keeps_a_copy_of_the_manifest(name):
    text = "\n".join(line for line in script(name).splitlines() if not line.lstrip().startswith("#"))
    for unit in (*manifest.PROBED_UNITS, manifest.RECOVERY_UNIT, manifest.RECOVERY_VERIFY_UNIT):
        assert unit not in text, (name, unit)
    for path in (manifest.STATE_DIR, *manifest.READ_PATHS, *manifest.KNOWN_CRI_SOCKETS,
                 *(path for paths in manifest.MANAGED_PATHS.values() for path in paths),
                 manifest.RECOVERY_UNIT_DIR, manifest.CRI_DOCKERD_ENDPOINT, *CRI_ENDPOINTS.values()):
        assert path not in text, (name, path)


def test_the_probe_gets_the_manifest_its_target_and_sandbox_image_and_the_shared_image_selection():
    text = probe_script("registry.k8s.io/pause:3.9", "cri-o")
    assert text == (manifest.shell() + "PROBE_PAUSE_IMAGE=registry.k8s.io/pause:3.9\nPROBE_RUNTIME=cri-o\n"
                    + script("node-lib.sh") + script("probe.sh"))


def test_a_step_runs_from_its_bundle_through_the_launcher(tmp_path):
    # The launcher as the node gets it, unpacking into a test directory instead of the manifest's.
    bin_dir, run_dir = tmp_path / "bin", tmp_path / "run"
    bin_dir.mkdir()
    for name, text in (("systemctl", '#!/bin/sh\n[ "$1" = cat ] && exit 0\n[ "$1" = is-enabled ] && echo disabled\n'
                                     'exit 3\n'),
                       ("kubelet", "#!/bin/sh\necho Kubernetes v1.23.17\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    stdin = bundle("preflight.sh", {"node": "w1", "runtime": "containerd", "kubelet_version": "v1.23.17"})
    stdin = stdin.replace(launcher().splitlines()[0], f"SHIMLESS_RUN={run_dir}", 1)
    done = subprocess.run(["bash", "-s"], input=stdin, capture_output=True, text=True, timeout=30, check=False,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "action=switch\n"  # containerd is not enabled: the node needs the switch
    assert list(run_dir.iterdir()) == []  # the unpacked bundle is gone
