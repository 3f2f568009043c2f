#!/bin/bash
# shimless lab node, real kubelet: preparations run by systemd at boot.
#   node-prep.sh kernel-view   before the kubelet and the runtimes
#   node-prep.sh images        after Docker, before the kubelet
set -euo pipefail

# The kubelet (1.23, pkg/kubelet/cm) sets these kernel tunables at start and
# fails when it cannot: in a systemd-nspawn node /proc/sys is read-only, and
# they are not namespaced (writing them would change the host). The node gets
# its own read-only view of the ones whose host value differs: a file holding
# the value the kubelet wants, bind-mounted in the node's mount namespace only
# (as nspawn itself does for kernel/random/boot_id). The host keeps its values.
kubelet_sysctls="vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1
kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000"

kernel_view() {
  local kv key want view
  mkdir -p /run/shimless-lab/sysctl
  for kv in $kubelet_sysctls; do
    key="${kv%=*}" want="${kv#*=}"
    [ "$(cat "/proc/sys/$key")" = "$want" ] && continue
    view="/run/shimless-lab/sysctl/${key//\//.}"
    echo "$want" >"$view"
    mount --bind -o ro "$view" "/proc/sys/$key"
    echo "node view of $key: $want (host value unchanged)"
  done
  # The kubelet's OOM watcher reads the kernel log; nspawn gives the node no
  # /dev/kmsg. The node gets the kernel's (it shares the host kernel), read-only.
  if [ ! -e /dev/kmsg ]; then
    mknod -m 0400 /dev/kmsg c 1 11
  fi
}

# The pause image exists only in Docker, as on a Docker-era node (it came
# from a registry there; here, from a tarball). shimless carries it over to
# the target runtime itself (target.images).
images() {
  local tar=/usr/share/shimless-lab/pause.tar image workload=lab.invalid/shimless/workload:1
  local -a names
  read -r -a names </usr/share/shimless-lab/pause.images
  systemctl is-active --quiet docker || return 0  # a node moved off Docker
  for image in "${names[@]}"; do
    docker image inspect "$image" >/dev/null 2>&1 || { docker load -i "$tar"; break; }
  done
  # the standalone nodes' workload image (lab/lib.sh LAB_WORKLOAD_IMAGE): an
  # image of its own (not a tag of the pause image) that only Docker has
  if ! docker image inspect "$workload" >/dev/null 2>&1; then
    printf 'FROM %s\nLABEL io.shimless.lab=workload\n' "${names[0]}" |
      DOCKER_BUILDKIT=0 docker build -q -t "$workload" - >/dev/null
  fi
}

case "${1:-}" in
  kernel-view) kernel_view ;;
  images) images ;;
  *) echo "usage: node-prep.sh kernel-view|images" >&2; exit 2 ;;
esac
