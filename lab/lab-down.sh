#!/bin/bash
# Stop every lab node this lab started (by its recorded nspawn pid), unmount
# their root filesystems. Idempotent. Node disks stay in lab/state (the next
# lab-up resumes them); LAB_PURGE=1 (or --purge) also deletes them. The cached
# base image (~/.cache/shimless/lab) is never removed.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
[ "${1:-}" = --purge ] && LAB_PURGE=1
[ -d "$LAB_STATE_DIR" ] || { log "lab-down: no lab state, nothing to do"; exit 0; }
exec 9>"$LAB_STATE_DIR/.lock"
flock -w 120 9 || die "another lab script holds $LAB_STATE_DIR/.lock"
mapfile -t NODES < <(lab_known_nodes | sort -u)
# the lab control plane (LAB_CLUSTER=1 lab-up), by its recorded pids
if [ "${LAB_PURGE:-0}" = 1 ]; then lab_control_plane_down --purge; else lab_control_plane_down; fi
if [ "${#NODES[@]}" -eq 0 ]; then log "lab-down: no nodes"; exit 0; fi
pids=()
for node in "${NODES[@]}"; do
  if lab_node_pid "$node" >/dev/null; then log "$node: powering off"; else log "$node: not running"; fi
  ( lab_stop_node "$node" graceful ) &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
if [ "${LAB_PURGE:-0}" = 1 ]; then
  for node in "${NODES[@]}"; do lab_wipe_node_disk "$node"; rm -rf "$(node_dir "$node")"; done
  log "node disks deleted"
fi
log "lab is down"
exit $rc
