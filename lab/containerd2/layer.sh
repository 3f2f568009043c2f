#!/bin/bash
# lab/containerd2/layer.sh DIR: fill DIR (a lab lower layer, LAB_CONTAINERD=2)
# with containerd 2.x beside Docker's containerd 1.6, as a site installs a newer
# containerd on a Docker node ahead of the switch: binaries only, Docker's
# containerd 1.6 in /usr/bin and its containerd.service untouched.
#   opt/containerd-VERSION/bin/{containerd,ctr,containerd-shim-runc-v2}
#                             the build tools/setup.sh caches (build_containerd2,
#                             ~/.cache/shimless/containerd/VERSION; `make setup`)
#   usr/local/bin/{containerd,ctr} -> those: the first `containerd` and `ctr`
#                             on systemd's PATH and on root's
#   lab/containerd2/layer.sh --key   prints the cache key of such a layer
# The shim is not linked onto PATH, on purpose: containerd looks its shim up on
# PATH before its own directory, and a 2.3+ shim refuses a 1.x containerd
# ("shim was started through the deprecated API"), so a 2.x shim in
# /usr/local/bin would break every container Docker's containerd 1.6 starts.
# shimless' drop-in gives containerd 2.x a PATH with its own directory first.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/versions.sh
. "$here/../../tools/versions.sh"
CONTAINERD2_VERSION="${LAB_CONTAINERD2_VERSION:-$CONTAINERD2_VERSION}"
cache="${SHIMLESS_CACHE:-$HOME/.cache/shimless}/containerd/$CONTAINERD2_VERSION"
prefix="opt/containerd-$CONTAINERD2_VERSION"
binaries=(containerd ctr containerd-shim-runc-v2)
log() { printf '[lab-containerd2] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ -f "$cache/.complete" ] ||
  die "containerd $CONTAINERD2_VERSION is not built in $cache: run 'make setup' (tools/setup.sh builds and caches it)"
if [ "${1:-}" = --key ]; then
  # .complete holds the build's time: a rebuild is a new layer
  { echo "$CONTAINERD2_VERSION $prefix ${binaries[*]}"; cat "$cache/.complete"
    sha256sum "$here/layer.sh" | awk '{ print $1 }'; } |
    sha256sum | cut -c1-12 | sed "s/^/containerd2-$CONTAINERD2_VERSION-/"
  exit 0
fi
dest="${1:?usage: layer.sh DIR | --key}"
mkdir -p "$dest/$prefix/bin" "$dest/usr/local/bin"
for binary in "${binaries[@]}"; do
  [ -x "$cache/$binary" ] || die "$cache/$binary is missing: run 'make setup'"
  install -m 0755 "$cache/$binary" "$dest/$prefix/bin/$binary"
done
for binary in containerd ctr; do
  ln -sfn "/$prefix/bin/$binary" "$dest/usr/local/bin/$binary"
done
got="$("$dest/$prefix/bin/containerd" --version | sed "s/ *$//")"
[[ "$got" == *" v$CONTAINERD2_VERSION"* ]] || die "$prefix/bin/containerd --version says '$got', not v$CONTAINERD2_VERSION"
log "containerd 2 layer ready: $got in /$prefix/bin (containerd, ctr linked into /usr/local/bin)"
