#!/usr/bin/env bash
# Functions shared by the node-side steps. Sourced, never run directly.
# shellcheck disable=SC2034  # variables here are read by the sourcing step

SHIMLESS_STATE=/var/lib/shimless
SHIMLESS_BUNDLE=${SHIMLESS_BUNDLE:-}

log() { printf 'shimless[%s] %s\n' "${SHIMLESS_NODE:-node}" "$*" >&2; }

die() { log "ERROR: $*"; exit 1; }

# var NAME: a value shipped in the bundle (empty when absent).
var() {
  local file="$SHIMLESS_BUNDLE/var/$1"
  if [ -f "$file" ]; then cat "$file"; fi
}

# Desired files live in the bundle under root/<absolute node path>.
desired_paths() {
  if [ -d "$SHIMLESS_BUNDLE/root" ]; then
    (cd "$SHIMLESS_BUNDLE/root" && find . -type f | sed 's|^\.||' | LC_ALL=C sort)
  fi
}

unit_exists() { systemctl cat "$1" >/dev/null 2>&1; }

unit_enabled() { [ "$(systemctl is-enabled "$1" 2>/dev/null || true)" = enabled ]; }

unit_active() { systemctl is-active --quiet "$1"; }

runtime_service() {
  case "$1" in
    containerd) echo containerd ;;
    cri-o) echo crio ;;
    *) die "unknown runtime '$1'" ;;
  esac
}

# cri_answers ENDPOINT: the runtime answers CRI Version and Status.
cri_answers() {
  local endpoint=$1
  if command -v crictl >/dev/null 2>&1; then
    crictl --runtime-endpoint "$endpoint" --timeout 5s version >/dev/null 2>&1 &&
      crictl --runtime-endpoint "$endpoint" --timeout 5s info >/dev/null 2>&1
  elif [ "$endpoint" = unix:///run/containerd/containerd.sock ] && command -v ctr >/dev/null 2>&1; then
    ctr plugins ls 2>/dev/null | grep -Eq 'io\.containerd\.grpc\.v1[[:space:]]+cri[[:space:]].*ok'
  else
    die "cannot check the CRI endpoint: install cri-tools (crictl)"
  fi
}

# wait_for TIMEOUT DESCRIPTION COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "gave up after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 1
  done
}

now_ms() { date +%s%3N; }

# files_match: every desired file equals the live one.
files_match() {
  local path
  while IFS= read -r path; do
    cmp -s "$SHIMLESS_BUNDLE/root$path" "$path" || return 1
  done < <(desired_paths)
}

# in_target_state SERVICE: desired files live, the runtime enabled and active,
# Docker disabled and stopped, the kubelet active.
in_target_state() {
  local service=$1
  files_match &&
    unit_enabled "$service" && unit_active "$service" &&
    ! unit_enabled docker.service && ! unit_active docker.service &&
    ! unit_enabled docker.socket && ! unit_active docker.socket &&
    unit_active kubelet
}
