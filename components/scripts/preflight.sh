#!/usr/bin/env bash
# Apply-time check, read-only: can this node be switched, and does it need to
# be? Prints "action=switch" or "action=in-sync"; later steps (drain) read it.
set -euo pipefail
SHIMLESS_BUNDLE=$1
# shellcheck source=components/scripts/node-lib.sh
. "$SHIMLESS_BUNDLE/node-lib.sh"
SHIMLESS_NODE=$(var node)

main() {
  local expected_kubelet have_kubelet
  command -v systemctl >/dev/null 2>&1 || die "systemd is required (no systemctl)"
  unit_exists "$KUBELET_UNIT" || die "no $KUBELET_UNIT on this node"
  expected_kubelet=$(var kubelet_version)
  have_kubelet=$(kubelet --version 2>/dev/null | awk '{print $2}')
  if [ -n "$expected_kubelet" ] && [ "$have_kubelet" != "$expected_kubelet" ]; then
    die "kubelet is $have_kubelet but the plan was made for $expected_kubelet: run preview again"
  fi
  if in_target_state; then
    printf 'action=in-sync\n'
  else
    printf 'action=switch\n'
  fi
}

main "$@"
