"""containerd.service runs the containerd pre-stage validates (components/runtime_unit.py):
a managed drop-in when the unit's own ExecStart names another binary, as on a
Docker node with Docker's containerd 1.6 in /usr/bin and containerd 2.x first
on systemd's PATH; nothing when it already runs it."""
from __future__ import annotations

from dataclasses import replace

import pytest

from components import runtime_unit
from components.config import parse_target
from components.desired import desired_state
from components.facts import NodeFacts
from components.plan import plan_node
from components.runtime_unit import BINARY_DROP_IN, binary_drop_in, exec_start, parse_exec_command
from tests.conftest import docker_era_facts

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
    assert files == {BINARY_DROP_IN: EXPECTED_DROP_IN}
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
    listed = {"unitfiles.containerd.service": f"{DEBIAN_UNIT_PATH} {BINARY_DROP_IN}"}
    facts = node_facts(listed, {DEBIAN_UNIT_PATH: own, BINARY_DROP_IN: ours})
    assert binary_drop_in(facts, target(version="2.4.2")) == {BINARY_DROP_IN: ours}


def test_a_drop_in_shimless_wrote_stays_managed_for_the_binary_validated_now():
    # the site moved its own unit to the new binary: the drop-in stays, naming it, and is never left stale
    stale = EXPECTED_DROP_IN.replace("/usr/local/bin/containerd", "/usr/local/bin/containerd-old")
    own = DEBIAN_UNIT.replace("/usr/bin/containerd", "/usr/local/bin/containerd")
    facts = node_facts({"unitfiles.containerd.service": f"{DEBIAN_UNIT_PATH} {BINARY_DROP_IN}"},
                       {DEBIAN_UNIT_PATH: own, BINARY_DROP_IN: stale})
    assert binary_drop_in(facts, target()) == {BINARY_DROP_IN: EXPECTED_DROP_IN}


def test_the_shim_directory_leads_the_path_once():
    assert runtime_unit.service_path("/usr/local/bin", SYSTEMD_PATH) == \
        "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert "%%" in runtime_unit.render_binary_drop_in("/opt/50%/containerd", "/opt/50%", SYSTEMD_PATH)


# --- the desired state and the plan ---------------------------------------------


def test_the_drop_in_is_a_desired_file_beside_the_config_for_2_x():
    desired = desired_state(node_facts(), target(version="2.4.2"))
    assert desired.files[BINARY_DROP_IN] == EXPECTED_DROP_IN
    assert desired.files["/etc/containerd/config.toml"].splitlines()[1] == "version = 4"
    assert BINARY_DROP_IN not in desired_state(docker_era_facts(), target()).files


def test_preview_shows_it_and_drift_on_it_is_repaired(node):
    node = replace(node, target=target(version="2.4.2"))
    plan = plan_node(node, node_facts(), stamp="20260101T000000Z")
    assert plan.action == "migrate" and BINARY_DROP_IN in plan.summary()["files"]
    # the node as the switch leaves it: every desired file in place, Docker off, the token recorded
    migrated = NodeFacts(
        facts={**node_facts().facts, "unit.docker.service": "disabled/inactive", "unit.docker.socket":
               "disabled/inactive", "shimless.token": plan.token,
               "unitfiles.containerd.service": f"{DEBIAN_UNIT_PATH} {BINARY_DROP_IN}",
               "kubelet.cmdline": "kubelet --container-runtime-endpoint=unix:///run/containerd/containerd.sock"},
        files={**node_facts().files, **plan.files})
    assert plan_node(node, migrated).action == "in-sync"
    for tampered, found in ((None, "missing"), (EXPECTED_DROP_IN.replace("/usr/local/bin", "/usr/bin"), "differs")):
        files = {path: text for path, text in migrated.files.items() if path != BINARY_DROP_IN}
        if tampered is not None:
            files[BINARY_DROP_IN] = tampered
        again = plan_node(node, replace(migrated, files=files), stamp="20260102T000000Z")
        assert again.action == "repair"
        assert [d.fact for d in again.drift] == [BINARY_DROP_IN] and again.drift[0].found.startswith(found)
