"""What makes the preview cheaper must not change what the nodes get: every
bundle built through the cached compression equals the uncached one. And
bench/preview_scale.py's floor is read from shimless's own preview."""
from __future__ import annotations

import pulumi

from bench import preview_scale
from components import bundle as bundle_module
from components import node_runtime
from components.config import parse_settings
from tests.test_components import build, raw_config

COMMAND = "command:remote:Command"


def test_cached_bundles_equal_uncached_ones(pulumi_mocks, monkeypatch):
    built: list[tuple[tuple, str]] = []

    def recording_bundle(*args):
        stdin = bundle_module.bundle(*args)
        built.append((args, stdin))
        return stdin

    monkeypatch.setattr(node_runtime, "bundle", recording_bundle)
    bundle_module.bundle_line.cache_clear()
    settings = parse_settings(raw_config(workers=3, control_planes=2))
    pulumi.runtime.test(lambda: build(settings))()
    # Five nodes, the four remote steps and the rollback of each: the same scripts and files over and over.
    assert len(built) == 25
    assert bundle_module.bundle_line.cache_info().hits > bundle_module.bundle_line.cache_info().misses

    monkeypatch.setattr(bundle_module, "bundle_line", bundle_module.bundle_line.__wrapped__)
    for args, stdin in built:
        assert bundle_module.bundle(*args) == stdin, args[0]


def step(name: str, kind: str, **inputs) -> dict:
    return {"urn": f"urn:pulumi:n2::shimless-bench::{kind}::{name}", "newState": {"type": kind, "inputs": inputs}}


PREVIEW_STEPS = [
    step("shimless-bench-n2", "pulumi:pulumi:Stack"),
    step("shimless", "shimless:index:RuntimeMigration"),
    step("shimless-node-0000", "shimless:index:NodeRuntime"),
    step("shimless-node-0000-preflight", COMMAND, create="bash -s", stdin="x" * 10),
    step("shimless-node-0000-switch", COMMAND, create="bash -s", stdin="x" * 30),
    step("shimless-node-0001", "shimless:index:NodeRuntime"),
    step("shimless-node-0001-preflight", COMMAND, create="bash -s", stdin="x" * 12),
    step("shimless-node-0001-switch", COMMAND, create="bash -s", stdin="x" * 31),
]


def test_the_floor_declares_the_steps_shimless_previewed_in_their_order_and_mean_size():
    assert preview_scale.floor_config(PREVIEW_STEPS) == {
        "command": "bash -s",
        "steps": [{"name": "preflight", "stdinBytes": 11}, {"name": "switch", "stdinBytes": 30}],
    }


def test_every_component_counts_as_one_kind_and_commands_by_type():
    kinds = preview_scale.resource_kinds(PREVIEW_STEPS)
    assert kinds == {"pulumi:pulumi:Stack": 1, "component": 3, COMMAND: 4}
    floor = [step("shimless-floor-n2", "pulumi:pulumi:Stack"), step("floor", "shimless-floor:index:Floor")]
    floor += [step(f"floor-node-{i}", "shimless-floor:index:FloorNode") for i in range(2)]
    floor += [step(f"floor-node-{i}-{s}", COMMAND) for i in range(2) for s in ("preflight", "switch")]
    assert preview_scale.resource_kinds(floor) == kinds


def test_yaml_parsed_once_per_text_still_gives_each_caller_its_own_copy():
    from components.config import YamlError, load_yaml_documents
    text = "kind: KubeletConfiguration\ncgroupDriver: systemd\nfeatureGates:\n  A: true\n"
    first = load_yaml_documents(text)
    first[0]["featureGates"]["A"] = False
    first[0]["cgroupDriver"] = "cgroupfs"
    assert load_yaml_documents(text) == [{"kind": "KubeletConfiguration", "cgroupDriver": "systemd",
                                          "featureGates": {"A": True}}]
    for _ in range(2):  # an error is raised every time, not remembered as a result
        try:
            load_yaml_documents("a: 'unterminated\n")
        except YamlError as err:
            assert "invalid YAML" in str(err)
        else:
            raise AssertionError("unterminated quote accepted")


def test_the_scripts_and_the_manifest_read_once_are_what_is_on_disk():
    from components import manifest
    assert bundle_module.script("switch.sh") == (bundle_module.SCRIPTS / "switch.sh").read_text()
    assert manifest.shell("containerd") == manifest.shell.__wrapped__("containerd")
    assert manifest.shell(None) == manifest.shell.__wrapped__(None)
