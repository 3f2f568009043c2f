#!/usr/bin/env bash
# Undo the last switch on this node (used when the API never saw the node
# Ready on its new runtime): restore the backups, put Docker back as it was,
# restart the kubelet on its old flags.
set -euo pipefail
SHIMLESS_BUNDLE=$1
# shellcheck source=components/scripts/node-lib.sh
. "$SHIMLESS_BUNDLE/node-lib.sh"
SHIMLESS_NODE=$(var node)
SETTLE_SECONDS=$(var settle_seconds)

main() {
  exec 9>"$SWITCH_LOCK"
  flock 9
  if restore_previous "$(var health_timeout)"; then
    printf 'rolled_back=yes\n'
  else
    printf 'rolled_back=incomplete\n'
    return 1
  fi
}

main "$@"
