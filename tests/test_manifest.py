"""components/manifest.py, the one place a node-side fact is decided: the probe
reports every file desired_state can give a node (run here on a fake root),
the node's own target-state check (preflight.sh, through node-lib.sh
in_target_state) and the plan's drift agree unit by unit, and the scripts get
the manifest exactly as Python holds it."""
from __future__ import annotations

import base64
import gzip
import itertools
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from components import manifest, protocol, runtime_unit
from components.bundle import bundle, launcher, probe_script, script
from components.config import parse_target
from components.desired import desired_state
from components.facts import NodeFacts, parse_probe_output
from components.model import RUNTIMES
from components.plan import _drift
from tests.golden import CASES

BASH = shutil.which("bash") or "/bin/bash"
INSTANCE_CONFIG = ("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                   "containerRuntimeEndpoint: unix:///var/run/cri-dockerd.sock\n")


def every_node() -> list[tuple[str, NodeFacts, object]]:
    """(name, facts, target): the golden cases (mirrors, insecure registries,
    proxies, data-root, OCI runtimes, containerd 1.x and 2.x, CRI-O) on every
    runtime, and each of them with kubeadm's instance-config on a 1.31 kubelet."""
    nodes = []
    for case, (target_keys, facts, files) in CASES.items():
        for runtime in RUNTIMES:
            target = parse_target({**target_keys, "runtime": runtime, "source": "preinstalled"})
            nodes.append((f"{case}/{runtime}", NodeFacts(facts=dict(facts), files=dict(files)), target))
            newer = {**facts, "kubelet.version": "Kubernetes v1.31.2"}
            with_instance = {**files, manifest.KUBEADM_INSTANCE_CONFIG: INSTANCE_CONFIG}
            nodes.append((f"{case}/{runtime}/1.31", NodeFacts(facts=newer, files=with_instance), target))
    # containerd 2.x on systemd's PATH before Docker's, which containerd.service runs: the binary drop-in.
    target_keys, facts, files = CASES["containerd-v3"]
    unit = "/lib/systemd/system/containerd.service"
    beside = {**facts, "containerd.version": "2.0.4", runtime_unit.CONTAINERD_PATH_FACT: "/usr/local/bin/containerd",
              runtime_unit.SYSTEMD_PATH_FACT: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              runtime_unit.UNIT_FILES_FACT: unit}
    nodes.append(("containerd-2-beside-dockers", NodeFacts(facts=beside, files={
        **files, unit: "[Service]\nExecStart=/usr/bin/containerd\n"}), parse_target(target_keys)))
    return nodes


NODES = every_node()


def test_the_nodes_here_reach_every_kind_of_file_desired_state_writes():
    # Otherwise the probe test below would prove less than it says.
    written = {path for _, facts, target in NODES for path in desired_state(facts, target).files}
    for runtime in RUNTIMES:
        for pattern in manifest.managed_paths(runtime):
            assert any(Path(path).match(pattern) for path in written), pattern


# --- the probe reports every file a node can get ----------------------------

# systemctl: every unit absent (the probe only reports their states).
ABSENT_SYSTEMCTL = "#!/bin/sh\n[ \"$1\" = is-active ] && [ \"$2\" != --quiet ] && echo inactive\nexit 3\n"


def probe_fake_root(root: Path, tmp_path: Path) -> NodeFacts:
    """The whole probe, as ssh runs it, reading the node's files under `root`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "systemctl").write_text(ABSENT_SYSTEMCTL)
    (bin_dir / "systemctl").chmod(0o755)
    done = subprocess.run([BASH, "-s"], input=f"PROBE_ROOT={root}\n" + probe_script("registry.k8s.io/pause:3.9"),
                          capture_output=True, text=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return parse_probe_output(done.stdout)


@pytest.mark.parametrize("name, facts, target", NODES, ids=[name for name, _, _ in NODES])
def test_the_probe_reports_every_file_desired_state_gives_a_node(name, facts, target, tmp_path):
    """A file desired_state writes that the probe did not report would be drift
    on every plan after the switch, for ever: the probe reads the manifest's
    paths, so this holds for every path desired_state can give."""
    desired = desired_state(facts, target).files
    # The node after its switch: the files the plan read, then the desired ones.
    on_node = {**facts.files, **desired}
    root = tmp_path / "root"
    for node_path, content in on_node.items():
        path = root / node_path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    probed = probe_fake_root(root, tmp_path)
    # Every file the node gets, and every file the plan reads (the manifest's;
    # containerd.service's own unit files are runtime_unit's facts, not listed here).
    reported = [*desired, *(path for path in facts.files if path in manifest.READ_PATHS)]
    assert {path: probed.files.get(path) for path in reported} == {path: on_node[path] for path in reported}
    assert [item for item in _drift(probed, desired, target.runtime) if item.fact.startswith("/")] == []


def test_a_path_outside_the_manifest_is_not_probed(tmp_path):
    # The probe holds no list of its own: what the manifest leaves out, it does not read.
    root = tmp_path / "root"
    for node_path in ("/etc/containerd/certs.d/docker.io/hosts.toml", "/etc/crio/crio.conf.d/99-other.conf",
                      "/etc/default/kubelet"):
        (root / node_path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / node_path.lstrip("/")).write_text("x\n")
    assert set(probe_fake_root(root, tmp_path).files) == {"/etc/containerd/certs.d/docker.io/hosts.toml"}


def test_the_probe_reports_the_units_every_target_state_names():
    for runtime in RUNTIMES:
        assert {expected.unit for expected in manifest.target_units(runtime)} <= set(manifest.PROBED_UNITS)


# --- the node and the plan decide "on its target" by one table ---------------

# systemctl as node-lib.sh asks it, from FAKE_UNITS ("UNIT ENABLED ACTIVE" lines).
FAKE_SYSTEMCTL = r'''#!/bin/sh
command=$1; shift
[ "$1" = --quiet ] && { quiet=1; shift; }
line=
while read -r unit rest; do [ "$unit" = "$1" ] && line="$unit $rest"; done <"$FAKE_UNITS"
set -- $line
case "$command" in
  cat) [ -n "$line" ] ;;
  is-enabled) echo "${2:-not-found}"; [ "${2:-}" = enabled ] ;;
  is-active) [ -n "${quiet:-}" ] || echo "${3:-inactive}"; [ "${3:-}" = active ] ;;
  *) exit 1 ;;
esac
'''
STATES = (("enabled", "active"), ("disabled", "inactive"), ("enabled", "inactive"), ("disabled", "active"),
          ("not-found", "inactive"), ("masked", "inactive"), ("static", "active"), ("enabled", "failed"))


def unpacked(stdin: str, into: Path) -> Path:
    """A bundle unpacked as scripts/entry.sh does it."""
    for line in stdin[len(launcher()):].splitlines():
        kind, name, data = line.split(" ")
        if kind == "file":
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            (into / name).write_bytes(gzip.decompress(base64.b64decode(data)))
    return into


def scenarios(runtime: str) -> list[dict[str, tuple[str, str]]]:
    """The target state, each unit off it in every way, and mixes at random."""
    target = {e.unit: ("enabled" if e.enabled == "enabled" else "disabled", e.active)
              for e in manifest.target_units(runtime)}
    found = [dict(target)]
    for unit, state in itertools.product(manifest.PROBED_UNITS, STATES):
        found.append({**target, unit: state})
    chance = random.Random(f"manifest-{runtime}")
    found += [{unit: chance.choice(STATES) for unit in manifest.PROBED_UNITS} for _ in range(16)]
    return found


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_preflight_and_the_plan_agree_whether_a_node_is_on_its_target(runtime, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("systemctl", FAKE_SYSTEMCTL), ("kubelet", "#!/bin/sh\necho Kubernetes v1.28.15\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    step = unpacked(bundle("preflight.sh", {"node": "w1", "runtime": runtime, "kubelet_version": "v1.28.15"}),
                    tmp_path / "bundle")
    units_file = tmp_path / "units"
    decisions = {"in-sync": 0, "switch": 0}
    for units in scenarios(runtime):
        units_file.write_text("".join(f"{unit} {enabled} {active}\n" for unit, (enabled, active) in units.items()))
        done = subprocess.run([BASH, str(step / "preflight.sh"), str(step)], capture_output=True, text=True,
                              env={"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_UNITS": str(units_file)},
                              timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        facts = NodeFacts(facts={f"unit.{unit}": f"{enabled}/{active}" for unit, (enabled, active) in units.items()})
        drift = _drift(facts, {}, runtime)
        node_says = protocol.parse_preflight(done.stdout)
        assert node_says == ("switch" if drift else "in-sync"), (units, drift)
        decisions[node_says] += 1
    assert decisions["in-sync"] >= 1 and decisions["switch"] > 50


def test_target_units_put_the_runtime_on_and_what_the_node_leaves_off():
    for runtime in RUNTIMES:
        table = {e.unit: (e.enabled, e.active) for e in manifest.target_units(runtime)}
        assert table[manifest.RUNTIME_SERVICES[runtime]] == ("enabled", "active")
        assert table[manifest.KUBELET_UNIT] == ("any", "active")
        assert all(table[unit] == ("disabled", "inactive") for unit in manifest.source_units(runtime))
        assert len(table) == 2 + len(manifest.source_units(runtime))
    with pytest.raises(ValueError, match="unknown runtime"):
        manifest.target_units("docker")


def test_a_unit_differs_from_its_expectation_only_by_what_is_asked():
    on = manifest.UnitExpectation("containerd.service", "enabled", "active")
    assert on.differences("enabled", "active") == []
    assert on.differences("static", "failed") == [("containerd.service enabled", "enabled", "static"),
                                                 ("containerd.service active", "active", "failed")]
    off = manifest.UnitExpectation("docker.socket", "disabled", "inactive")
    assert off.differences("masked", "inactive") == [] and off.differences("not-found", "failed") == []
    assert off.differences("enabled", "active") == [("docker.socket enabled", "disabled", "enabled"),
                                                   ("docker.socket active", "inactive", "active")]
    assert manifest.UnitExpectation("kubelet.service", "any", "active").differences("disabled", "active") == []


# --- the scripts get it as Python holds it -----------------------------------

@pytest.mark.parametrize("runtime", [None, *RUNTIMES])
def test_the_shell_form_reads_back_as_python_holds_it(runtime):
    names = ("SHIMLESS_STATE", "BACKUP_PREVIOUS", "BACKUP_ORIGINAL", "JOURNAL", "TOKEN_FILE", "CRI_SOCKETS",
             "PROBED_PATHS", "PROBED_UNITS") + (("RUNTIME_SERVICE", "CRI_ENDPOINT", "SOURCE_UNITS", "TARGET_UNITS")
                                                if runtime else ())
    text = manifest.shell(runtime) + "".join(f'printf "%s\\0" "${name}"\n' for name in names)
    done = subprocess.run([BASH, "-c", text], capture_output=True, text=True, timeout=30, check=True)
    values = dict(zip(names, done.stdout.split("\0")))
    assert values["SHIMLESS_STATE"] == manifest.STATE_DIR
    assert values["BACKUP_ORIGINAL"] + manifest.DAEMON_JSON == manifest.ORIGINAL_DAEMON_JSON
    assert values["PROBED_PATHS"].splitlines() == list(manifest.PROBED_PATHS)
    assert values["PROBED_UNITS"].split() == list(manifest.PROBED_UNITS)
    assert {line.split()[0]: tuple(line.split()[1:]) for line in values["CRI_SOCKETS"].splitlines()} == \
        manifest.KNOWN_CRI_SOCKETS
    if runtime:
        assert values["SOURCE_UNITS"].split() == list(manifest.source_units(runtime))
        assert [tuple(line.split()) for line in values["TARGET_UNITS"].splitlines()] == \
            [tuple(e) for e in manifest.target_units(runtime)]
        assert f"{values['RUNTIME_SERVICE']}.service" == manifest.RUNTIME_SERVICES[runtime]


def test_the_probed_paths_are_what_the_plan_reads_and_every_target_writes():
    assert set(manifest.READ_PATHS) <= set(manifest.PROBED_PATHS)
    for runtime in RUNTIMES:
        assert set(manifest.managed_paths(runtime)) <= set(manifest.PROBED_PATHS)
    assert len(set(manifest.PROBED_PATHS)) == len(manifest.PROBED_PATHS)
    assert "PROBE_ROOT" in script("probe.sh")  # tests only; empty on a node
