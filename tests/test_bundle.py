"""components/bundle.py: the stdin of every node-side step."""
from __future__ import annotations

import base64
import gzip

from components.bundle import REMOTE_COMMAND, bundle, bundle_line, holds_credentials, script
from components.daemon_json import PROXY_DROP_INS


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
    assert files == {
        "switch.sh": script("switch.sh"), "node-lib.sh": script("node-lib.sh"),
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
