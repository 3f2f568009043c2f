#!/bin/bash
# lab/crio/build.sh: build CRI-O's `crio` and `pinns` from the Go module proxy
# (github.com/cri-o/cri-o@$CRIO_VERSION; Debian bookworm has no cri-o package).
# Prints the cache directory holding bin/crio and bin/pinns on stdout; progress
# and timings on stderr. Cached by version under
# ${XDG_CACHE_HOME:-~/.cache}/shimless/crio/<version>/.
#   CRIO_VERSION (v1.27.1: the newest the proxy serves here; 1.28.x, 1.29.1,
#   1.24.6 answer 403)   CRIO_CACHE_DIR   CRIO_SECCOMP=0 (build without the
#   seccomp tag, no libseccomp-dev needed)
# Built in a writable copy of the module with -mod=mod (see below for the
# k8s.io replace directives).
set -euo pipefail
CRIO_VERSION="${CRIO_VERSION:-v1.27.1}"
CRIO_VERSION="v${CRIO_VERSION#v}"
CRIO_CACHE_DIR="${CRIO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shimless/crio}"
CRIO_SECCOMP="${CRIO_SECCOMP:-1}"
out="$CRIO_CACHE_DIR/$CRIO_VERSION"
t0=$SECONDS
log() { printf '[crio-build %4ss] %s\n' "$((SECONDS - t0))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [ -x "$out/bin/crio" ] && [ -x "$out/bin/pinns" ]; then
  log "cached: $out"
  echo "$out"
  exit 0
fi

go=""
for g in "${GO:-}" "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go /usr/lib/go/bin/go; do
  if [ -n "$g" ] && [ -x "$g" ]; then go="$g"; break; fi
done
[ -n "$go" ] || die "no Go toolchain found"

# C toolchain (cgo, pinns) and libseccomp headers: install them if missing.
pkgs=()
command -v gcc >/dev/null || pkgs+=(gcc libc6-dev)
command -v make >/dev/null || pkgs+=(make)
command -v pkg-config >/dev/null || pkgs+=(pkg-config)
if [ "$CRIO_SECCOMP" = 1 ] && ! pkg-config --exists libseccomp 2>/dev/null; then pkgs+=(libseccomp-dev); fi
if [ "${#pkgs[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "need root to install build packages: ${pkgs[*]}"
  log "installing host packages: ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 || {
    apt-get update >/dev/null 2>&1 || true
    apt-get install -y --no-install-recommends "${pkgs[@]}" >&2 || die "could not install ${pkgs[*]}"
  }
fi

mkdir -p "$CRIO_CACHE_DIR"
tmp="$(mktemp -d "$CRIO_CACHE_DIR/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
log "fetching github.com/cri-o/cri-o@$CRIO_VERSION from the Go module proxy ($("$go" version | awk '{ print $3 }'))"
dir="$(cd "$tmp" && GONOSUMDB=github.com/cri-o/cri-o GOFLAGS=-mod=mod "$go" mod download -json "github.com/cri-o/cri-o@$CRIO_VERSION" 2>"$tmp/dl.err" |
  awk -F'"' '/"Dir":/ { print $4 }')" || true
if [ -z "$dir" ] || [ ! -d "$dir" ]; then die "go mod download github.com/cri-o/cri-o@$CRIO_VERSION failed: $(tail -3 "$tmp/dl.err")"; fi
cp -r "$dir" "$tmp/src"
chmod -R u+w "$tmp/src"
# The module zip holds vendor/modules.txt only (zips carry no vendored code),
# and go.mod replaces the k8s.io staging modules with
# k8s.io/kubernetes/staging/src/k8s.io/<m>@<pseudo-version of v1.27.0>, paths
# the proxy cannot serve (their go.mod says module k8s.io/<m>). Point each at
# its published tag instead (v0.<minor>.<patch> of the k8s.io/kubernetes it
# requires), drop vendor/, let go fill go.sum.
rm -rf "$tmp/src/vendor"
k8s="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v1\./ { print $2; exit }' "$tmp/src/go.mod")"
[ -n "$k8s" ] || die "no k8s.io/kubernetes requirement in go.mod"
staging="v0.${k8s#v1.}"
# Some of them the proxy refuses (403) or the checksum database does not know
# (GONOSUMDB=k8s.io: their hashes are still recorded in go.sum); those crio
# does not import get an empty local stub module, which only satisfies
# k8s.io/kubernetes' go.mod (a package actually imported from a stub would
# fail the build loudly).
export GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/cri-o/cri-o,k8s.io"
edits=()
while read -r m; do
  if (cd "$tmp" && GOFLAGS=-mod=mod "$go" mod download "$m@$staging") >/dev/null 2>&1; then
    edits+=("-replace=$m=$m@$staging")
  else
    log "  $m@$staging not available from the proxy: local stub module"
    mkdir -p "$tmp/src/.stubs/$m"
    printf 'module %s\n\ngo 1.20\n' "$m" >"$tmp/src/.stubs/$m/go.mod"
    edits+=("-replace=$m=./.stubs/$m")
  fi
done < <(awk '$2 == "=>" && $3 ~ /^k8s.io\/kubernetes\/staging\// { print $1 }' "$tmp/src/go.mod")
log "k8s.io/kubernetes $k8s: ${#edits[@]} staging modules -> published $staging"
(cd "$tmp/src" && "$go" mod edit "${edits[@]}") || die "go mod edit failed"
log "downloading dependencies"
(cd "$tmp/src" && GOFLAGS=-mod=mod GOTOOLCHAIN=local "$go" mod download) >"$tmp/deps.log" 2>&1 \
  || { tail -20 "$tmp/deps.log" >&2; die "go mod download (dependencies) failed"; }
log "dependencies ready"

tags="containers_image_openpgp containers_image_ostree_stub exclude_graphdriver_btrfs exclude_graphdriver_devicemapper btrfs_noversion"
[ "$CRIO_SECCOMP" = 1 ] && tags="$tags seccomp"
log "building crio $CRIO_VERSION (tags: $tags)"
t1=$SECONDS
(cd "$tmp/src" && CGO_ENABLED=1 GOFLAGS=-mod=mod GOTOOLCHAIN=local "$go" build -trimpath -tags "$tags" \
  -ldflags "-s -w -X github.com/cri-o/cri-o/internal/version.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  -o "$tmp/bin/crio" ./cmd/crio) >&2 || die "go build ./cmd/crio failed"
log "crio built in $((SECONDS - t1))s"
t1=$SECONDS
make -C "$tmp/src/pinns" >"$tmp/pinns.log" 2>&1 || { tail -20 "$tmp/pinns.log" >&2; die "building pinns failed"; }
install -m 0755 "$tmp/src/bin/pinns" "$tmp/bin/pinns" 2>/dev/null || install -m 0755 "$tmp/src/pinns/pinns" "$tmp/bin/pinns" \
  || die "pinns binary not found after make"
log "pinns built in $((SECONDS - t1))s"
"$tmp/bin/crio" --version >&2 || die "the built crio does not run"
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
mv "$tmp/bin" "$out.tmp/bin"
rm -rf "$out"
mv "$out.tmp" "$out"
log "done in $((SECONDS - t0))s: $out"
echo "$out"
