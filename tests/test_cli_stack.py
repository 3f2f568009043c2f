"""`check-config` on stack files: exit codes and one line per problem."""
from __future__ import annotations

import pytest

from components import cli, cli_stack

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKQ"


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_example_stacks_pass(stack, capsys):
    assert cli.main(["check-config", "--stack", stack]) == 0
    assert f"stack {stack}: config valid" in capsys.readouterr().out


def test_bad_stack_file_gives_exit_2_and_one_line_per_problem(tmp_path, monkeypatch, capsys):
    (tmp_path / "Pulumi.bad.yaml").write_text(f"""config:
  shimless:nodes:
    - {{name: w1, host: 10.0.0.1, hostKey: "{HOST_KEY}", port: 0}}
    - {{name: w1, host: 10.0.0.2}}
  shimless:sshPrivateKeyPath: {tmp_path}/missing-key
  shimless:cluster: {{mode: none}}
  shimless:target: {{runtime: podman}}
""")
    monkeypatch.setattr(cli_stack, "STACKS_DIR", tmp_path)
    assert cli.main(["check-config", "--stack", "bad"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert "shimless check-config: shimless:nodes[0].port (node w1): must be between 1 and 65535, got 0" in lines
    assert "shimless check-config: shimless:nodes[1].name (node w1): duplicate node name (also nodes[0])" in lines
    assert any(line.startswith("shimless check-config: shimless:nodes[1].hostKey (node w1): is required") for line in lines)
    assert any(line.startswith("shimless check-config: shimless:target.runtime (node w1): must be one of") for line in lines)
    assert len(lines) >= 4


def test_missing_key_file_is_reported(tmp_path, monkeypatch, capsys):
    (tmp_path / "Pulumi.nokey.yaml").write_text(f"""config:
  shimless:nodes: [{{name: w1, host: 10.0.0.1, hostKey: "{HOST_KEY}"}}]
  shimless:sshPrivateKeyPath: {tmp_path}/missing-key
  shimless:cluster: {{mode: none}}
""")
    monkeypatch.setattr(cli_stack, "STACKS_DIR", tmp_path)
    assert cli.main(["check-config", "--stack", "nokey"]) == 2
    assert "shimless:sshPrivateKeyPath: cannot read" in capsys.readouterr().err


def test_unknown_stack(capsys):
    assert cli.main(["check-config", "--stack", "nope"]) == 2
    assert "no stack file" in capsys.readouterr().err
