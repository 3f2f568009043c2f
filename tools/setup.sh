#!/usr/bin/env bash
# Provide the project's toolchain (make setup). Idempotent: a second run only
# checks and takes seconds.
#
#   .venv/                 Python 3.11 virtualenv with requirements.txt
#   .tools/bin/            pulumi, pulumi-language-python(-exec),
#                          pulumi-resource-pulumi-python,
#                          pulumi-resource-command, pulumi-resource-kubernetes
#   .tools/pulumi-home/    PULUMI_HOME: plugin cache with command + kubernetes
#   .tools/versions.txt    what was installed, at which version, from where
#   ~/.cache/shimless/containerd/$CONTAINERD2_VERSION/  containerd 2.x for the
#                          tests (containerd, ctr, containerd-shim-runc-v2)
#
# Every binary comes, in this order, from ~/.cache/shimless/<name>/<version>/
# (with .complete), the official installer (get.pulumi.com / `pulumi plugin
# install`, when reachable within 5 s), or a build from source: the CLI from
# the Go module proxy, the language host and both providers from the upstream
# source archives in $SHIMLESS_UPSTREAM (extracted and built in the cache,
# never in the work tree). A binary none of the three can provide stops setup
# with a message that names it, its version and what was tried.
#
# Environment knobs:
#   SHIMLESS_CACHE=DIR     binary cache (default ~/.cache/shimless)
#   SHIMLESS_UPSTREAM=DIR  upstream source archives (default ../shared/upstream
#                          beside the work tree)
#   SHIMLESS_SKIP_PLUGINS=1  only the virtualenv (fast path for unit tests)
set -euo pipefail

# shellcheck source=tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tools/versions.sh
source "$SHIMLESS_ROOT/tools/versions.sh"

export PULUMI_HOME=$SHIMLESS_TOOLS/pulumi-home
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true

MISSING=()
MANIFEST=()

# ---------------------------------------------------------------------------
# 1. virtualenv
# ---------------------------------------------------------------------------
ensure_venv() {
  local req=$SHIMLESS_ROOT/requirements.txt stamp=$SHIMLESS_VENV/.shimless-requirements.sha256 hash
  if [[ ! -x $SHIMLESS_VENV/bin/python ]] ||
    ! "$SHIMLESS_VENV/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    [[ -x $SHIMLESS_PYTHON ]] || die "Python 3.11 not found at $SHIMLESS_PYTHON (set SHIMLESS_PYTHON)"
    log "venv: creating $SHIMLESS_VENV with $("$SHIMLESS_PYTHON" --version 2>&1)"
    rm -rf "$SHIMLESS_VENV"
    "$SHIMLESS_PYTHON" -m venv "$SHIMLESS_VENV"
  fi
  hash=$(sha256sum "$req" | cut -d' ' -f1)
  if [[ -f $stamp && $(cat "$stamp") == "$hash" ]]; then
    log "venv: requirements.txt unchanged since last install"
    return 0
  fi
  run_step "venv: pip install -r requirements.txt" "$SHIMLESS_CACHE/logs/pip.log" \
    "$SHIMLESS_VENV/bin/python" -m pip install --disable-pip-version-check -r "$req"
  printf '%s\n' "$hash" >"$stamp"
}

# ---------------------------------------------------------------------------
# 2. Builders (Go module proxy)
# ---------------------------------------------------------------------------

# go_build_in DIR GO-BUILD-ARGS...: set GO_BUILD to the command line of a go
# build in DIR (a command, not a function, so that run_step can time it).
go_build_in() {
  GO_BUILD=(env -C "$1" "$SHIMLESS_GO" build -trimpath "${@:2}")
}

# new_wrapper DIR GO_VERSION REQUIREMENT...: (re)write a wrapper module.
new_wrapper() {
  local dir=$1 gov=$2
  shift 2
  mkdir -p "$dir"
  rm -f "$dir/go.mod"
  (
    cd "$dir"
    "$SHIMLESS_GO" mod init shimless.local/build >/dev/null 2>&1
    "$SHIMLESS_GO" mod edit -go="$gov"
    local r
    for r in "$@"; do "$SHIMLESS_GO" mod edit -require="$r"; done
  )
}

# pulumi CLI: github.com/pulumi/pulumi/pkg/v3/cmd/pulumi. pkg/v3 replaces
# sdk/v3 with ../sdk, so a wrapper module requires both at one version.
build_pulumi() {
  local v=$PULUMI_VERSION w=$SHIMLESS_CACHE/build/pulumi-v$PULUMI_VERSION pkgdir
  log "pulumi $v: step 1/2: fetch github.com/pulumi/pulumi/pkg/v3@v$v (wrapper module in $w)"
  pkgdir=$(go_mod_dir "github.com/pulumi/pulumi/pkg/v3@v$v") || return 1
  new_wrapper "$w" "$(go_directive "$pkgdir/go.mod")" \
    "github.com/pulumi/pulumi/pkg/v3@v$v" "github.com/pulumi/pulumi/sdk/v3@v$v"
  (cd "$w" && copy_remote_replaces "$pkgdir/go.mod")
  go_build_in "$w" -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$v" \
    -o "$w/out/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
  run_step "pulumi $v: step 2/2: go build (several minutes)" "$w/build.log" "${GO_BUILD[@]}" || return 1
  mark_cached pulumi "$v" "$w/out/pulumi"
}

# containerd 2.x: go install from the module proxy (its go.mod has no
# replace directives), versions stamped as upstream's release builds do.
build_containerd2() {
  local v=$CONTAINERD2_VERSION w=$SHIMLESS_CACHE/build/containerd-v$CONTAINERD2_VERSION
  local module=github.com/containerd/containerd/v2
  rm -rf "$w"
  mkdir -p "$w/out"
  run_step "containerd $v: go install $module (containerd, ctr, containerd-shim-runc-v2; minutes)" "$w/build.log" \
    env -C "$w" GOBIN="$w/out" nice -n 10 "$SHIMLESS_GO" install -trimpath \
    -ldflags "-s -w -X $module/version.Version=v$v" \
    "$module/cmd/containerd@v$v" "$module/cmd/ctr@v$v" "$module/cmd/containerd-shim-runc-v2@v$v" || return 1
  mark_cached containerd "$v" "$w/out/containerd" "$w/out/ctr" "$w/out/containerd-shim-runc-v2"
}

# upstream_archive NAME VERSION: the source archive of a binary in the
# upstream directory (../shared/upstream beside the work tree, or
# SHIMLESS_UPSTREAM), if there is one.
upstream_archive() {
  local f=$SHIMLESS_UPSTREAM/$1-$2-src.tar.gz
  [[ -f $f ]] && printf '%s' "$f"
}

# build_upstream NAME VERSION CACHE-NAME FILE...: extract NAME-VERSION's
# upstream archive into the build cache, run its build.sh, and cache FILEs
# (relative to its output directory) as CACHE-NAME VERSION. The source is
# built where it is extracted, never inside the work tree.
build_upstream() {
  local name=$1 v=$2 cache_name=$3 archive w f
  shift 3
  archive=$(upstream_archive "$name" "$v") || {
    log "$name $v: no source archive $name-$v-src.tar.gz in $SHIMLESS_UPSTREAM"
    return 1
  }
  w=$SHIMLESS_CACHE/build/$name-$v
  rm -rf "$w"
  mkdir -p "$w/out"
  log "$name $v: step 1/2: extract $(basename "$archive") into $w"
  tar -xzf "$archive" -C "$w" || return 1
  run_step "$name $v: step 2/2: build.sh (upstream source, Go module proxy; minutes)" "$w/build.log" \
    sh "$w/$name-$v-src/build.sh" "$w/out" || return 1
  local files=()
  for f in "$@"; do files+=("$w/out/$f"); done
  mark_cached "$cache_name" "$v" "${files[@]}"
}

build_language_python() {
  build_upstream pulumi-language-python "$PULUMI_VERSION" pulumi-language-python \
    pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python
}

build_command() {
  build_upstream pulumi-resource-command "$COMMAND_VERSION" pulumi-resource-command pulumi-resource-command
}

build_kubernetes() {
  build_upstream pulumi-resource-kubernetes "$KUBERNETES_VERSION" pulumi-resource-kubernetes \
    pulumi-resource-kubernetes
}

# ---------------------------------------------------------------------------
# 3. Official installer (used only when get.pulumi.com answers)
# ---------------------------------------------------------------------------
official_pulumi() {
  local v=$PULUMI_VERSION tmp
  tmp=$(mktemp -d)
  # shellcheck disable=SC2016 # expanded by the inner bash
  run_step "pulumi $v: official installer" "$SHIMLESS_CACHE/logs/install-pulumi.log" \
    bash -c 'curl -fsSL -m 60 https://get.pulumi.com/ | sh -s -- --version "$1" --install-root "$2" --no-edit-path' \
    _ "$v" "$tmp" || { rm -rf "$tmp"; return 1; }
  mark_cached pulumi "$v" "$tmp/bin/pulumi"
  mark_cached pulumi-language-python "$v" "$tmp/bin/pulumi-language-python" \
    "$tmp/bin/pulumi-language-python-exec" "$tmp/bin/pulumi-resource-pulumi-python"
  rm -rf "$tmp"
}

official_plugin() { # NAME(command|kubernetes) VERSION
  local name=$1 v=$2 tmp
  [[ -x $SHIMLESS_BIN/pulumi ]] || return 1
  tmp=$(mktemp -d)
  run_step "pulumi-resource-$name $v: pulumi plugin install (download)" \
    "$SHIMLESS_CACHE/logs/install-$name.log" \
    env PULUMI_HOME="$tmp" PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION= \
    "$SHIMLESS_BIN/pulumi" plugin install resource "$name" "$v" || { rm -rf "$tmp"; return 1; }
  mark_cached "pulumi-resource-$name" "$v" "$tmp/plugins/resource-$name-v$v/pulumi-resource-$name"
  rm -rf "$tmp"
}

# ---------------------------------------------------------------------------
# 4. ensure_*: cache, then official installer, then build
# ---------------------------------------------------------------------------

# provide NAME VERSION SOURCE-FUNCTION...: first function that succeeds wins.
provide() {
  local name=$1 v=$2 f
  shift 2
  if cached "$name" "$v"; then
    log "$name $v: cached in $(cache_dir "$name" "$v")"
    MANIFEST+=("$name $v cache")
    return 0
  fi
  for f in "$@"; do
    if [[ $f == official_* ]] && ! official_installer_reachable; then
      continue
    fi
    if "$f"; then
      MANIFEST+=("$name $v $f")
      return 0
    fi
  done
  return 1
}

# place NAME VERSION: copy the cached files into .tools/bin (copies, not
# symlinks: the language host looks for its -exec script beside its own
# resolved path).
place() {
  local dir f dst
  dir=$(cache_dir "$1" "$2")
  mkdir -p "$SHIMLESS_BIN"
  for f in "$dir"/*; do
    [[ -f $f ]] || continue
    dst=$SHIMLESS_BIN/$(basename "$f")
    # Same size and modification time (install -p keeps it): already placed.
    if [[ ! -f $dst || $(stat -c '%s %Y' "$f") != "$(stat -c '%s %Y' "$dst")" ]]; then
      install -p -m 0755 "$f" "$dst"
      log "placed $(basename "$f") $2 in .tools/bin"
    fi
  done
}

# plugin_install NAME VERSION: into PULUMI_HOME's plugin cache.
plugin_install() {
  local name=$1 v=$2 dir bin stamp
  dir=$(cache_dir "pulumi-resource-$name" "$v")
  bin=$dir/pulumi-resource-$name
  # The stamp records which cached build was installed (its .complete).
  stamp=$PULUMI_HOME/plugins/.shimless-resource-$name-v$v
  if [[ -x $PULUMI_HOME/plugins/resource-$name-v$v/pulumi-resource-$name && -f $stamp ]] &&
    cmp -s "$dir/.complete" "$stamp"; then
    log "plugin resource $name $v: already in $PULUMI_HOME"
    return 0
  fi
  log "plugin resource $name $v: pulumi plugin install --file $bin"
  "$SHIMLESS_BIN/pulumi" plugin install resource "$name" "$v" --file "$bin" --reinstall >&2
  cp "$dir/.complete" "$stamp"
}

main() {
  mkdir -p "$SHIMLESS_CACHE/logs" "$SHIMLESS_BIN" "$PULUMI_HOME"
  exec 9>"$SHIMLESS_TOOLS/.setup.lock"
  flock 9 # one setup at a time per work tree

  ensure_venv
  if [[ ${SHIMLESS_SKIP_PLUGINS:-} == 1 ]]; then
    log "SHIMLESS_SKIP_PLUGINS=1: skipping the Pulumi CLI and plugins"
    return 0
  fi
  go_env

  # containerd 2.x for the tests: cached, not placed in .tools/bin.
  provide containerd "$CONTAINERD2_VERSION" build_containerd2 || MISSING+=("containerd $CONTAINERD2_VERSION")

  # Every binary: the cache, the official installer, a build from source
  # (the CLI from the Go module proxy, the rest from the upstream archives).
  supply pulumi "$PULUMI_VERSION" official_pulumi build_pulumi
  supply pulumi-language-python "$PULUMI_VERSION" official_pulumi build_language_python
  supply pulumi-resource-command "$COMMAND_VERSION" official_command build_command
  supply pulumi-resource-kubernetes "$KUBERNETES_VERSION" official_kubernetes build_kubernetes
  if [[ -x $SHIMLESS_BIN/pulumi ]]; then
    cached pulumi-resource-command "$COMMAND_VERSION" && plugin_install command "$COMMAND_VERSION"
    cached pulumi-resource-kubernetes "$KUBERNETES_VERSION" && plugin_install kubernetes "$KUBERNETES_VERSION"
  fi

  {
    echo "# written by tools/setup.sh $(date -u +%FT%TZ): name version source"
    printf '%s\n' "${MANIFEST[@]}"
  } >"$SHIMLESS_TOOLS/versions.txt"

  if ((${#MISSING[@]})); then
    local m
    for m in "${MISSING[@]}"; do
      log "ERROR: cannot provide $m: not in $SHIMLESS_CACHE, the official installer (get.pulumi.com) did not answer, and no build from source succeeded (upstream archives: $SHIMLESS_UPSTREAM; see the logs above)"
    done
    exit 1
  fi
  log "setup complete: source tools/env.sh to use .tools/bin and .venv"
}

# supply NAME VERSION SOURCE...: provide NAME from the first source that works
# and place it in .tools/bin; remember it as missing otherwise.
supply() {
  if provide "$@"; then
    place "$1" "$2"
  else
    MISSING+=("$1 $2")
  fi
}

official_command() { official_plugin command "$COMMAND_VERSION"; }
official_kubernetes() { official_plugin kubernetes "$KUBERNETES_VERSION"; }

main "$@"
