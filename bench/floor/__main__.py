"""Benchmark floor: what the engine costs for shimless's preview without shimless.

Per node, what bench/program declares with cluster.mode none: one component
resource parenting a chain of pulumi-command remote Commands (the same
connection, command, logging and stdin sizes), all under one top component.
No planning, probing, bundling, logs or outputs: only the resources."""
import pulumi
from pulumi_command import remote

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKQ"


class FloorNode(pulumi.ComponentResource):
    def __init__(self, name: str, index: int, command: str, steps: list[dict], private_key: pulumi.Output[str],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("shimless-floor:index:FloorNode", name, None, opts)
        connection = remote.ConnectionArgs(
            host=f"10.{index // 65536}.{index // 256 % 256}.{index % 256}", port=22, user="root",
            private_key=private_key, host_key=HOST_KEY, dial_error_limit=3, per_dial_timeout=15)
        previous: list[pulumi.Resource] = []
        for step in steps:
            filler = f"{name}/{step['name']} "  # distinct per node and step, like shimless's bundles
            stdin = (filler * (step["stdinBytes"] // len(filler) + 1))[:step["stdinBytes"]]
            previous = [remote.Command(f"{name}-{step['name']}", connection=connection, create=command, stdin=stdin,
                                       logging="stdoutAndStderr",
                                       opts=pulumi.ResourceOptions(parent=self, depends_on=previous))]
        self.register_outputs({})


class Floor(pulumi.ComponentResource):
    def __init__(self, name: str, count: int, command: str, steps: list[dict]):
        super().__init__("shimless-floor:index:Floor", name)
        private_key = pulumi.Output.secret("bench-key")
        for index in range(count):
            FloorNode(f"{name}-node-{index:04d}", index, command, steps, private_key,
                      opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({})


config = pulumi.Config()
Floor("floor", config.require_int("nodes"), config.require("command"), config.require_object("steps"))
