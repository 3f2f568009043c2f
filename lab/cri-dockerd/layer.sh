#!/bin/bash
# lab/cri-dockerd/layer.sh DIR: fill DIR (a lab lower layer, LAB_SOURCE=cri-dockerd)
# with Mirantis cri-dockerd in front of the node's Docker, as a node that kept
# Docker past Kubernetes 1.24 has it:
#   usr/bin/cri-dockerd                 tools/build-cri-dockerd.sh (the upstream
#                                       source archive, vendored, offline; cached)
#   usr/lib/systemd/system/cri-docker.{socket,service}
#                                       files/, the sandbox image filled in from
#                                       LAB_PAUSE_IMAGE; both enabled, as
#                                       `systemctl enable` would
#   lab/cri-dockerd/layer.sh --key      prints the cache key of such a layer
# LAB_PAUSE_IMAGE is lab/lib.sh's (the lab's pause image); the 1.24 kubelet
# and its flags come from lib.sh and lab/kubelet-real/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CRI_DOCKERD_VERSION="${CRI_DOCKERD_VERSION:-0.4.3}"
CRI_DOCKERD_VERSION="${CRI_DOCKERD_VERSION#v}"
LAB_PAUSE_IMAGE="${LAB_PAUSE_IMAGE:?the pause image of the lab, set by lab/lib.sh}"
log() { printf '[lab-cri-dockerd] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ "${1:-}" = --key ]; then
  { echo "$CRI_DOCKERD_VERSION $LAB_PAUSE_IMAGE"; sha256sum "$here/layer.sh" | awk '{ print $1 }'
    (cd "$here/files" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); } |
    sha256sum | cut -c1-12 | sed "s/^/cri-dockerd-$CRI_DOCKERD_VERSION-/"
  exit 0
fi
dest="${1:?usage: layer.sh DIR | --key}"
built="$(bash "$here/../../tools/build-cri-dockerd.sh" "$CRI_DOCKERD_VERSION" | sed -n 's/^CRI_DOCKERD_BIN=//p')"
[ -x "$built" ] || die "building cri-dockerd $CRI_DOCKERD_VERSION failed"
mkdir -p "$dest/usr/bin"
install -m 0755 "$built" "$dest/usr/bin/cri-dockerd"
cp -a --no-preserve=ownership "$here/files/." "$dest/"
units="$dest/usr/lib/systemd/system"
sed -i "s|@LAB_PAUSE_IMAGE@|$LAB_PAUSE_IMAGE|" "$units/cri-docker.service"
grep -q -- "--pod-infra-container-image=$LAB_PAUSE_IMAGE " "$units/cri-docker.service" ||
  die "cri-docker.service: the sandbox image was not filled in"
# enabled like `systemctl enable` would: the socket listens from boot, the
# service starts with the node (and on the kubelet's first connection)
mkdir -p "$dest/etc/systemd/system/sockets.target.wants" "$dest/etc/systemd/system/multi-user.target.wants"
ln -sf /usr/lib/systemd/system/cri-docker.socket "$dest/etc/systemd/system/sockets.target.wants/cri-docker.socket"
ln -sf /usr/lib/systemd/system/cri-docker.service "$dest/etc/systemd/system/multi-user.target.wants/cri-docker.service"
log "cri-dockerd layer ready: $("$dest/usr/bin/cri-dockerd" --version 2>&1 | head -n 1)"
