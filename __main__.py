"""shimless: reconcile every node in the stack onto its target container runtime."""
import pulumi

from components.config import ConfigError
from components.program import PlanError, run

try:
    migration = run()
except (ConfigError, PlanError) as exc:
    # Reported without a traceback: these are the user's to fix, and nothing ran.
    raise pulumi.RunError(str(exc)) from None

pulumi.export("fleet", migration.summary)
pulumi.export("nodes", migration.reports)
