"""The real Pulumi engine (Automation API, local file backend in a temp dir)
on the example stacks: preview works with no network, names are stable."""
from __future__ import annotations

import copy
import os

import pytest
import yaml

from tests import lab

SECRET_KEYS = ("shimless:sshPrivateKey", "shimless:kubeconfig")
FAKE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key-for-preview\n-----END OPENSSH PRIVATE KEY-----\n"


@pytest.fixture(scope="module", autouse=True)
def no_probes():
    # Example stacks point at hosts that do not exist: plan without contacting them.
    os.environ["SHIMLESS_PROBE"] = "off"
    yield
    del os.environ["SHIMLESS_PROBE"]


def example_stack(name: str, tmp_path):
    from pulumi import automation as auto
    if shutil_which("pulumi") is None:
        raise AssertionError("no pulumi CLI on PATH: run through `make test` (it sources tools/env.sh)")
    config = yaml.safe_load((lab.ROOT / "stacks" / f"Pulumi.{name}.yaml").read_text())
    plain = copy.deepcopy(config)
    for key in SECRET_KEYS:
        plain["config"].pop(key, None)
    stack = lab.engine_stack(lab.project_copy(tmp_path, plain, name), tmp_path / "state", name)
    stack.set_config("shimless:sshPrivateKey", auto.ConfigValue(FAKE_KEY, secret=True))
    stack.set_config("shimless:kubeconfig", auto.ConfigValue("apiVersion: v1\nkind: Config\n", secret=True))
    return stack, config


def shutil_which(name):
    import shutil
    return shutil.which(name)


def preview_urns(stack) -> tuple[list[str], str]:
    urns = []

    def on_event(event):
        if event.resource_pre_event is not None:
            urns.append(event.resource_pre_event.metadata.urn)

    result = stack.preview(color="never", on_event=on_event)
    return sorted(urns), result.stdout


@pytest.mark.parametrize("name", ["staging", "prod"])
def test_example_stack_previews_with_no_network_and_stable_names(name, tmp_path):
    stack, config = example_stack(name, tmp_path)
    first, stdout = preview_urns(stack)
    nodes = [node["name"] for node in config["config"]["shimless:nodes"]]
    for node in nodes:
        assert f"{node}: not probed (probing disabled by SHIMLESS_PROBE=off)" in stdout
        assert any(urn.endswith(f"::shimless-{node}-switch") for urn in first)
    per_node = [urn for urn in first if "$command:remote:Command::" in urn or "$command:local:Command::" in urn]
    assert len(per_node) == len(nodes) * 7  # preflight, prestage, drain, switch, verify, uncordon, cleanup
    second, _ = preview_urns(stack)
    assert first == second
    # The kubeconfig never reaches the preview's output in plain text.
    assert "apiVersion: v1\nkind: Config" not in stdout


def test_up_refuses_nodes_it_could_not_probe(tmp_path):
    from pulumi.automation import errors
    stack, _ = example_stack("staging", tmp_path)
    with pytest.raises(errors.CommandError) as info:
        stack.up(color="never")
    assert "cannot update, nothing was changed: nodes not probed: stg-cp-1: probing disabled" in str(info.value)
