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
#
# Binaries come, in this order, from ~/.cache/shimless/<name>/<version>/, the
# official installer (get.pulumi.com, when reachable within 5 s), or a build
# from Go modules through the Go module proxy (minutes; cached by version).
#
# Environment knobs:
#   SHIMLESS_CACHE=DIR     binary cache (default ~/.cache/shimless)
#   SHIMLESS_STRICT=1      exit non-zero when a binary could not be provided
#                          (default: warn, and provide everything else)
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

# Python language host at the CLI's version: its own module (replaces pkg/v3
# and sdk/v3 with local paths), built through a wrapper like the CLI.
build_language_python() {
  local v=$PULUMI_VERSION m=$PULUMI_LANGUAGE_PYTHON_MODULE@$PULUMI_LANGUAGE_PYTHON_PSEUDO
  local w=$SHIMLESS_CACHE/build/pulumi-language-python-v$PULUMI_VERSION dir
  log "pulumi-language-python $v: step 1/2: fetch $m"
  dir=$(go_mod_dir "$m") || return 1
  new_wrapper "$w" "$(go_directive "$dir/go.mod")" "$m" \
    "github.com/pulumi/pulumi/pkg/v3@v$v" "github.com/pulumi/pulumi/sdk/v3@v$v"
  (cd "$w" && copy_remote_replaces "$dir/go.mod")
  go_build_in "$w" -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$v" \
    -o "$w/out/pulumi-language-python" "$PULUMI_LANGUAGE_PYTHON_MODULE"
  run_step "pulumi-language-python $v: step 2/2: go build" "$w/build.log" "${GO_BUILD[@]}" || return 1
  mark_cached pulumi-language-python "$v" "$w/out/pulumi-language-python"
}

# Fallback language host: sdk/v3 up to 3.79.0 carried it in-module.
build_language_python_fallback() {
  local v=$PULUMI_LANGUAGE_PYTHON_FALLBACK_SDK w=$SHIMLESS_CACHE/build/pulumi-language-python-v$PULUMI_LANGUAGE_PYTHON_FALLBACK_SDK dir
  log "pulumi-language-python $v (fallback): step 1/2: fetch github.com/pulumi/pulumi/sdk/v3@v$v"
  dir=$(go_mod_dir "github.com/pulumi/pulumi/sdk/v3@v$v") || return 1
  new_wrapper "$w" "$(go_directive "$dir/go.mod")" "github.com/pulumi/pulumi/sdk/v3@v$v"
  (cd "$w" && copy_remote_replaces "$dir/go.mod")
  go_build_in "$w" -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$v" \
    -o "$w/out/pulumi-language-python" github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python
  run_step "pulumi-language-python $v (fallback): step 2/2: go build" "$w/build.log" "${GO_BUILD[@]}" || return 1
  mark_cached pulumi-language-python "$v" "$w/out/pulumi-language-python"
}

# The two shim scripts ship in sdk/v3's python/ folder.
fetch_python_shims() {
  local v=$PULUMI_VERSION dir
  log "python shims $v: fetch github.com/pulumi/pulumi/sdk/v3@v$v"
  dir=$(go_mod_dir "github.com/pulumi/pulumi/sdk/v3@v$v") || return 1
  mark_cached pulumi-language-python-exec "$v" \
    "$dir/python/cmd/pulumi-language-python-exec" "$dir/python/dist/pulumi-resource-pulumi-python"
}

# build_provider NAME VERSION MODULE@MODVERSION PKG VERSIONVAR [DROP_REPLACE=VER...]
# Providers are built as the main module from a writable copy of their module:
# their cmd/ packages embed files written by a generate.go (schema-embed.json
# and the like) that are not part of the module zip. Local replaces
# (../sdk) are dropped; the module's required version of that module is used.
build_provider() {
  local name=$1 v=$2 modver=$3 pkg=$4 versionvar=$5
  shift 5
  local w=$SHIMLESS_CACHE/build/$name-$v dir drop
  log "$name $v: step 1/3: fetch $modver"
  dir=$(go_mod_dir "$modver") || return 1
  rm -rf "$w/src"
  mkdir -p "$w"
  cp -r "$dir" "$w/src"
  chmod -R u+w "$w/src"
  for drop in "$@"; do
    log "  $name: use ${drop%%=*}@${drop#*=} instead of its local replace"
    (cd "$w/src" && "$SHIMLESS_GO" mod edit -dropreplace="${drop%%=*}" -require="${drop%%=*}@${drop#*=}")
  done
  if [[ -f $w/src/$pkg/generate.go ]]; then
    # shellcheck disable=SC2016 # expanded by the inner bash
    run_step "$name $v: step 2/3: go run ./generate.go (embedded schema)" "$w/generate.log" \
      env VERSION="$v" bash -c 'cd "$1" && "$2" run ./generate.go' _ "$w/src/$pkg" "$SHIMLESS_GO" || return 1
  else
    log "$name $v: step 2/3: nothing to generate"
  fi
  go_build_in "$w/src" -ldflags "-s -w -X $versionvar=$v" -o "$w/out/$name" "./$pkg"
  run_step "$name $v: step 3/3: go build (several minutes)" "$w/build.log" "${GO_BUILD[@]}" || return 1
  mark_cached "$name" "$v" "$w/out/$name"
}

build_command() {
  local cand
  for cand in "${COMMAND_MODULE_CANDIDATES[@]}"; do
    if go_mod_available "$COMMAND_MODULE@$cand"; then
      build_provider pulumi-resource-command "$COMMAND_VERSION" "$COMMAND_MODULE@$cand" \
        cmd/pulumi-resource-command github.com/pulumi/pulumi-command/provider/pkg/version.Version
      return
    fi
    log "pulumi-resource-command: $COMMAND_MODULE@$cand is not served by the Go module proxy"
  done
  return 1
}

build_kubernetes() {
  build_provider pulumi-resource-kubernetes "$KUBERNETES_VERSION" \
    "$KUBERNETES_MODULE@$KUBERNETES_MODULE_VERSION" cmd/pulumi-resource-kubernetes \
    github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version \
    "github.com/pulumi/pulumi-kubernetes/sdk/v4=$KUBERNETES_GO_SDK_VERSION"
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
  mark_cached pulumi-language-python "$v" "$tmp/bin/pulumi-language-python"
  mark_cached pulumi-language-python-exec "$v" \
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

ensure_language_python() {
  # The host at the CLI's own version; else the in-sdk fallback host.
  if cached pulumi-language-python "$PULUMI_VERSION" ||
    { official_installer_reachable && official_pulumi; } ||
    build_language_python; then
    MANIFEST+=("pulumi-language-python $PULUMI_VERSION")
    LANGUAGE_PYTHON_VERSION=$PULUMI_VERSION
    return 0
  fi
  warn "pulumi-language-python $PULUMI_VERSION is not available from the Go module proxy;" \
    "using the language host of sdk/v3@v$PULUMI_LANGUAGE_PYTHON_FALLBACK_SDK (it ignores runtime.options.virtualenv:" \
    "tools/env.sh puts .venv/bin first on PATH, which it uses instead)"
  provide pulumi-language-python "$PULUMI_LANGUAGE_PYTHON_FALLBACK_SDK" build_language_python_fallback || return 1
  LANGUAGE_PYTHON_VERSION=$PULUMI_LANGUAGE_PYTHON_FALLBACK_SDK
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

# install_command_standin: when the real command plugin cannot be had, build
# the project's command-provider stand-in (tools/command-standin: same
# resource types and documented semantics, written for this project) and
# install it as the command plugin the Python package asks for. Says so.
install_command_standin() {
  local bin stamp
  warn "pulumi-resource-command $COMMAND_VERSION cannot be obtained here: using the command-provider stand-in (tools/command-standin)"
  bin=$(bash "$SHIMLESS_ROOT/tools/command-standin/build.sh" | tail -n 1) || return 1
  [[ -x $bin ]] || return 1
  stamp=$PULUMI_HOME/plugins/.shimless-resource-command-v$COMMAND_VERSION
  if [[ -x $PULUMI_HOME/plugins/resource-command-v$COMMAND_VERSION/pulumi-resource-command && -f $stamp ]] &&
    [[ $(cat "$stamp") == "standin $bin" ]]; then
    log "plugin resource command $COMMAND_VERSION: the stand-in is already in $PULUMI_HOME"
    return 0
  fi
  "$SHIMLESS_BIN/pulumi" plugin install resource command "$COMMAND_VERSION" --file "$bin" --reinstall >&2
  echo "standin $bin" >"$stamp"
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

  if provide pulumi "$PULUMI_VERSION" official_pulumi build_pulumi; then
    place pulumi "$PULUMI_VERSION"
  else
    MISSING+=("pulumi $PULUMI_VERSION")
  fi
  if provide pulumi-language-python-exec "$PULUMI_VERSION" fetch_python_shims; then
    place pulumi-language-python-exec "$PULUMI_VERSION"
  else
    MISSING+=("pulumi-language-python-exec $PULUMI_VERSION")
  fi
  LANGUAGE_PYTHON_VERSION=
  if ensure_language_python; then
    place pulumi-language-python "$LANGUAGE_PYTHON_VERSION"
  else
    MISSING+=("pulumi-language-python $PULUMI_VERSION")
  fi

  if provide pulumi-resource-command "$COMMAND_VERSION" official_command build_command; then
    place pulumi-resource-command "$COMMAND_VERSION"
    [[ -x $SHIMLESS_BIN/pulumi ]] && plugin_install command "$COMMAND_VERSION"
  elif [[ -x $SHIMLESS_BIN/pulumi ]] && install_command_standin; then
    MANIFEST+=("pulumi-resource-command $COMMAND_VERSION command-provider-stand-in")
  else
    MISSING+=("pulumi-resource-command $COMMAND_VERSION")
  fi
  if provide pulumi-resource-kubernetes "$KUBERNETES_VERSION" official_kubernetes build_kubernetes; then
    place pulumi-resource-kubernetes "$KUBERNETES_VERSION"
    [[ -x $SHIMLESS_BIN/pulumi ]] && plugin_install kubernetes "$KUBERNETES_VERSION"
  else
    MISSING+=("pulumi-resource-kubernetes $KUBERNETES_VERSION")
  fi

  {
    echo "# written by tools/setup.sh $(date -u +%FT%TZ): name version source"
    printf '%s\n' "${MANIFEST[@]}"
  } >"$SHIMLESS_TOOLS/versions.txt"

  if ((${#MISSING[@]})); then
    warn "could not provide: ${MISSING[*]} (see the logs above and tools/README.md)"
    [[ ${SHIMLESS_STRICT:-} == 1 ]] && exit 1
  fi
  log "setup complete: source tools/env.sh to use .tools/bin and .venv"
}

official_command() { official_plugin command "$COMMAND_VERSION"; }
official_kubernetes() { official_plugin kubernetes "$KUBERNETES_VERSION"; }

main "$@"
