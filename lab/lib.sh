# shellcheck shell=bash
# Common code of the shimless lab scripts (lab-up.sh, lab-down.sh, lab-reset.sh, ssh).
#
# The lab: N systemd-nspawn Debian bookworm machines booting real systemd, all
# made from one cached base image (debootstrap, cached by a hash of its recipe
# in lab/base/), each with its own sshd on 127.0.0.1:222NN, starting in the
# Docker era (Docker on the system containerd, CRI disabled, the real kubelet
# 1.23 in dockershim mode: standalone with static pods, or registered with the
# lab control plane under LAB_CLUSTER=1; with LAB_SOURCE=cri-dockerd, the
# real kubelet 1.24 talking to Docker through cri-dockerd, lab/cri-dockerd/;
# with LAB_CONTAINERD=2, containerd 2.x installed beside Docker's 1.6,
# lab/containerd2/).
#
# Layout:
#   $LAB_CACHE_DIR (~/.cache/shimless/lab)
#     base-<hash>/          the base root filesystem (read-only lower layer)
#     bin/                  built binaries (crictl)
#     layers/bin-<key>/     lower layer: usr/bin/{kubelet,crictl} (lab/kubelet-real/layer.sh),
#                           CRI-O (LAB_CRIO=1), cri-dockerd (LAB_SOURCE=cri-dockerd),
#                           containerd 2.x (LAB_CONTAINERD=2)
#   $LAB_STATE_DIR (lab/state, git-ignored)
#     id_ed25519{,.pub}     lab client key; known_hosts: pinned host keys
#     keys/<node>/          the node's sshd host key (kept across resets)
#     nodes/<node>/         upper/ work/ rootfs/ (overlay) + var-lib-docker/,
#                           var-lib-containerd/ (bind mounts: no overlay on overlay)
#     <node>.pid <node>.log the nspawn process and its console

set -euo pipefail

LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$LAB_DIR/.." && pwd)"
LAB_STATE_DIR="${LAB_STATE_DIR:-$LAB_DIR/state}"
LAB_CACHE_DIR="${LAB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shimless/lab}"
LAB_NODES="${LAB_NODES:-3}"
LAB_SUITE="${LAB_SUITE:-bookworm}"
LAB_MIRROR="${LAB_MIRROR:-http://deb.debian.org/debian}"
LAB_KUBELET_VERSION="${LAB_KUBELET_VERSION:-1.23.17}"
LAB_KUBELET_VERSION="v${LAB_KUBELET_VERSION#v}"
LAB_CRICTL_VERSION="${LAB_CRICTL_VERSION:-v1.34.0}"
# LAB_SOURCE=cri-dockerd (lab_source_wanted): the kubelet of those nodes (no
# dockershim from 1.24 on; by default the module the control plane builds too;
# LAB_CRI_DOCKERD_KUBELET_VERSION=1.28.15 a kubelet past 1.27, with a control
# plane of its own version: lab_control_plane_version) and the CRI endpoint
# kubeadm records for them (its flags and the cri-socket annotation).
LAB_CRI_DOCKERD_KUBELET_VERSION="${LAB_CRI_DOCKERD_KUBELET_VERSION:-v1.24.17}"
LAB_CRI_DOCKERD_KUBELET_VERSION="v${LAB_CRI_DOCKERD_KUBELET_VERSION#v}"
LAB_CRI_DOCKERD_ENDPOINT=unix:///var/run/cri-dockerd.sock
# the sandbox image of the Docker era's kubeadm flags and of the stack's target
LAB_PAUSE_IMAGE="${LAB_PAUSE_IMAGE:-registry.k8s.io/pause:3.6}"
# the standalone nodes' workload image: built in Docker at boot from the pause
# image (an image of its own), never in any registry (lab/kubelet-real/files/usr/lib/shimless-lab/node-prep.sh)
LAB_WORKLOAD_IMAGE="lab.invalid/shimless/workload:1"
LAB_PORT_BASE="${LAB_PORT_BASE:-22200}"
LAB_BOOT_TIMEOUT="${LAB_BOOT_TIMEOUT:-180}"
LAB_STOP_TIMEOUT="${LAB_STOP_TIMEOUT:-30}"
# Bump when the way the base image is assembled changes (part of the recipe hash).
LAB_BASE_FORMAT=3

LAB_T0="${LAB_T0:-$(date +%s.%N)}"
export LAB_T0

lab_elapsed() { awk -v t0="$LAB_T0" -v t1="$(date +%s.%N)" 'BEGIN { printf "%6.1f", t1 - t0 }'; }
log() { printf '[lab %ss] %s\n' "$(lab_elapsed)" "$*" >&2; }
warn() { printf '[lab %ss] WARNING: %s\n' "$(lab_elapsed)" "$*" >&2; }
die() { printf '[lab %ss] ERROR: %s\n' "$(lab_elapsed)" "$*" >&2; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "the lab needs root (systemd-nspawn, mount)"; }

# ------------------------------------------------------------------ nodes

# Names of the nodes of a lab of LAB_NODES nodes: lab-cp1, lab-w1 .. lab-w(N-1).
# shellcheck disable=SC2120 # the count is optional
lab_node_names() {
  local n="${1:-$LAB_NODES}" i
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "LAB_NODES must be a positive number (got '$n')"
  [ "$n" -le 99 ] || die "LAB_NODES must be at most 99"
  echo lab-cp1
  for ((i = 1; i < n; i++)); do echo "lab-w$i"; done
}

# Nodes that have state (started at some point), whatever LAB_NODES says.
lab_known_nodes() {
  local d
  for d in "$LAB_STATE_DIR"/nodes/*/; do
    [ -d "$d" ] && basename "$d"
  done
  for d in "$LAB_STATE_DIR"/*.pid; do
    [ -f "$d" ] && basename "$d" .pid
  done
  true
}

lab_node_port() {
  local node="$1"
  if [ -f "$LAB_STATE_DIR/nodes/$node/port" ]; then cat "$LAB_STATE_DIR/nodes/$node/port"; return; fi
  case "$node" in
    lab-cp1) echo $((LAB_PORT_BASE + 1)) ;;
    lab-w[0-9]*) echo $((LAB_PORT_BASE + 1 + ${node#lab-w})) ;;
    *) die "unknown lab node '$node' (expected lab-cp1 or lab-wN)" ;;
  esac
}

lab_node_role() {
  case "$1" in lab-cp*) echo control-plane ;; *) echo worker ;; esac
}

lab_check_node_name() {
  [[ "$1" =~ ^lab-(cp1|w[1-9][0-9]?)$ ]] || die "unknown lab node '$1' (expected lab-cp1 or lab-wN)"
}

node_dir() { echo "$LAB_STATE_DIR/nodes/$1"; }
node_root() { echo "$LAB_STATE_DIR/nodes/$1/rootfs"; }
node_pidfile() { echo "$LAB_STATE_DIR/$1.pid"; }

# ------------------------------------------------------------------ host dependencies

lab_install_host_deps() {
  local -a pkgs=()
  command -v debootstrap >/dev/null || pkgs+=(debootstrap)
  command -v systemd-nspawn >/dev/null || pkgs+=(systemd-container)
  command -v ssh >/dev/null || pkgs+=(openssh-client)
  command -v ssh-keygen >/dev/null || pkgs+=(openssh-client)
  command -v flock >/dev/null || pkgs+=(util-linux)
  command -v setsid >/dev/null || pkgs+=(util-linux)
  command -v ss >/dev/null || pkgs+=(iproute2)
  command -v sha256sum >/dev/null || pkgs+=(coreutils)
  command -v awk >/dev/null || pkgs+=(gawk)
  [ -r /usr/share/keyrings/debian-archive-keyring.gpg ] || pkgs+=(debian-archive-keyring)
  lab_find_go >/dev/null || pkgs+=(golang-go)
  [ "${#pkgs[@]}" -eq 0 ] && return 0
  # shellcheck disable=SC2207
  pkgs=($(printf '%s\n' "${pkgs[@]}" | sort -u))
  log "installing host packages: ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends "${pkgs[@]}" >"$LAB_STATE_DIR/apt-host.log" 2>&1; then
    log "apt-get update (package lists missing or stale)"
    apt-get update >>"$LAB_STATE_DIR/apt-host.log" 2>&1 || true
    apt-get install -y --no-install-recommends "${pkgs[@]}" >>"$LAB_STATE_DIR/apt-host.log" 2>&1 \
      || { tail -20 "$LAB_STATE_DIR/apt-host.log" >&2; die "could not install host packages: ${pkgs[*]}"; }
  fi
}

lab_find_go() {
  local g
  for g in "${GO:-}" "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go /usr/lib/go/bin/go; do
    [ -n "$g" ] && [ -x "$g" ] && { echo "$g"; return 0; }
  done
  return 1
}

# ------------------------------------------------------------------ keys

lab_ensure_client_key() {
  mkdir -p "$LAB_STATE_DIR"
  chmod 700 "$LAB_STATE_DIR"
  if [ ! -f "$LAB_STATE_DIR/id_ed25519" ]; then
    ssh-keygen -q -t ed25519 -N '' -C "shimless-lab" -f "$LAB_STATE_DIR/id_ed25519"
    log "generated lab client key $LAB_STATE_DIR/id_ed25519"
  fi
}

lab_ensure_host_key() {
  local node="$1" d="$LAB_STATE_DIR/keys/$1"
  mkdir -p "$d"
  if [ ! -f "$d/ssh_host_ed25519_key" ]; then
    ssh-keygen -q -t ed25519 -N '' -C "root@$node" -f "$d/ssh_host_ed25519_key"
  fi
}

# "ssh-ed25519 AAAA..." (type and base64 only)
lab_host_pubkey() { awk '{ print $1 " " $2 }' "$LAB_STATE_DIR/keys/$1/ssh_host_ed25519_key.pub"; }

lab_write_known_hosts() {
  local node tmp="$LAB_STATE_DIR/known_hosts.tmp"
  : >"$tmp"
  for node in "$@"; do
    printf '[127.0.0.1]:%s %s\n' "$(lab_node_port "$node")" "$(lab_host_pubkey "$node")" >>"$tmp"
  done
  # keep entries of other nodes that still have keys (a smaller lab does not forget them)
  if [ -f "$LAB_STATE_DIR/known_hosts" ]; then
    local old new
    old="$(cat "$LAB_STATE_DIR/known_hosts")"
    new="$(cat "$tmp")"
    grep -v -F -f <(awk '{ print $1 " " }' <<<"$new") <<<"$old" >>"$tmp" || true
  fi
  mv "$tmp" "$LAB_STATE_DIR/known_hosts"
}

# ------------------------------------------------------------------ ssh

lab_ssh_opts() {
  local node="$1"
  printf '%s\n' -i "$LAB_STATE_DIR/id_ed25519" -p "$(lab_node_port "$node")" \
    -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityAgent=none \
    -o UserKnownHostsFile="$LAB_STATE_DIR/known_hosts" -o GlobalKnownHostsFile=/dev/null \
    -o StrictHostKeyChecking=yes -o CheckHostIP=no -o LogLevel=ERROR \
    -o ConnectTimeout=5 -o ServerAliveInterval=5 -o ServerAliveCountMax=3
}

lab_ssh() {
  local node="$1"
  shift
  local -a opts
  mapfile -t opts < <(lab_ssh_opts "$node")
  # shellcheck disable=SC2029 # the command runs remotely, like ssh's own
  ssh "${opts[@]}" root@127.0.0.1 "$@"
}

# ------------------------------------------------------------------ recipe hash + base image

lab_base_packages() { grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$LAB_DIR/base/packages.txt" | awk '{ print $1 }'; }

lab_recipe_hash() {
  {
    echo "format=$LAB_BASE_FORMAT suite=$LAB_SUITE mirror=$LAB_MIRROR"
    lab_base_packages
    sha256sum "$LAB_DIR/base/setup-in-chroot.sh" | awk '{ print $1 }'
    (cd "$LAB_DIR/base/files" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    (cd "$LAB_DIR/base/files" && find . -print0 | LC_ALL=C sort -z | xargs -0 stat -c '%n %a')
  } | sha256sum | cut -c1-16
}

lab_base_dir() { echo "$LAB_CACHE_DIR/base-$(lab_recipe_hash)"; }

_lab_umount_below() {
  local dir="$1" m
  # deepest first
  awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/self/mounts | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

# Stage 1 (slow, ~1-2 min): debootstrap with the package list, cached by the
# hash of suite + mirror + packages. Stage 2 (seconds): copy it, add the files
# and run setup-in-chroot.sh, cached by the hash of the whole recipe.
lab_debootstrap_dir() {
  echo "$LAB_CACHE_DIR/debootstrap-$({ echo "suite=$LAB_SUITE mirror=$LAB_MIRROR"; lab_base_packages; } | sha256sum | cut -c1-16)"
}

lab_ensure_debootstrap() {
  local dir tmp pkgs t0=$SECONDS
  dir="$(lab_debootstrap_dir)"
  [ -f "$dir/.shimless-lab-debootstrap" ] && return 0
  tmp="$dir.tmp"
  _lab_umount_below "$tmp"
  rm -rf "$tmp"
  pkgs="$(lab_base_packages | paste -sd, -)"
  log "debootstrap $LAB_SUITE into $(basename "$dir") (about a minute or two; log: $dir.log)"
  if ! debootstrap --variant=minbase --include="$pkgs" --components=main \
      "$LAB_SUITE" "$tmp" "$LAB_MIRROR" >"$dir.log" 2>&1; then
    tail -20 "$dir.log" >&2
    _lab_umount_below "$tmp"
    die "debootstrap failed (see $dir.log)"
  fi
  touch "$tmp/.shimless-lab-debootstrap"
  mv "$tmp" "$dir"
  log "debootstrap done in $((SECONDS - t0))s"
}

lab_ensure_base() {
  local base tmp boot t0=$SECONDS
  base="$(lab_base_dir)"
  if [ -f "$base/.shimless-lab-base" ]; then
    log "base image cached: $(basename "$base")"
    return 0
  fi
  mkdir -p "$LAB_CACHE_DIR"
  lab_ensure_debootstrap
  boot="$(lab_debootstrap_dir)"
  tmp="$base.tmp"
  _lab_umount_below "$tmp"
  rm -rf "$tmp"
  log "building base image $(basename "$base") (Docker era) from $(basename "$boot")"
  cp -a --reflink=auto "$boot" "$tmp"
  rm -f "$tmp/.shimless-lab-debootstrap"
  cp -a --no-preserve=ownership "$LAB_DIR/base/files/." "$tmp/"
  install -m 0755 "$LAB_DIR/base/setup-in-chroot.sh" "$tmp/root/setup-in-chroot.sh"
  mount -t proc proc "$tmp/proc"
  if ! chroot "$tmp" /bin/bash /root/setup-in-chroot.sh >"$base.log" 2>&1; then
    umount "$tmp/proc" || true
    tail -20 "$base.log" >&2
    die "base image setup failed (see $base.log)"
  fi
  umount "$tmp/proc"
  rm -f "$tmp/root/setup-in-chroot.sh"
  # shellcheck disable=SC2016 # dpkg-query format, not shell
  chroot "$tmp" dpkg-query -W -f '${Package} ${Version}\n' >"$tmp/.shimless-lab-packages"
  lab_recipe_hash >"$tmp/.shimless-lab-base"
  mv "$tmp" "$base"
  log "base image ready in $((SECONDS - t0))s: $base ($(du -sh "$base" | cut -f1))"
}

# ------------------------------------------------------------------ binaries

# crictl from sigs.k8s.io/cri-tools via the Go module proxy. The proxy refuses
# some versions (403 "not available") and has no checksum-database entry for
# others, so: probe a few versions, skip the sumdb for this one module (its
# dependencies are still checked against its go.sum), build in a copy.
lab_build_crictl() {
  local go v out tmp dir
  go="$(lab_find_go)" || { warn "no Go toolchain: nodes get no crictl"; return 0; }
  for v in "$LAB_CRICTL_VERSION" v1.34.0 v1.35.0 v1.33.0 v1.32.0; do
    if [ -x "$LAB_CACHE_DIR/bin/crictl-$v" ]; then echo "$LAB_CACHE_DIR/bin/crictl-$v"; return 0; fi
  done
  if [ -f "$LAB_CACHE_DIR/bin/crictl-unavailable" ] &&
    [ -z "$(find "$LAB_CACHE_DIR/bin/crictl-unavailable" -mmin +1440)" ]; then
    warn "crictl could not be had (cached result from the last day; delete $LAB_CACHE_DIR/bin/crictl-unavailable to retry)"
    return 0
  fi
  mkdir -p "$LAB_CACHE_DIR/bin"
  tmp="$(mktemp -d)"
  for v in "$LAB_CRICTL_VERSION" v1.34.0 v1.35.0 v1.33.0 v1.32.0; do
    log "fetching sigs.k8s.io/cri-tools@$v from the Go module proxy"
    if dir="$(cd "$tmp" && GONOSUMDB=sigs.k8s.io/cri-tools GOFLAGS=-mod=mod "$go" mod download -json "sigs.k8s.io/cri-tools@$v" 2>>"$tmp/err" |
      awk -F'"' '/"Dir":/ { print $4 }')" && [ -n "$dir" ] && [ -d "$dir" ]; then
      out="$LAB_CACHE_DIR/bin/crictl-$v"
      rm -rf "$tmp/src"
      cp -r "$dir" "$tmp/src"
      chmod -R u+w "$tmp/src"
      log "building crictl $v (static)"
      if (cd "$tmp/src" && CGO_ENABLED=0 GONOSUMDB=sigs.k8s.io/cri-tools GOFLAGS=-mod=mod "$go" build -trimpath \
        -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$v" -o "$out.tmp" ./cmd/crictl) >>"$tmp/err" 2>&1; then
        mv "$out.tmp" "$out"
        rm -rf "$tmp"
        echo "$out"
        return 0
      fi
      warn "building crictl $v failed: $(tail -3 "$tmp/err" | tr '\n' ' ')"
    else
      warn "cri-tools $v not available: $(grep -v '^$' "$tmp/err" | tail -1)"
    fi
    : >"$tmp/err"
  done
  rm -rf "$tmp"
  touch "$LAB_CACHE_DIR/bin/crictl-unavailable"
  warn "crictl could not be built from the Go module proxy: nodes get no /usr/bin/crictl"
}

# lab/kubelet-real/layer.sh ARGS with the kubelet of the nodes' source:
# LAB_SOURCE=cri-dockerd nodes run LAB_CRI_DOCKERD_KUBELET_VERSION; dockershim nodes the
# script's own default (1.23.17), called exactly as before LAB_SOURCE.
lab_kubelet_layer() {
  if lab_cri_dockerd_wanted; then
    KUBELET_VERSION="$LAB_CRI_DOCKERD_KUBELET_VERSION" bash "$LAB_DIR/kubelet-real/layer.sh" "$@"
  else
    bash "$LAB_DIR/kubelet-real/layer.sh" "$@"
  fi
}

# lab/cri-dockerd/layer.sh ARGS, with the lab's pause image for its unit.
lab_cri_dockerd_layer() { LAB_PAUSE_IMAGE="$LAB_PAUSE_IMAGE" bash "$LAB_DIR/cri-dockerd/layer.sh" "$@"; }

# The lower layer holding the lab binaries: the real kubelet and what it needs
# (lab/kubelet-real/layer.sh), usr/bin/crictl, CRI-O with LAB_CRIO=1,
# cri-dockerd with LAB_SOURCE=cri-dockerd, containerd 2.x with LAB_CONTAINERD=2.
lab_ensure_bin_layer() {
  local crictl key layer
  crictl="$(lab_build_crictl)"
  key="$(basename "${crictl:-nocrictl}")_$(lab_kubelet_layer --key)"
  # LAB_CRIO=1: the layer also carries CRI-O (lab/crio/layer.sh), installed but not enabled
  if lab_crio_wanted; then key="${key}_$(bash "$LAB_DIR/crio/layer.sh" --key)"; fi
  # LAB_SOURCE=cri-dockerd: and cri-dockerd with its units, enabled (lab/cri-dockerd/layer.sh)
  if lab_cri_dockerd_wanted; then key="${key}_$(lab_cri_dockerd_layer --key)"; fi
  # LAB_CONTAINERD=2: and containerd 2.x beside Docker's 1.6 (lab/containerd2/layer.sh)
  if lab_containerd2_wanted; then key="${key}_$(bash "$LAB_DIR/containerd2/layer.sh" --key)"; fi
  layer="$LAB_CACHE_DIR/layers/bin-$key"
  if [ ! -d "$layer" ]; then
    rm -rf "$layer.tmp"
    mkdir -p "$layer.tmp/usr/bin"
    [ -n "$crictl" ] && install -m 0755 "$crictl" "$layer.tmp/usr/bin/crictl"
    lab_kubelet_layer "$layer.tmp" >&2 || die "building the real kubelet layer failed"
    if lab_crio_wanted; then
      bash "$LAB_DIR/crio/layer.sh" "$layer.tmp" >&2 || die "building the CRI-O layer failed (LAB_CRIO=1)"
    fi
    if lab_cri_dockerd_wanted; then
      lab_cri_dockerd_layer "$layer.tmp" >&2 || die "building the cri-dockerd layer failed (LAB_SOURCE=cri-dockerd)"
    fi
    if lab_containerd2_wanted; then
      bash "$LAB_DIR/containerd2/layer.sh" "$layer.tmp" >&2 || die "building the containerd 2 layer failed (LAB_CONTAINERD=2)"
    fi
    mv "$layer.tmp" "$layer"
  fi
  echo "$layer"
}

# ------------------------------------------------------------------ root filesystems

lab_overlay_works() {
  local t="$LAB_STATE_DIR/.ovtest" ok=1
  if [ -n "${LAB_ROOTFS_MODE:-}" ]; then [ "$LAB_ROOTFS_MODE" = overlay ]; return; fi
  rm -rf "$t"
  mkdir -p "$t/l" "$t/u" "$t/w" "$t/m"
  if mount -t overlay overlay -o "lowerdir=$t/l,upperdir=$t/u,workdir=$t/w" "$t/m" 2>/dev/null; then
    ok=0
    umount "$t/m"
  fi
  rm -rf "$t"
  return $ok
}

lab_is_mounted() { awk -v d="$1" '$2 == d { f = 1 } END { exit !f }' /proc/self/mounts; }

# Create (if needed) and mount the node's root filesystem: overlay of
# upper (per node) over bin layer + base image; or a full copy if overlayfs
# cannot be mounted here.
lab_mount_rootfs() {
  local node="$1" base="$2" layer="$3" d root
  d="$(node_dir "$node")"
  root="$(node_root "$node")"
  mkdir -p "$d/var-lib-docker" "$d/var-lib-containerd" "$root"
  if lab_is_mounted "$root"; then return 0; fi
  if [ -f "$d/rootfs-mode" ] && [ "$(cat "$d/rootfs-mode")" = copy ]; then
    return 0
  fi
  if [ ! -f "$d/rootfs-mode" ]; then
    if lab_overlay_works; then echo overlay >"$d/rootfs-mode"; else echo copy >"$d/rootfs-mode"; fi
  fi
  if [ "$(cat "$d/rootfs-mode")" = overlay ]; then
    mkdir -p "$d/upper" "$d/work"
    mount -t overlay "shimless-lab-$node" \
      -o "lowerdir=$layer:$base,upperdir=$d/upper,workdir=$d/work" "$root"
  else
    log "$node: overlayfs unavailable, copying the base image"
    cp -a --reflink=auto "$base/." "$root/"
    cp -a "$layer/." "$root/"
  fi
  echo "$base" >"$d/base"
  echo "$layer" >"$d/layer"
}

# Fresh root filesystem: drop everything the node wrote.
lab_wipe_node_disk() {
  local node="$1" d root
  d="$(node_dir "$node")"
  root="$(node_root "$node")"
  if lab_is_mounted "$root"; then umount "$root" || umount -l "$root"; fi
  rm -rf "$d/upper" "$d/work" "$d/var-lib-docker" "$d/var-lib-containerd" "$d/rootfs-mode"
  if [ -d "$root" ] && ! lab_is_mounted "$root"; then rm -rf "$root"; fi
}

# _lab_static_pod NAME IMAGE TIER: a static pod manifest. The real kubelet
# runs it: no registry, so it runs the lab's pause image (the control plane
# itself runs on the host; IMAGE is what kubeadm would run) and never pulls.
_lab_static_pod() {
  local name="$1" tier="$3" image="$LAB_PAUSE_IMAGE" pull=Never
  # the workload pod runs an image that exists only in Docker on the node, under
  # a name no registry serves, and may pull: after the switch it runs only if
  # shimless carried the image over (target.images)
  if [ "$tier" = workload ]; then image="$LAB_WORKLOAD_IMAGE" pull=IfNotPresent; fi
  cat <<EOF
# shimless lab: a kubeadm-style static pod manifest (kubeadm would run ${2}).
apiVersion: v1
kind: Pod
metadata:
  labels:
    component: $name
    tier: $tier
  name: $name
  namespace: kube-system
spec:
  containers:
  - command:
    - /pause
    image: $image
    imagePullPolicy: $pull
    name: $name
    volumeMounts:
    - mountPath: /etc/kubernetes/pki
      name: k8s-certs
      readOnly: true
  hostNetwork: true
  priorityClassName: system-node-critical
  volumes:
  - hostPath:
      path: /etc/kubernetes/pki
      type: DirectoryOrCreate
    name: k8s-certs
EOF
}

# The real kubelet of a node: the nodes share the host's
# network, so each listens on loopback only, on ports of its own (kubelet API
# 24250 + n, healthz 24150 + n, n = ssh port - LAB_PORT_BASE), without the
# read-only port. No swap check (the host decides), and hard eviction only when
# the host disk or memory is really about to run out (the nodes share the host
# disk; the default 10-15 % free could evict the lab's pods on a busy host).
# No QoS cgroups (cgroupsPerQOS: false, so no node-allocatable enforcement
# either): a node's cgroup2 tree has no controllers on this host (cgroup v1
# hybrid), and a kubelet that finds kubepods.slice from an earlier start
# writes its cpu.weight and fails ("Failed to start ContainerManager ...
# kubepods-besteffort.slice/cpu.weight: no such file"), so every restart,
# including shimless' switch, would fail. Without QoS cgroups pods have no
# cgroup parent, and containerd then gives them the cgroupfs-style path
# /k8s.io/<id>, which runc's systemd driver refuses ("expected cgroupsPath to
# be of format slice:prefix:name"): so these nodes use the cgroupfs driver
# (kubelet and Docker, as kubeadm clusters did by default before 1.22), and
# shimless carries it over to containerd (SystemdCgroup = false).
#
# KIND standalone (no LAB_CLUSTER): no API server. The kubelet runs without a
# kubeconfig (a drop-in empties kubeadm's KUBELET_KUBECONFIG_ARGS) and runs
# the static pods of its manifest directory; with no API server to ask, its
# own API (loopback only) takes anonymous requests and allows them all, so a
# test can ask it which pods it runs on which runtime (GET /pods).
# Written once, on a fresh disk: shimless edits config.yaml when it migrates.
lab_kubelet_real_config() {
  local node="$1" kind="$2" root cfg n
  root="$(node_root "$node")"
  cfg="$root/var/lib/kubelet/config.yaml"
  grep -q '^# shimless lab: real kubelet' "$cfg" && return 0
  n=$(($(lab_node_port "$node") - LAB_PORT_BASE))
  sed -i "s/^healthzPort: .*/healthzPort: $(lab_kubelet_healthz_port "$node")/; s/^cgroupDriver: systemd$/cgroupDriver: cgroupfs/" "$cfg"
  sed -i 's/"native.cgroupdriver=systemd"/"native.cgroupdriver=cgroupfs"/' "$root/etc/docker/daemon.json"
  if [ "$kind" = standalone ]; then
    # authentication (anonymous, no webhook, no client CA) and authorization of kubeadm's file
    sed -i '/^  anonymous:$/,/enabled:/ s/enabled: false/enabled: true/
            /^  webhook:$/,/enabled:/ s/enabled: true/enabled: false/
            s/^  mode: Webhook$/  mode: AlwaysAllow/
            s/^  x509:$/  x509: {}/
            /^    clientCAFile: /d' "$cfg"
    grep -q '^  mode: AlwaysAllow$' "$cfg" || die "$node: could not make $cfg standalone"
    mkdir -p "$root/etc/systemd/system/kubelet.service.d"
    cat >"$root/etc/systemd/system/kubelet.service.d/20-shimless-lab-standalone.conf" <<EOF
# shimless lab: a standalone kubelet (no API server): no kubeconfig, static pods only.
[Service]
Environment="KUBELET_KUBECONFIG_ARGS="
EOF
  fi
  cat >>"$cfg" <<EOF
# shimless lab: real kubelet ($kind) on the shared host network (lab/lib.sh)
address: 127.0.0.1
port: $((24250 + n))
readOnlyPort: 0
failSwapOn: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
evictionHard:
  imagefs.available: 1%
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
EOF
}

lab_kubelet_healthz_port() { echo $((24150 + $(lab_node_port "$1") - LAB_PORT_BASE)); }
lab_kubelet_api_port() { echo $((24250 + $(lab_node_port "$1") - LAB_PORT_BASE)); }

# How a node's kubelet was made to run (on its fresh disk): cluster | standalone.
lab_node_kubelet() { cat "$(node_dir "$1")/kubelet" 2>/dev/null || echo none; }
# How the nodes made now should run it.
lab_kubelet_kind_wanted() { if lab_cluster_wanted; then echo cluster; else echo standalone; fi; }

# What a node's kubelet reaches Docker through (on its fresh disk): dockershim
# | cri-dockerd. A node made before LAB_SOURCE existed is a dockershim node.
lab_node_source() { cat "$(node_dir "$1")/source" 2>/dev/null || echo dockershim; }
# What the nodes made now should use: LAB_SOURCE (default dockershim).
lab_source_wanted() { echo "${LAB_SOURCE:-dockershim}"; }
lab_cri_dockerd_wanted() { [ "$(lab_source_wanted)" = cri-dockerd ]; }

# LAB_SOURCE=cri-dockerd is a cluster of 1.24 kubelets (cri-dockerd is what
# kept Docker nodes in clusters past 1.24); the standalone lab stays dockershim.
lab_check_source_choice() {
  case "$(lab_source_wanted)" in
    dockershim) ;;
    cri-dockerd) lab_cluster_wanted || die "LAB_SOURCE=cri-dockerd needs LAB_CLUSTER=1 (cri-dockerd nodes are cluster nodes)" ;;
    *) die "LAB_SOURCE=$LAB_SOURCE: expected dockershim (the default) or cri-dockerd" ;;
  esac
}

# Which containerd a node's disk was made with: 1 (Docker's 1.6 only) | 2
# (containerd 2.x beside it, lab/containerd2/). A node without a record has 1.
lab_node_containerd() { cat "$(node_dir "$1")/containerd" 2>/dev/null || echo 1; }
# What the nodes made now should have: LAB_CONTAINERD (default 1).
lab_containerd_wanted() { echo "${LAB_CONTAINERD:-1}"; }
lab_containerd2_wanted() { [ "$(lab_containerd_wanted)" = 2 ]; }
lab_check_containerd_choice() {
  case "$(lab_containerd_wanted)" in
    1 | 2) ;;
    *) die "LAB_CONTAINERD=$LAB_CONTAINERD: expected 1 (Docker's containerd only, the default) or 2 (containerd 2.x beside it)" ;;
  esac
}
# The version LAB_CONTAINERD=2 installs (tools/versions.sh, the build tools/setup.sh caches).
lab_containerd2_version() {
  # shellcheck source=tools/versions.sh
  (. "$REPO_DIR/tools/versions.sh" && echo "${LAB_CONTAINERD2_VERSION:-$CONTAINERD2_VERSION}")
}

# The kubelet version of a node of SOURCE.
lab_source_kubelet_version() {
  if [ "$1" = cri-dockerd ]; then echo "$LAB_CRI_DOCKERD_KUBELET_VERSION"; else echo "$LAB_KUBELET_VERSION"; fi
}

# The CRI socket kubeadm records for NODE (its cri-socket annotation).
lab_node_cri_socket() {
  if [ "$(lab_node_source "$1")" = cri-dockerd ]; then echo "$LAB_CRI_DOCKERD_ENDPOINT"; else echo /var/run/dockershim.sock; fi
}

# lab_cri_dockerd_flags NODE: kubeadm-flags.env as kubeadm writes it for a
# node on cri-dockerd: the remote runtime at cri-dockerd's socket and the
# sandbox image of the Docker-era file; no dockershim flags (a 1.24 kubelet
# refuses --network-plugin), and from 1.27 no --container-runtime (the kubelet
# refuses it). On a fresh disk only: shimless rewrites it later.
lab_cri_dockerd_flags() {
  local f infra remote="--container-runtime=remote "
  f="$(node_root "$1")/var/lib/kubelet/kubeadm-flags.env"
  infra="$(grep -o -- '--pod-infra-container-image=[^ "]*' "$f")" || die "$1: no --pod-infra-container-image in $f"
  [ "$(lab_minor "$LAB_CRI_DOCKERD_KUBELET_VERSION")" -ge 27 ] && remote=""
  printf 'KUBELET_KUBEADM_ARGS="%s--container-runtime-endpoint=%s %s"\n' \
    "$remote" "$LAB_CRI_DOCKERD_ENDPOINT" "$infra" >"$f"
}

# lab_minor VERSION: the minor of v1.MINOR.PATCH.
lab_minor() { local v=${1#v}; v=${v#*.}; echo "${v%%.*}"; }

# The control plane's version: its default (lab/control-plane/common.sh), or
# the cri-dockerd nodes' kubelet when that is newer (a kubelet may not be newer
# than its API server). CP_K8S_VERSION set by hand wins.
lab_control_plane_version() {
  local cp
  # shellcheck disable=SC2016  # the sed script matches the text ${CP_K8S_VERSION:-...}
  cp=${CP_K8S_VERSION:-$(sed -n 's/^CP_K8S_VERSION="\${CP_K8S_VERSION:-\(.*\)}"$/\1/p' "$LAB_DIR/control-plane/common.sh")}
  [ -n "$cp" ] || die "no default CP_K8S_VERSION in lab/control-plane/common.sh"
  cp="v${cp#v}"
  if [ -z "${CP_K8S_VERSION:-}" ] && lab_cri_dockerd_wanted &&
    [ "$(lab_minor "$LAB_CRI_DOCKERD_KUBELET_VERSION")" -gt "$(lab_minor "$cp")" ]; then
    cp=$LAB_CRI_DOCKERD_KUBELET_VERSION
  fi
  echo "$cp"
}

# Per-node identity and access, written into the (mounted) root filesystem.
lab_prepare_node() {
  local node="$1" root port role kind src kubelet_desc
  root="$(node_root "$node")"
  port="$(lab_node_port "$node")"
  role="$(lab_node_role "$node")"
  echo "$port" >"$(node_dir "$node")/port"
  kind="$(lab_kubelet_kind_wanted)"
  src="$(lab_source_wanted)"
  # a disk made for the other kind (config.yaml, drop-in) or source (kubeadm-flags.env) keeps it
  if grep -q '^# shimless lab: real kubelet' "$root/var/lib/kubelet/config.yaml"; then
    kind="$(lab_node_kubelet "$node")"
    src="$(lab_node_source "$node")"
  elif [ "$src" = cri-dockerd ]; then
    lab_cri_dockerd_flags "$node"
  fi
  lab_kubelet_real_config "$node" "$kind"
  echo "$kind" >"$(node_dir "$node")/kubelet"
  echo "$src" >"$(node_dir "$node")/source"
  # lab-up starts a disk made with the other containerd choice fresh: this one was made with it
  lab_containerd_wanted >"$(node_dir "$node")/containerd"
  kubelet_desc="$kind"
  if [ "$src" != dockershim ]; then kubelet_desc="$kind, $src"; fi
  echo "$node" >"$root/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' "$node" >"$root/etc/hosts"
  if [ ! -s "$root/etc/machine-id" ]; then
    od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$root/etc/machine-id"
    echo >>"$root/etc/machine-id"
  fi
  cat >"$root/etc/ssh/sshd_config.d/10-shimless-lab.conf" <<EOF
# shimless lab node $node: sshd only on loopback, own port, keys only.
Port $port
ListenAddress 127.0.0.1
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
HostKey /etc/ssh/ssh_host_ed25519_key
UseDNS no
EOF
  install -m 0600 "$LAB_STATE_DIR/keys/$node/ssh_host_ed25519_key" "$root/etc/ssh/ssh_host_ed25519_key"
  install -m 0644 "$LAB_STATE_DIR/keys/$node/ssh_host_ed25519_key.pub" "$root/etc/ssh/ssh_host_ed25519_key.pub"
  install -d -m 0700 "$root/root/.ssh"
  install -m 0600 "$LAB_STATE_DIR/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
  cat >"$root/etc/shimless-lab-node" <<EOF
# shimless lab node (made by lab/lab-up.sh)
NAME=$node
ROLE=$role
SSH_PORT=$port
KUBELET=kubelet $(lab_source_kubelet_version "$src") ($kubelet_desc)
EOF
  if lab_containerd2_wanted; then
    echo "CONTAINERD=containerd $(lab_containerd2_version) in /opt/containerd-$(lab_containerd2_version)/bin (beside Docker's containerd 1.6)" >>"$root/etc/shimless-lab-node"
  fi
  if [ "$role" = control-plane ] && [ ! -f "$root/etc/kubernetes/manifests/kube-apiserver.yaml" ]; then
    local k
    k="$(lab_source_kubelet_version "$src")"
    _lab_static_pod kube-apiserver "k8s.gcr.io/kube-apiserver:$k" control-plane >"$root/etc/kubernetes/manifests/kube-apiserver.yaml"
    _lab_static_pod kube-controller-manager "k8s.gcr.io/kube-controller-manager:$k" control-plane >"$root/etc/kubernetes/manifests/kube-controller-manager.yaml"
    _lab_static_pod kube-scheduler "k8s.gcr.io/kube-scheduler:$k" control-plane >"$root/etc/kubernetes/manifests/kube-scheduler.yaml"
    _lab_static_pod etcd "k8s.gcr.io/etcd:3.5.6-0" control-plane >"$root/etc/kubernetes/manifests/etcd.yaml"
  fi
  # a standalone kubelet runs only static pods: every node gets a workload pod
  if [ "$kind" = standalone ] && [ ! -f "$root/etc/kubernetes/manifests/lab-static.yaml" ]; then
    _lab_static_pod lab-static "$LAB_PAUSE_IMAGE" workload >"$root/etc/kubernetes/manifests/lab-static.yaml"
  fi
}

# ------------------------------------------------------------------ processes

# pid of the node's nspawn if it is running (and really is ours), else nothing.
lab_node_pid() {
  local node="$1" pf pid state
  pf="$(node_pidfile "$node")"
  [ -f "$pf" ] || return 1
  pid="$(cat "$pf")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  state="$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || echo X)"
  [ "$state" = Z ] || [ "$state" = X ] && return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qx -- "$(node_root "$node")" || return 1
  echo "$pid"
}

lab_cgroup_dirs() {
  local node="$1"
  if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then
    echo "/sys/fs/cgroup/shimless-lab/$node"
    return
  fi
  [ -d /sys/fs/cgroup/unified ] && echo "/sys/fs/cgroup/unified/shimless-lab/$node"
  [ -d /sys/fs/cgroup/systemd ] && echo "/sys/fs/cgroup/systemd/shimless-lab/$node"
  true
}

lab_port_in_use() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

lab_start_node() {
  local node="$1" root log pid cgs port
  root="$(node_root "$node")"
  log="$LAB_STATE_DIR/$node.log"
  port="$(lab_node_port "$node")"
  if lab_port_in_use "$port"; then
    die "$node: port 127.0.0.1:$port is already in use by something that is not this node"
  fi
  # Each node gets its own cgroup (the nodes' systemd must not share one).
  cgs=""
  local cg
  for cg in $(lab_cgroup_dirs "$node"); do
    mkdir -p "$cg" 2>/dev/null && cgs="$cgs $cg"
  done
  {
    echo "=== $(date -Is) starting $node"
  } >>"$log"
  # shellcheck disable=SC2016 # expanded by the inner bash
  LAB_NODE_CGROUPS="$cgs" SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 SYSTEMD_SECCOMP=0 \
    setsid bash -c 'for cg in $LAB_NODE_CGROUPS; do echo $$ >"$cg/cgroup.procs" 2>/dev/null || true; done
      unset LAB_NODE_CGROUPS; exec systemd-nspawn "$@"' shimless-lab-node \
    -D "$root" -b --register=no --keep-unit -M "$node" --capability=all \
    --console=read-only --link-journal=no --resolv-conf=copy-host --timezone=off \
    --bind="$(node_dir "$node")/var-lib-docker:/var/lib/docker" \
    --bind="$(node_dir "$node")/var-lib-containerd:/var/lib/containerd" \
    </dev/null >>"$log" 2>&1 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$(node_pidfile "$node")"
  disown "$pid" 2>/dev/null || true
  log "$node: started (nspawn pid $pid, ssh 127.0.0.1:$port, console log $log)"
}

# lab_restart_early_exits NODE...: after lab_start_node of each, give them a
# moment; a node whose nspawn already exited (seen right after a hard kill of
# its previous life, with nothing in its log) is started once more.
lab_restart_early_exits() {
  local node
  sleep 3
  for node in "$@"; do
    lab_node_pid "$node" >/dev/null && continue
    warn "$node: nspawn exited right after starting (log: $(tail -2 "$LAB_STATE_DIR/$node.log" | tr -s '\n' ' ')); starting it again"
    lab_start_node "$node"
  done
}

_lab_proc_alive() {
  local s
  [ -d "/proc/$1" ] || return 1
  s="$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null || echo X)"
  [ "$s" != Z ] && [ "$s" != X ]
}

# Every process of the node: the pids in its cgroup tree(s), else the
# children of its nspawn process.
_lab_node_pids() {
  local node="$1" nspawn_pid="${2:-}" cg
  local -a dirs=()
  for cg in $(lab_cgroup_dirs "$node"); do [ -d "$cg" ] && dirs+=("$cg"); done
  if [ "${#dirs[@]}" -gt 0 ]; then
    find "${dirs[@]}" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un
  elif [ -n "$nspawn_pid" ]; then
    awk -v p="$nspawn_pid" '$4 == p { print $1 }' /proc/[0-9]*/stat 2>/dev/null || true
  fi
}

# The node's PID 1 (systemd): the process of the node whose pid in its own
# namespace is 1. Killing it ends every process of the node at once.
_lab_node_init_pid() {
  local node="$1" nspawn_pid="${2:-}" p
  for p in $(_lab_node_pids "$node" "$nspawn_pid"); do
    [ "$p" = "$nspawn_pid" ] && continue
    if awk '/^NSpid:/ { exit !(NF >= 3 && $NF == 1) }' "/proc/$p/status" 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

_lab_rmdir_tree() {
  local d="$1"
  [ -d "$d" ] || return 0
  find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
}

# Stop a node: graceful (SIGTERM makes nspawn power the machine off) or
# kill (SIGKILL to the node's PID 1, which ends its whole PID namespace; for
# resets, where the disk is thrown away anyway).
lab_stop_node() {
  local node="$1" how="${2:-graceful}" pid="" init root i left cg
  root="$(node_root "$node")"
  pid="$(lab_node_pid "$node")" || pid=""
  if [ -n "$pid" ] && [ "$how" = graceful ]; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < LAB_STOP_TIMEOUT * 5; i++)); do
      _lab_proc_alive "$pid" || break
      sleep 0.2
    done
    _lab_proc_alive "$pid" && warn "$node: did not power off within ${LAB_STOP_TIMEOUT}s, killing it"
  fi
  if init="$(_lab_node_init_pid "$node" "$pid")"; then
    kill -KILL "$init" 2>/dev/null || true
  fi
  if [ -n "$pid" ]; then
    for ((i = 0; i < 50; i++)); do
      _lab_proc_alive "$pid" || break
      sleep 0.1
    done
    _lab_proc_alive "$pid" && kill -KILL "$pid" 2>/dev/null
  fi
  # Anything of the node still alive (only after a hard kill): by pid, from its cgroup.
  for ((i = 0; i < 30; i++)); do
    # `if`, not `&&`: a dead last pid must not make the substitution fail (set -e).
    left="$(for p in $(_lab_node_pids "$node"); do if _lab_proc_alive "$p"; then echo "$p"; fi; done)"
    [ -z "$left" ] && break
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
    sleep 0.1
  done
  [ -n "$left" ] && warn "$node: processes still alive: $left"
  rm -f "$(node_pidfile "$node")"
  if lab_is_mounted "$root"; then
    umount "$root" 2>/dev/null || { sleep 1; umount "$root" 2>/dev/null; } || umount -l "$root"
  fi
  for cg in $(lab_cgroup_dirs "$node"); do _lab_rmdir_tree "$cg"; done
}

# Wait until sshd answers and the boot preparations ran
# (shimless-lab-kernel-view, shimless-lab-images). A cluster kubelet only
# starts once the node has its kubeconfig (lab_write_node_kubeconfig): the API
# says when it is up (lab_wait_nodes_registered). A standalone kubelet starts
# at boot: wait until its healthz answers and it reports its static pods
# running (lab_kubelet_pods).
lab_wait_node() {
  local node="$1" deadline=$((SECONDS + LAB_BOOT_TIMEOUT)) phase=ssh
  while [ "$SECONDS" -lt "$deadline" ]; do
    lab_node_pid "$node" >/dev/null || { tail -30 "$LAB_STATE_DIR/$node.log" >&2; die "$node: nspawn exited (see $LAB_STATE_DIR/$node.log)"; }
    case "$phase" in
      ssh)
        if lab_ssh "$node" true </dev/null 2>/dev/null; then
          log "$node: sshd answers"
          phase=units
          continue
        fi
        ;;
      units)
        if lab_ssh "$node" systemctl is-active --quiet shimless-lab-kernel-view shimless-lab-images </dev/null 2>/dev/null; then
          if [ "$(lab_node_kubelet "$node")" != standalone ]; then
            log "$node: booted (pause image loaded, kernel view ready)"
            return 0
          fi
          phase=pods
          continue
        fi
        ;;
      pods)
        if lab_kubelet_pods "$node" 2>/dev/null | awk '$3 != "running" { bad = 1 } END { exit bad || NR == 0 }'; then
          log "$node: standalone kubelet healthy, static pods running: $(lab_kubelet_pods "$node" | awk '{ printf "%s%s (%s)", sep, $1, $2; sep = ", " }')"
          return 0
        fi
        ;;
    esac
    sleep 1
  done
  if [ "$phase" != ssh ]; then
    lab_ssh "$node" 'systemctl is-active docker kubelet; journalctl -u kubelet -u docker -u shimless-lab-images -u shimless-lab-kernel-view --no-pager -n 20' </dev/null >&2 || true
  fi
  die "$node: not ready after ${LAB_BOOT_TIMEOUT}s (stuck at: $phase)"
}

# lab_kubelet_pods NODE: what a standalone kubelet itself reports (its API,
# GET /pods, after its healthz answers): one line per pod,
# "NAME RUNTIME STATE" (RUNTIME from the containers' IDs: docker, containerd,
# cri-o; STATE running when every container runs). Fails if the kubelet does
# not answer.
lab_kubelet_pods() {
  local node="$1"
  lab_ssh "$node" "curl -fsS --max-time 5 http://127.0.0.1:$(lab_kubelet_healthz_port "$node")/healthz >/dev/null &&
    curl -fsSk --max-time 5 https://127.0.0.1:$(lab_kubelet_api_port "$node")/pods" </dev/null |
    python3 -c 'import json, sys
for pod in json.load(sys.stdin).get("items") or []:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    runtimes = sorted({s.get("containerID", "").split("://")[0] for s in statuses if s.get("containerID")})
    running = bool(statuses) and all("running" in (s.get("state") or {}) for s in statuses)
    print(pod["metadata"]["name"], ",".join(runtimes) or "-", "running" if running else "not-running")'
}

lab_node_runtime() {
  local mode=dockershim
  lab_ssh "$1" "grep -Eq 'container-runtime=remote|container-runtime-endpoint=' /var/lib/kubelet/kubeadm-flags.env" </dev/null 2>/dev/null && mode=remote
  if [ "$(lab_node_kubelet "$1")" = standalone ]; then
    local pods
    if pods="$(lab_kubelet_pods "$1" 2>/dev/null)"; then
      echo "$mode $(awk '{ r[$2] = 1; if ($3 != "running") bad = 1 }
        END { for (k in r) { printf "%s%s", sep, k; sep = "," } if (!NR) printf "?"; print (bad || !NR ? " pods-not-running" : " ready") }' <<<"$pods")"
    else
      echo "$mode ? NotReady"
    fi
    return
  fi
  echo "$mode $("$LAB_DIR/kubectl" get node "$1" -o 'jsonpath={.status.nodeInfo.containerRuntimeVersion} {.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null |
    awk '{ print ($1 == "" ? "?" : $1), ($2 == "True" ? "ready" : "NotReady") }')"
}

lab_print_table() {
  local node
  printf '%-10s %-7s %-14s %-11s %-28s %s\n' NODE PORT ROLE MODE RUNTIME STATUS
  for node in "$@"; do
    # shellcheck disable=SC2046
    set -- $(lab_node_runtime "$node")
    printf '%-10s %-7s %-14s %-11s %-28s %s\n' "$node" "$(lab_node_port "$node")" "$(lab_node_role "$node")" "$1" "$2" "$3"
  done
}

# ------------------------------------------------------------------ lab control plane (lab/control-plane/)

# LAB_CLUSTER=1: lab-up starts the control plane and the stack uses it.
lab_crio_wanted() { [ "${LAB_CRIO:-0}" = 1 ]; }
lab_cluster_wanted() { [ "${LAB_CLUSTER:-0}" = 1 ]; }

# The kubelet stand-in is gone: every lab node runs the real kubelet.
lab_check_kubelet_choice() {
  case "${LAB_KUBELET:-real}" in
    real) ;;
    *) die "LAB_KUBELET=$LAB_KUBELET: the lab kubelet stand-in was removed; every node runs the real kubelet (unset LAB_KUBELET)" ;;
  esac
}

# The control plane answers /readyz (whoever started it).
lab_control_plane_ready() { bash "$LAB_DIR/control-plane/status.sh" >/dev/null 2>&1; }

# Start the control plane at lab_control_plane_version (idempotent). One that
# runs (or last ran) another version is stopped first and starts on fresh etcd
# data: the kubelets keep their certificates (same CA) and register again.
lab_control_plane_up() {
  local want have file="$LAB_STATE_DIR/control-plane/version"
  want=$(lab_control_plane_version)
  have=$(cat "$file" 2>/dev/null || echo "$want")
  if [ "$have" != "$want" ]; then
    log "control plane: $have last ran here, $want wanted: stopping it, its etcd data deleted"
    lab_control_plane_down --purge
  fi
  LAB_STATE_DIR="$LAB_STATE_DIR" CP_K8S_VERSION="$want" bash "$LAB_DIR/control-plane/up.sh"
  echo "$want" >"$file"
}

lab_control_plane_down() {
  [ -d "$LAB_STATE_DIR/control-plane" ] || return 0
  LAB_STATE_DIR="$LAB_STATE_DIR" bash "$LAB_DIR/control-plane/down.sh" "$@"
}

# Give a running node its kubelet kubeconfig (client cert system:node:NODE);
# its kubelet (waiting for it) then starts. A node still on the placeholder
# kubeconfig (fresh disk) is a new machine: an old Node object of that name
# (labels, cri-socket annotation of an earlier life) is deleted first.
lab_write_node_kubeconfig() {
  local node="$1" root
  root="$(node_root "$node")"
  [ -d "$root/etc/kubernetes" ] || return 0
  if [ "$(lab_node_kubelet "$node")" != cluster ]; then
    warn "$node: its kubelet was made standalone; 'LAB_CLUSTER=1 lab/lab-reset.sh $node' makes it a cluster node"
    return 0
  fi
  if ! grep -q client-certificate-data "$root/etc/kubernetes/kubelet.conf" 2>/dev/null; then
    lab_forget_node_object "$node"
  fi
  LAB_STATE_DIR="$LAB_STATE_DIR" bash "$LAB_DIR/control-plane/node-kubeconfig.sh" "$node" "$root/etc/kubernetes/kubelet.conf"
  # the kubelet checks client certificates of calls to its API against the cluster CA
  install -D -m 0644 "$LAB_STATE_DIR/control-plane/pki/ca.crt" "$root/etc/kubernetes/pki/ca.crt"
}

# A reset node is a new machine: drop its old Node object (labels, annotations).
lab_forget_node_object() {
  "$LAB_DIR/kubectl" delete node "$1" --ignore-not-found --wait=false >/dev/null 2>&1 || true
}

# Wait until each node's Node object is Ready (heartbeat from the kubelet).
# A real kubelet's Node then gets what kubeadm adds after registration (a
# kubelet may not set node-role labels itself): the control-plane role label
# and the cri-socket annotation, the latter only if absent (it is shimless'
# to change).
lab_wait_nodes_registered() {
  local deadline=$((SECONDS + ${LAB_NODE_READY_TIMEOUT:-120})) node ok
  while [ "$SECONDS" -lt "$deadline" ]; do
    ok=1
    for node in "$@"; do
      [ "$("$LAB_DIR/kubectl" get node "$node" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] || ok=0
    done
    if [ "$ok" = 1 ]; then
      for node in "$@"; do
        [ "$(lab_node_kubelet "$node")" = cluster ] || continue
        if [ "$(lab_node_role "$node")" = control-plane ]; then
          "$LAB_DIR/kubectl" label node "$node" --overwrite node-role.kubernetes.io/control-plane= >/dev/null
        fi
        "$LAB_DIR/kubectl" annotate node "$node" kubeadm.alpha.kubernetes.io/cri-socket="$(lab_node_cri_socket "$node")" >/dev/null 2>&1 || true
      done
      log "Node objects Ready: $*"
      return 0
    fi
    sleep 1
  done
  warn "not every Node object is Ready after ${LAB_NODE_READY_TIMEOUT:-120}s: $("$LAB_DIR/kubectl" get nodes --no-headers 2>&1 | tr '\n' ';')"
}

# ------------------------------------------------------------------ Pulumi stack config

lab_write_stack_config() {
  local f="$REPO_DIR/stacks/Pulumi.lab.yaml" tmp node
  mkdir -p "$REPO_DIR/stacks"
  tmp="$f.tmp.$$"
  {
    echo "# Generated by lab/lab-up.sh for the local lab; regenerated on every lab-up."
    if [ -f "$f" ]; then grep '^encryptionsalt:' "$f" || true; fi
    echo "config:"
    echo "  shimless:cluster:"
    if lab_cluster_wanted && lab_control_plane_ready; then
      # the lab control plane (LAB_CLUSTER=1): cordon, drain, annotation, Ready for real
      echo "    mode: kubeconfig"
      echo "  shimless:kubeconfigPath: $LAB_STATE_DIR/kubeconfig"
    else
      echo "    mode: none"
    fi
    echo "  shimless:nodes:"
    for node in "$@"; do
      echo "    - name: $node"
      echo "      host: 127.0.0.1"
      echo "      port: $(lab_node_port "$node")"
      echo "      user: root"
      echo "      role: $(lab_node_role "$node")"
      echo "      hostKey: \"$(lab_host_pubkey "$node")\""
    done
    echo "  shimless:target:"
    echo "    runtime: containerd"
    echo "    source: preinstalled"
    # LAB_CONTAINERD=2: the containerd 2.x installed beside Docker's
    if lab_containerd2_wanted; then echo "    version: \"$(lab_containerd2_version)\""; fi
    echo "  shimless:sshPrivateKeyPath: $LAB_STATE_DIR/id_ed25519"
    # keep a secret private key block set with `pulumi config set --secret`
    if [ -f "$f" ]; then
      awk '/^  shimless:sshPrivateKey:/ { keep = 1; print; next }
           keep && /^    / { print; next }
           { keep = 0 }' "$f"
    fi
  } >"$tmp"
  mv "$tmp" "$f"
  log "wrote $f"
}
