#!/usr/bin/env bash
# Build Mirantis cri-dockerd (for the lab's cri-dockerd nodes, lab/cri-dockerd/)
# from the upstream source archive in $SHIMLESS_UPSTREAM, offline with its
# vendored modules, into ~/.cache/shimless/cri-dockerd/VERSION/ (sealed with
# .complete like the other cached binaries). Idempotent: a cached build that
# reports VERSION is kept. The version is stamped as upstream's Makefile does
# (cmd/version.Version), so `cri-dockerd --version` says which one it is.
# Prints "CRI_DOCKERD_BIN=<file>" on stdout; everything else goes to stderr.
#
#   bash tools/build-cri-dockerd.sh [VERSION]   (default 0.4.3)
set -euo pipefail

# shellcheck source=tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# cri_dockerd_reports VERSION: the cached binary says it is VERSION (a build
# from before the version was stamped says "dev").
cri_dockerd_reports() {
  "$(cache_dir cri-dockerd "$1")/cri-dockerd" --version 2>&1 | grep -q "^cri-dockerd $1 "
}

main() {
  local v=${1:-0.4.3} archive w
  if cached cri-dockerd "$v" && cri_dockerd_reports "$v"; then
    log "cri-dockerd $v: cached in $(cache_dir cri-dockerd "$v")"
    echo "CRI_DOCKERD_BIN=$(cache_dir cri-dockerd "$v")/cri-dockerd"
    return 0
  fi
  archive=$SHIMLESS_UPSTREAM/cri-dockerd-$v-src.tar.gz
  [[ -f $archive ]] || die "cri-dockerd $v: no source archive $archive"
  w=$SHIMLESS_CACHE/build/cri-dockerd-$v
  rm -rf "$w"
  mkdir -p "$w/out"
  log "cri-dockerd $v: extract $(basename "$archive") into $w"
  tar -xzf "$archive" -C "$w"
  run_step "cri-dockerd $v: go build -mod=vendor (about 2 minutes)" "$w/build.log" \
    env -C "$w/cri-dockerd-$v" GOFLAGS=-mod=vendor GOTOOLCHAIN=local CGO_ENABLED=0 \
    nice -n 10 "$SHIMLESS_GO" build -trimpath -buildvcs=false \
    -ldflags "-s -w -X github.com/Mirantis/cri-dockerd/cmd/version.Version=$v" \
    -o "$w/out/cri-dockerd" . ||
    die "cri-dockerd $v: build failed (log: $w/build.log)"
  mark_cached cri-dockerd "$v" "$w/out/cri-dockerd"
  cri_dockerd_reports "$v" || die "cri-dockerd $v: the build does not report version $v"
  log "cri-dockerd $v: $("$(cache_dir cri-dockerd "$v")/cri-dockerd" --version 2>&1 | head -n 1)"
  echo "CRI_DOCKERD_BIN=$(cache_dir cri-dockerd "$v")/cri-dockerd"
}

main "$@"
