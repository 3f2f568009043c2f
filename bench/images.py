"""Docker's images carried over (issue 16): how fast pre-stage carries them, and
what carrying saves the pods after the switch.

On the plain lab (lab/lab-up.sh: standalone real 1.23 kubelets), lab-w1 only:

1. A registry on loopback (Debian's docker-registry, tests/lab.py) gets an
   image of --image-mb MiB of random data on the lab's pause image, pushed
   from lab-w1's Docker; lab-w1 runs a static pod of it (by that registry
   name, imagePullPolicy IfNotPresent) on Docker, beside the lab's own.
2. A real `pulumi up` of a stack holding lab-w1 only (target.images: pods,
   the registry in target.insecureRegistries so that containerd may pull from
   it over http) moves lab-w1 to containerd. Its `nodes` output says what
   pre-stage carried: images, bytes and seconds; throughput = bytes / seconds.
3. The time from `systemctl start kubelet` to every static pod's container
   running on containerd, measured on the node (one shell loop, 0.1 s polls),
   alternately (carried, pulled, pulled, carried, ... for --rounds):
   carried: the images as pre-stage left them; pulled: the bench image removed
   from containerd first, so the kubelet pulls it from the registry. Before
   each: kubelet stopped and every pod sandbox removed.

Prints
    carry: N image(s), X MiB in S s (T MiB/s, G s per GiB)
    kubelet start to pods running: carried C s, pulled P s (P/C = x)
and writes bench/out/images-<UTC stamp>.json. lab-w1 is reset to Docker at
the end (lab/lab-reset.sh).

    source tools/env.sh && python bench/images.py [--image-mb 1024] [--rounds 2]
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import lab  # noqa: E402

OUT_DIR = ROOT / "bench" / "out"
NODE = "lab-w1"
POD = "bench-carry"
PAUSE_IMAGE = "registry.k8s.io/pause:3.6"  # lab/lib.sh's LAB_PAUSE_IMAGE: in every lab node's Docker
CRICTL = "crictl --runtime-endpoint unix:///run/containerd/containerd.sock"


def build_and_push(image: str, image_mb: int) -> int:
    """The image in lab-w1's Docker and in the registry; its size in bytes."""
    return int(lab.ssh(NODE, (
        f"set -euo pipefail; dir=$(mktemp -d); head -c {image_mb}M /dev/urandom > \"$dir/ballast\"; "
        f"printf 'FROM {PAUSE_IMAGE}\\nCOPY ballast /ballast\\n' > \"$dir/Dockerfile\"; "
        f"DOCKER_BUILDKIT=0 docker build -q -t {image} \"$dir\" >/dev/null; rm -rf \"$dir\"; "
        f"docker push {image} >/dev/null; docker image inspect --format '{{{{.Size}}}}' {image}"),
        timeout=1800).stdout.split()[-1])


def run_static_pod(image: str) -> None:
    manifest = (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {POD}\n  namespace: default\nspec:\n"
                f"  hostNetwork: true\n  containers:\n  - name: {POD}\n    image: {image}\n"
                "    imagePullPolicy: IfNotPresent\n    command: [/pause]\n")
    lab.out(NODE, f"cat >/etc/kubernetes/manifests/{POD}.yaml <<'EOF'\n{manifest}EOF")
    pods = lab.kubelet(NODE, attempts=180)["pods"]
    if pods.get(f"{POD}-{NODE}") != {"runtime": "docker", "running": True}:
        raise SystemExit(f"{POD} does not run on Docker on {NODE}: {pods}")


def migrate(config: dict, registry: str, tmp: Path) -> dict:
    """`pulumi up` of lab-w1 alone; its `nodes` output entry."""
    config = copy.deepcopy(config)
    settings = config["config"]
    settings["shimless:nodes"] = [node for node in settings["shimless:nodes"] if node["name"] == NODE]
    target = settings.setdefault("shimless:target", {})
    target["images"] = "pods"
    target["insecureRegistries"] = [*target.get("insecureRegistries", []), registry]
    stack = lab.engine_stack(lab.project_copy(tmp, config), tmp / "state")
    result = stack.up(color="never")
    if result.summary.result != "succeeded":
        raise SystemExit(f"pulumi up: {result.summary.result}")
    return stack.outputs()["nodes"].value[NODE]


def kubelet_start_to_running(image: str, pull: bool, containers: int) -> float:
    """Seconds from `systemctl start kubelet` to `containers` running, on the node."""
    remove = f"{CRICTL} rmi {image} >/dev/null; " if pull else ""
    script = (
        "set -euo pipefail; systemctl stop kubelet; "
        f"{CRICTL} rmp -fa >/dev/null 2>&1 || true; {remove}"
        f"if {CRICTL} inspecti {image} >/dev/null 2>&1; then present=1; else present=0; fi; "
        "start=$(date +%s%N); systemctl start kubelet; "
        f"until [ \"$({CRICTL} ps --state running -q 2>/dev/null | grep -c .)\" -ge {containers} ]; do "
        "  [ $(( $(date +%s%N) - start )) -lt 600000000000 ] || { echo timeout; exit 1; }; sleep 0.1; done; "
        "echo \"$present $(( ($(date +%s%N) - start) / 1000000 ))\"")
    present, millis = lab.out(NODE, script).split()[-2:]
    if present != ("0" if pull else "1"):
        raise SystemExit(f"{image} {'still' if pull else 'not'} in containerd before a {'pulled' if pull else 'carried'} run")
    return int(millis) / 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-mb", type=int, default=1024, help="MiB of random data in the bench image")
    parser.add_argument("--rounds", type=int, default=2, help="carried/pulled pairs, alternated ABBA")
    options = parser.parse_args(argv)
    if options.image_mb < 1 or options.rounds < 1:
        parser.error("--image-mb and --rounds must be at least 1")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    lab.script("lab-up.sh")
    config = lab.require_lab()
    if config["config"].get("shimless:cluster") != {"mode": "none"}:
        raise SystemExit("bench/images.py needs the plain lab (lab/lab-up.sh without LAB_CLUSTER)")
    lab.reset(NODE)
    try:
        with tempfile.TemporaryDirectory() as tmp, lab.registry(Path(tmp)) as registry:
            image = f"{registry}/bench/carry:1"
            size = build_and_push(image, options.image_mb)
            run_static_pod(image)
            containers = len(lab.kubelet(NODE)["pods"])  # one container per static pod
            node = migrate(config, registry, Path(tmp))
            carried = node["imagesCarried"]
            if node["runtimeAfter"] != "containerd" or not carried or int(carried["bytes"]) < size:
                raise SystemExit(f"the bench image was not carried: {node}")
            times: dict[str, list[float]] = {"carried": [], "pulled": []}
            order = [label for round_ in range(options.rounds)
                     for label in (("carried", "pulled") if round_ % 2 == 0 else ("pulled", "carried"))]
            for label in order:
                times[label].append(kubelet_start_to_running(image, label == "pulled", containers))
                print(f"{label}: {times[label][-1]:.1f} s", flush=True)
    finally:
        lab.reset(NODE)
    mib, seconds = int(carried["bytes"]) / 2**20, max(int(carried["seconds"]), 1)
    carried_s, pulled_s = statistics.median(times["carried"]), statistics.median(times["pulled"])
    result = {
        "stamp": stamp, "image_mb": options.image_mb, "image_bytes": size, "rounds": options.rounds,
        "carry": {"images": int(carried["images"]), "bytes": int(carried["bytes"]), "seconds": int(carried["seconds"]),
                  "mib_per_s": round(mib / seconds, 1), "s_per_gib": round(seconds / (mib / 1024), 1)},
        "kubelet_start_to_running_s": {"carried": times["carried"], "pulled": times["pulled"],
                                       "carried_median": carried_s, "pulled_median": pulled_s,
                                       "pulled_over_carried": round(pulled_s / carried_s, 2)},
    }
    print(f"carry: {result['carry']['images']} image(s), {mib:.0f} MiB in {int(carried['seconds'])} s "
          f"({result['carry']['mib_per_s']} MiB/s, {result['carry']['s_per_gib']} s per GiB)")
    print(f"kubelet start to pods running: carried {carried_s:.1f} s, pulled {pulled_s:.1f} s "
          f"(P/C = {result['kubelet_start_to_running_s']['pulled_over_carried']})")
    out = OUT_DIR / f"images-{stamp}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"figures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
