#!/usr/bin/env bash
# Launcher sent first on stdin: unpacks the bundle that follows it (files and
# variables, gzip-compressed and base64-encoded, one per line) into a private directory and runs
# the bundle's step script there. Nothing relies on sshd accepting env vars.
# components/bundle.py sets SHIMLESS_RUN (the manifest's run directory) in
# front of it.
set -euo pipefail

main() {
  local work=${SHIMLESS_RUN:?the launcher names no run directory (components/bundle.py launcher)}
  umask 077
  mkdir -p "$work"
  # Global, not local: the EXIT trap runs after main has returned. Bundles can
  # hold the kubelet's and runtime's config: no copy stays, even after a failed
  # unpack.
  dir=$(mktemp -d "$work/bundle.XXXXXX")
  trap 'rm -rf "$dir"' EXIT
  local kind name data step=""
  while IFS=' ' read -r kind name data; do
    case "$kind" in
      file)
        case "$name" in /*|*..*) echo "shimless: refusing bundle path '$name'" >&2; exit 64 ;; esac
        mkdir -p "$(dirname "$dir/$name")"
        printf '%s' "$data" | base64 -d | gzip -dc >"$dir/$name"
        ;;
      step) step=$name ;;
      '') ;;
      *) echo "shimless: unknown bundle line '$kind'" >&2; exit 64 ;;
    esac
  done
  if [ -z "$step" ] || [ ! -f "$dir/$step" ]; then
    echo "shimless: the bundle names no step script" >&2
    exit 64
  fi
  local rc=0
  bash "$dir/$step" "$dir" || rc=$?
  exit "$rc"
}

main "$@"
