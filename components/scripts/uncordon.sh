#!/usr/bin/env bash
# Runs where Pulumi runs: uncordon the node, only if it was schedulable
# before the drain. Kubeconfig on stdin.
set -euo pipefail

main() {
  local kubeconfig
  kubeconfig=$(mktemp)
  trap 'rm -f "$kubeconfig"' EXIT
  cat >"$kubeconfig"
  export KUBECONFIG=$kubeconfig
  case "$DRAIN_OUTPUT" in
    *was_unschedulable=false*) kubectl uncordon "$NODE" >&2; echo "uncordoned" ;;
    *was_unschedulable=true*) echo "left cordoned: it was unschedulable before shimless" ;;
    *) echo "not cordoned by shimless: nothing to undo" ;;
  esac
}

main "$@"
