#!/bin/bash
# Build (or find cached) the lab control-plane binaries from the Go module proxy:
#   kube-apiserver, kube-controller-manager, kube-scheduler (+ kubectl when
#   CP_BUILD_KUBECTL=1) from k8s.io/kubernetes@$CP_K8S_VERSION, and etcd from
#   go.etcd.io/etcd/server/v3@$CP_ETCD_VERSION.
# Cache: $CP_CACHE_DIR/<k8s version>/ and $CP_CACHE_DIR/etcd-<version>/
#        (~/.cache/shimless/control-plane/...), each with a build.log and
#        build-time.txt (/usr/bin/time -v of the go build).
# Prints "K8S_BIN=<dir>" and "ETCD_BIN=<dir>".
# k8s.io/kubernetes replaces its staging modules (k8s.io/api, client-go, ...)
# with ./staging paths, so it cannot be built with `go install mod@version`:
# a wrapper module takes its go.mod, keeps its pins and points each staging
# module at the published v0.<minor>.<patch>.
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

cp_build_k8s() {
  local v="$CP_K8S_VERSION" out="$CP_CACHE_DIR/$CP_K8S_VERSION" go w staging bins b
  bins="kube-apiserver kube-controller-manager kube-scheduler"
  [ "${CP_BUILD_KUBECTL:-0}" = 1 ] && bins="$bins kubectl"
  local ok=1
  for b in $bins; do [ -x "$out/$b" ] || ok=0; done
  if [ "$ok" = 1 ]; then echo "$out"; return 0; fi
  go="$(cp_find_go)" || die "no Go toolchain (/usr/local/go/bin/go) to build the control plane"
  w="$(cp_fresh_src "$out")"
  staging="v0.${v#v1.}"
  cp_log "building $bins from k8s.io/kubernetes@$v (staging modules at $staging; $($go version | awk '{ print $3 }'); log: $out/build.log)"
  cp_k8s_wrapper_module "$w" "$v" shimless.lab/control-plane-build
  cat >"$w/tools.go" <<'GO'
//go:build tools

package tools
GO
  local -a pkgs=()
  for b in $bins; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  local ld
  ld="$(cp_k8s_version_ldflags "$v")"
  mkdir -p "$out/.tmp"
  (
    cd "$w"
    GOFLAGS="-mod=mod -buildvcs=false" "$go" mod download k8s.io/kubernetes >>"$out/build.log" 2>&1 || exit 1
    rm -f "$out/build-time.txt.tree"
    GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 /usr/bin/time -v -o "$out/build-time.txt" "$go" build -trimpath -tags providerless \
      -ldflags "$ld" -o "$out/.tmp/" "${pkgs[@]}" >>"$out/build.log" 2>&1 &
    bpid=$!
    cp_sample_tree_rss "$bpid" "$out/build-time.txt.tree" &
    wait "$bpid"
  ) || { tail -30 "$out/build.log" >&2; die "building $bins $v failed (see $out/build.log)"; }
  for b in $bins; do mv "$out/.tmp/$b" "$out/$b"; done
  rmdir "$out/.tmp" 2>/dev/null || true
  cp_log "built $bins $v: $(cp_time_summary "$out/build-time.txt")"
  echo "$out"
}

cp_build_etcd() {
  local v="$CP_ETCD_VERSION" out="$CP_CACHE_DIR/etcd-$CP_ETCD_VERSION" go w
  if [ -x "$out/etcd" ]; then echo "$out"; return 0; fi
  go="$(cp_find_go)" || die "no Go toolchain to build etcd"
  w="$(cp_fresh_src "$out")"
  cp_log "building etcd from go.etcd.io/etcd/server/v3@$v (log: $out/build.log)"
  cat >"$w/go.mod" <<GOMOD
module shimless.lab/etcd-build

go 1.19

require go.etcd.io/etcd/server/v3 $v

// reflect2 < 1.0.2 crashes on Go >= 1.18 (json-iterator's map handling)
require (
	github.com/json-iterator/go v1.1.12
	github.com/modern-go/reflect2 v1.0.2
)
GOMOD
  (
    cd "$w"
    rm -f "$out/build-time.txt.tree"
    GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0 /usr/bin/time -v -o "$out/build-time.txt" "$go" build -trimpath -ldflags "-s -w" \
      -o "$out/.etcd.tmp" go.etcd.io/etcd/server/v3 >>"$out/build.log" 2>&1 &
    bpid=$!
    cp_sample_tree_rss "$bpid" "$out/build-time.txt.tree" &
    wait "$bpid"
  ) || { tail -30 "$out/build.log" >&2; die "building etcd $v failed (see $out/build.log)"; }
  mv "$out/.etcd.tmp" "$out/etcd"
  cp_log "built etcd $v: $(cp_time_summary "$out/build-time.txt")"
  echo "$out"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  command -v /usr/bin/time >/dev/null 2>&1 || [ -x /usr/bin/time ] || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y time >/dev/null 2>&1 || true; }
  case "${1:-all}" in
    etcd) echo "ETCD_BIN=$(cp_build_etcd)" ;;
    k8s) echo "K8S_BIN=$(cp_build_k8s)" ;;
    all) echo "ETCD_BIN=$(cp_build_etcd)"; echo "K8S_BIN=$(cp_build_k8s)" ;;
    *) die "usage: build.sh [all|etcd|k8s]" ;;
  esac
fi
