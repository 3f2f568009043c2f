"""Benchmark floor: what the engine costs for shimless's preview without shimless.

Per node, what bench/program declares with cluster.mode none: one component
resource parenting a chain of pulumi-command remote Commands (the same
connection, command, logging and stdin sizes), all under one top component.
No planning, probing, bundling, logs or outputs: only the resources."""
import asyncio
import base64
import os
import random

if os.environ.get("BENCH_PROFILE"):  # a cProfile of the whole program run, SDK included (as bench/program)
    import atexit
    import cProfile

    _profile = cProfile.Profile()
    _profile.enable()
    atexit.register(lambda: (_profile.disable(), _profile.dump_stats(os.environ["BENCH_PROFILE"])))

import pulumi  # noqa: E402
from pulumi_command import remote  # noqa: E402

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKQ"
LINE = 1024  # characters per line of stdin


def _incompressible(seed: str, size: int) -> str:
    """`size` characters of base64 of pseudo-random bytes, like shimless's bundles
    (gzip then base64, one line per file). As compressible as they are matters:
    the CLI gzips every property it is sent into its own log."""
    text = base64.b64encode(random.Random(seed).randbytes(size)).decode()
    return "\n".join(text[start:start + LINE] for start in range(0, size, LINE + 1))[:size]


class FloorNode(pulumi.ComponentResource):
    def __init__(self, name: str, index: int, command: str, steps: list[dict], private_key: pulumi.Output[str],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("shimless-floor:index:FloorNode", name, None, opts)
        connection = remote.ConnectionArgs(
            host=f"10.{index // 65536}.{index // 256 % 256}.{index % 256}", port=22, user="root",
            private_key=private_key, host_key=HOST_KEY, dial_error_limit=3, per_dial_timeout=15)
        previous: list[pulumi.Resource] = []
        for step in steps:
            stdin = _incompressible(f"{name}/{step['name']}", step["stdinBytes"])
            previous = [remote.Command(f"{name}-{step['name']}", connection=connection, create=command, stdin=stdin,
                                       logging="stdoutAndStderr",
                                       opts=pulumi.ResourceOptions(parent=self, depends_on=previous))]
        self.last = previous[-1]
        self.register_outputs({})


class Floor(pulumi.ComponentResource):
    def __init__(self, name: str, count: int, batch: int, command: str, steps: list[dict]):
        super().__init__("shimless-floor:index:Floor", name)
        private_key = pulumi.Output.secret("bench-key")

        def declare(index: int) -> FloorNode:
            return FloorNode(f"{name}-node-{index:04d}", index, command, steps, private_key,
                             opts=pulumi.ResourceOptions(parent=self))

        async def declare_in_batches() -> None:
            for start in range(0, count, batch):
                nodes = [declare(index) for index in range(start, min(start + batch, count))]
                await asyncio.gather(*(node.last.urn.future() for node in nodes))

        if batch:
            # Tracked like any Output: the program ends when the last batch is declared.
            pulumi.Output.from_input(declare_in_batches())
        else:
            for index in range(count):
                declare(index)
        self.register_outputs({})


config = pulumi.Config()
Floor("floor", config.require_int("nodes"), config.require_int("batch"), config.require("command"),
      config.require_object("steps"))
