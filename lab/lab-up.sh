#!/bin/bash
# Bring the shimless lab up (idempotent): LAB_NODES (default 3) systemd-nspawn
# nodes lab-cp1, lab-w1.. in the Docker era, sshd on 127.0.0.1:22201.., the real
# kubelet 1.23.17 (dockershim; built by lab/kubelet-real/build.sh), standalone
# with static pods unless LAB_CLUSTER=1. Writes stacks/Pulumi.lab.yaml.
#   LAB_NODES=N  LAB_KUBELET_VERSION=1.23.17  LAB_CRICTL_VERSION=v1.34.0
#   LAB_FRESH=1  (start stopped nodes from a fresh disk instead of resuming them)
#   LAB_CLUSTER=1 (also start the lab control plane, lab/control-plane/up.sh, give
#                 the nodes kubelet kubeconfigs and write shimless:cluster.mode:
#                 kubeconfig + shimless:kubeconfigPath into the stack; a stopped
#                 node made for the other kind starts from a fresh disk, a running
#                 one is left as it is: lab-reset it)
#   LAB_SOURCE=cri-dockerd (with LAB_CLUSTER=1; default dockershim): the nodes'
#                 kubelet is 1.24.17 and reaches Docker through cri-dockerd
#                 (lab/cri-dockerd/); a stopped node made for the other source
#                 starts from a fresh disk, a running one is left: lab-reset it
#   LAB_CONTAINERD=2 (default 1): containerd 2.x (tools/versions.sh) installed
#                 beside Docker's containerd 1.6 (lab/containerd2/), and the stack's
#                 target.version names it; a stopped node made with the other
#                 choice starts from a fresh disk, a running one is left: lab-reset it
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
lab_check_kubelet_choice
lab_check_source_choice
lab_check_containerd_choice
mkdir -p "$LAB_STATE_DIR"
exec 9>"$LAB_STATE_DIR/.lock"
flock -w 120 9 || die "another lab script holds $LAB_STATE_DIR/.lock"

mapfile -t NODES < <(lab_node_names)
log "lab-up: ${#NODES[@]} node(s): ${NODES[*]}"
lab_install_host_deps
lab_ensure_client_key
for node in "${NODES[@]}"; do lab_ensure_host_key "$node"; done
lab_write_known_hosts "${NODES[@]}"

# Nodes from a bigger lab that are not wanted now: stop them.
for node in $(lab_known_nodes | sort -u); do
  if ! printf '%s\n' "${NODES[@]}" | grep -qx "$node" && lab_node_pid "$node" >/dev/null; then
    log "$node: not part of a ${#NODES[@]}-node lab, stopping it"
    lab_stop_node "$node" graceful
  fi
done

# Binaries (Go builds, CPU) in the background while the base image (network, disk) builds.
mkdir -p "$LAB_CACHE_DIR"
( lab_ensure_bin_layer >"$LAB_STATE_DIR/.bin-layer" ) &
bin_pid=$!
base_ok=0
( flock 8; lab_ensure_base ) 8>"$LAB_CACHE_DIR/.base.lock" || base_ok=$?
wait "$bin_pid" || die "building the lab binaries failed"
[ "$base_ok" = 0 ] || die "building the base image failed"
BASE="$(lab_base_dir)"
LAYER="$(cat "$LAB_STATE_DIR/.bin-layer")"
rm -f "$LAB_STATE_DIR/.bin-layer"

started=()
for node in "${NODES[@]}"; do
  if lab_node_pid "$node" >/dev/null; then
    d="$(node_dir "$node")"
    if [ "$(cat "$d/base" 2>/dev/null)" != "$BASE" ] || [ "$(cat "$d/layer" 2>/dev/null)" != "$LAYER" ]; then
      warn "$node: running on an older base image or binaries; 'lab/lab-reset.sh $node' to renew it"
    fi
    if [ "$(lab_node_kubelet "$node")" != "$(lab_kubelet_kind_wanted)" ]; then
      warn "$node: its kubelet runs $(lab_node_kubelet "$node"), not $(lab_kubelet_kind_wanted); 'lab/lab-reset.sh $node' (same LAB_CLUSTER) to renew it"
    fi
    if [ "$(lab_node_source "$node")" != "$(lab_source_wanted)" ]; then
      warn "$node: its kubelet reaches Docker through $(lab_node_source "$node"), not $(lab_source_wanted); 'lab/lab-reset.sh $node' (same LAB_SOURCE) to renew it"
    fi
    if [ "$(lab_node_containerd "$node")" != "$(lab_containerd_wanted)" ]; then
      warn "$node: made with LAB_CONTAINERD=$(lab_node_containerd "$node"), not $(lab_containerd_wanted); 'lab/lab-reset.sh $node' (same LAB_CONTAINERD) to renew it"
    fi
    log "$node: already running"
    continue
  fi
  if [ "${LAB_FRESH:-0}" = 1 ]; then lab_wipe_node_disk "$node"; fi
  d="$(node_dir "$node")"
  # a stopped node resumes on its disk; its lower layers follow the current recipe
  if [ -f "$d/base" ] && [ "$(cat "$d/base")" != "$BASE" ]; then
    warn "$node: base image changed since this node was made: starting it fresh"
    lab_wipe_node_disk "$node"
  elif [ -f "$d/base" ] && [ "$(lab_node_kubelet "$node")" != "$(lab_kubelet_kind_wanted)" ]; then
    log "$node: its disk was made for a $(lab_node_kubelet "$node") kubelet: starting it fresh ($(lab_kubelet_kind_wanted))"
    lab_wipe_node_disk "$node"
  elif [ -f "$d/base" ] && [ "$(lab_node_source "$node")" != "$(lab_source_wanted)" ]; then
    log "$node: its disk was made for $(lab_node_source "$node"): starting it fresh ($(lab_source_wanted))"
    lab_wipe_node_disk "$node"
  elif [ -f "$d/base" ] && [ "$(lab_node_containerd "$node")" != "$(lab_containerd_wanted)" ]; then
    # a node moved to containerd 2.x would not start its runtime without it (and the other way round)
    log "$node: its disk was made with LAB_CONTAINERD=$(lab_node_containerd "$node"): starting it fresh (LAB_CONTAINERD=$(lab_containerd_wanted))"
    lab_wipe_node_disk "$node"
  fi
  lab_mount_rootfs "$node" "$BASE" "$LAYER"
  lab_prepare_node "$node"
  lab_start_node "$node"
  started+=("$node")
done

for node in "${NODES[@]}"; do lab_wait_node "$node"; done
if lab_cluster_wanted; then
  lab_control_plane_up
  for node in "${NODES[@]}"; do lab_write_node_kubeconfig "$node"; done
  lab_wait_nodes_registered "${NODES[@]}"
fi
lab_write_stack_config "${NODES[@]}"
log "lab is up"
lab_print_table "${NODES[@]}"
