#!/bin/bash
# lab/crio/layer.sh DIR: fill DIR (a lab lower layer, LAB_CRIO=1) with CRI-O:
# usr/bin/crio + usr/bin/pinns (lab/crio/build.sh), conmon, crun, skopeo (what
# a CRI-O node has from its distro's containers tools) and the libraries the base image lacks (Debian bookworm debs, downloaded on the host
# and unpacked: the node's dpkg does not know them), and lab/crio/files/
# (crio.conf: vfs, crun, conmon, systemd cgroups; policy.json, registries.conf,
# crio.service, not enabled).
#   lab/crio/layer.sh --key   prints the cache key of such a layer
# Needs a bookworm host (it is: the lab's host) for the debs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CRIO_VERSION="${CRIO_VERSION:-v1.27.1}"
CRIO_VERSION="v${CRIO_VERSION#v}"
LAB_CRIO_DEBS="${LAB_CRIO_DEBS:-conmon crun libyajl2 libglib2.0-0 skopeo libgpgme11 libassuan0 libdevmapper1.02.1}"
log() { printf '[lab-crio] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ "${1:-}" = --key ]; then
  { echo "$CRIO_VERSION $LAB_CRIO_DEBS"; sha256sum "$here/layer.sh" | awk '{ print $1 }'
    (cd "$here/files" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); } |
    sha256sum | cut -c1-12 | sed "s/^/crio-$CRIO_VERSION-/"
  exit 0
fi
dest="${1:?usage: layer.sh DIR | --key}"
built="$(bash "$here/build.sh")" || die "building crio failed"
mkdir -p "$dest/usr/bin"
install -m 0755 "$built/bin/crio" "$dest/usr/bin/crio"
install -m 0755 "$built/bin/pinns" "$dest/usr/bin/pinns"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# shellcheck disable=SC2086 # a list of package names
if ! (cd "$tmp" && apt-get download $LAB_CRIO_DEBS) >"$tmp/apt.log" 2>&1; then
  apt-get update >>"$tmp/apt.log" 2>&1 || true
  # shellcheck disable=SC2086
  (cd "$tmp" && apt-get download $LAB_CRIO_DEBS) >>"$tmp/apt.log" 2>&1 || { tail -5 "$tmp/apt.log" >&2; die "apt-get download $LAB_CRIO_DEBS failed"; }
fi
for deb in "$tmp"/*.deb; do
  log "unpacking $(basename "$deb")"
  dpkg-deb -x "$deb" "$dest"
done
# The base image is merged-/usr (/lib, /bin, /sbin are symlinks into /usr): a
# real directory of that name in this upper lower layer would hide them.
for d in lib lib64 bin sbin; do
  if [ -d "$dest/$d" ] && [ ! -L "$dest/$d" ]; then
    mkdir -p "$dest/usr/$d"
    cp -a "$dest/$d/." "$dest/usr/$d/"
    rm -rf "${dest:?}/$d"
  fi
done
# Debian's usr/share docs are not needed; keep the layer small
rm -rf "$dest/usr/share/doc" "$dest/usr/share/man" "$dest/usr/share/locale"
cp -a --no-preserve=ownership "$here/files/." "$dest/"
rm -f "$dest/etc/containers/registries.conf.d/.keep"
mkdir -p "$dest/var/lib/crio"  # crio writes its clean-shutdown marker there
log "CRI-O layer ready: $("$dest/usr/bin/crio" --version 2>/dev/null | awk '/^Version:/ { print $2 }')"
