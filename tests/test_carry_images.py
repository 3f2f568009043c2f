"""Pre-stage's image carry-over (scripts/prestage.sh carry_images) into CRI-O,
run in bash against fake docker, crio, skopeo and df: the space check blocks
the node before anything is copied, a copy is verified by image ID, and a tag
already there under the same ID is never copied again."""
from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from components import manifest
from tests.test_images_plan import BASH, SCRIPTS, fake_node  # noqa: F401  (fake_node is a fixture)

PAUSE = "registry.k8s.io/pause:3.6"
CONFIGS = {PAUSE: '{"config": "pause"}', "lab.invalid/app:1": '{"config": "app"}'}


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
              digest(CONFIGS["lab.invalid/app:1"]): {"tags": ["lab.invalid/app:1"], "size": 300 << 20, "layers": 2}}
    containers = {"k8s_app_app-1_default_0a1b_0": digest(CONFIGS["lab.invalid/app:1"])}
    Path(fake_node["FAKE_DOCKER_DATA"]).write_text(json.dumps({"images": images, "containers": containers}))
    configs = {**CONFIGS, "k8s.gcr.io/pause:3.6": CONFIGS[PAUSE]}
    (tmp_path / "storage").mkdir()
    return {**fake_node, "FAKE_STORE": str(tmp_path / "store.json"), "FAKE_CONFIGS": json.dumps(configs),
            "FAKE_CRIO_ROOT": str(tmp_path / "storage"), "FAKE_AVAIL": str(10 << 30)}


def carry(env: dict, mode: str = "pods") -> subprocess.CompletedProcess:
    """carry_images as pre-stage's main calls it (prestage.sh without its last line, `main "$@"`)."""
    prestage = (SCRIPTS / "prestage.sh").read_text()
    assert prestage.rstrip().endswith('main "$@"')
    text = (manifest.shell("cri-o") + f'set -euo pipefail\nSHIMLESS_BUNDLE=/nonexistent\n. {SCRIPTS / "node-lib.sh"}\n'
            + prestage.rstrip()[: -len('main "$@"')].split("SHIMLESS_NODE=$(var node)", 1)[1]
            + '\nKUBEADM_FLAGS_ENV=/nonexistent\ncarry_images "$1" cri-o "$2"\n'
            'echo "carried $CARRIED_IMAGES $CARRIED_BYTES"\n')
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
