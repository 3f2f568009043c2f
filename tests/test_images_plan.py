"""Docker's images in the plan: the probe counts what pre-stage will carry
(target.images pods | all) with pre-stage's own selection (node-lib.sh
images_to_carry), asked of a fake `docker`; the plan shows it per node and
never takes images for drift."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from components import manifest
from components.bundle import probe_script, script
from components.facts import ImagesToCarry, NodeFacts, parse_probe_output
from components.plan import plan_node
from tests.conftest import ROOT, docker_era_facts, migrated_facts

SCRIPTS = ROOT / "components" / "scripts"
BASH = shutil.which("bash") or "/bin/bash"
PAUSE = "registry.k8s.io/pause:3.9"  # the target's sandbox image
INFRA = "k8s.gcr.io/pause:3.6"  # the kubelet's --pod-infra-container-image


def image_id(letter: str) -> str:
    return "sha256:" + letter * 64


# What the fake Docker holds: images by ID (tags, size) and containers by name
# (its image's ID). dockershim and cri-dockerd name pod containers k8s_*.
IMAGES = {
    image_id("a"): {"tags": [PAUSE], "size": 700_000},
    image_id("b"): {"tags": [INFRA], "size": 680_000},
    image_id("c"): {"tags": ["nginx:1.25", "localhost/web:prod"], "size": 190_000_000},
    image_id("d"): {"tags": ["busybox:1.36"], "size": 4_000_000},  # only a container outside Kubernetes runs it
    image_id("e"): {"tags": [], "size": 50_000_000},  # a pod's image pulled by digest: no tag
    image_id("f"): {"tags": [], "size": 10_000},  # dangling
}
CONTAINERS = {
    "k8s_POD_web-1_default_0a1b_0": image_id("b"),
    "k8s_web_web-1_default_0a1b_0": image_id("c"),
    "k8s_app_digested-1_default_2c3d_1": image_id("e"),
    "builder": image_id("d"),
}
# pods: the pod containers' images, the pause image and the kubelet's infra
# image, untagged ones left out; all: every tagged image.
PODS = {image_id("a"), image_id("b"), image_id("c")}
ALL = PODS | {image_id("d")}

# `docker` as the probe and pre-stage ask it, answering from FAKE_DOCKER_DATA and
# writing each call to FAKE_DOCKER_LOG. Anything else fails, like a docker
# that cannot reach its daemon.
FAKE_DOCKER = r'''#!/usr/bin/env python3
import json, os, sys
data = json.load(open(os.environ["FAKE_DOCKER_DATA"]))
images, containers = data["images"], data["containers"]
args = sys.argv[1:]
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(" ".join(args) + "\n")

def option(name):
    return args[args.index(name) + 1]

if args[:1] == ["ps"] and "-aq" in args:
    wanted = option("--filter").removeprefix("name=")
    print("\n".join(name for name in containers if wanted in name))
elif args[:1] == ["images"] and "-q" in args:
    for ident, image in images.items():
        for _ in image["tags"] or [None]:
            print(ident)
elif args[:1] == ["inspect"] and option("--format") == "{{.Image}}":
    print("\n".join(containers[name] for name in args[3:]))
elif args[:2] == ["image", "inspect"]:
    form, failed = option("--format"), False
    for ref in args[4:]:
        ident = ref if ref in images else next((i for i, image in images.items() if ref in image["tags"]), None)
        if ident is None:
            print(f"Error: No such image: {ref}", file=sys.stderr)
            failed = True
        elif form == "{{.Id}}":
            print(ident)
        elif form == "{{.Size}}":
            print(images[ident]["size"])
        elif form == "{{.Size}} {{len .RootFS.Layers}}":
            print(images[ident]["size"], images[ident].get("layers", 1))
        elif form == "{{range .RepoTags}}{{$.Id}} {{.}}{{println}}{{end}}":
            print("".join(f"{ident} {tag}\n" for tag in images[ident]["tags"]))
        else:
            sys.exit(f"fake docker: format {form!r} not faked")
    sys.exit(1 if failed else 0)
else:
    print("Cannot connect to the Docker daemon", file=sys.stderr)
    sys.exit(1)
'''

# systemctl: docker.service active when FAKE_DOCKER_ACTIVE=1, every other unit absent.
FAKE_SYSTEMCTL = r'''#!/bin/sh
for unit; do :; done
case "$1" in
  is-active)
    state=inactive rc=3
    if [ "$unit" = docker.service ] && [ "${FAKE_DOCKER_ACTIVE:-}" = 1 ]; then state=active rc=0; fi
    [ "$2" = --quiet ] || echo "$state"
    exit "$rc" ;;
esac
exit 1
'''


@pytest.fixture
def fake_node(tmp_path: Path):
    """A PATH with the fake docker and systemctl in front of the system's tools
    (not /usr/local/bin: no real docker), and the environment they read."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("docker", FAKE_DOCKER), ("systemctl", FAKE_SYSTEMCTL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "docker.json").write_text(json.dumps({"images": IMAGES, "containers": CONTAINERS}))
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_DOCKER_DATA": str(tmp_path / "docker.json"),
            "FAKE_DOCKER_LOG": str(tmp_path / "docker.log"), "FAKE_DOCKER_ACTIVE": "1"}


READ_ONLY = ("ps -aq ", "images -q ", "inspect --format ", "image inspect ", "version ", "info ")


def docker_calls(env: dict) -> list[str]:
    log = Path(env["FAKE_DOCKER_LOG"])
    return log.read_text().splitlines() if log.exists() else []


def run_bash(text: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([BASH, "-c", text, "bash", *args], capture_output=True, text=True, env=env,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done


def carried(env: dict, mode: str, flags_file: Path) -> set[tuple[str, str]]:
    """The "ID REF" lines node-lib.sh's images_to_carry prints, as pre-stage calls it."""
    text = (manifest.shell() + f'set -euo pipefail\n. {SCRIPTS / "node-lib.sh"}\nKUBEADM_FLAGS_ENV={flags_file}\n'
            'images_to_carry "$1" "$2"\n')
    lines = run_bash(text, env, mode, PAUSE).stdout.splitlines()
    assert len(lines) == len(set(lines))
    return {tuple(line.split(" ")) for line in lines}


# --- the selection: one function, node-lib.sh's ------------------------------


def test_pods_carries_the_pod_containers_images_the_pause_and_the_infra_image(fake_node, tmp_path):
    flags = tmp_path / "kubeadm-flags.env"
    flags.write_text(f'KUBELET_KUBEADM_ARGS="--network-plugin=cni --pod-infra-container-image={INFRA}"\n')
    lines = carried(fake_node, "pods", flags)
    assert lines == {(image_id("a"), PAUSE), (image_id("b"), INFRA),
                     (image_id("c"), "nginx:1.25"), (image_id("c"), "localhost/web:prod")}


def test_pods_without_kubeadm_flags_still_has_the_sandboxes_image(fake_node, tmp_path):
    # The infra image is what the k8s_POD_ sandbox runs: found through it.
    assert {ident for ident, _ in carried(fake_node, "pods", tmp_path / "absent")} == PODS


def test_all_carries_every_tag_of_every_tagged_image(fake_node, tmp_path):
    lines = carried(fake_node, "all", tmp_path / "absent")
    assert lines == {(ident, tag) for ident, image in IMAGES.items() for tag in image["tags"]}
    assert carried(fake_node, "none", tmp_path / "absent") == set()


def test_the_selection_is_written_once_and_both_steps_use_it():
    definition = re.compile(r"^(images_to_carry|docker_serves_images)\(\)", re.M)
    assert len(definition.findall(script("node-lib.sh"))) == 2
    for step in ("prestage.sh", "probe.sh"):
        assert not definition.search(script(step)), step
        assert "images_to_carry \"$mode\"" in script(step) and "docker_serves_images" in script(step), step
    assert "/var/lib/kubelet/kubeadm-flags.env" not in script("prestage.sh")


# --- the probe ---------------------------------------------------------------


def probe(env: dict) -> NodeFacts:
    """The whole probe, as ssh runs it, on this machine with the fake Docker."""
    done = run_bash(probe_script(PAUSE), env)
    return parse_probe_output(done.stdout)


def total(ids: set[str]) -> int:
    return sum(IMAGES[ident]["size"] for ident in ids)


def test_the_probe_counts_both_modes_and_the_untagged_images(fake_node):
    if Path("/var/lib/kubelet/kubeadm-flags.env").exists():
        pytest.skip("this machine has a kubelet: its infra image would join the pods set")
    facts = probe(fake_node)
    assert facts.get("images.docker") == "running" and facts.docker_running
    assert facts.get("images.pods.count") == str(len(PODS)) and facts.get("images.pods.bytes") == str(total(PODS))
    assert facts.get("images.all.count") == str(len(ALL)) and facts.get("images.all.bytes") == str(total(ALL))
    assert facts.untagged_images == 2
    assert facts.images_to_carry("pods") == ImagesToCarry(3, 191_380_000)
    assert facts.images_to_carry("all") == ImagesToCarry(4, 195_380_000)
    assert facts.images_to_carry("none") == ImagesToCarry(0, 0)
    # read-only: nothing but listing and inspecting
    assert all(call.startswith(READ_ONLY) for call in docker_calls(fake_node)), docker_calls(fake_node)


@pytest.mark.parametrize("why", ["docker.service inactive", "no docker client"])
def test_without_docker_running_the_probe_reports_nothing_to_carry_and_says_so(fake_node, why):
    if why == "docker.service inactive":
        fake_node["FAKE_DOCKER_ACTIVE"] = "0"
    else:
        Path(fake_node["PATH"].split(":")[0], "docker").unlink()
    facts = probe(fake_node)
    assert facts.get("images.docker") == "not-running" and not facts.docker_running
    assert {key: facts.get(key) for key in facts.facts if key.startswith("images.") and key != "images.docker"} == {
        "images.pods.count": "0", "images.pods.bytes": "0", "images.all.count": "0", "images.all.bytes": "0",
        "images.untagged": "0"}
    assert not [call for call in docker_calls(fake_node) if call.split()[0] in ("ps", "images", "image")]


def test_the_probe_with_no_image_at_all(fake_node):
    Path(fake_node["FAKE_DOCKER_DATA"]).write_text(json.dumps({"images": {}, "containers": {}}))
    facts = probe(fake_node)
    assert facts.docker_running and facts.untagged_images == 0
    assert facts.images_to_carry("pods") == facts.images_to_carry("all") == ImagesToCarry(0, 0)


# --- facts -------------------------------------------------------------------

PROBED = {"images.docker": "running", "images.pods.count": "3", "images.pods.bytes": "191380000",
          "images.all.count": "4", "images.all.bytes": "195380000", "images.untagged": "2"}


def test_image_facts_are_parsed_from_probe_lines():
    facts = parse_probe_output("fact os.id debian\n" + "".join(f"fact {k} {v}\n" for k, v in PROBED.items()))
    assert facts.images_to_carry("pods") == (3, 191_380_000)
    assert facts.images_to_carry("all") == (4, 195_380_000)
    assert facts.untagged_images == 2 and facts.docker_running


@pytest.mark.parametrize("value", ["", "-1", "3.5", "lots", "٣"])
def test_a_count_the_probe_did_not_give_is_nothing(value):
    facts = NodeFacts(facts={**PROBED, "images.pods.count": value, "images.untagged": value})
    assert facts.images_to_carry("pods") == (0, 191_380_000) and facts.untagged_images == 0
    assert NodeFacts(facts={}).images_to_carry("all") == (0, 0) and not NodeFacts(facts={}).docker_running


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="target.images"):
        NodeFacts(facts=PROBED).images_to_carry("some")


# --- the plan ----------------------------------------------------------------


def with_images(facts: NodeFacts, **overrides: str) -> NodeFacts:
    return NodeFacts(facts={**facts.facts, **PROBED, **overrides}, files=dict(facts.files))


def on(node, images: str):
    return replace(node, target=replace(node.target, images=images))


@pytest.mark.parametrize("mode, expected, words", [
    ("pods", {"images": 3, "bytes": 191_380_000}, "; carry 3 images (182.5 MiB) from Docker"),
    ("all", {"images": 4, "bytes": 195_380_000}, "; carry 4 images (186.3 MiB) from Docker"),
    ("none", {"images": 0, "bytes": 0}, None),
])
def test_the_plan_shows_what_its_mode_carries(node, mode, expected, words):
    plan = plan_node(on(node, mode), with_images(docker_era_facts()))
    assert plan.action == "migrate"
    assert plan.summary()["imagesToCarry"] == expected
    if words:
        assert plan.describe().endswith(words) and plan.summary()["plan"] == plan.describe()
    else:
        assert "carry" not in plan.describe()


def test_one_image_is_one_image(node):
    plan = plan_node(node, with_images(docker_era_facts(), **{"images.pods.count": "1",
                                                              "images.pods.bytes": "700000"}))
    assert plan.describe().endswith("; carry 1 image (0.7 MiB) from Docker")


def test_nothing_to_carry_is_not_mentioned(node):
    plan = plan_node(node, with_images(docker_era_facts(), **{"images.pods.count": "0", "images.pods.bytes": "0"}))
    assert plan.summary()["imagesToCarry"] == {"images": 0, "bytes": 0} and "carry" not in plan.describe()
    # an older probe said nothing about images: nothing either, and no warning
    older = plan_node(node, docker_era_facts())
    assert older.summary()["imagesToCarry"] == {"images": 0, "bytes": 0} and not any(
        "image" in warning for warning in older.warnings)


def test_docker_not_running_on_a_node_leaving_docker_is_a_warning(node):
    stopped = with_images(docker_era_facts(), **{"images.docker": "not-running", "images.pods.count": "0",
                                                 "images.pods.bytes": "0"})
    plan = plan_node(node, stopped)
    assert plan.action == "migrate" and "carry" not in plan.describe()
    assert any(w.startswith("Docker is not running: no image to carry") for w in plan.warnings)
    assert not any("Docker is not running" in w for w in plan_node(on(node, "none"), stopped).warnings)


def test_untagged_images_are_named_when_all_are_asked_for(node):
    assert "2 of Docker's images have no tag and are not carried" in \
        plan_node(on(node, "all"), with_images(docker_era_facts())).warnings
    assert not any("no tag" in w for w in plan_node(node, with_images(docker_era_facts())).warnings)


def test_a_node_with_nothing_to_do_carries_nothing(node):
    plan = plan_node(node, with_images(migrated_facts()))
    assert plan.action == "in-sync" and plan.summary()["imagesToCarry"] == {"images": 0, "bytes": 0}
    assert "carry" not in plan.describe()


# --- images are never drift --------------------------------------------------


@pytest.mark.parametrize("images", [
    {},
    PROBED,
    {**PROBED, "images.pods.count": "40", "images.all.bytes": "999999999999"},
    {"images.docker": "not-running", "images.pods.count": "0"},
])
def test_images_never_count_as_drift(node, images):
    clean = migrated_facts()
    plan = plan_node(node, NodeFacts(facts={**clean.facts, **images}, files=dict(clean.files)))
    assert plan.action == "in-sync" and plan.drift == ()
    assert plan.token == plan_node(node, clean).token


def test_images_do_not_move_a_migration_token(node):
    # The token is what Pulumi compares: the same desired files, the same token.
    before = plan_node(node, docker_era_facts(), stamp="s")
    after = plan_node(node, with_images(docker_era_facts(), **{"images.all.count": "7"}), stamp="s")
    assert before.token == after.token and before.drift == after.drift and before.files == after.files


def test_the_node_side_target_state_check_does_not_look_at_images():
    lib = script("node-lib.sh")
    body = re.search(r"^in_target_state\(\) \{\n(.*?)^\}", lib, re.M | re.S).group(1)
    assert "image" not in body and "docker " not in body
