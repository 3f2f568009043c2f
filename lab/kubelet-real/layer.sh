#!/bin/bash
# lab/kubelet-real/layer.sh DIR: fill DIR (a lab lower layer, LAB_KUBELET=real)
# with what the real kubelet needs in a node:
#   usr/bin/kubelet             the real kubelet (build.sh: v1.23.17, dockershim included)
#   usr/local/sbin/runc         runc-wrapper/ (see there: no CAP_SYS_RESOURCE, no cgroup2 controllers)
#   opt/cni/bin/                Debian's containernetworking-plugins (loopback is used)
#   usr/share/shimless-lab/     pause.tar (pause-image.sh) and the names it carries
#   files/                      loopback-only CNI config, the node-prep units and script
#   lab/kubelet-real/layer.sh --key   prints the cache key of such a layer
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KUBELET_VERSION="${KUBELET_VERSION:-v1.23.17}"
KUBELET_VERSION="v${KUBELET_VERSION#v}"
LAB_PAUSE_IMAGES="${LAB_PAUSE_IMAGES:-registry.k8s.io/pause:3.6 k8s.gcr.io/pause:3.6}"
export KUBELET_VERSION LAB_PAUSE_IMAGES
LAB_CNI_DEB=containernetworking-plugins
log() { printf '[lab-kubelet-real] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ "${1:-}" = --key ]; then
  { echo "$KUBELET_VERSION $LAB_PAUSE_IMAGES $LAB_CNI_DEB"
    (cd "$here" && find layer.sh pause-image.sh pause runc-wrapper files -type f -print0 |
      LC_ALL=C sort -z | xargs -0 sha256sum); } |
    sha256sum | cut -c1-12 | sed "s/^/kubelet-$KUBELET_VERSION-/"
  exit 0
fi
dest="${1:?usage: layer.sh DIR | --key}"
go="$(command -v go || echo /usr/local/go/bin/go)"
kubelet="$(bash "$here/build.sh" | sed -n 's/^KUBELET_BIN=//p')"
[ -x "$kubelet" ] || die "building the kubelet failed"
mkdir -p "$dest/usr/bin" "$dest/usr/local/sbin" "$dest/opt/cni/bin" "$dest/usr/share/shimless-lab"
install -m 0755 "$kubelet" "$dest/usr/bin/kubelet"
(cd "$here/runc-wrapper" && CGO_ENABLED=0 GOFLAGS=-mod=mod "$go" build -trimpath -ldflags "-s -w" \
  -o "$dest/usr/local/sbin/runc" .) || die "building runc-wrapper failed"
log "pause image $(bash "$here/pause-image.sh" "$dest/usr/share/shimless-lab/pause.tar"): $LAB_PAUSE_IMAGES"
echo "$LAB_PAUSE_IMAGES" >"$dest/usr/share/shimless-lab/pause.images"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && apt-get download "$LAB_CNI_DEB") >"$tmp/apt.log" 2>&1; then
  apt-get update >>"$tmp/apt.log" 2>&1 || true
  (cd "$tmp" && apt-get download "$LAB_CNI_DEB") >>"$tmp/apt.log" 2>&1 ||
    { tail -5 "$tmp/apt.log" >&2; die "apt-get download $LAB_CNI_DEB failed"; }
fi
dpkg-deb -x "$tmp"/"$LAB_CNI_DEB"_*.deb "$tmp/cni"
cp -a "$tmp/cni/usr/lib/cni/." "$dest/opt/cni/bin/"
cp -a --no-preserve=ownership "$here/files/." "$dest/"
# enabled like `systemctl enable` would: the node's systemd starts them at boot
mkdir -p "$dest/etc/systemd/system/multi-user.target.wants"
for unit in shimless-lab-kernel-view.service shimless-lab-images.service; do
  ln -sf "/etc/systemd/system/$unit" "$dest/etc/systemd/system/multi-user.target.wants/$unit"
done
log "real kubelet layer ready: $("$dest/usr/bin/kubelet" --version)"
