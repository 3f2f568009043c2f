"""Docker's images in the plan: the probe counts what pre-stage will carry
(target.images pods | all) with pre-stage's own selection (node-lib.sh
images_to_carry), asked of a fake `docker`; the plan shows it per node and
never takes images for drift."""
from __future__ import annotations

import hashlib
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
    image_id("c"): {"tags": ["nginx:1.25", "localhost/web:prod"], "size": 190_000_000,
                    "digests": [f"nginx@sha256:{'1' * 64}"]},  # pulled by tag: its registry digest too
    image_id("d"): {"tags": ["busybox:1.36"], "size": 4_000_000},  # only a container outside Kubernetes runs it
    image_id("e"): {"tags": [], "size": 50_000_000,  # a pod's image pulled by digest: no tag
                    "digests": [f"registry.example/app@sha256:{'2' * 64}"]},
    image_id("f"): {"tags": [], "size": 10_000},  # dangling
}
NGINX_DIGEST, APP_DIGEST = IMAGES[image_id("c")]["digests"][0], IMAGES[image_id("e")]["digests"][0]
CONTAINERS = {
    "k8s_POD_web-1_default_0a1b_0": image_id("b"),
    "k8s_web_web-1_default_0a1b_0": image_id("c"),
    "k8s_app_digested-1_default_2c3d_1": image_id("e"),
    "builder": image_id("d"),
}
# pods: the pod containers' images, the pause image and the kubelet's infra
# image; all: every image with a name (a tag or a registry digest).
PODS = {image_id("a"), image_id("b"), image_id("c"), image_id("e")}
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
elif args[:1] == ["save"]:
    # not an archive: what it holds, for the fake ctr to import
    held = {}
    for ref in args[1:]:
        ident = ref if ref in images else next(i for i, image in images.items() if ref in image["tags"])
        held.setdefault(ident, []).extend([] if ref == ident else [ref])
    json.dump([{"id": ident, "tags": tags} for ident, tags in held.items()], sys.stdout)
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
        elif form == ("{{range .RepoTags}}{{$.Id}} {{.}}{{println}}{{end}}"
                      "{{range .RepoDigests}}{{$.Id}} {{.}}{{println}}{{end}}"):
            names = images[ident]["tags"] + images[ident].get("digests", [])
            print("".join(f"{ident} {name}\n" for name in names))
        else:
            sys.exit(f"fake docker: format {form!r} not faked")
    sys.exit(1 if failed else 0)
else:
    print("Cannot connect to the Docker daemon", file=sys.stderr)
    sys.exit(1)
'''

# ctr -n k8s.io: containerd's image names and content in FAKE_CTR_STORE
# ({"names": {name: target digest}, "blobs": {digest: JSON}}); import reads
# what the fake `docker save` wrote (its tags, named as ctr names them; with
# --index-name an index kept under that name); every call in FAKE_CTR_STORE.log.
FAKE_CTR = r'''#!/usr/bin/env python3
import hashlib, json, os, sys
path = os.environ["FAKE_CTR_STORE"]
state = json.load(open(path)) if os.path.exists(path) else {"names": {}, "blobs": {}}
names, blobs = state["names"], state["blobs"]
args = sys.argv[1:]
with open(path + ".log", "a") as log:
    log.write(" ".join(args) + "\n")
assert args[:2] == ["-n", "k8s.io"], args
args = args[2:]

def qualified(ref):
    first = ref.split("/")[0]
    if first == ref:
        return "docker.io/library/" + ref
    return ref if "." in first or ":" in first or first == "localhost" else "docker.io/" + ref

def put(content):
    text = json.dumps(content, separators=(",", ":"))
    digest = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    blobs[digest] = text
    return digest

def manifest(ident):
    return put({"schemaVersion": 2, "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                               "size": 1, "digest": ident}, "layers": []})

if args == ["images", "ls"]:
    print("REF TYPE DIGEST SIZE PLATFORMS LABELS")
    for name, target in names.items():
        print(f"{name} application/vnd.docker.distribution.manifest.v2+json {target} 1.0 KiB linux/amd64 -")
elif args[:2] == ["content", "get"] and args[2] in blobs:
    sys.stdout.write(blobs[args[2]])
elif args[:3] == ["images", "tag", "--force"] and args[3] in names:
    names[args[4]] = names[args[3]]
elif args[:2] == ["images", "import"] and args[-1] == "-":
    held = json.load(sys.stdin)
    if "--index-name" in args:
        names[args[args.index("--index-name") + 1]] = put({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": manifest(entry["id"]),
             "size": 1} for entry in held]})
    for entry in held:
        for tag in entry["tags"]:
            names[qualified(tag)] = manifest(entry["id"])
else:
    sys.exit(f"fake ctr: {args} not faked")
json.dump(state, open(path, "w"))
'''


def ctr_store(path: Path, names: dict[str, str]) -> None:
    """FAKE_CTR_STORE holding each name as an image whose config is the given ID."""
    state = {"names": {}, "blobs": {}}
    for name, ident in names.items():
        text = json.dumps({"schemaVersion": 2, "config": {"mediaType": "x", "size": 1, "digest": ident}},
                          separators=(",", ":"))
        digest = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        state["blobs"][digest], state["names"][name] = text, digest
    path.write_text(json.dumps(state))


def ctr_calls(env: dict) -> list[str]:
    log = Path(env["FAKE_CTR_STORE"] + ".log")
    return log.read_text().splitlines() if log.exists() else []


def with_containerd_socket(text: str, socket: str) -> str:
    """A script with the manifest's containerd socket moved to `socket`."""
    line = f"CONTAINERD_SOCKET={manifest.CONTAINERD_SOCKET}\n"
    assert line in text
    return text.replace(line, f"CONTAINERD_SOCKET={socket}\n")


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
    for name, text in (("docker", FAKE_DOCKER), ("systemctl", FAKE_SYSTEMCTL), ("ctr", FAKE_CTR)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "docker.json").write_text(json.dumps({"images": IMAGES, "containers": CONTAINERS}))
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_DOCKER_DATA": str(tmp_path / "docker.json"),
            "FAKE_DOCKER_LOG": str(tmp_path / "docker.log"), "FAKE_DOCKER_ACTIVE": "1",
            "FAKE_CTR_STORE": str(tmp_path / "ctr.json")}


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
    assert lines == {(image_id("a"), PAUSE), (image_id("b"), INFRA), (image_id("c"), "nginx:1.25"),
                     (image_id("c"), "localhost/web:prod"), (image_id("c"), NGINX_DIGEST), (image_id("e"), APP_DIGEST)}


def test_pods_without_kubeadm_flags_still_has_the_sandboxes_image(fake_node, tmp_path):
    # The infra image is what the k8s_POD_ sandbox runs: found through it.
    assert {ident for ident, _ in carried(fake_node, "pods", tmp_path / "absent")} == PODS


def test_all_carries_every_name_of_every_image_that_has_one(fake_node, tmp_path):
    lines = carried(fake_node, "all", tmp_path / "absent")
    assert lines == {(ident, name) for ident, image in IMAGES.items()
                     for name in image["tags"] + image.get("digests", [])}
    assert {ident for ident, _ in lines} == ALL
    assert carried(fake_node, "none", tmp_path / "absent") == set()


def test_the_selection_is_written_once_and_both_steps_use_it():
    definition = re.compile(r"^(images_to_carry|docker_serves_images)\(\)", re.M)
    assert len(definition.findall(script("node-lib.sh"))) == 2
    for step in ("prestage.sh", "probe.sh"):
        assert not definition.search(script(step)), step
        assert "images_to_carry \"$mode\"" in script(step) and "docker_serves_images" in script(step), step
    assert "/var/lib/kubelet/kubeadm-flags.env" not in script("prestage.sh")


# --- the probe ---------------------------------------------------------------


def probe(env: dict, runtime: str = "containerd", socket: str = "/nonexistent/containerd.sock") -> NodeFacts:
    """The whole probe, as ssh runs it, on this machine with the fake Docker
    (and containerd's store the fake ctr's only when `socket` exists)."""
    done = run_bash(with_containerd_socket(probe_script(PAUSE, runtime), socket), env)
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
    assert facts.untagged_images == 1
    assert facts.images_to_carry("pods") == ImagesToCarry(4, 241_380_000)
    assert facts.images_to_carry("all") == ImagesToCarry(5, 245_380_000)
    assert facts.digests_not_carried("pods") == facts.digests_not_carried("all") == (0, 0)
    assert facts.images_to_carry("none") == ImagesToCarry(0, 0)
    # read-only: nothing but listing and inspecting
    assert all(call.startswith(READ_ONLY) for call in docker_calls(fake_node)), docker_calls(fake_node)


def unix_socket(path: Path) -> str:
    import socket
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()
    return str(path)


def test_the_probe_leaves_out_what_containerd_already_holds_under_the_same_id(fake_node, tmp_path):
    if Path("/var/lib/kubelet/kubeadm-flags.env").exists():
        pytest.skip("this machine has a kubelet: its infra image would join the pods set")
    # a re-run after a pre-stage that carried most: the pause image and every
    # name of nginx are there; the infra image's name holds another image
    ctr_store(Path(fake_node["FAKE_CTR_STORE"]), {
        "registry.k8s.io/pause:3.9": image_id("a"), "k8s.gcr.io/pause:3.6": image_id("f"),
        "docker.io/library/nginx:1.25": image_id("c"), "localhost/web:prod": image_id("c"),
        f"docker.io/library/{NGINX_DIGEST}": image_id("c")})
    facts = probe(fake_node, "containerd", unix_socket(tmp_path / "containerd.sock"))
    assert facts.images_to_carry("pods") == ImagesToCarry(2, 50_680_000)  # b (the infra image) and e
    assert facts.images_to_carry("all") == ImagesToCarry(3, 54_680_000)  # and d
    # read-only there too: one listing, and the content of the names that match
    assert {call.split()[2] for call in ctr_calls(fake_node)} == {"images", "content"}
    assert sum(call.endswith("images ls") for call in ctr_calls(fake_node)) == 1


def test_the_probe_counts_for_cri_o_the_tags_and_the_digest_names_it_cannot_take(fake_node):
    if Path("/var/lib/kubelet/kubeadm-flags.env").exists():
        pytest.skip("this machine has a kubelet: its infra image would join the pods set")
    facts = probe(fake_node, "cri-o")
    assert facts.images_to_carry("pods") == ImagesToCarry(3, 191_380_000)  # e has no tag
    assert facts.images_to_carry("all") == ImagesToCarry(4, 195_380_000)
    assert facts.digests_not_carried("pods") == facts.digests_not_carried("all") == (2, 1)
    assert facts.untagged_images == 1


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
        "images.pods.digests": "0", "images.pods.nameless": "0", "images.all.digests": "0",
        "images.all.nameless": "0", "images.untagged": "0"}
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


def test_dangling_images_are_named_when_all_are_asked_for(node):
    assert "2 of Docker's images are dangling (no tag, no digest) and are not carried" in \
        plan_node(on(node, "all"), with_images(docker_era_facts())).warnings
    assert not any("dangling" in w for w in plan_node(node, with_images(docker_era_facts())).warnings)


def test_digest_names_cri_o_cannot_take_are_a_warning(node):
    to_crio = replace(node, target=replace(node.target, runtime="cri-o"))
    facts = with_images(docker_era_facts(), **{"images.pods.digests": "2", "images.pods.nameless": "1"})
    warnings = [w for w in plan_node(to_crio, facts).warnings if "digest" in w]
    assert warnings == ["2 registry digest names (repo@sha256:...) not carried into CRI-O; 1 image Docker knows "
                        "only by digest not carried at all: a copy out of Docker cannot have the digest its "
                        "registry gave it, so pods that name an image by digest pull it again after the switch"]
    one = with_images(docker_era_facts(), **{"images.pods.digests": "1", "images.pods.nameless": "0"})
    assert [w for w in plan_node(to_crio, one).warnings if "digest" in w] == [
        "1 registry digest name (repo@sha256:...) not carried into CRI-O: a copy out of Docker cannot have the "
        "digest its registry gave it, so pods that name an image by digest pull it again after the switch"]
    # under target.images: none nothing is carried, and nothing is said
    assert not [w for w in plan_node(on(to_crio, "none"), facts).warnings if "digest" in w]


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
