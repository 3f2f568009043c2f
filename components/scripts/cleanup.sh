#!/usr/bin/env bash
# After a successful switch: apply the docker policy. `keep` leaves Docker (and
# cri-dockerd) installed, stopped and disabled; `purge` removes Docker's packages (never
# containerd when it is the runtime now) and optionally Docker's data-root
# (docker_data_root: daemon.json's data-root, decided in components/plan.py,
# which blocks a node whose data-root holds the new runtime's root).
set -euo pipefail
SHIMLESS_BUNDLE=$1
# shellcheck source=components/scripts/node-lib.sh
. "$SHIMLESS_BUNDLE/node-lib.sh"
SHIMLESS_NODE=$(var node)

# Remove Docker's data-root: a mount point keeps its directory (only what is
# inside goes), and nothing on another file system below it is touched.
remove_data_root() {
  local data_root=$1
  case "$data_root" in
    "" | / | [!/]*) die "refusing to remove Docker's data-root '$data_root': not an absolute path below /" ;;
  esac
  case "/$data_root/" in
    */../* | */./*) die "refusing to remove Docker's data-root '$data_root': not a normalized path" ;;
  esac
  [ -e "$data_root" ] || return 0
  if mountpoint -q "$data_root"; then
    find "$data_root" -mindepth 1 -maxdepth 1 -exec rm -rf --one-file-system -- {} +
  else
    rm -rf --one-file-system -- "$data_root"
  fi
}

main() {
  local policy remove_data runtime data_root
  policy=$(var docker_policy)
  remove_data=$(var docker_remove_data)
  runtime=$(var runtime)
  data_root=$(var docker_data_root)
  data_root=${data_root:-$DOCKER_DATA_ROOT}
  local unit
  # What the node left (Docker, cri-dockerd, ...: the manifest's SOURCE_UNITS) stays off.
  for unit in $SOURCE_UNITS; do
    if unit_exists "$unit" && { unit_enabled "$unit" || unit_active "$unit"; }; then
      systemctl disable --now "$unit"
    fi
  done
  if [ "$policy" = keep ]; then
    printf 'docker kept (stopped and disabled)\n'
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 || command -v dnf >/dev/null 2>&1 ||
    die "docker purge supports apt and dnf nodes only"
  local pkgs=() pkg
  for pkg in cri-dockerd docker.io docker-ce docker-ce-cli docker-ce-rootless-extras docker-buildx-plugin docker-compose-plugin moby-engine; do
    if command -v dpkg-query >/dev/null 2>&1; then
      dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' && pkgs+=("$pkg")
    elif rpm -q "$pkg" >/dev/null 2>&1; then
      pkgs+=("$pkg")
    fi
  done
  if [ "$runtime" = containerd ] && command -v apt-mark >/dev/null 2>&1; then
    # Removing Docker must never autoremove the runtime the kubelet now uses.
    for pkg in containerd containerd.io runc; do
      apt-mark manual "$pkg" >/dev/null 2>&1 || true
    done
  fi
  if [ "${#pkgs[@]}" -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get purge -y "${pkgs[@]}"
    else
      dnf remove -y "${pkgs[@]}"
    fi
  fi
  if [ "$runtime" = containerd ]; then
    command -v containerd >/dev/null 2>&1 || die "containerd disappeared while purging Docker"
    unit_active "$RUNTIME_SERVICE" || die "containerd is not active after purging Docker"
  fi
  # shellcheck disable=SC2086  # DOCKER_SOCKETS: one word a path
  rm -f $DOCKER_SOCKETS
  if [ "$remove_data" = true ]; then
    remove_data_root "$data_root"
    printf 'docker purged (%s) and its data-root %s removed\n' "${pkgs[*]:-no packages}" "$data_root"
  else
    printf 'docker purged (%s); its data-root %s kept\n' "${pkgs[*]:-no packages}" "$data_root"
  fi
}

main "$@"
