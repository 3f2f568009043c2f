"""containerd.service runs the containerd pre-stage validates (components/runtime_unit.py):
a managed drop-in when the unit's own ExecStart names another binary, as on a
Docker node with Docker's containerd 1.6 in /usr/bin and containerd 2.x first
on systemd's PATH; nothing when it already runs it."""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from components import manifest, runtime_unit
from components.bundle import probe_script
from components.config import parse_target
from components.desired import desired_state
from components.facts import NodeFacts, parse_probe_output
from components.manifest import CONTAINERD_BINARY_DROP_IN
from components.plan import plan_node
from components.runtime_unit import binary_drop_in, exec_start, parse_exec_command
from tests.conftest import ROOT, docker_era_facts

SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEBIAN_UNIT_PATH = "/lib/systemd/system/containerd.service"
# Debian's containerd 1.6 unit (what Docker's containerd runs under on the lab's nodes), abridged.
DEBIAN_UNIT = """# Copyright The containerd Authors.
[Unit]
Description=containerd container runtime
After=network.target local-fs.target

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/bin/containerd

Type=notify
Delegate=yes
KillMode=process

[Install]
WantedBy=multi-user.target
"""
# containerd 2.4.2 installed beside Docker's: the release in /opt, containerd and ctr linked into /usr/local/bin.
BESIDE_DOCKER = {
    "systemd.path": SYSTEMD_PATH,
    "containerd.path": "/usr/local/bin/containerd",
    "containerd.realpath": "/opt/containerd-2.4.2/bin/containerd",
    "containerd.version": "v2.4.2",
    "unitfiles.containerd.service": DEBIAN_UNIT_PATH,
}
EXPECTED_DROP_IN = """# Managed by shimless; local edits are overwritten.
# containerd.service runs the containerd pre-stage validated (the first on systemd's
# PATH) and starts the runc shim beside it: containerd looks for its shim on PATH
# before its own directory.
[Service]
ExecStart=
ExecStart=/usr/local/bin/containerd
Environment="PATH=/opt/containerd-2.4.2/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""


def node_facts(facts: dict | None = None, files: dict | None = None) -> NodeFacts:
    """A Docker-era node (tests/conftest.py) with containerd 2.4.2 beside Docker's 1.6."""
    base = docker_era_facts()
    return NodeFacts(facts={**base.facts, **BESIDE_DOCKER, **(facts or {})},
                     files={**base.files, DEBIAN_UNIT_PATH: DEBIAN_UNIT, **(files or {})})


def target(**keys):
    return parse_target({"runtime": "containerd", "source": "preinstalled", **keys})


# --- what the unit runs --------------------------------------------------------


def test_the_unit_runs_its_last_execstart_after_the_last_reset():
    override = "[Service]\nExecStart=\nExecStart=/opt/containerd/bin/containerd --log-level warn\n"
    assert exec_start([("unit", DEBIAN_UNIT)]) == ("", "/usr/bin/containerd", "")
    assert exec_start([("unit", DEBIAN_UNIT), ("override.conf", override)]) == \
        ("", "/opt/containerd/bin/containerd", "--log-level warn")
    # a drop-in without ExecStart= changes nothing; one resetting it alone leaves nothing to run
    assert exec_start([("unit", DEBIAN_UNIT), ("http-proxy.conf", '[Service]\nEnvironment="HTTP_PROXY=x"\n')]) == \
        ("", "/usr/bin/containerd", "")
    assert exec_start([("unit", DEBIAN_UNIT), ("reset.conf", "[Service]\nExecStart=\n")]) is None
    assert exec_start([]) is None


def test_execstart_lines_are_read_as_systemd_reads_them():
    unit = ("[Unit]\nExecStart=/not/a/service/key\n[Service]\n# ExecStart=/commented/out\n"
            "ExecStart=-/usr/bin/containerd \\\n  --config /etc/containerd/config.toml\n")
    assert exec_start([("unit", unit)]) == ("-", "/usr/bin/containerd", "--config /etc/containerd/config.toml")
    assert parse_exec_command('"/opt/my containerd/containerd" -l debug') == \
        ("", "/opt/my containerd/containerd", "-l debug")
    assert parse_exec_command("@/usr/bin/containerd containerd").with_executable("/usr/local/bin/containerd") == \
        "@/usr/local/bin/containerd containerd"
    with pytest.raises(ValueError, match="unterminated quote"):
        parse_exec_command('"/usr/bin/containerd')


# --- when the drop-in is needed -------------------------------------------------


def test_a_newer_containerd_beside_dockers_gets_the_drop_in():
    files = binary_drop_in(node_facts(), target(version="2.4.2"))
    assert files == {CONTAINERD_BINARY_DROP_IN: EXPECTED_DROP_IN}
    # target.version matches as pre-stage's version_ok does: as a prefix; "" takes the first on PATH
    assert binary_drop_in(node_facts(), target(version="2.4")) == files
    assert binary_drop_in(node_facts(), target()) == files


def test_no_drop_in_when_the_unit_already_runs_the_validated_binary():
    on_path = {"containerd.path": "/usr/bin/containerd", "containerd.realpath": "/usr/bin/containerd",
               "containerd.version": "1.6.20~ds1"}
    assert binary_drop_in(node_facts(on_path), target()) == {}
    # a link on PATH to the unit's own binary is that binary
    linked = {"containerd.path": "/usr/local/bin/containerd", "containerd.realpath": "/usr/bin/containerd"}
    assert binary_drop_in(node_facts(linked), target()) == {}
    # a site's own drop-in already runs it
    override = "/etc/systemd/system/containerd.service.d/override.conf"
    site = node_facts({"unitfiles.containerd.service": f"{DEBIAN_UNIT_PATH} {override}"},
                      {override: "[Service]\nExecStart=\nExecStart=/usr/local/bin/containerd\n"})
    assert binary_drop_in(site, target(version="2.4.2")) == {}


def test_no_drop_in_when_pre_stage_installs_or_nothing_is_known():
    # not of target.version: pre-stage installs that one (the package's unit runs it) or refuses
    assert binary_drop_in(node_facts(), target(version="2.3")) == {}
    assert binary_drop_in(node_facts(), replace(target(version="2.4.2"), runtime="cri-o")) == {}
    # an older probe, no containerd on PATH, no containerd.service
    assert binary_drop_in(docker_era_facts(), target()) == {}
    assert binary_drop_in(node_facts({"containerd.path": ""}), target()) == {}
    assert binary_drop_in(node_facts({"unitfiles.containerd.service": ""}), target()) == {}


def test_the_units_own_arguments_are_kept_and_shimless_own_drop_in_is_not_the_units_own():
    own = DEBIAN_UNIT.replace("ExecStart=/usr/bin/containerd", "ExecStart=/usr/bin/containerd --log-level warn")
    ours = EXPECTED_DROP_IN.replace("/usr/local/bin/containerd", "/usr/local/bin/containerd --log-level warn")
    listed = {"unitfiles.containerd.service": f"{DEBIAN_UNIT_PATH} {CONTAINERD_BINARY_DROP_IN}"}
    facts = node_facts(listed, {DEBIAN_UNIT_PATH: own, CONTAINERD_BINARY_DROP_IN: ours})
    assert binary_drop_in(facts, target(version="2.4.2")) == {CONTAINERD_BINARY_DROP_IN: ours}


def test_a_drop_in_shimless_wrote_stays_managed_for_the_binary_validated_now():
    # the site moved its own unit to the new binary: the drop-in stays, naming it, and is never left stale
    stale = EXPECTED_DROP_IN.replace("/usr/local/bin/containerd", "/usr/local/bin/containerd-old")
    own = DEBIAN_UNIT.replace("/usr/bin/containerd", "/usr/local/bin/containerd")
    facts = node_facts({"unitfiles.containerd.service": f"{DEBIAN_UNIT_PATH} {CONTAINERD_BINARY_DROP_IN}"},
                       {DEBIAN_UNIT_PATH: own, CONTAINERD_BINARY_DROP_IN: stale})
    assert binary_drop_in(facts, target()) == {CONTAINERD_BINARY_DROP_IN: EXPECTED_DROP_IN}


def test_the_shim_directory_leads_the_path_once():
    assert runtime_unit.service_path("/usr/local/bin", SYSTEMD_PATH) == \
        "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert "%%" in runtime_unit.render_binary_drop_in("/opt/50%/containerd", "/opt/50%", SYSTEMD_PATH)


# --- the desired state and the plan ---------------------------------------------


def test_the_drop_in_is_a_desired_file_beside_the_config_for_2_x():
    desired = desired_state(node_facts(), target(version="2.4.2"))
    assert desired.files[CONTAINERD_BINARY_DROP_IN] == EXPECTED_DROP_IN
    assert desired.files["/etc/containerd/config.toml"].splitlines()[1] == "version = 4"
    assert CONTAINERD_BINARY_DROP_IN not in desired_state(docker_era_facts(), target()).files


def test_preview_shows_it_and_drift_on_it_is_repaired(node):
    node = replace(node, target=target(version="2.4.2"))
    plan = plan_node(node, node_facts(), stamp="20260101T000000Z")
    assert plan.action == "migrate" and CONTAINERD_BINARY_DROP_IN in plan.summary()["files"]
    # the node as the switch leaves it: every desired file in place, Docker off, the token recorded
    migrated = NodeFacts(
        facts={**node_facts().facts, "unit.docker.service": "disabled/inactive", "unit.docker.socket":
               "disabled/inactive", "shimless.token": plan.token,
               "unitfiles.containerd.service": f"{DEBIAN_UNIT_PATH} {CONTAINERD_BINARY_DROP_IN}",
               "kubelet.cmdline": "kubelet --container-runtime-endpoint=unix:///run/containerd/containerd.sock"},
        files={**node_facts().files, **plan.files})
    assert plan_node(node, migrated).action == "in-sync"
    for tampered, found in ((None, "missing"), (EXPECTED_DROP_IN.replace("/usr/local/bin", "/usr/bin"), "differs")):
        files = {path: text for path, text in migrated.files.items() if path != CONTAINERD_BINARY_DROP_IN}
        if tampered is not None:
            files[CONTAINERD_BINARY_DROP_IN] = tampered
        again = plan_node(node, replace(migrated, files=files), stamp="20260102T000000Z")
        assert again.action == "repair"
        assert [d.fact for d in again.drift] == [CONTAINERD_BINARY_DROP_IN] and again.drift[0].found.startswith(found)


# --- on the node: the probe, pre-stage's check, the switch's backup ------------
# The scripts run here against fake systemctl and containerd binaries under a
# temporary directory that stands for the node's /usr and /opt.

BASH = shutil.which("bash") or "/bin/bash"
SCRIPTS = ROOT / "components" / "scripts"
# systemctl as the scripts ask it: the manager's PATH, containerd.service's files, ExecStart and main pid.
FAKE_SYSTEMCTL = r'''#!/bin/sh
case "$*" in
  show-environment) echo "PATH=$FAKE_SYSTEMD_PATH" ;;
  "show -p FragmentPath --value containerd.service") echo "$FAKE_FRAGMENT" ;;
  "show -p DropInPaths --value containerd.service") echo "$FAKE_DROP_INS" ;;
  "show -p ExecStart --value containerd.service")
    echo "{ path=$FAKE_EXECSTART ; argv[]=$FAKE_EXECSTART ; ignore_errors=no ; start_time=[n/a] ; pid=0 }" ;;
  "show -p MainPID --value containerd.service") echo "${FAKE_MAIN_PID:-0}" ;;
  is-active*) [ "$2" = --quiet ] || echo inactive; exit 3 ;;
  *) exit 1 ;;
esac
'''


def fake_binary(path: Path, version_line: str) -> None:
    """A containerd or shim that prints its version as the real one does (`--version`, shim `-v`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\nprintf '%s\\n' '{version_line}'\n")
    path.chmod(0o755)


@pytest.fixture
def beside(tmp_path: Path) -> dict:
    """A Docker node's binaries under tmp_path: Docker's containerd 1.6 and its shim in usr/bin, the
    2.4.2 release in opt/containerd-2.4.2/bin with containerd linked into usr/local/bin (lab/containerd2/)."""
    usr_bin, local_bin, release = tmp_path / "usr/bin", tmp_path / "usr/local/bin", tmp_path / "opt/containerd-2.4.2/bin"
    fake_binary(usr_bin / "containerd", "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1")
    fake_binary(usr_bin / "containerd-shim-runc-v2", "containerd-shim-runc-v2:\n  Version:  1.6.20~ds1")
    fake_binary(release / "containerd", "containerd github.com/containerd/containerd/v2 v2.4.2 ")
    fake_binary(release / "containerd-shim-runc-v2", "containerd-shim-runc-v2:\n  Version:  v2.4.2")
    local_bin.mkdir(parents=True)
    (local_bin / "containerd").symlink_to(release / "containerd")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text(FAKE_SYSTEMCTL)
    (bin_dir / "systemctl").chmod(0o755)
    systemd_path = f"{tmp_path}/usr/local/sbin:{local_bin}:{tmp_path}/usr/sbin:{usr_bin}"
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_SYSTEMD_PATH": systemd_path,
            "FAKE_FRAGMENT": DEBIAN_UNIT_PATH, "FAKE_DROP_INS": "", "FAKE_EXECSTART": str(usr_bin / "containerd"),
            "ROOT": str(tmp_path), "NEW": str(local_bin / "containerd"), "RELEASE": str(release),
            "DOCKERS": str(usr_bin / "containerd")}


def test_the_probe_reports_the_containerd_systemd_runs_and_the_units_own_files(beside, tmp_path):
    root = tmp_path / "root"
    (root / DEBIAN_UNIT_PATH.lstrip("/")).parent.mkdir(parents=True)
    (root / DEBIAN_UNIT_PATH.lstrip("/")).write_text(DEBIAN_UNIT)
    done = subprocess.run([BASH, "-s"], input=f"PROBE_ROOT={root}\n" + probe_script("registry.k8s.io/pause:3.6"),
                          capture_output=True, text=True, env=beside, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    facts = parse_probe_output(done.stdout)
    assert facts.get("systemd.path") == beside["FAKE_SYSTEMD_PATH"]
    assert (facts.get("containerd.path"), facts.get("containerd.realpath"), facts.containerd_version) == \
        (beside["NEW"], f"{beside['RELEASE']}/containerd", "2.4.2")
    assert facts.get("unitfiles.containerd.service") == DEBIAN_UNIT_PATH
    assert facts.files[DEBIAN_UNIT_PATH] == DEBIAN_UNIT
    drop_in = binary_drop_in(facts, target(version="2.4.2"))[CONTAINERD_BINARY_DROP_IN]
    assert f"ExecStart={beside['NEW']}\n" in drop_in
    assert f'Environment="PATH={beside["RELEASE"]}:{beside["FAKE_SYSTEMD_PATH"]}"' in drop_in


def prestage_check(env: dict, bundle: Path, binary: str, version: str) -> subprocess.CompletedProcess:
    """pre-stage's check_containerd_service, its functions as prestage.sh defines them (without its main)."""
    prestage = (SCRIPTS / "prestage.sh").read_text()
    functions = prestage.rstrip()[: -len('main "$@"')].split("SHIMLESS_NODE=$(var node)", 1)[1]
    text = (manifest.shell("containerd") + f"set -euo pipefail\nSHIMLESS_BUNDLE={bundle}\n"
            + f". {SCRIPTS / 'node-lib.sh'}\n" + functions + '\ncheck_containerd_service "$1" "$2"\n')
    return subprocess.run([BASH, "-c", text, "bash", binary, version], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def bundle_with(tmp_path: Path, drop_in: str | None) -> Path:
    bundle = tmp_path / "bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    (bundle / "root").mkdir(parents=True)
    if drop_in is not None:
        (bundle / "root" / CONTAINERD_BINARY_DROP_IN.lstrip("/")).parent.mkdir(parents=True)
        (bundle / "root" / CONTAINERD_BINARY_DROP_IN.lstrip("/")).write_text(drop_in)
    return bundle


def test_pre_stage_passes_the_drop_in_that_runs_the_validated_containerd_with_its_shim(beside, tmp_path):
    drop_in = runtime_unit.render_binary_drop_in(beside["NEW"], beside["RELEASE"], beside["FAKE_SYSTEMD_PATH"])
    done = prestage_check(beside, bundle_with(tmp_path, drop_in), beside["NEW"], "2.4.2")
    assert done.returncode == 0, done.stderr
    assert f"will run {beside['NEW']} (containerd 2.4.2) with the shim {beside['RELEASE']}/containerd-shim-runc-v2 " \
           "(v2.4.2)" in done.stderr
    # Docker's own containerd under its own unit, as before: no drop-in, its own shim.
    dockers = prestage_check(beside, bundle_with(tmp_path, None), beside["DOCKERS"], "1.6.20~ds1")
    assert dockers.returncode == 0, dockers.stderr


def test_pre_stage_refuses_what_would_run_another_containerd_or_shim(beside, tmp_path):
    # No drop-in (a stale plan): the unit would run Docker's containerd with the config rendered for 2.4.2.
    stale = prestage_check(beside, bundle_with(tmp_path, None), beside["NEW"], "2.4.2")
    assert stale.returncode != 0
    assert f"would run {beside['DOCKERS']} after the switch, not {beside['NEW']}" in stale.stderr
    assert "run preview again" in stale.stderr
    # A PATH without the release's own directory: containerd 2.4.2 would start Docker's 1.6 shim.
    no_dir = runtime_unit.render_binary_drop_in(beside["NEW"], f"{beside['ROOT']}/usr/bin", beside["FAKE_SYSTEMD_PATH"])
    shim = prestage_check(beside, bundle_with(tmp_path, no_dir), beside["NEW"], "2.4.2")
    assert shim.returncode != 0
    assert f"would start the shim {beside['ROOT']}/usr/bin/containerd-shim-runc-v2 of containerd 1.6.20~ds1" \
        in shim.stderr


def node_lib(env_text: str = "") -> str:
    return manifest.shell("containerd") + env_text + f"set -euo pipefail\n. {SCRIPTS / 'node-lib.sh'}\n"


def test_images_go_in_through_the_ctr_of_the_running_containerds_release(tmp_path):
    # A process whose executable is a "containerd" with a ctr beside it, as Docker's in /usr/bin.
    release = tmp_path / "usr/bin"
    release.mkdir(parents=True)
    shutil.copy(shutil.which("sleep"), release / "containerd")
    fake_binary(release / "ctr", "ctr")
    on_path = tmp_path / "bin"
    on_path.mkdir()
    (on_path / "systemctl").write_text(FAKE_SYSTEMCTL)
    (on_path / "systemctl").chmod(0o755)
    fake_binary(on_path / "ctr", "ctr 2")  # a newer one first on the shell's PATH
    running = subprocess.Popen([str(release / "containerd"), "30"])
    try:
        env = {"PATH": f"{on_path}:/usr/bin:/bin", "FAKE_MAIN_PID": str(running.pid)}
        text = node_lib() + 'printf "%s|%s" "$(running_containerd)" "$(running_ctr)"\n'
        said = subprocess.run([BASH, "-c", text], capture_output=True, text=True, env=env, timeout=30, check=True)
        assert said.stdout == f"{release}/containerd|{release}/ctr"
        (release / "ctr").unlink()
        said = subprocess.run([BASH, "-c", text], capture_output=True, text=True, env=env, timeout=30, check=True)
        assert said.stdout == f"{release}/containerd|{on_path}/ctr"
        stopped = subprocess.run([BASH, "-c", text], capture_output=True, text=True,
                                 env={**env, "FAKE_MAIN_PID": "0"}, timeout=30, check=True)
        assert stopped.stdout == f"|{on_path}/ctr"
    finally:
        running.kill()
        running.wait()


def test_the_switch_backs_the_absent_drop_in_up_so_that_a_rollback_removes_it(tmp_path):
    """switch.sh's backup and node-lib.sh's restore_files, on node paths under tmp_path: the drop-in
    the node did not have is listed as absent and removed again (with the directory made for it),
    Docker's config comes back as it was, and the runtime's service is restored before Docker's units."""
    node = tmp_path / "node"
    config, drop_in = node / "etc/containerd/config.toml", node / CONTAINERD_BINARY_DROP_IN.lstrip("/")
    config.parent.mkdir(parents=True)
    config.write_text('disabled_plugins = ["cri"]\n')
    bundle = tmp_path / "bundle"
    for path, text in ((config, "version = 4\n"), (drop_in, EXPECTED_DROP_IN)):
        (bundle / "root" / str(path).lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (bundle / "root" / str(path).lstrip("/")).write_text(text)
    switch = (SCRIPTS / "switch.sh").read_text()
    backup = re.search(r"^backup\(\) \{\n.*?^\}\n", switch, re.M | re.S).group(0)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "systemctl").write_text("#!/bin/sh\ncase \"$1\" in cat) exit 0 ;; is-enabled) echo enabled ;; "
                                       "is-active) echo active ;; esac\n")
    (bin_dir / "systemctl").chmod(0o755)
    text = (node_lib(f"SHIMLESS_BUNDLE={bundle}\n") +
            f"BACKUP_PREVIOUS={tmp_path}/previous BACKUP_ORIGINAL={tmp_path}/original KEPT_PATHS=\n"
            f'service=$RUNTIME_SERVICE\nread -ra LEFT_UNITS <<<"$SOURCE_UNITS"\n{backup}\nbackup\n'
            # the switch writes the new files; a rollback puts the old ones back
            f"cp {bundle}/root{config} {config}; mkdir -p {drop_in.parent}; cp {bundle}/root{drop_in} {drop_in}\n"
            "restore_files\n")
    done = subprocess.run([BASH, "-c", text], capture_output=True, text=True,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "previous/.absent").read_text().splitlines() == [str(drop_in)]
    assert not drop_in.exists() and not drop_in.parent.exists()
    assert config.read_text() == 'disabled_plugins = ["cri"]\n'
    units = [line.split()[0] for line in (tmp_path / "previous/.units").read_text().splitlines()]
    assert units[0] == "containerd" and units[1:] == list(manifest.source_units("containerd"))
