"""NodeRuntime: one node's migration as ordered pulumi-command / pulumi-kubernetes
children: preflight -> prestage -> drain -> switch -> node patch -> verify ->
uncordon -> docker clean-up."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import pulumi
import pulumi_kubernetes as k8s
from pulumi_command import local, remote

from components.bundle import REMOTE_COMMAND, bundle, holds_credentials
from components.model import (
    CRI_SOCKET_ANNOTATION, RUNTIME_LABEL, TOKEN_ANNOTATION, Settings,
)
from components.plan import NodePlan
from components.protocol import ProtocolError, parse_prestage
from components.verify import VerifyRequest

# Relative to the project directory, where Pulumi runs local commands, so the
# command text (an input) does not change with the checkout's location.
LOCAL_SCRIPTS = "components/scripts"
# How long the kubelet must stay up, without restarting, to count as up.
SETTLE_SECONDS = 5
# Set on a Node while shimless has it cordoned (scripts/drain.sh).
CORDON_ANNOTATION = "shimless.io/cordoned"
# The kubectl steps run where Pulumi runs, each with its subcommand of scripts/drain.sh.
KUBECTL_COMMANDS = {
    "drain": f"bash {LOCAL_SCRIPTS}/drain.sh drain",
    "uncordon": f"bash {LOCAL_SCRIPTS}/drain.sh uncordon",
}


@dataclass(frozen=True)
class NodeRuntimeArgs:
    plan: NodePlan
    settings: Settings
    private_key: pulumi.Input[str]  # secret
    kubeconfig: pulumi.Input[str] | None = None  # secret; None with cluster.mode none
    k8s_provider: k8s.Provider | None = None
    # What the pre-stage (preflight, prestage) waits for: an earlier batch's last steps, another node's prestage.
    after: Sequence[pulumi.Input[pulumi.Resource]] = field(default_factory=tuple)
    # What the disruptive chain (drain, or the switch without a cluster) waits for besides this node's
    # prestage: the previous batch, when the pre-stage does not already wait for it.
    disrupt_after: Sequence[pulumi.Input[pulumi.Resource]] = field(default_factory=tuple)


class NodeRuntime(pulumi.ComponentResource):
    """Moves one node onto its target runtime, or leaves it alone when it is there."""

    done: pulumi.Resource  # the last step: the next batch waits for it
    switch: remote.Command
    report: dict  # plan summary and the switch's result (an Output), for the stack outputs

    def __init__(self, name: str, args: NodeRuntimeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("shimless:index:NodeRuntime", name, None, opts)
        self._name, self._args = name, args
        self._connection = _connection(args.plan.node, args.private_key)
        self.steps: dict[str, pulumi.Resource] = {}
        plan, settings = args.plan, args.settings

        preflight, prestage = self._prestage()
        before_switch: list[pulumi.Input[pulumi.Resource]] = [prestage, *args.disrupt_after]
        drain = None
        if settings.uses_cluster:
            drain = self._drain(preflight, before_switch)
            before_switch = [drain]
        self.switch = self._node_step(
            "switch", "switch.sh",
            {"health_timeout": settings.rollout.health_timeout_seconds, "settle_seconds": SETTLE_SECONDS},
            plan.files, before_switch,
        )
        last: pulumi.Resource = self.switch
        if settings.uses_cluster:
            patch = self._verify_and_patch()
            last = self._local_step("uncordon", [patch], {"DRAIN_OUTPUT": drain.stdout})
        self.done = self._node_step(
            "cleanup", "cleanup.sh",
            {"docker_policy": settings.docker.mode, "docker_remove_data": str(settings.docker.remove_data).lower(),
             # What docker.removeData deletes: Docker's own data-root.
             "docker_data_root": plan.docker_data_root},
            None, [last],
        )
        # What the switch printed last, e.g. "switched runtime=containerd ... window_ms=8123".
        result = self.switch.stdout.apply(lambda out: (out.strip().splitlines() or [""])[-1])
        carried = prestage.stdout.apply(_images_carried)
        # A plain dict, so that preview shows the plan and only the results are unknown.
        self.report = {**plan.summary(), "result": result, "imagesCarried": carried}
        self.register_outputs({"report": self.report})

    def _common(self) -> dict[str, str]:
        """The variables every node script gets (the rest comes from the manifest it carries)."""
        plan = self._args.plan
        return {"node": plan.node.name, "runtime": plan.node.target.runtime, "token": plan.token}

    def _node_step(self, step: str, script: str, variables: dict, files: dict | None,
                   depends_on: list) -> remote.Command:
        """A script run on the node over SSH, from its bundle on stdin."""
        stdin = bundle(script, {**self._common(), **variables}, files)
        # A proxy URL can carry user:password@: such a bundle, and what the step prints, stay secret.
        secret = holds_credentials(files)
        self.steps[step] = remote.Command(
            f"{self._name}-{step}",
            connection=self._connection,
            create=REMOTE_COMMAND,
            stdin=pulumi.Output.secret(stdin) if secret else stdin,
            logging="stdoutAndStderr",
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on,
                                        additional_secret_outputs=["stdout", "stderr"] if secret else None),
        )
        return self.steps[step]

    def _prestage(self) -> tuple[remote.Command, remote.Command]:
        """Preflight, then pre-stage: nothing disruptive, the node keeps serving on its old runtime."""
        plan, target = self._args.plan, self._args.plan.node.target
        preflight = self._node_step("preflight", "preflight.sh", {"kubelet_version": plan.kubelet_version},
                                    plan.files, list(self._args.after))
        prestage = self._node_step(
            "prestage", "prestage.sh",
            {"source": target.source, "version": target.version, "images": target.images,
             "pause_image": target.pause_image}, plan.files, [preflight])
        return preflight, prestage

    def _drain(self, preflight: remote.Command, depends_on: list) -> local.Command:
        """Cordon and drain, unless preflight found the node already on its target."""
        drain = self._args.settings.drain
        return self._local_step(
            "drain", depends_on,
            {"SHIMLESS_PREFLIGHT": preflight.stdout.apply(str.strip),
             "DRAIN_TIMEOUT": str(drain.timeout_seconds),
             "DRAIN_GRACE_PERIOD": str(drain.grace_period_seconds),
             "DRAIN_DELETE_EMPTYDIR_DATA": str(drain.delete_emptydir_data).lower(),
             "DRAIN_FORCE": str(drain.force).lower(),
             "DRAIN_RETRIES": str(drain.retries)},
        )

    def _verify_and_patch(self) -> k8s.core.v1.NodePatch:
        """Verify through the API (rolling the node back on failure), then label and annotate it.
        Only a node verified on its new runtime gets the new annotation and label: a node rolled
        back keeps the ones of its old runtime."""
        args = self._args
        plan, node, target = args.plan, args.plan.node, args.plan.node.target
        health_timeout = args.settings.rollout.health_timeout_seconds
        rollback_bundle = bundle("rollback.sh", {**self._common(), "health_timeout": health_timeout,
                                                 "settle_seconds": SETTLE_SECONDS})
        verify_input = pulumi.Output.all(args.kubeconfig, args.private_key, self.switch.stdout).apply(
            lambda values: VerifyRequest(
                node=node, kubeconfig=values[0], private_key=values[1], switch_output=values[2],
                health_timeout=health_timeout, rollback_bundle=rollback_bundle,
            ).to_json())
        verify = self._local_step("verify", [self.switch], {}, command="python3 -m components.verify",
                                  stdin=pulumi.Output.secret(verify_input))
        patch = k8s.core.v1.NodePatch(
            f"{self._name}-node-patch",
            metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                name=node.name,
                # kubeadm (or the kubelet) owns the cri-socket annotation under
                # server-side apply: take it over explicitly.
                # The token re-applies the patch whenever the node is repaired,
                # e.g. after someone changed the annotation or the label.
                annotations={CRI_SOCKET_ANNOTATION: target.cri_endpoint, TOKEN_ANNOTATION: plan.token,
                             "pulumi.com/patchForce": "true"},
                labels={RUNTIME_LABEL: target.runtime},
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=args.k8s_provider, depends_on=[verify],
                                        retain_on_delete=True),
        )
        self.steps["node-patch"] = patch
        return patch

    def _local_step(self, step: str, depends_on: list, environment: dict, command: str = "",
                    stdin: pulumi.Input[str] | None = None) -> local.Command:
        """A kubectl step run where Pulumi runs; the kubeconfig (a secret) goes on stdin."""
        args = self._args
        self.steps[step] = local.Command(
            f"{self._name}-{step}",
            create=command or KUBECTL_COMMANDS[step],
            stdin=stdin if stdin is not None else args.kubeconfig,
            environment={"NODE": args.plan.node.name, "SHIMLESS_TOKEN": args.plan.token,
                         "CORDON_ANNOTATION": CORDON_ANNOTATION, **environment},
            logging="stdoutAndStderr",
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )
        return self.steps[step]


def _connection(node, private_key: pulumi.Input[str]) -> remote.ConnectionArgs:
    """SSH to the node, through its bastion if it has one; host keys pinned where the stack gives them."""
    return remote.ConnectionArgs(
        host=node.host, port=node.port, user=node.user, private_key=private_key,
        host_key=node.host_key or None, dial_error_limit=3, per_dial_timeout=15,
        proxy=remote.ProxyConnectionArgs(
            host=node.bastion.host, port=node.bastion.port, user=node.bastion.user,
            private_key=private_key, host_key=node.bastion.host_key or None,
        ) if node.bastion else None,
    )


def _images_carried(prestage_output: str) -> dict | None:
    """What this run's pre-stage copied from Docker into the target's store;
    None when its output has no prestaged line (a report, not a check: the
    step itself failed if pre-stage did)."""
    try:
        line = parse_prestage(prestage_output)
    except ProtocolError:
        return None
    return {"images": line.images, "bytes": line.image_bytes, "seconds": line.image_seconds}
