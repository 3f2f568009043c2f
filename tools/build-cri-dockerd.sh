#!/usr/bin/env bash
# Build Mirantis cri-dockerd (for the lab's cri-dockerd nodes) from the upstream
# source archive in $SHIMLESS_UPSTREAM, offline with its vendored modules, into
# ~/.cache/shimless/cri-dockerd/VERSION/ (sealed with .complete like the other
# cached binaries). Idempotent: a cached build is kept.
#
#   bash tools/build-cri-dockerd.sh [VERSION]   (default 0.4.3)
set -euo pipefail

# shellcheck source=tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

main() {
  local v=${1:-0.4.3} archive w
  if cached cri-dockerd "$v"; then
    log "cri-dockerd $v: cached in $(cache_dir cri-dockerd "$v")"
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
    nice -n 10 "$SHIMLESS_GO" build -trimpath -buildvcs=false -o "$w/out/cri-dockerd" . ||
    die "cri-dockerd $v: build failed (log: $w/build.log)"
  mark_cached cri-dockerd "$v" "$w/out/cri-dockerd"
  log "cri-dockerd $v: $("$(cache_dir cri-dockerd "$v")/cri-dockerd" --version 2>&1 | head -n 1)"
}

main "$@"
