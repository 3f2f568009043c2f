#!/bin/bash
# lab/lab-powercut.sh NODE...: cut each node's power (SIGKILL to its PID 1,
# which ends every process of the node at once, with no shutdown) and boot it
# again on the same disk; returns when it is booted (sshd answers and the
# lab's boot units ran). What the node does at boot is its own business:
# nothing here touches shimless' files or the kubelet's.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
[ "$#" -gt 0 ] || die "usage: lab/lab-powercut.sh NODE..."
mkdir -p "$LAB_STATE_DIR"
exec 9>"$LAB_STATE_DIR/.lock"
flock -w 120 9 || die "another lab script holds $LAB_STATE_DIR/.lock"
for node in "$@"; do lab_check_node_name "$node"; done
for node in "$@"; do
  d="$(node_dir "$node")"
  if [ ! -f "$d/base" ] || [ ! -f "$d/layer" ]; then die "$node: has no disk to boot again (start the lab first)"; fi
  lab_stop_node "$node" kill
  log "$node: power cut"
  lab_mount_rootfs "$node" "$(cat "$d/base")" "$(cat "$d/layer")"
  lab_prepare_node "$node"
  lab_start_node "$node"
done
lab_restart_early_exits "$@"
for node in "$@"; do lab_wait_node "$node"; done
log "powered on again: $*"
