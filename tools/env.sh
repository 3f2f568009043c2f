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
#   PULUMI_CONFIG_PASSPHRASE  only if unset, and only when SHIMLESS_STACK is
#                   unset or "lab": "shimless-lab", the passphrase of the lab
#                   stack's secrets provider (and of the tests' temporary
#                   stacks). It is public and protects nothing.
# Defines shimless_require_secrets STACK: refuses (one line on stderr, status 1)
# a stack other than the lab without its own PULUMI_CONFIG_PASSPHRASE,
# PULUMI_CONFIG_PASSPHRASE_FILE or non-passphrase secrets provider in its stack
# file. The Makefile sets SHIMLESS_STACK=$(STACK) and calls it before any
# pulumi command of a stack.
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
SHIMLESS_LAB_PASSPHRASE=shimless-lab
if [ -z "${PULUMI_CONFIG_PASSPHRASE+x}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ] &&
  [ "${SHIMLESS_STACK:-lab}" = lab ]; then
  export PULUMI_CONFIG_PASSPHRASE=$SHIMLESS_LAB_PASSPHRASE
fi

shimless_require_secrets() {
  local stack=$1 stacks_dir provider=""
  stacks_dir=${SHIMLESS_STACKS_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/stacks}
  [ "$stack" = lab ] && return 0
  if [ -f "$stacks_dir/Pulumi.$stack.yaml" ]; then
    provider=$(sed -n 's/^secretsprovider:[[:space:]]*//p' "$stacks_dir/Pulumi.$stack.yaml" | head -n 1)
  fi
  case "$provider" in
    "" | passphrase*) ;;
    *) return 0 ;; # a KMS or Vault provider: no passphrase involved
  esac
  if [ "${PULUMI_CONFIG_PASSPHRASE:-}" = "$SHIMLESS_LAB_PASSPHRASE" ]; then
    echo "shimless: stack $stack: PULUMI_CONFIG_PASSPHRASE is the lab's public passphrase; set this stack's own (or PULUMI_CONFIG_PASSPHRASE_FILE)" >&2
    return 1
  fi
  if [ -z "${PULUMI_CONFIG_PASSPHRASE+x}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
    echo "shimless: stack $stack: set PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE (or a secretsprovider in stacks/Pulumi.$stack.yaml); the lab's default is for the lab stack only" >&2
    return 1
  fi
}

unset _shimless_root
