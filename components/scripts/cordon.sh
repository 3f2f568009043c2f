#!/usr/bin/env bash
# Runs where Pulumi runs, with the kubeconfig on stdin:
#   cordon.sh drain     cordon and drain the node through the API, with
#                       retries, honouring PodDisruptionBudgets (eviction);
#                       prints "was_unschedulable=true|false|unchanged"
#   cordon.sh uncordon  uncordon it, only if it was schedulable before
set -euo pipefail

drain() {
  if [ "$SHIMLESS_PREFLIGHT" != "action=switch" ]; then
    echo "shimless[$NODE] already on its target runtime: not cordoned" >&2
    echo "was_unschedulable=unchanged"
    return 0
  fi
  local was
  was=$(kubectl get node "$NODE" -o jsonpath='{.spec.unschedulable}')
  kubectl cordon "$NODE" >&2
  local args=(drain "$NODE" --ignore-daemonsets "--timeout=${DRAIN_TIMEOUT}s" "--grace-period=${DRAIN_GRACE_PERIOD}")
  [ "$DRAIN_DELETE_EMPTYDIR_DATA" = true ] && args+=(--delete-emptydir-data)
  [ "$DRAIN_FORCE" = true ] && args+=(--force)
  local attempt=0
  until kubectl "${args[@]}" >&2; do
    attempt=$((attempt + 1))
    if [ "$attempt" -gt "$DRAIN_RETRIES" ]; then
      echo "shimless[$NODE] step 'drain' failed after $attempt attempts; the node is left as it was" >&2
      [ "${was:-false}" = true ] || kubectl uncordon "$NODE" >&2
      return 1
    fi
    echo "shimless[$NODE] drain attempt $attempt failed; retrying in 10s" >&2
    sleep 10
  done
  echo "was_unschedulable=${was:-false}"
}

uncordon() {
  case "$DRAIN_OUTPUT" in
    *was_unschedulable=false*) kubectl uncordon "$NODE" >&2; echo "uncordoned" ;;
    *was_unschedulable=true*) echo "left cordoned: it was unschedulable before shimless" ;;
    *) echo "not cordoned by shimless: nothing to undo" ;;
  esac
}

main() {
  # Global, not local: the EXIT trap runs after main has returned.
  KUBECONFIG=$(mktemp)
  export KUBECONFIG
  trap 'rm -f "$KUBECONFIG"' EXIT
  cat >"$KUBECONFIG"
  case "${1:-}" in
    drain) drain ;;
    uncordon) uncordon ;;
    *) echo "usage: cordon.sh drain|uncordon" >&2; return 64 ;;
  esac
}

main "$@"
