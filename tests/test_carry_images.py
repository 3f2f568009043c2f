"""Pre-stage's image carry-over (scripts/prestage.sh carry_images) into CRI-O
and containerd, run in bash against fake docker, crio, skopeo, ctr and df: the
space check blocks the node before anything is copied, a copy is verified by
image ID, a name already there under the same ID is never copied again, and
registry digest names (repo@sha256:...) reach containerd but not CRI-O."""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from components import manifest
from tests.test_images_plan import (  # noqa: F401  (fake_node is a fixture)
    BASH, SCRIPTS, ctr_calls, docker_calls, fake_node, unix_socket, with_containerd_socket,
)

PAUSE = "registry.k8s.io/pause:3.6"
CONFIGS = {PAUSE: '{"config": "pause"}', "lab.invalid/app:1": '{"config": "app"}',
           "pinned": '{"config": "pinned"}'}
APP_DIGEST = f"lab.invalid/app@sha256:{'3' * 64}"  # app:1 as its registry served it
PINNED = f"lab.invalid/pinned@sha256:{'4' * 64}"  # pulled by digest only: no tag


def digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# skopeo: copies recorded in FAKE_STORE (ref -> config); inspect --config --raw prints it.
FAKE_SKOPEO = r'''#!/usr/bin/env python3
import json, os, sys
store_file, configs = os.environ["FAKE_STORE"], json.loads(os.environ["FAKE_CONFIGS"])
store = json.load(open(store_file)) if os.path.exists(store_file) else {}
args = [a for a in sys.argv[1:] if a != "--quiet"]
def ref(arg): return arg.split("]", 1)[1]
if args[:1] == ["copy"]:
    source, dest = args[1].removeprefix("docker-daemon:"), args[2]
    assert dest.startswith("containers-storage:[vfs@"), dest
    store[ref(dest)] = configs[source]
    json.dump(store, open(store_file, "w"))
    open(os.environ["FAKE_STORE"] + ".log", "a").write(f"{source}\n")
elif args[:3] == ["inspect", "--config", "--raw"] and ref(args[3]) in store:
    sys.stdout.write(store[ref(args[3])])
else:
    sys.exit(1)
'''
FAKE_CRIO = '''#!/bin/sh
[ "$1" = config ] || exit 1
printf '[crio]\\n# root = "%s"\\n# runroot = "/run/containers/storage"\\nstorage_driver = "vfs"\\n' "$FAKE_CRIO_ROOT"
'''
FAKE_DF = '''#!/bin/sh
printf 'Filesystem 1-blocks Used Available Capacity Mounted on\\n/dev/x 100 0 %s 0%% /\\n' "$FAKE_AVAIL"
'''


@pytest.fixture
def crio_node(fake_node, tmp_path: Path):  # noqa: F811
    bin_dir = Path(fake_node["PATH"].split(":")[0])
    for name, text in (("skopeo", FAKE_SKOPEO), ("crio", FAKE_CRIO), ("df", FAKE_DF)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    images = {digest(CONFIGS[PAUSE]): {"tags": [PAUSE, "k8s.gcr.io/pause:3.6"], "size": 700_000, "layers": 1},
              digest(CONFIGS["lab.invalid/app:1"]): {"tags": ["lab.invalid/app:1"], "size": 300 << 20, "layers": 2,
                                                     "digests": [APP_DIGEST]},
              digest(CONFIGS["pinned"]): {"tags": [], "size": 1 << 20, "digests": [PINNED]}}
    containers = {"k8s_app_app-1_default_0a1b_0": digest(CONFIGS["lab.invalid/app:1"]),
                  "k8s_pinned_pinned-1_default_2c3d_0": digest(CONFIGS["pinned"])}
    Path(fake_node["FAKE_DOCKER_DATA"]).write_text(json.dumps({"images": images, "containers": containers}))
    configs = {**CONFIGS, "k8s.gcr.io/pause:3.6": CONFIGS[PAUSE]}
    (tmp_path / "storage").mkdir()
    return {**fake_node, "FAKE_STORE": str(tmp_path / "store.json"), "FAKE_CONFIGS": json.dumps(configs),
            "FAKE_CRIO_ROOT": str(tmp_path / "storage"), "FAKE_AVAIL": str(10 << 30)}


def carry(env: dict, mode: str = "pods", runtime: str = "cri-o") -> subprocess.CompletedProcess:
    """carry_images as pre-stage's main calls it (prestage.sh without its last line, `main "$@"`),
    with containerd's socket at CONTAINERD_SOCKET from `env` when it names one."""
    prestage = (SCRIPTS / "prestage.sh").read_text()
    assert prestage.rstrip().endswith('main "$@"')
    text = (manifest.shell(runtime) + f'set -euo pipefail\nSHIMLESS_BUNDLE=/nonexistent\n. {SCRIPTS / "node-lib.sh"}\n'
            + prestage.rstrip()[: -len('main "$@"')].split("SHIMLESS_NODE=$(var node)", 1)[1]
            + f'\nKUBEADM_FLAGS_ENV=/nonexistent\ncarry_images "$1" {runtime} "$2"\n'
            'echo "carried $CARRIED_IMAGES $CARRIED_BYTES"\n')
    if "CONTAINERD_SOCKET" in env:
        text = with_containerd_socket(text, env["CONTAINERD_SOCKET"])
    return subprocess.run([BASH, "-c", text, "bash", mode, PAUSE], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def copies(env: dict) -> list[str]:
    log = Path(env["FAKE_STORE"] + ".log")
    return log.read_text().split("\n")[:-1] if log.exists() else []


def test_not_enough_space_blocks_before_anything_is_copied(crio_node):
    # vfs keeps a full copy per layer: 300 MiB x 2 layers + the pause image, twice, plus a margin
    done = carry({**crio_node, "FAKE_AVAIL": str(1 << 30)})
    assert done.returncode != 0
    assert "not enough space for Docker's images in " + crio_node["FAKE_CRIO_ROOT"] in done.stderr
    assert "2 image(s), 600 MiB to copy" in done.stderr and "MiB free" in done.stderr
    assert copies(crio_node) == []


def test_copies_every_tag_verifies_it_and_copies_nothing_the_second_time(crio_node):
    done = carry(crio_node)
    assert done.returncode == 0, done.stderr
    assert sorted(copies(crio_node)) == sorted(["k8s.gcr.io/pause:3.6", PAUSE, "lab.invalid/app:1"])
    assert done.stdout.split()[:2] == ["carried", "2"]
    # the registry digests stay behind, and the log says so and why
    assert "2 registry digest name(s) not carried into CRI-O" in done.stderr
    again = carry(crio_node)
    assert again.returncode == 0 and again.stdout.split()[:2] == ["carried", "0"]
    assert len(copies(crio_node)) == 3
    assert "already in cri-o's store" in again.stderr


def test_a_copy_that_does_not_arrive_under_the_same_id_fails(crio_node):
    configs = json.loads(crio_node["FAKE_CONFIGS"])
    configs["lab.invalid/app:1"] = '{"config": "something else"}'
    done = carry({**crio_node, "FAKE_CONFIGS": json.dumps(configs)})
    assert done.returncode != 0
    assert "lab.invalid/app:1 is not in cri-o's store as " + digest(CONFIGS["lab.invalid/app:1"]) in done.stderr


def test_none_copies_nothing_and_docker_stopped_carries_nothing(crio_node):
    assert carry(crio_node, "none").stdout.split()[:2] == ["carried", "0"]
    stopped = carry({**crio_node, "FAKE_DOCKER_ACTIVE": "0"})
    assert stopped.returncode == 0 and stopped.stdout.split()[:2] == ["carried", "0"]
    assert copies(crio_node) == []


@pytest.fixture
def containerd_node(crio_node, tmp_path: Path):
    return {**crio_node, "CONTAINERD_SOCKET": unix_socket(tmp_path / "containerd.sock")}


def containerd_names(env: dict) -> dict[str, str]:
    """Each name in the fake containerd -> the image ID (config digest) behind it."""
    state = json.loads(Path(env["FAKE_CTR_STORE"]).read_text())
    ids = {}
    for name, target in state["names"].items():
        content = json.loads(state["blobs"][target])
        if "manifests" in content:
            content = json.loads(state["blobs"][content["manifests"][0]["digest"]])
        ids[name] = content["config"]["digest"]
    return ids


def test_containerd_gets_every_tag_in_one_stream_and_every_registry_digest_as_a_name(containerd_node):
    done = carry(containerd_node, runtime="containerd")
    assert done.returncode == 0, done.stderr
    app, pinned, pause = (digest(CONFIGS[ref]) for ref in ("lab.invalid/app:1", "pinned", PAUSE))
    assert containerd_names(containerd_node) == {
        PAUSE: pause, "k8s.gcr.io/pause:3.6": pause, "lab.invalid/app:1": app,
        APP_DIGEST: app,  # a second name of the imported image, not a second import
        PINNED: pinned,  # saved by its ID and imported on its own, kept under its digest name
    }
    assert done.stdout.split()[:2] == ["carried", "3"]
    saves = [call for call in docker_calls(containerd_node) if call.startswith("save ")]
    assert sorted(saves) == sorted([f"save {PAUSE} k8s.gcr.io/pause:3.6 lab.invalid/app:1", f"save {pinned}"])
    assert f"images tag --force lab.invalid/app:1 {APP_DIGEST}" in " ".join(ctr_calls(containerd_node))
    # a re-run copies nothing and names nothing again
    before = len(ctr_calls(containerd_node))
    again = carry(containerd_node, runtime="containerd")
    assert again.returncode == 0 and again.stdout.split()[:2] == ["carried", "0"], again.stderr
    assert "already in containerd's store" in again.stderr
    assert len([call for call in docker_calls(containerd_node) if call.startswith("save ")]) == 2
    assert not [call for call in ctr_calls(containerd_node)[before:] if " import " in call or " tag " in call]


def test_a_digest_name_held_by_another_image_is_named_again(containerd_node):
    assert carry(containerd_node, runtime="containerd").returncode == 0
    state = json.loads(Path(containerd_node["FAKE_CTR_STORE"]).read_text())
    state["names"][APP_DIGEST] = state["names"][PAUSE]  # the name now points elsewhere
    Path(containerd_node["FAKE_CTR_STORE"]).write_text(json.dumps(state))
    again = carry(containerd_node, runtime="containerd")
    assert again.returncode == 0 and again.stdout.split()[:2] == ["carried", "1"], again.stderr
    assert containerd_names(containerd_node)[APP_DIGEST] == digest(CONFIGS["lab.invalid/app:1"])
