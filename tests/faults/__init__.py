"""Fault injection on the lab with the control plane and real kubelets, shared
by the fast subset in tests/test_e2e_faults.py and the whole matrix in
bench/faults.py.

Kinds of fault, each injected into a real `pulumi up` of one node (lab-w1):
  command   the k-th external command the switch runs fails (fault-shim.sh)
  powercut  the node loses power at a step boundary of the switch and boots
            again on its disk (lab/lab-powercut.sh), with no re-run
  operator  `pulumi up` gets SIGINT or SIGKILL during a phase
  concurrent a second `pulumi up` on the same stack while one runs

After each: the node must be fully old or fully new (files, units, kubelet
flags, the runtime the API reports, Ready), and a re-run must converge with
no node left cordoned."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


from tests import lab
from tests.test_e2e_cluster import node_json

NODE = "lab-w1"
SHIM = Path(__file__).resolve().parent / "fault-shim.sh"
FAULT_DIR = "/var/lib/shimless-fault"
# Every external command the switch and its rollback run (the rest are bash builtins).
# (ctr only where it is called by name: the switch asks Docker's leftover tasks
# with the ctr beside the running containerd, by its path.)
SHIMMED = ("systemctl", "docker", "ctr", "crictl", "install", "mv", "cp", "rm", "mkdir", "cmp", "sync",
           "find", "sed", "sort", "date", "cat", "wc", "awk", "sleep", "rmdir", "flock", "dirname", "head",
           "readlink")
LAB_ENV = dict(os.environ, LAB_CLUSTER="1")
HEALTH_TIMEOUT = 60
CORDON_ANNOTATION = "shimless.io/cordoned"
# Where the switch is, by the command it runs: (step about to start, the
# full match of its first command).
STEP_MARKERS = (
    ("backup", r"cp -a .*"),
    ("stop-kubelet", r"systemctl stop kubelet"),
    ("stop-docker", r"systemctl disable --now docker\.socket"),
    ("write-config", r"install -D -m 0644 .*"),
    ("daemon-reload", r"systemctl daemon-reload"),
    ("start-runtime", r"systemctl enable containerd"),
    ("wait-cri", r"crictl .*"),
    ("start-kubelet", r"systemctl start kubelet"),
    ("verify-kubelet", r"systemctl show -p NRestarts .*"),
    ("record", r"rm -rf /var/lib/shimless/journal"),
)


def ssh_result(node: str, command: str, stdin: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(lab.ROOT / "lab" / "ssh"), node, command], input=stdin, capture_output=True,
                          text=True, timeout=60, check=False)


def ssh_input(node: str, command: str, stdin: str) -> None:
    done = ssh_result(node, command, stdin)
    if done.returncode != 0:
        raise AssertionError(f"{node}: `{command}` failed: {done.stderr.strip()}")


# ------------------------------------------------------------------ the shim

def install_shim(node: str = NODE) -> None:
    links = " ".join(f"/usr/local/sbin/{name}" for name in SHIMMED)
    ssh_input(node, f"install -d -m 0755 {FAULT_DIR} && cat > /usr/local/lib/fault-shim && "
                    f"chmod 0755 /usr/local/lib/fault-shim && for l in {links}; do ln -sf /usr/local/lib/fault-shim $l; done",
              SHIM.read_text())


def arm(mode: str | None, k: int = 0, node: str = NODE) -> None:
    """Count the switch's commands from now on; with a mode, fail or block the k-th."""
    armed = f"echo '{mode} {k}' > {FAULT_DIR}/armed" if mode else f"rm -f {FAULT_DIR}/armed"
    lab.out(node, f"rm -f {FAULT_DIR}/count {FAULT_DIR}/log {FAULT_DIR}/hung && {armed} && touch {FAULT_DIR}/counting")


def counting_run(op: "Operator") -> tuple[list[str], str]:
    """A clean switch of a fresh node, counted: every command it runs, in
    order (empty when `pulumi up` failed), and the CLI's output."""
    reset_node()
    install_shim()
    arm(None)
    code, out = op.up()
    calls = counted()
    disarm()
    return (calls if code == 0 else []), out


def disarm(node: str = NODE) -> None:
    lab.ssh(node, f"rm -f {FAULT_DIR}/counting {FAULT_DIR}/armed", check=False)


def counted(node: str = NODE) -> list[str]:
    """The counted calls, in order: 'name args'."""
    text = lab.ssh(node, f"cat {FAULT_DIR}/log", check=False).stdout
    return [line.split(" ", 1)[1] for line in text.splitlines() if " " in line]


def step_boundaries(calls: list[str]) -> list[tuple[str, int]]:
    """(step, k) for the first call of each step marker, k 1-based."""
    found, after = [], 0
    for step, pattern in STEP_MARKERS:  # in the switch's order: each after the one before
        k = next((i for i, call in enumerate(calls, 1) if i > after and re.fullmatch(pattern, call)), None)
        if k is not None:
            found.append((step, k))
            after = k
    return found


# ------------------------------------------------------------------ the node

def reset_node(node: str = NODE) -> None:
    lab.script("lab-reset.sh", node, env=LAB_ENV)
    wait_ready(node, "docker://", 180)


def wait_ready(node: str, runtime_prefix: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = node_json(node)["status"]
        except AssertionError:
            status = {}
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
        if ready and status.get("nodeInfo", {}).get("containerRuntimeVersion", "").startswith(runtime_prefix):
            return True
        time.sleep(2)
    return False


NODE_STATE = r"""
flags=$(cat /var/lib/kubelet/kubeadm-flags.env)
case "$flags" in
  *container-runtime=remote*containerd.sock*|*containerd.sock*container-runtime=remote*) echo flags=new ;;
  *network-plugin=cni*) echo flags=old ;;
  *) echo flags=other ;;
esac
for u in docker.service docker.socket containerd.service kubelet.service; do
  echo "unit.$u=$(systemctl is-enabled $u 2>/dev/null || true)/$(systemctl is-active $u 2>/dev/null || true)"
done
[ -e /var/lib/shimless/journal ] && echo journal=present || echo journal=absent
prev=/var/lib/shimless/backup/previous
if [ -d "$prev" ]; then
  ok=yes
  while IFS= read -r f; do cmp -s "$prev$f" "$f" || ok=no; done < <(cd "$prev" && find . -type f ! -path './.*' | sed 's|^\.||')
  while IFS= read -r f; do [ -z "$f" ] || [ ! -e "$f" ] || ok=no; done < "$prev/.absent"
  echo backup_files_live=$ok
fi
"""


def node_state(node: str = NODE) -> dict:
    text = lab.ssh(node, NODE_STATE, check=False).stdout
    state = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    try:
        info = node_json(node)
    except AssertionError:
        info = {}
    status = info.get("status", {})
    state["api_runtime"] = status.get("nodeInfo", {}).get("containerRuntimeVersion", "?").split(":")[0]
    state["ready"] = str(any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])))
    state["unschedulable"] = str(bool(info.get("spec", {}).get("unschedulable")))
    state["annotated"] = str(CORDON_ANNOTATION in info.get("metadata", {}).get("annotations", {}))
    return state


def classify(state: dict) -> str:
    """old | new | between, from every layer at once."""
    docker_on = state.get("unit.docker.service") == "enabled/active"
    old = (state.get("flags") == "old" and docker_on and state.get("api_runtime") == "docker"
           and state.get("backup_files_live", "yes") == "yes")
    new = (state.get("flags") == "new" and not docker_on and state.get("unit.docker.service", "").endswith("/inactive")
           and state.get("unit.containerd.service") == "enabled/active" and state.get("api_runtime") == "containerd")
    common = (state.get("unit.kubelet.service", "").endswith("/active") and state.get("ready") == "True"
              and state.get("journal") == "absent")
    if common and old:
        return "old"
    if common and new:
        return "new"
    return "between"


def settle(node: str = NODE, timeout: float = HEALTH_TIMEOUT + 90) -> tuple[str, dict]:
    """Wait (within the health timeout and the verify's settle margin) until the
    node is fully old or fully new; the last state seen otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        state = node_state(node)
        verdict = classify(state)
        if verdict != "between" or time.monotonic() > deadline:
            return verdict, state
        time.sleep(3)


# ------------------------------------------------------------------ the operator

def one_node_config(config: dict) -> dict:
    config = json.loads(json.dumps(config))
    cfg = config["config"]
    cfg["shimless:nodes"] = [n for n in cfg["shimless:nodes"] if n["name"] == NODE]
    cfg["shimless:rollout"] = {**(cfg.get("shimless:rollout") or {}), "healthTimeoutSeconds": HEALTH_TIMEOUT}
    return config


@dataclass
class Operator:
    """`pulumi up` on a private copy of the project, through the CLI itself
    (so that tests can signal its process)."""

    work: Path
    env: dict = field(default_factory=dict)

    @classmethod
    def create(cls, tmp: Path, config: dict) -> "Operator":
        work = lab.project_copy(tmp, one_node_config(config))
        stack = lab.engine_stack(work, tmp / "state")  # creates the stack in the file backend
        env = dict(os.environ, **stack.workspace.env_vars)
        return cls(work=work, env=env)

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(["pulumi", *args, "--stack", "lab", "--non-interactive", "--color", "never"],
                                cwd=self.work, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)

    def run(self, *args: str, timeout: float = 900) -> tuple[int, str]:
        proc = self.start(*args)
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out

    def up(self) -> tuple[int, str]:
        return self.run("up", "--yes", "--skip-preview")


def started(step: str, then: str = "") -> re.Pattern:
    """The CLI's progress line of a step of NODE running (being created or
    updated), and printing `then` if given."""
    return re.compile(rf"shimless-{NODE}-{step} (creating|updating) .*{then}")


def up_until(op: Operator, marker: re.Pattern, sig: int, timeout: float = 600) -> tuple[str, bool]:
    """Start `pulumi up`, signal it once its output shows `marker`; the output,
    and whether the marker was seen."""
    proc = op.start("up", "--yes", "--skip-preview")
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if marker.search(line) and not seen.is_set():
                seen.set()
                os.killpg(proc.pid, sig) if sig == signal.SIGKILL else proc.send_signal(sig)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    reader.join(timeout=10)
    return "".join(lines), seen.is_set()


@dataclass
class Outcome:
    kind: str
    point: str
    verdict: str  # old | new | between
    message_ok: bool
    converged: bool
    left_cordoned: bool
    detail: str = ""
    output: str = ""  # the faulted run's whole output
    cordoned_before_rerun: bool = False

    def row(self) -> str:
        return (f"{self.kind:<10} {self.point:<34} {self.verdict:<8} {'yes' if self.message_ok else 'NO':<8} "
                f"{'yes' if self.converged else 'NO':<10} {'YES' if self.left_cordoned else 'no'}")


def converge(op: Operator) -> tuple[bool, bool, str]:
    """Re-run `pulumi up` as the README says after an interruption; (converged,
    left cordoned, output)."""
    code, out = op.up()
    if code != 0 and "locked" in out:
        op.run("cancel", "--yes")
        code, out = op.up()
    verdict, state = settle()
    cordoned = state["unschedulable"] == "True" or state["annotated"] == "True"
    return code == 0 and verdict == "new", cordoned, out + f"\nstate after re-run: {state}"


def command_case(op: Operator, k: int) -> Outcome:
    reset_node()
    install_shim()
    arm("fail", k)
    code, out = op.up()
    disarm()
    verdict, state = settle()
    message_ok = code != 0 and f"shimless[{NODE}]" in out and "step '" in out
    if code == 0:  # the k-th call was past the end, or its failure was retried: must be new and clean
        message_ok = verdict == "new"
    converged, cordoned, again = converge(op)
    return Outcome("command", f"call {k}", verdict, message_ok, converged, cordoned,
                   f"first run exit {code}; state {state}\n{out[-3000:]}\n{again[-2000:]}", out)


def powercut_case(op: Operator, step: str, k: int) -> Outcome:
    reset_node()
    install_shim()
    arm("hang", k)
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(zip(("code", "out"), op.up())), daemon=True)
    runner.start()
    deadline = time.monotonic() + 600
    while lab.ssh(NODE, f"test -f {FAULT_DIR}/hung", check=False).returncode != 0:
        if time.monotonic() > deadline or not runner.is_alive():
            raise AssertionError(f"the switch never reached call {k} ({step}): {result.get('out', '')[-2000:]}")
        time.sleep(1)
    lab.script("lab-powercut.sh", NODE, env=LAB_ENV)
    lab.ssh(NODE, f"rm -f {FAULT_DIR}/counting {FAULT_DIR}/armed", check=False)
    runner.join(timeout=900)
    # No re-run: the node alone must end fully old or fully new, Ready.
    verdict, state = settle()
    message_ok = result.get("code", 1) != 0 and f"{NODE}" in result.get("out", "")
    converged, cordoned, again = converge(op)
    return Outcome("powercut", f"before {step} (call {k})", verdict, message_ok, converged, cordoned,
                   f"state {state}\n{result.get('out', '')[-2000:]}\n{again[-2000:]}", result.get("out", ""))


# When each phase is under way, by the progress line the CLI prints for it:
# the drain once the node is cordoned, the switch once it has stopped things.
PHASES = {
    "prestage": "",
    "drain": r"node/\S+ cordoned",
    "switch": r"stopping \d+ Docker containers|kubelet, Docker and its containers stopped",
    "verify": "",
}


def operator_case(op: Operator, phase: str, sig: int) -> Outcome:
    reset_node()
    out, seen = up_until(op, started(phase, PHASES[phase]), sig)
    if not seen:
        raise AssertionError(f"`pulumi up` never reached {phase}:\n{out[-3000:]}")
    # A switch already under way finishes (or rolls back) on the node on its own.
    verdict, state = settle()
    converged, cordoned, again = converge(op)
    name = "SIGINT" if sig == signal.SIGINT else "SIGKILL"
    return Outcome("operator", f"{name} during {phase}", verdict, True, converged, cordoned,
                   f"state {state}\n{out[-2000:]}\n{again[-2000:]}", out,
                   cordoned_before_rerun=state["unschedulable"] == "True")


def concurrent_case(op: Operator) -> Outcome:
    reset_node()
    first = op.start("up", "--yes", "--skip-preview")
    lines: list[str] = []
    for line in first.stdout:
        lines.append(line)
        if started("prestage").search(line):
            break
    before = node_state()
    code, second = op.up()
    refused = code != 0 and "locked" in second
    rest, _ = first.communicate(timeout=900)
    verdict, state = settle()
    cordoned = state["unschedulable"] == "True" or state["annotated"] == "True"
    return Outcome("concurrent", "second up during prestage", verdict, refused,
                   first.returncode == 0 and verdict == "new", cordoned,
                   f"second: exit {code}: {second[-1500:]}\nbefore {before}\n{''.join(lines)[-1500:]}{rest[-1500:]}")


HEADER = (f"{'kind':<10} {'point':<34} {'verdict':<8} {'message':<8} {'converged':<10} left cordoned")


def summary(outcomes: list[Outcome]) -> str:
    total = len(outcomes)
    count = {v: sum(o.verdict == v for o in outcomes) for v in ("old", "new", "between")}
    return (f"cases {total}: fully old {count['old']}, fully new {count['new']}, in between {count['between']}, "
            f"converged on re-run {sum(o.converged for o in outcomes)}, "
            f"left cordoned {sum(o.left_cordoned for o in outcomes)}, "
            f"error named node and step {sum(o.message_ok for o in outcomes)}")


def lab_config() -> dict:
    lab.script("lab-up.sh", env=LAB_ENV)
    config = lab.require_lab()
    assert config["config"]["shimless:cluster"] == {"mode": "kubeconfig"}, "lab-up did not start the cluster"
    return config
