"""kubectl with a kubeconfig given as text (a secret that never touches the
project's files), for the steps that read the cluster where Pulumi runs."""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile


class KubectlError(Exception):
    pass


def kubectl_json(kubeconfig: str, *args: str, timeout: int = 30) -> dict:
    """`kubectl ARGS -o json` parsed; KubectlError with kubectl's last line on failure."""
    if shutil.which("kubectl") is None:
        raise KubectlError("kubectl is not on PATH where Pulumi runs")
    with tempfile.NamedTemporaryFile("w", prefix="shimless-kubeconfig-") as handle:
        handle.write(kubeconfig)
        handle.flush()
        done = subprocess.run(["kubectl", "--kubeconfig", handle.name, *args, "-o", "json",
                               f"--request-timeout={timeout}s"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise KubectlError((done.stderr.strip().splitlines() or [f"kubectl exited {done.returncode}"])[-1])
    return json.loads(done.stdout)
