"""shimless: reconcile every node in the stack onto its target container runtime."""
import pulumi

from components.program import run

migration = run()
pulumi.export("fleet", migration.summary)
pulumi.export("nodes", {name: node.report for name, node in migration.nodes.items()})
