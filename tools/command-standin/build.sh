#!/usr/bin/env bash
# Builds the command-provider stand-in (pulumi-resource-command, plugin
# "command" 1.2.1) into
#   ~/.cache/shimless/command-standin/<hash of sources>/pulumi-resource-command
# and prints that path on the last line (stdout; progress goes to stderr).
# Idempotent: when the binary for the current sources is there, it only
# prints the path. Install it with:
#   pulumi plugin install resource command 1.2.1 --file "$(bash tools/command-standin/build.sh | tail -n1)"
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
start=$(date +%s)
say() { printf 'command-standin: %s\n' "$*" >&2; }

go_bin=$(command -v go || true)
if [ -z "$go_bin" ] && [ -x /usr/local/go/bin/go ]; then
  go_bin=/usr/local/go/bin/go
fi
if [ -z "$go_bin" ]; then
  say "error: no Go toolchain (go) on PATH or in /usr/local/go/bin"
  exit 1
fi

# The hash covers the sources (not the tests), the module files, this script
# and the Go version.
hash=$(
  cd "$here"
  {
    "$go_bin" env GOVERSION GOOS GOARCH
    for f in build.sh go.mod go.sum *.go; do
      case "$f" in *_test.go) continue ;; esac
      printf '%s\n' "$f"
      cat "$f"
    done
  } | sha256sum | cut -c1-16
)
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/shimless/command-standin"
out_dir="$cache_root/$hash"
out="$out_dir/pulumi-resource-command"

if [ -x "$out" ]; then
  say "up to date ($hash)"
  printf '%s\n' "$out"
  exit 0
fi

say "building with $("$go_bin" env GOVERSION) (sources $hash) ..."
mkdir -p "$out_dir"
tmp=$(mktemp "$out_dir/.build.XXXXXX")
trap 'rm -f "$tmp"' EXIT
(
  cd "$here"
  # The checksum database does not know every module the Pulumi SDK needs;
  # go.sum pins them all.
  CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/pulumi" \
    "$go_bin" build -trimpath -ldflags "-s -w" -o "$tmp" .
)
chmod 0755 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
version=$("$out" --version)
say "built $version in $(($(date +%s) - start))s"
printf '%s\n' "$out"
