"""Helpers for end-to-end tests: the lab's nodes (through lab/ssh) and the real
Pulumi engine (Automation API) on a private copy of the project."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
LAB_STACK = ROOT / "stacks" / "Pulumi.lab.yaml"
NODES = ("lab-cp1", "lab-w1", "lab-w2")
# The standalone nodes' workload image: only in Docker, in no registry (lab/lib.sh).
WORKLOAD_IMAGE = "lab.invalid/shimless/workload:1"


def require_lab() -> dict:
    """The generated lab stack config; fails (never skips) when the lab is not up."""
    if not LAB_STACK.is_file():
        raise AssertionError("stacks/Pulumi.lab.yaml is missing: run `make lab-up` first (make test does)")
    if shutil.which("pulumi") is None:
        raise AssertionError("no pulumi CLI on PATH: run through `make test` (it sources tools/env.sh)")
    return yaml.safe_load(LAB_STACK.read_text())


def ssh(node: str, command: str, *, check: bool = True, timeout: int = 60) -> subprocess.CompletedProcess:
    done = subprocess.run([str(ROOT / "lab" / "ssh"), node, command], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{node}: `{command}` failed ({done.returncode}): {done.stderr.strip()}")
    return done


def out(node: str, command: str) -> str:
    return ssh(node, command).stdout.strip()


LAB_PORT_BASE = 22200


def _port_offset(node: str) -> int:
    for entry in require_lab()["config"]["shimless:nodes"]:
        if entry["name"] == node:
            return int(entry["port"]) - LAB_PORT_BASE
    raise AssertionError(f"{node} is not in stacks/Pulumi.lab.yaml")


def kubelet(node: str, *, attempts: int = 30) -> dict:
    """What the real (standalone) kubelet on `node` reports about itself.

    mode/endpoint: from the running kubelet's command line; ready: its healthz
    answers and every static pod it runs is running; runtime: the runtime of
    its pods' containers (containerd://..., docker://..., cri-o://... IDs in
    its own GET /pods), "mixed" if they differ. Retries while the kubelet is
    still (re)starting its pods, up to `attempts` seconds."""
    n = _port_offset(node)
    probe = ("pid=$(systemctl show -p MainPID --value kubelet); "
             "[ \"$pid\" != 0 ] && tr '\\0' ' ' </proc/$pid/cmdline; echo; "
             f"curl -fsS --max-time 5 http://127.0.0.1:{24150 + n}/healthz && echo && "
             f"curl -fsSk --max-time 5 https://127.0.0.1:{24250 + n}/pods")
    report: dict = {}
    for _ in range(attempts):
        lines = ssh(node, probe, check=False).stdout.split("\n", 2)
        cmdline = lines[0].split()
        flags = dict(arg[2:].split("=", 1) for arg in cmdline if arg.startswith("--") and "=" in arg)
        healthy = len(lines) > 1 and lines[1].strip() == "ok"
        pods = {}
        if healthy and len(lines) > 2 and lines[2].strip():
            for pod in json.loads(lines[2]).get("items") or []:
                statuses = pod.get("status", {}).get("containerStatuses") or []
                runtimes = {st["containerID"].split("://")[0] for st in statuses if st.get("containerID")}
                running = bool(statuses) and all("running" in (st.get("state") or {}) for st in statuses)
                pods[pod["metadata"]["name"]] = {"runtime": ",".join(sorted(runtimes)), "running": running}
        runtimes = {pod["runtime"] for pod in pods.values()}
        report = {
            "mode": "remote" if flags.get("container-runtime") == "remote" else "dockershim",
            "endpoint": flags.get("container-runtime-endpoint", "unix:///var/run/dockershim.sock"),
            "pods": pods,
            "runtime": runtimes.pop() if len(runtimes) == 1 else ("mixed" if runtimes else None),
            "ready": healthy and bool(pods) and all(pod["running"] for pod in pods.values()),
        }
        if report["ready"] and report["runtime"] != "mixed":
            return report
        time.sleep(1)
    return report


def fingerprint(node: str, paths: tuple[str, ...]) -> str:
    """Name, mtime, size and hash of each file: equal only if nothing rewrote them."""
    listed = " ".join(paths)
    return out(node, f"stat -c '%n %Y %s' {listed} && sha256sum {listed}")


def script(name: str, *args: str, env: dict | None = None) -> None:
    """Run lab/NAME; on failure, raise with the end of what it printed."""
    done = subprocess.run(["bash", str(ROOT / "lab" / name), *args], env=env, capture_output=True, text=True,
                          timeout=1800, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
        raise AssertionError(f"lab/{name} {' '.join(args)} failed ({done.returncode}):\n{tail}")


def reset(*nodes: str) -> None:
    script("lab-reset.sh", *nodes)


def project_copy(tmp: Path, stack_config: dict | None = None, stack: str = "lab") -> Path:
    """A private copy of the project whose stack file tests may change freely."""
    work = tmp / "project"
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Pulumi.yaml", work / "Pulumi.yaml")
    shutil.copy(ROOT / "__main__.py", work / "__main__.py")
    shutil.copytree(ROOT / "components", work / "components", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    if not (work / ".venv").exists():
        (work / ".venv").symlink_to(ROOT / ".venv")
    (work / "stacks").mkdir(exist_ok=True)
    config = stack_config if stack_config is not None else yaml.safe_load(LAB_STACK.read_text())
    (work / "stacks" / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return work


def engine_stack(work: Path, backend: Path, stack: str = "lab"):
    from pulumi import automation as auto
    backend.mkdir(parents=True, exist_ok=True)
    env = {
        "PULUMI_BACKEND_URL": f"file://{backend}",
        "PULUMI_CONFIG_PASSPHRASE": os.environ.get("PULUMI_CONFIG_PASSPHRASE", "shimless-lab"),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
    }
    opts = auto.LocalWorkspaceOptions(work_dir=str(work), env_vars=env,
                                      pulumi_home=os.environ.get("PULUMI_HOME"))
    return auto.create_or_select_stack(stack_name=stack, work_dir=str(work), opts=opts)


def changes(summary: dict) -> dict:
    """The operations of a preview or update other than `same`."""
    return {op: count for op, count in (summary or {}).items() if op != "same" and count}


OCI_RECORDER = "/usr/local/bin/lab-oci-recorder"
OCI_RECORD = "/var/log/lab-oci-recorder.log"
OCI_RECORDER_NAME = "lab-recorder"


def install_oci_recorder(node: str) -> None:
    """Make `node` a Docker-era node with an extra OCI runtime as Docker's
    default, as GPU nodes have nvidia's: a wrapper that records each call
    (its arguments name the container) and then runs runc."""
    out(node, f"printf '%s\\n' '#!/bin/sh' 'echo \"$*\" >> {OCI_RECORD}' 'exec /usr/local/sbin/runc \"$@\"' "
              f"> {OCI_RECORDER} && chmod 0755 {OCI_RECORDER}")
    daemon = json.loads(out(node, "cat /etc/docker/daemon.json"))
    daemon["runtimes"] = {OCI_RECORDER_NAME: {"path": OCI_RECORDER}}
    daemon["default-runtime"] = OCI_RECORDER_NAME
    done = subprocess.run([str(ROOT / "lab" / "ssh"), node, "cat > /etc/docker/daemon.json && systemctl restart docker"],
                          input=json.dumps(daemon, indent=2), capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{node}: could not register the OCI recorder with Docker: {done.stderr.strip()}")


def through_oci_recorder(node: str, endpoint: str, *, sandboxes: bool = True) -> tuple[set[str], set[str]]:
    """(IDs of the containers the runtime behind `endpoint` runs, those of them
    the recorder saw created). `sandboxes`: pod sandboxes run a container of
    their own (containerd's pause); CRI-O drops it for host-network pods
    (drop_infra_ctr), so their IDs never reach an OCI runtime."""
    ids = set(out(node, f"crictl --runtime-endpoint {endpoint} ps -q").split())
    if sandboxes:
        ids |= set(out(node, f"crictl --runtime-endpoint {endpoint} pods -q").split())
    record = out(node, f"cat {OCI_RECORD} 2>/dev/null || true")
    seen = {cid for cid in ids if any(" create " in f" {line} " and cid in line for line in record.splitlines())}
    return ids, seen


# --- a registry on loopback, for images Docker knows by their registry digest -

LAB_CACHE = Path(os.environ.get("LAB_CACHE_DIR") or
                 Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "shimless" / "lab")


def registry_binary() -> Path:
    """Debian's docker-registry (the distribution registry), unpacked from its
    package into the lab's cache: no service is installed, nothing starts."""
    target = LAB_CACHE / "bin" / "docker-registry"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        download = ["apt-get", "download", "-o", "APT::Sandbox::User=root", "docker-registry"]
        if subprocess.run(download, cwd=tmp, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, check=False)  # lists missing or stale
            subprocess.run(download, cwd=tmp, capture_output=True, text=True, check=True)
        deb = next(Path(tmp).glob("docker-registry_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), f"{tmp}/root"], check=True)
        os.replace(f"{tmp}/root/usr/bin/docker-registry", target)
    return target


@contextlib.contextmanager
def registry(workdir: Path):
    """A registry on a free loopback port for the length of the block; yields
    its host:port. Stopped by its own pid."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = workdir / "registry.yml"
    config.write_text(yaml.safe_dump({
        "version": 0.1, "log": {"level": "error"},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "registry-data")}},
        "http": {"addr": f"127.0.0.1:{port}"}}))
    with open(workdir / "registry.log", "w") as log:
        server = subprocess.Popen([str(registry_binary()), "serve", str(config)], stdout=log, stderr=log)
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2):
                    break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError(f"docker-registry exited: {(workdir / 'registry.log').read_text()[-500:]}")
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
