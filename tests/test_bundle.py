"""components/bundle.py: the stdin of every node-side step."""
from __future__ import annotations

import base64
import gzip
import re

from components.bundle import REMOTE_COMMAND, bundle, bundle_line, holds_credentials, probe_script, script
from components.daemon_json import PROXY_DROP_INS
from components.facts import PROBED_UNITS, source_units


def unpack(stdin: str) -> tuple[dict[str, str], list[str]]:
    """The bundle's files by name (as scripts/entry.sh unpacks them) and its step lines."""
    launcher = script("entry.sh")
    assert stdin.startswith(launcher)
    files, steps = {}, []
    for line in stdin[len(launcher):].splitlines():
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
    sockets = files.pop("var/cri_sockets")
    assert files == {
        "switch.sh": script("switch.sh"), "node-lib.sh": script("node-lib.sh"),
        "var/health_timeout": "300", "var/runtime": "containerd",
        "var/source_units": "docker.socket docker.service cri-docker.socket cri-docker.service crio.service",
        "root/etc/containerd/config.toml": "version = 2\n", "root/etc/crictl.yaml": "timeout: 10\n",
    }
    assert "/run/containerd/containerd.sock containerd.service\n" in sockets
    assert "/run/cri-dockerd.sock cri-docker.socket cri-docker.service\n" in sockets
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


def test_every_step_that_names_the_runtime_gets_the_units_decided_in_python():
    for step in ("switch.sh", "preflight.sh", "rollback.sh", "cleanup.sh"):
        files, _ = unpack(bundle(step, {"runtime": "cri-o"}))
        assert files["var/source_units"].split() == list(source_units("cri-o"))
    # The scripts read the list from the bundle and keep no copy of their own.
    for name in ("switch.sh", "cleanup.sh", "node-lib.sh", "probe.sh"):
        assert not re.search(r"docker\.socket|cri-docker\.(socket|service)", script(name)), name


def test_the_probe_is_told_which_units_to_report_and_gets_the_shared_image_selection():
    first, second, rest = probe_script("registry.k8s.io/pause:3.9").split("\n", 2)
    assert first == f"PROBE_UNITS='{' '.join(PROBED_UNITS)}'"
    assert second == "PROBE_PAUSE_IMAGE=registry.k8s.io/pause:3.9"
    assert rest == script("node-lib.sh") + script("probe.sh")
