"""components/ssh.py: ssh's argv, the pinned known_hosts, and how failures are told apart."""
from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import replace

import pytest

from components import ssh
from components.bundle import REMOTE_COMMAND
from components.model import Bastion
from tests.conftest import HOST_KEY


def option(argv: list[str], name: str) -> str:
    """The value of `-o name=value` in argv."""
    values = [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"{name}=")]
    assert len(values) == 1, (name, argv)
    return values[0]


def test_direct_node_argv(node):
    argv = ssh.ssh_argv(replace(node, port=2222, user="admin"), "/k", "/kh")
    assert argv[:3] == ["ssh", "-F", "/dev/null"]
    assert argv[-3:] == ["--", "admin@10.0.0.1", REMOTE_COMMAND]
    assert option(argv, "StrictHostKeyChecking") == "yes" and option(argv, "UserKnownHostsFile") == "/kh"
    assert option(argv, "GlobalKnownHostsFile") == "/dev/null" and option(argv, "BatchMode") == "yes"
    assert argv[argv.index("-i") + 1] == "/k" and argv[argv.index("-p") + 1] == "2222"
    assert not any(arg.startswith("ProxyCommand=") for arg in argv)


def test_unpinned_node_is_not_checked(node):
    assert option(ssh.ssh_argv(replace(node, host_key=""), "/k", "/kh"), "StrictHostKeyChecking") == "no"


def test_bastion_is_a_pinned_proxy_command(node):
    jumped = replace(node, bastion=Bastion("jump.example", 2200, "ops", HOST_KEY))
    jump = shlex.split(option(ssh.ssh_argv(jumped, "/k", "/kh"), "ProxyCommand"))
    assert jump[0] == "ssh" and jump[-4:] == ["-W", "%h:%p", "--", "ops@jump.example"]
    assert option(jump, "StrictHostKeyChecking") == "yes" and jump[jump.index("-p") + 1] == "2200"
    unpinned = replace(node, bastion=Bastion("jump.example", 22, "ops", ""))
    assert option(shlex.split(option(ssh.ssh_argv(unpinned, "/k", "/kh"), "ProxyCommand")),
                  "StrictHostKeyChecking") == "no"


def test_run_over_ssh_writes_a_private_key_and_the_pinned_hosts_only_for_the_call(node, monkeypatch):
    seen = {}

    def fake_run(argv, **kwargs):
        key_file, known_hosts = argv[argv.index("-i") + 1], option(argv, "UserKnownHostsFile")
        seen.update(key=open(key_file).read(), mode=os.stat(key_file).st_mode & 0o777,
                    known=open(known_hosts).read(), files=(key_file, known_hosts), stdin=kwargs["input"])
        return subprocess.CompletedProcess(argv, 0, "out", "")

    monkeypatch.setattr(ssh.subprocess, "run", fake_run)
    jumped = replace(node, port=2222, bastion=Bastion("jump.example", 22, "ops", HOST_KEY))
    assert ssh.run_over_ssh(jumped, "KEY", "stdin", timeout=5).stdout == "out"
    assert seen["key"] == "KEY\n" and seen["mode"] == 0o600 and seen["stdin"] == "stdin"
    assert seen["known"] == f"[10.0.0.1]:2222 {HOST_KEY}\njump.example {HOST_KEY}\n"
    assert not any(os.path.exists(path) for path in seen["files"])


@pytest.mark.parametrize("stderr, fatal, fragment", [
    ("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\n", True, "differs from the pinned hostKey"),
    ("Host key verification failed.\n", True, "differs from the pinned hostKey"),
    ("root@10.0.0.1: Permission denied (publickey).\n", True, "the SSH key was refused for user root"),
    ("ssh: connect to host 10.0.0.1 port 22: Connection refused\n", False, "Connection refused"),
])
def test_probe_failures_are_told_apart(node, monkeypatch, stderr, fatal, fragment):
    monkeypatch.setattr(ssh, "run_over_ssh", lambda *a, **k: subprocess.CompletedProcess([], 255, "", stderr))
    result = ssh.probe_node(node, "KEY")
    assert result.facts is None and result.fatal is fatal and fragment in result.error
    assert result.error.startswith("ssh root@10.0.0.1:22")


def test_probe_timeout_and_unreadable_output(node, monkeypatch):
    def timeout(*args, **kwargs):
        raise subprocess.TimeoutExpired("ssh", 60)
    monkeypatch.setattr(ssh, "run_over_ssh", timeout)
    assert "timed out after 60s" in ssh.probe_node(node, "KEY").error
    monkeypatch.setattr(ssh, "run_over_ssh", lambda *a, **k: subprocess.CompletedProcess([], 0, "garbage\n", ""))
    result = ssh.probe_node(node, "KEY")
    assert not result.fatal and result.error.startswith("probe output unreadable")


def test_probe_nodes_answers_for_every_node(node, monkeypatch):
    nodes = [replace(node, name=f"w{i}", host=f"10.0.0.{i}") for i in range(1, 6)]
    output = "fact os.id debian\n"
    monkeypatch.setattr(ssh, "run_over_ssh", lambda n, *a, **k: subprocess.CompletedProcess(
        [], 0 if n.name != "w3" else 255, output, "down\n"))
    results = ssh.probe_nodes(nodes, {n.name: "KEY" for n in nodes}, max_parallel=2)
    assert sorted(results) == ["w1", "w2", "w3", "w4", "w5"]
    assert results["w3"].facts is None and results["w1"].facts.get("os.id") == "debian"
