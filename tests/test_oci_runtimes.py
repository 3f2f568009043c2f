"""Docker's extra OCI runtimes and its default runtime on containerd and CRI-O:
translated, rendered, read back by the real containerd 1.6 and 2.x (and CRI-O
when the lab has built it), resolved on the node by the probe, and blocking a
node whose pods could not get their runtime after the switch."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from components import manifest
from components.config import parse_target
from components.daemon_json import DaemonJsonError, translate_daemon_json
from components.facts import DAEMON_JSON, ORIGINAL_DAEMON_JSON, NodeFacts, parse_probe_output
from components.plan import plan_node
from components.render import containerd_config_version, render_runtime_files
from tests.conftest import docker_era_facts
from tests.test_containerd2 import VERSION as CONTAINERD2_VERSION, containerd2

ROOT = Path(__file__).resolve().parent.parent
CONTAINERD_CONFIG = "/etc/containerd/config.toml"
CRIO_CONF = "/etc/crio/crio.conf.d/20-shimless.conf"
NVIDIA = "/usr/bin/nvidia-container-runtime"
# The probe's answer for each runtime path below: found, or not on the node ("").
FOUND = {"nvidia-container-runtime": NVIDIA, "/usr/local/bin/runsc": "/usr/local/bin/runsc",
         "/opt/kata/bin/kata-runtime": "", "crun": ""}
GPU_NODE = {"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}},
            "default-runtime": "nvidia"}


def translate(daemon: dict, runtime: str = "containerd", found: dict | None = FOUND):
    return translate_daemon_json(daemon, runtime, found)


def rendered(daemon: dict, runtime: str = "containerd", version: str = "1.6.20", driver: str = "systemd",
             found: dict | None = FOUND) -> str:
    target = parse_target({"runtime": runtime, "source": "package"} if runtime == "cri-o" else {"runtime": runtime})
    files = render_runtime_files(target, containerd_version=version, cgroup_driver=driver,
                                 translation=translate(daemon, runtime, found))
    return files[CONTAINERD_CONFIG if runtime == "containerd" else CRIO_CONF]


def containerd_section(config: dict) -> dict:
    """The CRI plugin's `containerd` table (runtimes, default) of a parsed config, any version."""
    plugins = config["plugins"]
    # 2.x keeps a (server-only) io.containerd.grpc.v1.cri too: the runtime plugin wins.
    cri = plugins.get("io.containerd.cri.v1.runtime") or plugins["io.containerd.grpc.v1.cri"]
    return cri["containerd"]


# --- translation: every runtime shape ----------------------------------------


@pytest.mark.parametrize("runtime,option", [("containerd", "options.BinaryName"), ("cri-o", "runtime_path")])
def test_a_bare_name_is_carried_as_the_binary_the_node_resolved(runtime, option):
    t = translate(GPU_NODE, runtime)
    assert [(r.name, r.path, r.binary) for r in t.oci_runtimes] == [("nvidia", "nvidia-container-runtime", NVIDIA)]
    assert t.default_runtime == "nvidia" and t.blocking == ()
    carried = dict(t.carried)
    assert f"{option} = {NVIDIA}" in carried["runtimes.nvidia"]
    assert "RuntimeClass with handler: nvidia" in carried["runtimes.nvidia"]
    setting = "default_runtime_name" if runtime == "containerd" else "default_runtime"
    assert carried["default-runtime"].startswith(f"{setting} = nvidia in ")
    # Empty runtimeArgs: nothing lost, nothing to report.
    assert "runtimes.nvidia.runtimeArgs" not in dict(t.not_carried)


def test_an_absolute_path_is_carried_as_written():
    t = translate({"runtimes": {"runsc": {"path": "/usr/local/bin/runsc"}}})
    assert [(r.name, r.binary) for r in t.oci_runtimes] == [("runsc", "/usr/local/bin/runsc")]
    assert t.default_runtime is None and t.blocking == ()


@pytest.mark.parametrize("runtime,shim", [("containerd", "containerd's runc shim"), ("cri-o", "CRI-O runtime handler")])
def test_runtime_args_are_listed_as_not_carried_and_the_runtime_still_is(runtime, shim):
    t = translate({"runtimes": {"runsc": {"path": "/usr/local/bin/runsc", "runtimeArgs": ["--platform=kvm"]}}},
                  runtime)
    assert "runtimes.runsc" in dict(t.carried)
    reason = dict(t.not_carried)["runtimes.runsc.runtimeArgs"]
    assert shim in reason and "no extra arguments" in reason


@pytest.mark.parametrize("name", ["My Runtime", "NVIDIA", "gpu_runtime", "-edge", "x" * 64])
def test_a_name_that_cannot_be_a_handler_is_not_carried(name):
    t = translate({"runtimes": {name: {"path": "/usr/local/bin/runsc"}, "runsc": {"path": "/usr/local/bin/runsc"}}})
    assert [r.name for r in t.oci_runtimes] == ["runsc"]
    assert "DNS-1123 label" in dict(t.not_carried)[f"runtimes.{name}"]
    assert t.blocking == ()  # not the default: nothing pods used is lost


@pytest.mark.parametrize("name", ["My Runtime", "NVIDIA"])
def test_a_default_runtime_that_cannot_be_a_handler_blocks(name):
    t = translate({"runtimes": {name: {"path": NVIDIA}}, "default-runtime": name})
    assert t.default_runtime is None
    reason = dict(t.blocking)["default-runtime"]
    assert "DNS-1123 label" in reason and "every pod on the node" in reason


@pytest.mark.parametrize("default", [None, "runc", "io.containerd.runc.v2"])
@pytest.mark.parametrize("runtime", ["containerd", "cri-o"])
def test_runc_stays_the_default_when_docker_s_was_runc(default, runtime):
    daemon = {"runtimes": {"runsc": {"path": "/usr/local/bin/runsc"}}}
    if default:
        daemon["default-runtime"] = default
    t = translate(daemon, runtime)
    assert t.default_runtime is None and t.blocking == ()
    if default:
        assert "nothing to write" in dict(t.carried)["default-runtime"]
    text = rendered(daemon, runtime)
    assert "default_runtime" not in text
    assert t.report()["oci_runtimes"]["default"] == "runc"


def test_a_missing_binary_blocks_and_names_it():
    t = translate({"runtimes": {"kata": {"path": "/opt/kata/bin/kata-runtime"}, "crun": {"path": "crun"}}})
    blocking = dict(t.blocking)
    assert "/opt/kata/bin/kata-runtime does not exist or is not executable on the node" in blocking["runtimes.kata"]
    assert "crun is not on PATH on the node" in blocking["runtimes.crun"]


@pytest.mark.parametrize("daemon,key,reason", [
    ({"runtimes": {"gpu": {"path": "bin/gpu-runtime"}}}, "runtimes.gpu", "is relative"),
    ({"runtimes": {"gpu": {"path": "/opt/gpu/runtime"}}}, "runtimes.gpu", "was not checked on the node"),
    ({"default-runtime": "nvidia"}, "default-runtime", "'nvidia' is not one of daemon.json's runtimes"),
    ({"runtimes": {"gvisor": {"runtimeType": "io.containerd.runsc.v1"}}, "default-runtime": "gvisor"},
     "default-runtime", "containerd shim (runtimeType)"),
])
def test_what_pods_could_not_run_on_blocks(daemon, key, reason):
    assert reason in dict(translate(daemon).blocking)[key]


def test_without_a_probe_paths_are_kept_as_written_and_nothing_blocks():
    # render from files: no node was asked.
    t = translate(GPU_NODE, found=None)
    assert [r.binary for r in t.oci_runtimes] == ["nvidia-container-runtime"] and t.blocking == ()


def test_a_shim_runtime_is_not_carried_but_does_not_block_unless_default():
    t = translate({"runtimes": {"gvisor": {"runtimeType": "io.containerd.runsc.v1", "options": {}}}})
    assert "containerd shim" in dict(t.not_carried)["runtimes.gvisor"]
    assert t.oci_runtimes == () and t.blocking == ()


def test_docker_s_own_runc_name_is_not_redefined():
    t = translate({"runtimes": {"runc": {"path": "/usr/local/bin/runc"}}})
    assert t.oci_runtimes == () and "built-in runc" in dict(t.not_carried)["runtimes.runc"]


def test_every_runtime_key_is_accounted_for_once():
    daemon = {"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": ["-x"], "extra": 1},
                           "Bad Name": {"path": "/x"}, "runsc": {"path": "/usr/local/bin/runsc"}},
              "default-runtime": "nvidia"}
    t = translate(daemon)
    keys = [key for key, _ in t.carried] + [key for key, _ in t.not_carried]
    assert sorted(keys) == sorted(["runtimes.nvidia", "runtimes.nvidia.runtimeArgs", "runtimes.nvidia.extra",
                                   "runtimes.Bad Name", "runtimes.runsc", "default-runtime"])
    assert translate({"runtimes": {}}).not_carried == (("runtimes", "empty object: nothing to carry"),)


@pytest.mark.parametrize("daemon,key", [
    ({"runtimes": []}, "runtimes"),
    ({"runtimes": {"nvidia": "nvidia-container-runtime"}}, "runtimes"),
    ({"runtimes": {"nvidia": {}}}, "runtimes.nvidia.path"),
    ({"runtimes": {"nvidia": {"path": 5}}}, "runtimes.nvidia.path"),
    ({"runtimes": {"nvidia": {"path": "x", "runtimeArgs": "--debug"}}}, "runtimes.nvidia.runtimeArgs"),
    ({"default-runtime": ""}, "default-runtime"),
    ({"default-runtime": ["nvidia"]}, "default-runtime"),
])
def test_malformed_runtimes_name_the_key(daemon, key):
    with pytest.raises(DaemonJsonError, match=re.escape(key)):
        translate(daemon)


def test_the_report_says_which_handlers_and_which_default():
    report = translate({**GPU_NODE, "runtimes": {**GPU_NODE["runtimes"], "runsc": {"path": "/usr/local/bin/runsc"}}}
                       ).report()
    assert report["oci_runtimes"]["handlers"] == {"nvidia": NVIDIA, "runsc": "/usr/local/bin/runsc"}
    assert report["oci_runtimes"]["default"] == "nvidia"
    assert "RuntimeClass" in report["oci_runtimes"]["note"]
    assert "blocking" not in report
    assert json.loads(json.dumps(report)) == report
    assert "oci_runtimes" not in translate({}).report()


# --- rendering: containerd 1.x (v2), 2.0-2.2 (v3), 2.3+ (v4); CRI-O -----------


@pytest.mark.parametrize("version", ["1.6.20", "1.7.24", "2.0.4", "2.2.0", "2.3.0", CONTAINERD2_VERSION])
@pytest.mark.parametrize("driver,systemd", [("systemd", True), ("cgroupfs", False)])
def test_containerd_gets_a_runc_shim_handler_per_runtime(version, driver, systemd):
    daemon = {**GPU_NODE, "runtimes": {**GPU_NODE["runtimes"], "runsc": {"path": "/usr/local/bin/runsc"}}}
    config = tomllib.loads(rendered(daemon, version=version, driver=driver))
    assert config["version"] == containerd_config_version(version)
    containerd = containerd_section(config)
    assert containerd["default_runtime_name"] == "nvidia"
    runtimes = containerd["runtimes"]
    assert set(runtimes) == {"runc", "nvidia", "runsc"}
    for name, binary in (("nvidia", NVIDIA), ("runsc", "/usr/local/bin/runsc")):
        assert runtimes[name] == {"runtime_type": "io.containerd.runc.v2",
                                  "options": {"BinaryName": binary, "SystemdCgroup": systemd}}
    assert runtimes["runc"]["options"] == {"SystemdCgroup": systemd}


@pytest.mark.parametrize("version,plugin", [("1.6.20", "io.containerd.grpc.v1.cri"),
                                            ("2.0.4", "io.containerd.cri.v1.images"),
                                            (CONTAINERD2_VERSION, "io.containerd.cri.v1.images")])
def test_max_concurrent_downloads_goes_to_the_cri_image_settings(version, plugin):
    config = tomllib.loads(rendered({"max-concurrent-downloads": 10}, version=version))
    assert config["plugins"][plugin]["max_concurrent_downloads"] == 10
    assert "max_concurrent_downloads" not in rendered({}, version=version)


def test_crio_gets_a_handler_per_runtime_and_the_default():
    daemon = {**GPU_NODE, "runtimes": {**GPU_NODE["runtimes"], "runsc": {"path": "/usr/local/bin/runsc"}}}
    runtime = tomllib.loads(rendered(daemon, "cri-o"))["crio"]["runtime"]
    assert runtime["default_runtime"] == "nvidia"
    assert runtime["runtimes"] == {"nvidia": {"runtime_path": NVIDIA, "runtime_type": "oci"},
                                   "runsc": {"runtime_path": "/usr/local/bin/runsc", "runtime_type": "oci"}}


def test_without_runtimes_nothing_changes():
    for runtime in ("containerd", "cri-o"):
        assert "runtimes." not in rendered({}, runtime).replace("runtimes.runc", "")
        assert "default_runtime" not in rendered({}, runtime)


# --- the real binaries read it back ------------------------------------------


def _dump(binary: str | Path, tmp_path: Path, config: str) -> dict:
    config_file = tmp_path / "config.toml"
    config_file.write_text(config)
    result = subprocess.run([str(binary), "--config", str(config_file), "config", "dump"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return tomllib.loads(result.stdout)


GPU_AND_GVISOR = {**GPU_NODE, "max-concurrent-downloads": 7,
                  "runtimes": {**GPU_NODE["runtimes"],
                               "runsc": {"path": "/usr/local/bin/runsc", "runtimeArgs": ["--platform=kvm"]}}}


def _assert_handlers_survive(effective: dict, downloads_plugin: str) -> None:
    containerd = containerd_section(effective)
    assert containerd["default_runtime_name"] == "nvidia"
    for name, binary in (("nvidia", NVIDIA), ("runsc", "/usr/local/bin/runsc")):
        handler = containerd["runtimes"][name]
        assert handler["runtime_type"] == "io.containerd.runc.v2"
        assert handler["options"]["BinaryName"] == binary
        assert handler["options"]["SystemdCgroup"] is True
    assert containerd["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert effective["plugins"][downloads_plugin]["max_concurrent_downloads"] == 7


def test_containerd_1_6_reads_the_handlers_and_the_default(tmp_path):
    binary = shutil.which("containerd")
    if binary is None:
        pytest.fail("no containerd on PATH (the host's 1.6): run `make setup`")
    effective = _dump(binary, tmp_path, rendered(GPU_AND_GVISOR, version="1.6.20"))
    _assert_handlers_survive(effective, "io.containerd.grpc.v1.cri")


@pytest.mark.parametrize("version", [CONTAINERD2_VERSION, "2.2.0"])
def test_containerd_2_reads_the_handlers_and_the_default(tmp_path, version):
    # Rendered for the pinned release (config version 4, read as written) and
    # for 2.0-2.2 (version 3, which the pinned release migrates): both keep them.
    config = rendered(GPU_AND_GVISOR, version=version)
    config_file = tmp_path / "config.toml"
    config_file.write_text(config)
    result = subprocess.run([str(containerd2()), "--config", str(config_file), "config", "dump"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    if version == CONTAINERD2_VERSION:
        assert "migrated" not in result.stderr, result.stderr
    _assert_handlers_survive(tomllib.loads(result.stdout), "io.containerd.cri.v1.images")


def crio_binary() -> Path:
    """The CRI-O the lab builds (lab/crio/build.sh); optional here, so a skip, not a failure."""
    cache = Path(os.environ.get("SHIMLESS_CACHE", Path.home() / ".cache/shimless"))
    found = sorted(cache.glob("crio/v*/bin/crio"))
    if not found:
        pytest.skip("no CRI-O built by the lab under ~/.cache/shimless/crio")
    return found[-1]


def _crio_config(tmp_path: Path, drop_in: str) -> subprocess.CompletedProcess:
    (tmp_path / "crio.conf.d").mkdir()
    (tmp_path / "crio.conf.d/20-shimless.conf").write_text(drop_in)
    return subprocess.run([str(crio_binary()), "--config", "/dev/null", "--config-dir", str(tmp_path / "crio.conf.d"),
                           "config"], capture_output=True, text=True, timeout=60, check=False)


def test_crio_reads_the_handlers_and_the_default(tmp_path):
    result = _crio_config(tmp_path, rendered(GPU_AND_GVISOR, "cri-o", driver="cgroupfs"))
    assert result.returncode == 0, result.stderr
    effective = tomllib.loads(result.stdout)["crio"]["runtime"]
    assert effective["default_runtime"] == "nvidia"
    assert effective["runtimes"]["nvidia"]["runtime_path"] == NVIDIA
    assert effective["runtimes"]["runsc"]["runtime_path"] == "/usr/local/bin/runsc"
    assert effective["runtimes"]["runsc"]["runtime_type"] == "oci"


def test_crio_refuses_a_default_without_its_handler(tmp_path):
    # The check above could fail: CRI-O validates default_runtime against its handlers.
    result = _crio_config(tmp_path, '[crio.runtime]\n  default_runtime = "nvidia"\n')
    assert result.returncode != 0 and "nvidia" in result.stderr


# --- the probe resolves each runtime path on the node ------------------------


def _probe_functions() -> str:
    """probe.sh's runtime functions and its `fact`, with node-lib.sh's lookup on
    systemd's PATH, without running its main."""
    bodies = {}
    for name in ("probe.sh", "node-lib.sh"):
        text = (ROOT / "components/scripts" / name).read_text()
        bodies |= {match.group(1): match.group(0)
                   for match in re.finditer(r"^(\w+)\(\) \{(?:[^\n]*\}$|(?s:\n.*?)^\})", text, re.M)}
    default = re.search(r"^SYSTEMD_DEFAULT_PATH=.*$", (ROOT / "components/scripts/node-lib.sh").read_text(), re.M)
    return "\n".join([default.group(0)] + [bodies[name] for name in (
        "fact", "oci_runtime_facts", "daemon_json_runtime_paths", "systemd_path", "systemd_which")])


def test_the_probe_reports_each_runtime_path_and_what_the_node_has_for_it(tmp_path):
    spaced = tmp_path / "my runtime"
    # The shell's PATH holds the tools the probe uses and a decoy runtime that
    # dockerd, on systemd's PATH, would not have found.
    shell_bin = tmp_path / "bin"
    shell_bin.mkdir()
    for tool in ("grep", "sed", "sort", "tr"):
        (shell_bin / tool).symlink_to(shutil.which(tool))
    for executable in (spaced, shell_bin / "decoy-runtime"):
        executable.write_text("#!/bin/sh\n")
        executable.chmod(0o755)
    daemon = tmp_path / "daemon.json"
    # Pretty and minified, an escaped slash, a missing binary, bare names.
    daemon.write_text('{"runtimes": {"wrap": {"path": "sh", "runtimeArgs": []}, "true": {"path": "\\/bin\\/true"},\n'
                      f' "gone": {{\n   "path": "/opt/none/runsc"\n }}, "spaced": {{"path": "{spaced}"}},\n'
                      ' "decoy": {"path": "decoy-runtime"}}, "default-runtime": "wrap"}\n')
    original = tmp_path / "original.json"
    original.write_text(json.dumps({"runtimes": {"wrap": {"path": "sh"}}}))
    script = f"set -euo pipefail\n{_probe_functions()}\noci_runtime_facts {daemon} {original} {tmp_path}/absent\n"
    result = subprocess.run([shutil.which("bash") or "/bin/bash", "-c", script], capture_output=True, text=True,
                            timeout=30, env={"PATH": str(shell_bin)}, check=False)
    assert result.returncode == 0, result.stderr
    facts = parse_probe_output("fact os.id debian\n" + result.stdout)
    sh = facts.runtime_paths.get("sh")
    assert sh in ("/usr/bin/sh", "/bin/sh"), result.stdout
    assert facts.runtime_paths == {"sh": sh, "/bin/true": "/bin/true", "/opt/none/runsc": "",
                                   str(spaced): str(spaced), "decoy-runtime": ""}


def test_the_probe_reads_both_daemon_json_files_facts_py_knows():
    # probe.sh reads the daemon.json files the manifest names, which facts.py reads too.
    assert f"DAEMON_JSONS='{DAEMON_JSON} {ORIGINAL_DAEMON_JSON}'\n" in manifest.shell()
    assert 'for path in $DAEMON_JSONS; do' in (ROOT / "components/scripts/probe.sh").read_text()


def test_runtime_paths_from_probe_facts():
    facts = NodeFacts(facts={"ociruntime.1.path": "nvidia-container-runtime", "ociruntime.1.found": NVIDIA,
                             "ociruntime.2.path": "/opt/kata/bin/kata-runtime", "ociruntime.2.found": "",
                             "ociruntime.3.path": ""})
    assert facts.runtime_paths == {"nvidia-container-runtime": NVIDIA, "/opt/kata/bin/kata-runtime": ""}
    assert NodeFacts(facts={}).runtime_paths == {}


# --- the plan: blocked before anything runs, or told in preview --------------


def _gpu_node_facts(found: str, daemon: dict = GPU_NODE) -> NodeFacts:
    base = docker_era_facts()
    return NodeFacts(facts={**base.facts, "ociruntime.1.path": "nvidia-container-runtime", "ociruntime.1.found": found},
                     files={**base.files, DAEMON_JSON: json.dumps({**json.loads(base.files[DAEMON_JSON]), **daemon})})


def test_a_gpu_node_is_migrated_with_its_default_runtime_and_preview_says_so(node):
    plan = plan_node(node, _gpu_node_facts(NVIDIA))
    assert plan.action == "migrate"
    containerd = containerd_section(tomllib.loads(plan.files[CONTAINERD_CONFIG]))
    assert containerd["default_runtime_name"] == "nvidia"
    assert containerd["runtimes"]["nvidia"]["options"]["BinaryName"] == NVIDIA
    assert plan.translation["oci_runtimes"]["default"] == "nvidia"
    summary = [w for w in plan.warnings if w.startswith("OCI runtimes from daemon.json")]
    assert summary == ["OCI runtimes from daemon.json carried as containerd runtime handlers: nvidia (default); "
                       "a pod that needs a runtime other than the default selects it with a RuntimeClass whose "
                       "handler is the runtime's name"]


def test_a_node_without_its_runtime_binary_is_blocked(node):
    plan = plan_node(node, _gpu_node_facts(""))
    assert plan.action == "blocked" and plan.files == {}
    assert plan.reason == ("/etc/docker/daemon.json: runtimes.nvidia: nvidia-container-runtime is not on PATH on "
                           "the node; pods that need this runtime could not start")


def test_a_node_whose_default_runtime_cannot_be_a_handler_is_blocked(node):
    daemon = {"runtimes": {"Nvidia GPU": {"path": "nvidia-container-runtime"}}, "default-runtime": "Nvidia GPU"}
    plan = plan_node(node, _gpu_node_facts(NVIDIA, daemon))
    assert plan.action == "blocked"
    assert plan.reason.startswith("/etc/docker/daemon.json: default-runtime: 'Nvidia GPU' cannot be a runtime "
                                  "handler name")


def test_a_binary_path_with_spaces_and_quotes_is_toml_escaped():
    path = '/opt/gpu tools/"nv" runtime'
    daemon = {"runtimes": {"nvidia": {"path": path}}, "default-runtime": "nvidia"}
    for runtime in ("containerd", "cri-o"):
        text = rendered(daemon, runtime, found={path: path})
        config = tomllib.loads(text)
        if runtime == "containerd":
            assert containerd_section(config)["runtimes"]["nvidia"]["options"]["BinaryName"] == path
        else:
            assert config["crio"]["runtime"]["runtimes"]["nvidia"]["runtime_path"] == path
