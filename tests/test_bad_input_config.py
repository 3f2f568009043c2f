"""Stack config that check-config used to call valid: each value is refused by
the one validator check-config, preview and render share, in one line naming
the stack key and node. And ssh's argv keeps its options out of reach."""
from __future__ import annotations

import resource
import time

import pytest

from components import cli, cli_stack
from components.config import ConfigError, parse_settings
from components.model import Bastion
from components.ssh import ssh_argv
from tests.conftest import HOST_KEY, docker_era_facts

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n-----END OPENSSH PRIVATE KEY-----\n"


def stack_file(tmp_path, monkeypatch, body: str, name: str = "bad") -> str:
    (tmp_path / f"Pulumi.{name}.yaml").write_text(body)
    monkeypatch.setattr(cli_stack, "STACKS_DIR", tmp_path)
    return name


def check_config_lines(tmp_path, monkeypatch, capsys, body: str) -> list[str]:
    code = cli.main(["check-config", "--stack", stack_file(tmp_path, monkeypatch, body)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2, lines
    return lines


def base(nodes: str, extra: str = "") -> str:
    return f"""config:
  shimless:nodes:
{nodes}
  shimless:sshPrivateKey: {{secure: v1:abc}}
  shimless:cluster: {{mode: none}}
{extra}"""


NODE = f'    - {{name: w1, host: 10.0.0.1, hostKey: "{HOST_KEY}"'
BAD_VALUES = {
    "user is an ssh option": (NODE + ', user: "-oProxyCommand=touch /tmp/pwned"}', "",
                              "shimless:nodes[0].user (node w1): is not a user name"),
    "sshUser is an ssh option": (NODE + "}", '  shimless:sshUser: "-F/tmp/evil"',
                                 "shimless:sshUser: is not a user name"),
    "bastion user": (NODE + ', bastion: {host: b.example, hostKey: "' + HOST_KEY + '", user: "-x"}}', "",
                     "shimless:nodes[0].bastion.user (node w1): is not a user name"),
    "name with a trailing newline": ('    - {name: "w1\\n", host: 10.0.0.1, hostKey: "' + HOST_KEY + '"}', "",
                                     "shimless:nodes[0].name (node 'w1\\n'): is not a valid Kubernetes node name"),
    "host with a trailing newline": (f'    - {{name: w1, host: "h.example\\n", hostKey: "{HOST_KEY}"}}', "",
                                     "shimless:nodes[0].host (node w1): is not an IP address or host name"),
    "pauseImage with a trailing newline": (NODE + "}", '  shimless:target: {pauseImage: "registry.k8s.io/pause:3.9\\n"}',
                                           "shimless:target.pauseImage (node w1): is not an image reference"),
    "version with a trailing newline": (NODE + "}", '  shimless:target: {version: "1.7.24\\n"}',
                                        "shimless:target.version (node w1): is not a version"),
    "containerd 1.4 as target": (NODE + "}", '  shimless:target: {version: "1.4.13"}',
                                 "shimless:target.version (node w1): containerd 1.4.13 is too old"),
    "registry key with a trailing newline": (NODE + "}",
                                             '  shimless:target: {registryMirrors: {"docker.io\\n": [https://m.example]}}',
                                             "is not a registry host[:port]: 'docker.io\\n'"),
    "mirror URL with a space": (NODE + "}", '  shimless:target: {registryMirrors: {docker.io: ["https://m.example evil"]}}',
                                "shimless:target.registryMirrors.docker.io (node w1): is not an http(s) URL"),
    "mirror URL with credentials": (NODE + "}", '  shimless:target: {registryMirrors: {docker.io: ["https://u:pw@m.example"]}}',
                                    "must not carry credentials"),
    "mirror URL with a query": (NODE + "}", '  shimless:target: {registryMirrors: {docker.io: ["https://m.example/?x=1"]}}',
                                "is not an http(s) URL"),
    "insecure registry ..": (NODE + "}", '  shimless:target: {insecureRegistries: [".."]}',
                             "shimless:target.insecureRegistries (node w1): is not a registry host[:port]: '..'"),
    "insecure registry -": (NODE + "}", '  shimless:target: {insecureRegistries: ["-"]}',
                            "shimless:target.insecureRegistries (node w1): is not a registry host[:port]: '-'"),
    "plain per-node privateKey": (NODE + ", privateKey: plain-key-text}", "",
                                  "shimless:nodes[0].privateKey (node w1): is stored in plain text"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_check_config_refuses_in_one_line(case, tmp_path, monkeypatch, capsys):
    nodes, extra, expected = BAD_VALUES[case]
    lines = check_config_lines(tmp_path, monkeypatch, capsys, base(nodes, extra))
    joined = "\n".join(lines)
    assert all(line.startswith("shimless check-config: shimless:") for line in lines), lines
    assert any(expected in line for line in lines), lines
    if case == "mirror URL with credentials":
        assert "pw" not in joined  # the credential itself is never echoed


def test_plain_secrets_are_refused_by_check_config_as_by_preview(tmp_path, monkeypatch, capsys):
    lines = check_config_lines(tmp_path, monkeypatch, capsys, f"""config:
  shimless:nodes: [{{name: w1, host: 10.0.0.1, hostKey: "{HOST_KEY}"}}]
  shimless:sshPrivateKey: plain
  shimless:kubeconfig: "apiVersion: v1"
""")
    assert lines == [
        "shimless check-config: shimless:sshPrivateKey: is stored in plain text in the stack file; "
        "set it with `pulumi config set --secret sshPrivateKey`",
        "shimless check-config: shimless:kubeconfig: is stored in plain text in the stack file; "
        "set it with `pulumi config set --secret kubeconfig`",
    ]
    # The program passes the keys Pulumi holds as secrets: the same validator, the same words.
    raw = {"nodes": [{"name": "w1", "host": "10.0.0.1", "hostKey": HOST_KEY, "privateKey": KEY}],
           "cluster": {"mode": "none"}}
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, encrypted=set())
    assert info.value.problems == [
        "shimless:nodes[0].privateKey (node w1): is stored in plain text in the stack file; "
        "set it with `pulumi config set --secret --path 'nodes[0].privateKey' < KEYFILE`"]
    assert parse_settings(raw, encrypted={"nodes"}).nodes[0].has_own_private_key


def test_secure_per_node_private_key_is_accepted(tmp_path, monkeypatch, capsys):
    name = stack_file(tmp_path, monkeypatch, f"""config:
  shimless:nodes: [{{name: w1, host: 10.0.0.1, hostKey: "{HOST_KEY}", privateKey: {{secure: v1:abc}}}}]
  shimless:cluster: {{mode: none}}
""")
    assert cli.main(["check-config", "--stack", name]) == 0, capsys.readouterr().err


BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{n}: &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n" for p, n in zip("abcdefgh", "bcdefghi"))


def test_yaml_alias_bomb_is_refused_quickly_without_memory(tmp_path, monkeypatch, capsys):
    body = "config:\n  shimless:nodes:\n    - " + BOMB.replace("\n", "\n      ").rstrip() + "\n"
    assert len(body.encode()) < 600  # a few hundred bytes standing for 9**9 values
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    lines = check_config_lines(tmp_path, monkeypatch, capsys, body)
    assert time.monotonic() - started < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB
    assert len(lines) == 1 and "Pulumi.bad.yaml: the YAML at line" in lines[0]
    assert "expands to more than 100000 values" in lines[0]


@pytest.mark.parametrize("body, expected", [
    ("config:\n  shimless:nodes: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 64 levels"),
    ('config:\n  shimless:sshUser: "\\ud800"\n', "lone surrogate"),
    ("config: &a\n  x: *a\n", "refers to itself"),
    ("config:\n  shimless:nodes: [\n", "invalid YAML"),
    ("config: [1, 2]\n", "`config:` must be a mapping"),
])
def test_unreadable_stack_files_give_one_line(body, expected, tmp_path, monkeypatch, capsys):
    lines = check_config_lines(tmp_path, monkeypatch, capsys, body)
    assert len(lines) == 1 and lines[0].startswith("shimless check-config: Pulumi.bad.yaml: ")
    assert expected in lines[0]


def test_ssh_argv_ignores_ssh_config_and_ends_options_before_each_destination(node):
    argv = ssh_argv(node, "/k", "/kh")
    assert argv[1:3] == ["-F", "/dev/null"]
    assert argv[-3:-1] == ["--", "root@10.0.0.1"]


def test_each_hop_is_checked_exactly_when_pinned_in_the_probe_as_in_the_steps(node):
    from dataclasses import replace
    jumped = replace(node, bastion=Bastion("jump.example", 2222, "ops", ""))
    argv = ssh_argv(jumped, "/k", "/kh")
    proxy = next(a for a in argv if a.startswith("ProxyCommand="))
    assert "StrictHostKeyChecking=no" in proxy and "-F /dev/null" in proxy and "-- ops@jump.example" in proxy
    assert "StrictHostKeyChecking=yes" in argv  # the node itself stays pinned
    unpinned_node = replace(node, host_key="", bastion=Bastion("jump.example", 22, "ops", HOST_KEY))
    argv = ssh_argv(unpinned_node, "/k", "/kh")
    proxy = next(a for a in argv if a.startswith("ProxyCommand="))
    assert "StrictHostKeyChecking=yes" in proxy and "StrictHostKeyChecking=no" in argv


def test_preview_warns_once_per_unpinned_host(pulumi_mocks, monkeypatch):
    import pulumi
    from components.program import build, unpinned_hosts
    from components.ssh import ProbeResult
    bastion = {"host": "jump.example"}
    settings = parse_settings({
        "nodes": [{"name": "w1", "host": "10.0.0.1", "bastion": bastion},
                  {"name": "w2", "host": "10.0.0.2", "hostKey": HOST_KEY, "bastion": bastion}],
        "sshPrivateKey": "k", "cluster": {"mode": "none"}, "allowUnpinnedHostKeys": True})
    assert unpinned_hosts(settings) == {"10.0.0.1:22": ["node w1"],
                                        "jump.example:22": ["bastion of w1", "bastion of w2"]}
    warnings = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: warnings.append(message))
    results = {n.name: ProbeResult(n.name, docker_era_facts()) for n in settings.nodes}
    pulumi.runtime.test(lambda: build(settings, {"w1": "k", "w2": "k"}, results, None, {}))()
    unpinned = [w for w in warnings if "is not pinned" in w]
    assert len(unpinned) == 2
    assert unpinned[1].startswith("SSH host key of jump.example:22 (bastion of w1, bastion of w2) is not pinned")
