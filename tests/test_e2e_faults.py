"""The safety promise under faults, one case of each kind (the whole matrix is
bench/faults.py): a failed command inside a helper function, a power cut
before the new files are written and one after, an operator killed during
the drain, and a second operator on the same stack. Each must leave lab-w1
fully on Docker or fully on containerd, and a re-run must converge with
nothing left cordoned."""
from __future__ import annotations

import signal

import pytest

from tests import faults, lab
from tests.test_e2e_cluster import cluster_reset, deploy_workload, restore_plain_lab

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def operator(tmp_path_factory):
    config = faults.lab_config()
    cluster_reset()  # every node fresh, on the real kubelet
    deploy_workload()
    op = faults.Operator.create(tmp_path_factory.mktemp("faults"), config)
    yield op
    restore_plain_lab()


@pytest.fixture(scope="module")
def clean_calls(operator) -> list[str]:
    """The counting run: every command a clean switch of lab-w1 runs, in order."""
    calls, out = faults.counting_run(operator)
    assert len(calls) > 20, out[-3000:]
    return calls


def check(outcome: faults.Outcome) -> None:
    assert outcome.verdict in ("old", "new"), outcome.detail
    assert outcome.message_ok, outcome.detail
    assert outcome.converged, outcome.detail
    assert not outcome.left_cordoned, outcome.detail


def test_a_command_failing_inside_a_function_rolls_back(operator, clean_calls):
    # `docker stop` runs inside stop_docker_containers: the case the ERR trap missed.
    k = next(i for i, call in enumerate(clean_calls, 1) if call.startswith("docker stop"))
    outcome = faults.command_case(operator, k)
    check(outcome)
    assert outcome.verdict == "old", outcome.detail
    assert "fault-shim: docker failed" in outcome.output
    assert "shimless[lab-w1] step 'stop-containers' failed" in outcome.output
    assert "failed step=stop-containers rolled_back=yes" in outcome.output


@pytest.mark.parametrize("step", ["write-config", "start-runtime"])
def test_power_cut_mid_switch_recovers_at_boot(operator, clean_calls, step):
    k = dict(faults.step_boundaries(clean_calls))[step]
    outcome = faults.powercut_case(operator, step, k)
    check(outcome)
    # Before any new file is in place the node goes back; once all are, it goes forward.
    assert outcome.verdict == ("old" if step == "write-config" else "new"), outcome.detail


def test_operator_killed_during_drain_converges_uncordoned(operator):
    outcome = faults.operator_case(operator, "drain", signal.SIGKILL)
    check(outcome)
    # The kill left lab-w1 cordoned (by shimless): the re-run uncordoned it.
    assert outcome.cordoned_before_rerun, outcome.detail


def test_second_operator_is_refused(operator):
    check(faults.concurrent_case(operator))


def test_a_bundle_that_fails_to_unpack_leaves_no_copy(operator):
    from components.bundle import script
    broken = script("entry.sh") + "file var/node !!!not-base64!!!\nstep switch.sh -\n"
    done = faults.ssh_result(faults.NODE, "bash -s", broken)
    assert done.returncode != 0
    assert lab.out(faults.NODE, "ls -A /var/lib/shimless/run 2>/dev/null || true") == ""
