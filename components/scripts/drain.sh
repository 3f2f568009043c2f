#!/usr/bin/env bash
# Runs where Pulumi runs, with the kubeconfig on stdin; the subcommand is its
# one argument:
#   drain.sh drain     cordon and drain the node through the API, with
#                      retries, honouring PodDisruptionBudgets (eviction);
#                      prints "was_unschedulable=true|false|unchanged"
#   drain.sh uncordon  uncordon it if shimless cordoned it
#
# Which nodes shimless cordoned is kept on the Node itself, in the annotation
# $CORDON_ANNOTATION: set before the cordon, removed after the uncordon. It
# survives an interrupted run (killed operator, power cut), so a re-run
# uncordons exactly the nodes shimless cordoned, never one an operator had
# cordoned before.
set -euo pipefail

# The kubeconfig is never left on disk: it is written to a RAM-backed file
# that is unlinked at once and read by every kubectl through the open
# descriptor (/dev/fd/3 re-opens it from the start each time), so even a
# SIGKILL leaves no copy behind. (A pipe will not do: kubectl reads it twice.)
hold_kubeconfig() {
  local dir=/dev/shm tmp
  [ -d "$dir" ] && [ -w "$dir" ] || dir=${TMPDIR:-/tmp}
  tmp=$(mktemp "$dir/shimless-kubeconfig.XXXXXX")
  cat >"$tmp"
  exec 3<"$tmp"
  rm -f "$tmp"
}
k() { kubectl --kubeconfig=/dev/fd/3 "$@"; }

# Annotation key with its dots escaped for a jsonpath.
jsonpath_key() { printf '%s' "${CORDON_ANNOTATION//./\\.}"; }

# cordon_mark: the annotation's value (empty: not cordoned by shimless). Use
# it in an assignment, never in a condition, so an API error ends the script.
cordon_mark() {
  k get node "$NODE" -o "jsonpath={.metadata.annotations.$(jsonpath_key)}"
}

undo_cordon() {
  k uncordon "$NODE" >&2
  k annotate node "$NODE" "$CORDON_ANNOTATION-" >&2
}

drain() {
  if [ "$SHIMLESS_PREFLIGHT" != "action=switch" ]; then
    echo "shimless[$NODE] already on its target runtime: not cordoned" >&2
    echo "was_unschedulable=unchanged"
    return 0
  fi
  local was mark
  mark=$(cordon_mark)
  if [ -n "$mark" ]; then
    echo "shimless[$NODE] cordoned by an earlier, interrupted shimless run" >&2
    was=false
  else
    was=$(k get node "$NODE" -o jsonpath='{.spec.unschedulable}')
    was=${was:-false}
    # Mark before cordoning: an interruption between the two leaves a mark on
    # a schedulable node, which the uncordon step undoes harmlessly.
    [ "$was" = true ] || k annotate node "$NODE" --overwrite "$CORDON_ANNOTATION=$SHIMLESS_TOKEN" >&2
  fi
  k cordon "$NODE" >&2
  local args=(drain "$NODE" --ignore-daemonsets "--timeout=${DRAIN_TIMEOUT}s" "--grace-period=${DRAIN_GRACE_PERIOD}")
  [ "$DRAIN_DELETE_EMPTYDIR_DATA" = true ] && args+=(--delete-emptydir-data)
  [ "$DRAIN_FORCE" = true ] && args+=(--force)
  local attempt=0
  until k "${args[@]}" >&2; do
    attempt=$((attempt + 1))
    if [ "$attempt" -gt "$DRAIN_RETRIES" ]; then
      echo "shimless[$NODE] step 'drain' failed after $attempt attempts; the node is left as it was" >&2
      [ "$was" = true ] || undo_cordon
      return 1
    fi
    echo "shimless[$NODE] drain attempt $attempt failed; retrying in 10s" >&2
    sleep 10
  done
  echo "was_unschedulable=$was"
}

uncordon() {
  local mark
  mark=$(cordon_mark)
  if [ -n "$mark" ]; then
    undo_cordon
    echo "uncordoned"
  elif [[ $DRAIN_OUTPUT == *was_unschedulable=true* ]]; then
    echo "left cordoned: it was unschedulable before shimless"
  else
    echo "not cordoned by shimless: nothing to undo"
  fi
}

main() {
  hold_kubeconfig
  case "${1:-}" in
    drain) drain ;;
    uncordon) uncordon ;;
    *) echo "usage: drain.sh drain|uncordon" >&2; return 64 ;;
  esac
}

main "$@"
