"""`render` on bad input files: one line per problem naming the option and the
file, no traceback, and --out written completely or not at all."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from components import cli

REPO = Path(__file__).resolve().parent.parent
FLAGS = 'KUBELET_KUBEADM_ARGS="--network-plugin=cni"\n'
CONFIG = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n"


def render_args(tmp_path: Path, daemon: str | None = None, config: str | bytes = CONFIG,
                flags: str | bytes = FLAGS, *extra: str) -> list[str]:
    inputs = {"kubeadm-flags.env": flags, "config.yaml": config}
    if daemon is not None:
        inputs["daemon.json"] = daemon
    for name, content in inputs.items():
        path = tmp_path / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    args = ["render", "--runtime", "containerd", "--kubelet-version", "v1.23.17",
            "--kubelet-flags", str(tmp_path / "kubeadm-flags.env"),
            "--kubelet-config", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "out"), *extra]
    if daemon is not None:
        args += ["--daemon-json", str(tmp_path / "daemon.json")]
    return args


BAD_INPUTS = {
    "max-file superscript two": ({"daemon": '{"log-opts": {"max-file": "\\u00b2"}}'},
                                 "--daemon-json {d}/daemon.json: daemon.json: 'log-opts.max-file' must be a positive integer"),
    "daemon.json 2000 deep": ({"daemon": "[" * 2000 + "]" * 2000},
                              "--daemon-json {d}/daemon.json: daemon.json: nested more than 32 levels deep"),
    "daemon.json 900 deep": ({"daemon": '{"x": ' + "[" * 900 + "]" * 900 + "}"},
                             "--daemon-json {d}/daemon.json: daemon.json: nested more than 32 levels deep"),
    "lone surrogate": ({"daemon": '{"proxies": {"http-proxy": "http://p\\udc80:3128"}}'},
                       "--daemon-json {d}/daemon.json: daemon.json: a lone surrogate"),
    "kubelet config alias bomb": ({"config": "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{n}: &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n" for p, n in zip("abcdefgh", "bcdefghi"))},
                                  "--kubelet-config {d}/config.yaml: kubelet config: the YAML at line"),
    "kubelet config deep": ({"config": "a: " + "[" * 3000 + "]" * 3000 + "\n"},
                            "--kubelet-config {d}/config.yaml: kubelet config: invalid YAML: nested more than"),
    "flags not UTF-8": ({"flags": b'KUBELET_KUBEADM_ARGS="--node-labels=caf\xe9"\n'},
                        "--kubelet-flags {d}/kubeadm-flags.env: cannot read: 'utf-8' codec can't decode byte 0xe9"),
    "pause image with a newline": ({"extra": ("--pause-image", "registry.k8s.io/pause:3.9\n")},
                                   "--pause-image: is not an image reference"),
    "containerd version injecting TOML": ({"extra": ("--containerd-version", "1.7.24\nversion = 99")},
                                          "--containerd-version: '1.7.24\\nversion = 99' is not a containerd version"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_writes_nothing(case, tmp_path, capsys):
    given, expected = BAD_INPUTS[case]
    args = render_args(tmp_path, given.get("daemon"), given.get("config", CONFIG), given.get("flags", FLAGS),
                       *given.get("extra", ()))
    assert cli.main(args) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("shimless render: " + expected.format(d=tmp_path)), lines
    assert not (tmp_path / "out").exists()


def test_module_entry_point_on_deep_daemon_json_has_no_traceback(tmp_path):
    args = render_args(tmp_path, "[" * 100_000 + "]" * 100_000)
    done = subprocess.run([sys.executable, "-m", "components.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "nested more than 32 levels deep" in done.stderr


def test_a_failed_write_leaves_no_partial_output(tmp_path, monkeypatch, capsys):
    real_open, opened = open, []

    def failing_open(path, *args, **kwargs):
        opened.append(path)
        if len(opened) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(cli, "open", failing_open, raising=False)
    assert cli.main(render_args(tmp_path)) == 2
    assert capsys.readouterr().err == f"shimless render: --out {tmp_path}/out: cannot write: No space left on device\n"
    assert len(opened) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "kubeadm-flags.env"]  # no out, no temp dir


def test_an_earlier_output_is_replaced_whole_and_other_directories_are_refused(tmp_path, capsys):
    assert cli.main(render_args(tmp_path)) == 0
    out = tmp_path / "out"
    (out / "etc" / "stale.conf").write_text("from an earlier render\n")
    assert cli.main(render_args(tmp_path)) == 0
    assert not (out / "etc" / "stale.conf").exists() and (out / "translation-report.json").is_file()
    assert oct(out.stat().st_mode & 0o777) == "0o755"
    other = tmp_path / "home"
    other.mkdir()
    (other / "notes.txt").write_text("mine\n")
    args = render_args(tmp_path)
    args[args.index("--out") + 1] = str(other)
    capsys.readouterr()
    assert cli.main(args) == 2
    assert "not empty and not an earlier render's output" in capsys.readouterr().err
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
