"""The step protocol (components/protocol.py): the lines the scripts print
parse as the Python side expects, and verify decides on them."""
from __future__ import annotations

import dataclasses
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from components import protocol
from components.model import Bastion, NodeSpec, RegistryMirror, RuntimeTarget, node_from_dict
from components.verify import VerifyRequest, verify

SCRIPTS = Path(__file__).resolve().parent.parent / "components" / "scripts"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKQ"


def printf_formats(script: str) -> list[str]:
    return re.findall(r"printf '([^']*)\\n'", (SCRIPTS / script).read_text())


def test_switch_sh_prints_what_parse_switch_reads():
    formats = {fmt.split()[0]: fmt for fmt in printf_formats("switch.sh")
               if fmt.split()[0] in ("switched", "in-sync", "failed")}
    assert set(formats) == {"switched", "in-sync", "failed"}
    switched = protocol.parse_switch("log line\n" + formats["switched"] % ("containerd", 1000, 1500, 500) + "\n")
    assert switched == protocol.SwitchResult("switched", "containerd", 1000, 1500, 500)
    assert switched.switched and str(switched) == formats["switched"] % ("containerd", 1000, 1500, 500)
    in_sync = protocol.parse_switch(formats["in-sync"] % "cri-o")
    assert in_sync == protocol.SwitchResult("in-sync", "cri-o") and not in_sync.switched
    failed_formats = [fmt for fmt in printf_formats("switch.sh") if fmt.startswith("failed ")]
    assert {protocol.parse_switch(fmt % "start-runtime").rolled_back for fmt in failed_formats} == \
        {"yes", "incomplete", "not-needed"}


def test_prestage_preflight_and_rollback_lines():
    [prestaged] = [fmt for fmt in printf_formats("prestage.sh") if fmt.startswith("prestaged ")]
    assert protocol.parse_prestage(prestaged % ("containerd", "1.6.20", 2, 700, 3)) == \
        protocol.Prestaged("containerd", "1.6.20", 2, 700, 3)
    line = str(protocol.Prestaged("cri-o", "1.27.1", 1, 5, 0))
    assert protocol.parse_prestage("noise\n" + line) == protocol.Prestaged("cri-o", "1.27.1", 1, 5, 0)
    with pytest.raises(protocol.ProtocolError, match="non-numeric images"):
        protocol.parse_prestage("prestaged runtime=containerd version=1 images=many")
    assert {protocol.parse_preflight(fmt) for fmt in printf_formats("preflight.sh")} == {"switch", "in-sync"}
    assert {protocol.parse_rollback(fmt) for fmt in printf_formats("rollback.sh")} == {"yes", "incomplete"}


def test_drain_sh_speaks_the_same_lines():
    script = (SCRIPTS / "drain.sh").read_text()
    # The drain reads preflight's line and the uncordon the drain's.
    assert f'!= "{protocol.format_preflight("switch")}"' in script
    assert f"*{protocol.format_drain('true')}*" in script
    assert f'echo "{protocol.format_drain("unchanged")}"' in script
    assert protocol.parse_drain("cordoned\nwas_unschedulable=false\n") == "false"


@pytest.mark.parametrize("parse, output, message", [
    (protocol.parse_preflight, "action=reboot\n", "action='reboot'"),
    (protocol.parse_preflight, "nothing\n", "printed no action= line"),
    (protocol.parse_drain, "was_unschedulable=maybe", "expected one of true, false, unchanged"),
    (protocol.parse_switch, "switched runtime=containerd docker_stopped_ms=soon kubelet_up_ms=1 window_ms=1",
     "docker_stopped_ms='soon'"),
    (protocol.parse_switch, "failed step=x rolled_back=perhaps", "rolled_back='perhaps'"),
    (protocol.parse_switch, "switched runtime", "not a key=value field"),
    (protocol.parse_rollback, "", "printed no rolled_back= line"),
])
def test_malformed_lines_are_refused(parse, output, message):
    with pytest.raises(protocol.ProtocolError, match=re.escape(message)):
        parse(output)


def test_the_last_result_line_wins_and_none_is_none():
    output = "in-sync runtime=containerd\nswitched runtime=containerd docker_stopped_ms=1 kubelet_up_ms=2 window_ms=1\n"
    assert protocol.parse_switch(output).switched
    assert protocol.parse_switch("shimless[w1] switching\n") is None


# --- verify -------------------------------------------------------------------

NODE = NodeSpec(name="w1", host="10.0.0.1", port=2222, user="admin", role="control-plane", host_key=HOST_KEY,
                target=RuntimeTarget(runtime="cri-o", version="", source="package", pause_image="registry.k8s.io/pause:3.9",
                                     cgroup_driver="auto", registry_mirrors=(RegistryMirror("docker.io", ("https://m",)),),
                                     insecure_registries=("reg:5000",), cni_bin_dir="/opt/cni/bin",
                                     cni_conf_dir="/etc/cni/net.d"),
                bastion=Bastion(host="10.0.0.9", user="jump", host_key=HOST_KEY))
SWITCHED = "switched runtime=cri-o docker_stopped_ms=1790000000000 kubelet_up_ms=1790000004000 window_ms=4000\n"


def request(switch_output: str = SWITCHED, health_timeout: int = 0) -> VerifyRequest:
    return VerifyRequest(node=NODE, kubeconfig="kc", private_key="key", switch_output=switch_output,
                         health_timeout=health_timeout, rollback_bundle="bundle")


def test_node_spec_survives_a_json_round_trip():
    assert node_from_dict(json.loads(json.dumps(dataclasses.asdict(NODE)))) == NODE
    assert VerifyRequest.from_json(request().to_json()) == request()
    assert request().runtime_prefix == "cri-o://"


class Recorder:
    def __init__(self, node: dict | None = None):
        self.node, self.rollbacks = node or {}, []

    def read_node(self, kubeconfig: str, name: str) -> dict:
        assert (kubeconfig, name) == ("kc", "w1")
        return self.node

    def undo(self, req: VerifyRequest) -> str:
        self.rollbacks.append(req.node.name)
        return "rolled back to its previous runtime"


def healthy(beat: str) -> dict:
    return {"status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": beat}],
                       "nodeInfo": {"containerRuntimeVersion": "cri-o://1.27.1"}}}


def test_a_node_this_run_switched_is_rolled_back_when_never_healthy(capsys):
    recorder = Recorder()
    assert verify(request(), read_node=recorder.read_node, undo=recorder.undo, sleep=lambda _: None) == 1
    assert recorder.rollbacks == ["w1"]
    assert "node w1: rolled back to its previous runtime" in capsys.readouterr().err


def test_a_node_found_in_sync_is_never_rolled_back(capsys):
    recorder = Recorder()
    assert verify(request("in-sync runtime=cri-o\n"), read_node=recorder.read_node, undo=recorder.undo) == 1
    assert recorder.rollbacks == []


def test_healthy_after_the_switch_passes_and_a_stale_heartbeat_does_not(capsys):
    stopped = datetime.fromtimestamp(1790000000, timezone.utc)
    fresh = Recorder(healthy(stopped.replace(second=stopped.second + 5).isoformat().replace("+00:00", "Z")))
    assert verify(request(health_timeout=5), read_node=fresh.read_node, undo=fresh.undo) == 0
    assert fresh.rollbacks == [] and "verified Ready=True" in capsys.readouterr().out
    now = [0.0]
    stale = Recorder(healthy("2020-01-01T00:00:00Z"))
    assert verify(request(health_timeout=10), read_node=stale.read_node, undo=stale.undo,
                  sleep=lambda seconds: now.__setitem__(0, now[0] + seconds), clock=lambda: now[0]) == 1
    assert stale.rollbacks == ["w1"] and now[0] == 10


@pytest.mark.parametrize("output", ["", "failed step=start-runtime rolled_back=yes\n", "switched runtime"])
def test_nothing_to_verify_fails_without_rollback(output, capsys):
    recorder = Recorder()
    assert verify(request(output), read_node=recorder.read_node, undo=recorder.undo) == 1
    assert recorder.rollbacks == []
    assert "the switch" in capsys.readouterr().err
