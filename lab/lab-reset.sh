#!/bin/bash
# lab/lab-reset.sh [NODE...]: stop the given nodes (default: all of the lab),
# give them a fresh root filesystem from the base image (back to the Docker
# era) and start them again; returns when they are ready. LAB_CLUSTER,
# LAB_SOURCE and LAB_CONTAINERD (see lab-up.sh) say what the fresh nodes are made for.
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
lab_check_kubelet_choice
lab_check_source_choice
lab_check_containerd_choice
mkdir -p "$LAB_STATE_DIR"
exec 9>"$LAB_STATE_DIR/.lock"
flock -w 120 9 || die "another lab script holds $LAB_STATE_DIR/.lock"
if [ "$#" -gt 0 ]; then NODES=("$@"); else mapfile -t NODES < <(lab_node_names); fi
for node in "${NODES[@]}"; do lab_check_node_name "$node"; done
lab_ensure_client_key
[ -f "$(lab_base_dir)/.shimless-lab-base" ] || log "base image not built yet: building it"
mkdir -p "$LAB_CACHE_DIR"
( flock 8; lab_ensure_base ) 8>"$LAB_CACHE_DIR/.base.lock" >/dev/null
BASE="$(lab_base_dir)"
LAYER="$(lab_ensure_bin_layer)"
# LAB_CLUSTER=1 and the control plane up: a reset node is a new machine (its
# Node object is deleted) and gets its kubelet kubeconfig again.
cluster=0
if lab_cluster_wanted && lab_control_plane_ready; then
  cluster=1
  lab_control_plane_up # at the version these nodes' kubelets need (restarted if another runs)
fi
for node in "${NODES[@]}"; do
  lab_ensure_host_key "$node"
  [ "$cluster" = 1 ] && lab_forget_node_object "$node"
  lab_stop_node "$node" kill
  lab_wipe_node_disk "$node"
  lab_mount_rootfs "$node" "$BASE" "$LAYER"
  lab_prepare_node "$node"
  lab_start_node "$node"
done
lab_restart_early_exits "${NODES[@]}"
for node in "${NODES[@]}"; do lab_wait_node "$node"; done
if [ "$cluster" = 1 ]; then
  for node in "${NODES[@]}"; do lab_write_node_kubeconfig "$node"; done
  lab_wait_nodes_registered "${NODES[@]}"
fi
log "reset done: ${NODES[*]}"
