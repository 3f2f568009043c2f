"""A node's desired state: every file shimless writes to it, from the node's own
files and versions (its facts) and its target. Pure.

The one place the files are composed: `plan.plan_node` (preview, up, drift) and
the `render` CLI both call `desired_state`, so `render` shows exactly what a
node gets.
"""
from __future__ import annotations

import posixpath
from contextlib import contextmanager
from typing import Iterator, NamedTuple

from components import daemon_json, kubelet_flags, render, runtime_unit
from components.facts import NodeFacts
from components.manifest import KUBEADM_FLAGS, KUBEADM_INSTANCE_CONFIG, KUBELET_CONFIG
from components.model import RuntimeTarget


class Blocked(Exception):
    """The node's desired state cannot be computed safely; the message is the reason, in one line."""


class DesiredState(NamedTuple):
    files: dict[str, str]  # node path -> content, sorted by path
    cgroup_driver: str
    runtime_version: str  # "" when unknown until installed
    flags: kubelet_flags.FlagsRewrite
    endpoint_in_config: bool  # the CRI endpoint goes to config.yaml, not to a flag
    translation: daemon_json.DaemonTranslation | None
    warnings: list[str]


@contextmanager
def _reading(source: str) -> Iterator[None]:
    """A ValueError while reading `source` (a file on the node, a command's
    output) is Blocked with a one-line reason naming the source."""
    try:
        yield
    except ValueError as exc:
        message = " ".join(str(exc).split()).removeprefix(f"{posixpath.basename(source)}: ")
        raise Blocked(f"{source}: {message}") from None


def _text_of(facts: NodeFacts, path: str) -> str:
    """A file shimless rewrites or translates; one it cannot read as text blocks the node."""
    if path in facts.unreadable:
        raise Blocked(f"{path}: {facts.unreadable[path]}; shimless does not rewrite a file it cannot read")
    return facts.files.get(path, "")


def desired_state(facts: NodeFacts, target: RuntimeTarget) -> DesiredState:
    """Every file the node should have on `target`; Blocked when its files cannot be read or rewritten."""
    version = facts.kubelet_version
    if not version:
        raise Blocked("no kubelet answered `kubelet --version` on the node")
    with _reading("kubelet --version"):
        kubelet_flags.parse_kubelet_version(version)
    warnings: list[str] = []
    flags_text = _text_of(facts, KUBEADM_FLAGS)
    config_text = _text_of(facts, KUBELET_CONFIG)
    with _reading(KUBELET_CONFIG):
        kubelet_driver = kubelet_flags.kubelet_cgroup_driver(config_text)
    cgroup_driver = _cgroup_driver(target, kubelet_driver)
    translation = _translation(facts, target.runtime)
    if translation is not None and translation.docker_cgroup_driver != kubelet_driver and facts.runtime == "docker":
        warnings.append(f"Docker used cgroup driver {translation.docker_cgroup_driver} but the kubelet "
                        f"{kubelet_driver}; the runtime gets the kubelet's")
    runtime_version = _runtime_version(facts, target, warnings)
    with _reading("the rendered runtime config"):
        files = render.render_runtime_files(
            target, containerd_version=runtime_version if target.runtime == "containerd" else "",
            cgroup_driver=cgroup_driver, translation=translation)
    # containerd.service told to run the containerd pre-stage validates, when its own ExecStart runs another
    files.update(runtime_unit.binary_drop_in(facts, target))
    flags, in_config = _kubelet_files(version, target, flags_text, config_text, translation, files)
    instance_text = _text_of(facts, KUBEADM_INSTANCE_CONFIG)
    with _reading(KUBEADM_INSTANCE_CONFIG):
        instance = kubelet_flags.rewrite_instance_config(instance_text, target.cri_endpoint)
    if instance is not None:
        files[KUBEADM_INSTANCE_CONFIG] = instance
    if facts.runtime != target.runtime and facts.runtime not in ("docker", "unknown"):
        warnings.append(f"the kubelet is on {facts.runtime}; shimless moves it to {target.runtime}")
    return DesiredState(dict(sorted(files.items())), cgroup_driver, runtime_version, flags, in_config,
                        translation, warnings)


def _cgroup_driver(target: RuntimeTarget, kubelet_driver: str) -> str:
    """The runtime's cgroup driver: always the kubelet's, which a joined node must keep."""
    if target.cgroup_driver in ("auto", kubelet_driver):
        return kubelet_driver
    raise Blocked(f"target.cgroupDriver is {target.cgroup_driver} but the kubelet uses {kubelet_driver}; "
                  "changing the driver of a joined node is unsafe: use cgroupDriver auto")


def _translation(facts: NodeFacts, runtime: str) -> daemon_json.DaemonTranslation | None:
    """Docker's settings as they were before shimless, translated for `runtime`;
    None without a daemon.json. Settings not accounted for would be lost without
    a word, so a daemon.json that cannot be translated blocks the node."""
    path = facts.daemon_json_path
    text = _text_of(facts, path)
    if not text.strip():
        return None
    with _reading(path):
        return daemon_json.translate_daemon_json(daemon_json.load_daemon_json(text), runtime, facts.runtime_paths)


def _runtime_version(facts: NodeFacts, target: RuntimeTarget, warnings: list[str]) -> str:
    """The runtime version the config is rendered for: the target's, else the node's."""
    if target.runtime != "containerd":
        return target.version or facts.get("crio.version")
    version = target.version or facts.containerd_version
    if not version:
        warnings.append("containerd version unknown until installed: rendered for 1.6/1.7 (config version 2)")
    if not target.version:
        # Docker 20.10 nodes ship containerd 1.4. Prestage keeps the containerd
        # Docker runs on unless target.version asks for another, so an old one
        # is not upgraded behind the operator's back: it blocks the node.
        try:
            render.containerd_config_version(version)
        except ValueError as exc:
            raise Blocked(f"`containerd --version` on the node: {exc}; set shimless:target.version "
                          "(1.6 or newer) to have prestage install that version, or upgrade containerd "
                          "on the node first") from None
    return version


def _kubelet_files(version: str, target: RuntimeTarget, flags_text: str, config_text: str,
                   translation: daemon_json.DaemonTranslation | None,
                   files: dict[str, str]) -> tuple[kubelet_flags.FlagsRewrite, bool]:
    """Add the rewritten kubeadm-flags.env and, when it has anything to hold,
    config.yaml to `files`; returns the flags rewrite and where the endpoint went."""
    with _reading(KUBELET_CONFIG):
        in_config = kubelet_flags.endpoint_belongs_in_config(version, config_text)
    with _reading(KUBEADM_FLAGS):
        flags = kubelet_flags.rewrite_kubeadm_flags(flags_text, version, target.cri_endpoint,
                                                    endpoint_in_config=in_config)
    files[KUBEADM_FLAGS] = flags.text
    settings = translation.kubelet_settings if translation is not None else {}
    if config_text or in_config or settings:
        with _reading(KUBELET_CONFIG):
            files[KUBELET_CONFIG] = kubelet_flags.rewrite_kubelet_config(
                config_text, cri_endpoint=target.cri_endpoint if in_config else None, settings=settings)
    return flags, in_config
