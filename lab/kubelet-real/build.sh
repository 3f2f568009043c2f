#!/bin/bash
# Build (or find cached) the real kubelet from the Go module proxy:
#   k8s.io/kubernetes@$KUBELET_VERSION (v1.23.17, the last minor with dockershim)
#   ./cmd/kubelet, static (CGO_ENABLED=0), tag providerless.
# Cache: $KUBELET_CACHE_DIR/<version>/ (~/.cache/shimless/kubelet/v1.23.17/):
#   kubelet, build.log, build-time.txt (/usr/bin/time -v of the go build) and
#   build-time.txt.tree (peak RSS of the whole build's process tree).
# Prints "KUBELET_BIN=<file>".
# Same wrapper-module recipe as lab/control-plane/build.sh
# (cp_k8s_wrapper_module in lab/control-plane/common.sh).
set -euo pipefail
KR_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=../control-plane/common.sh
source "$KR_DIR/../control-plane/common.sh"
KUBELET_VERSION="${KUBELET_VERSION:-v1.23.17}"
KUBELET_VERSION="v${KUBELET_VERSION#v}"
KUBELET_CACHE_DIR="${KUBELET_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shimless/kubelet}"

_kr_t0="${LAB_T0:-$(date +%s.%N)}"
kr_log() { printf '[kubelet-build %ss] %s\n' "$(awk -v t0="$_kr_t0" -v t1="$(date +%s.%N)" 'BEGIN { printf "%6.1f", t1 - t0 }')" "$*" >&2; }

kr_build_kubelet() {
  local v="$KUBELET_VERSION" out="$KUBELET_CACHE_DIR/$KUBELET_VERSION" go w staging
  if [ -x "$out/kubelet" ]; then echo "$out/kubelet"; return 0; fi
  go="$(cp_find_go)" || die "no Go toolchain to build the kubelet"
  w="$(cp_fresh_src "$out")"
  staging="v0.${v#v1.}"
  kr_log "building kubelet from k8s.io/kubernetes@$v (staging modules at $staging; $($go version | awk '{ print $3 }'); log: $out/build.log)"
  cp_k8s_wrapper_module "$w" "$v" shimless.lab/kubelet-build
  local ld
  ld="$(cp_k8s_version_ldflags "$v")"
  (
    cd "$w"
    kr_log "go mod download k8s.io/kubernetes@$v"
    GOFLAGS="-mod=mod -buildvcs=false" "$go" mod download k8s.io/kubernetes >>"$out/build.log" 2>&1 || exit 1
    kr_log "go build k8s.io/kubernetes/cmd/kubelet (a few minutes on 2 cores)"
    rm -f "$out/build-time.txt.tree"
    GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 /usr/bin/time -v -o "$out/build-time.txt" "$go" build -trimpath -tags providerless \
      -ldflags "$ld" -o "$out/.kubelet.tmp" k8s.io/kubernetes/cmd/kubelet >>"$out/build.log" 2>&1 &
    bpid=$!
    cp_sample_tree_rss "$bpid" "$out/build-time.txt.tree" &
    wait "$bpid"
  ) || { tail -30 "$out/build.log" >&2; die "building kubelet $v failed (see $out/build.log)"; }
  "$out/.kubelet.tmp" --version | grep -qx "Kubernetes $v" \
    || die "the built kubelet reports '$("$out/.kubelet.tmp" --version)', not 'Kubernetes $v'"
  mv "$out/.kubelet.tmp" "$out/kubelet"
  kr_log "built kubelet $v: $(cp_time_summary "$out/build-time.txt")"
  echo "$out/kubelet"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  [ -x /usr/bin/time ] || DEBIAN_FRONTEND=noninteractive apt-get install -y time >/dev/null 2>&1 || true
  echo "KUBELET_BIN=$(kr_build_kubelet)"
fi
