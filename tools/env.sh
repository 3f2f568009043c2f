# shellcheck shell=bash
# Project environment: `source tools/env.sh` (the Makefile does, for every
# target that runs pulumi or python). Safe under `set -euo pipefail`.
#
# Exports:
#   PATH            .tools/bin and .venv/bin first (tools/setup.sh fills them)
#   PULUMI_HOME     .tools/pulumi-home (plugin cache; nothing in ~/.pulumi)
#   PULUMI_BACKEND_URL  file://<repo>/.state (local state, git-ignored)
#   PULUMI_SKIP_UPDATE_CHECK=true
#   PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true (no plugin downloads)
#   PULUMI_IGNORE_AMBIENT_PLUGINS=true (use the plugin cache, not PATH copies)
#   PULUMI_CONFIG_PASSPHRASE  only if unset: "shimless-lab", the passphrase of
#                   the lab stack's secrets provider. It protects nothing: any
#                   real environment must set its own PULUMI_CONFIG_PASSPHRASE
#                   (or PULUMI_CONFIG_PASSPHRASE_FILE) before sourcing this.
# It activates nothing else (no virtualenv activate script, no shell options).

_shimless_root=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)

export PATH="$_shimless_root/.tools/bin:$_shimless_root/.venv/bin:$PATH"
export PULUMI_HOME="$_shimless_root/.tools/pulumi-home"
mkdir -p "$_shimless_root/.state"
export PULUMI_BACKEND_URL="file://$_shimless_root/.state"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
# The resource plugins are also in .tools/bin (on PATH); without this the CLI
# would run those "ambient" copies, with a warning on every run, instead of
# the ones installed in PULUMI_HOME's plugin cache.
export PULUMI_IGNORE_AMBIENT_PLUGINS=true
if [ -z "${PULUMI_CONFIG_PASSPHRASE+x}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  export PULUMI_CONFIG_PASSPHRASE=shimless-lab
fi

unset _shimless_root
