#!/bin/bash
# Exit 0 when the lab control plane's kube-apiserver answers /readyz with the
# admin credentials (prints "ok"); 1 otherwise. -v: one line per component.
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
P="$CP_STATE_DIR/pki"
if [ "${1:-}" = -v ]; then
  for c in "${CP_COMPONENTS[@]}"; do
    if pid="$(cp_pid "$c")"; then echo "$c: running (pid $pid)"; else echo "$c: not running"; fi
  done
fi
[ -f "$P/admin.crt" ] || exit 1
if out="$(curl -fsS --max-time 3 --cacert "$P/ca.crt" --cert "$P/admin.crt" --key "$P/admin.key" "$CP_SERVER/readyz" 2>&1)"; then
  echo "$out"
else
  echo "kube-apiserver $CP_SERVER/readyz: not ready ($out)"
  exit 1
fi
