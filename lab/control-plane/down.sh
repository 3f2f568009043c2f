#!/bin/bash
# Stop the lab control plane: each component by its recorded pid only
# (lab/state/control-plane/<component>.pid), SIGTERM then SIGKILL after 15 s
# (3 s for kube-scheduler / kube-controller-manager).
# Keeps certificates and etcd data; --purge (or CP_PURGE=1) deletes the etcd
# data (the next up.sh starts an empty cluster) and the admin kubeconfig.
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[ "${1:-}" = --purge ] && CP_PURGE=1
[ -d "$CP_STATE_DIR" ] || exit 0
exec 7>"$CP_STATE_DIR/.lock"
flock -w 120 7 || die "another control-plane script holds $CP_STATE_DIR/.lock"
for ((c = ${#CP_COMPONENTS[@]} - 1; c >= 0; c--)); do
  name="${CP_COMPONENTS[$c]}"
  if pid="$(cp_pid "$name")"; then
    # kube-scheduler 1.24 may not exit on SIGTERM: short grace for the stateless ones
    case "$name" in kube-scheduler | kube-controller-manager) grace=3 ;; *) grace=15 ;; esac
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 5; i++)); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
    if [ -d "/proc/$pid" ]; then
      cp_log "$name: still running after $grace s, killing pid $pid"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    cp_log "$name: stopped (pid $pid)"
  fi
  rm -f "$CP_STATE_DIR/$name.pid"
done
if [ "${CP_PURGE:-0}" = 1 ]; then
  rm -rf "$CP_STATE_DIR/etcd"
  rm -f "$CP_KUBECONFIG"
  cp_log "etcd data deleted"
fi
