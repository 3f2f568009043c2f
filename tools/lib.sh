# shellcheck shell=bash disable=SC2034  # variables for the scripts that source this
# Helpers shared by tools/setup.sh and tools/verify.sh. Source, don't run.

SHIMLESS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHIMLESS_CACHE=${SHIMLESS_CACHE:-$HOME/.cache/shimless}
SHIMLESS_TOOLS=$SHIMLESS_ROOT/.tools
SHIMLESS_UPSTREAM=${SHIMLESS_UPSTREAM:-$(cd "$SHIMLESS_ROOT/.." && pwd)/shared/upstream}
SHIMLESS_BIN=$SHIMLESS_TOOLS/bin
SHIMLESS_VENV=$SHIMLESS_ROOT/.venv
SHIMLESS_PYTHON=${SHIMLESS_PYTHON:-/root/.pyenv/shims/python3}
SHIMLESS_GO=${SHIMLESS_GO:-/usr/local/go/bin/go}
SHIMLESS_T0=${SHIMLESS_T0:-$(date +%s)}
# How often a long build step reports that it is still running (seconds).
SHIMLESS_HEARTBEAT=${SHIMLESS_HEARTBEAT:-30}

log() {
  printf '[shimless +%4ss] %s\n' "$(($(date +%s) - SHIMLESS_T0))" "$*" >&2
}

warn() {
  log "WARNING: $*"
}

die() {
  log "ERROR: $*"
  exit 1
}

# run_step WHAT LOGFILE CMD...: run CMD with output to LOGFILE, print a line
# every SHIMLESS_HEARTBEAT seconds while it runs, and the log's tail if it
# fails. Returns CMD's exit status.
run_step() {
  local what=$1 logfile=$2
  shift 2
  local t0 pid rc=0 waited=0
  t0=$(date +%s)
  mkdir -p "$(dirname "$logfile")"
  log "$what: started (log: $logfile)"
  if [[ -x /usr/bin/time ]]; then
    # GNU time appends the step's peak memory to its log.
    /usr/bin/time -f 'shimless-time: %e s wall, peak RSS %M KiB' "$@" >"$logfile" 2>&1 &
  else
    "$@" >"$logfile" 2>&1 &
  fi
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    waited=$((waited + 1))
    if ((waited % SHIMLESS_HEARTBEAT == 0)) && kill -0 "$pid" 2>/dev/null; then
      log "$what: still running ($(($(date +%s) - t0))s)"
    fi
  done
  wait "$pid" || rc=$?
  if ((rc == 0)); then
    local peak
    peak=$(sed -n 's/^shimless-time: .*peak RSS \([0-9]*\) KiB$/\1/p' "$logfile" | tail -n 1)
    log "$what: done in $(($(date +%s) - t0))s${peak:+, peak RSS $((peak / 1024)) MiB}"
  else
    log "$what: FAILED (exit $rc) after $(($(date +%s) - t0))s; last lines of $logfile:"
    tail -n 25 "$logfile" | sed 's/^/    /' >&2
  fi
  return "$rc"
}

# Go environment for module builds. GOFLAGS=-mod=mod lets the wrapper modules
# record what they resolve; GOTOOLCHAIN=auto fetches a newer Go through the
# module proxy when a go.mod asks for one.
go_env() {
  export GOFLAGS="-mod=mod -buildvcs=false"
  export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
  export CGO_ENABLED=0
  # Pseudo-versions of the provider/language-host modules are not in the
  # checksum database (lookups answer 404); fetch them from the proxy unchecked.
  export GONOSUMDB=${GONOSUMDB:-github.com/pulumi/pulumi-kubernetes/provider,github.com/pulumi/pulumi-command/provider,github.com/pulumi/pulumi/sdk/python/cmd}
  PATH=$(dirname "$SHIMLESS_GO"):$PATH
  export PATH
}

# go_mod_dir MODULE@VERSION: download a module, print its directory in the
# module cache. Fails (quietly, for callers trying alternatives) when the
# proxy refuses it.
go_mod_dir() {
  local json
  json=$(cd / && "$SHIMLESS_GO" mod download -json "$1" 2>/dev/null) || true
  printf '%s' "$json" | "$SHIMLESS_PYTHON" -c '
import json, sys
d = json.load(sys.stdin)
if d.get("Error") or not d.get("Dir"):
    sys.stderr.write("    %s\n" % d.get("Error", "no Dir"))
    sys.exit(1)
print(d["Dir"])'
}

# copy_remote_replaces FROM_GOMOD: copy the replace directives of a go.mod
# that point at other modules (not local directories) into the go.mod in the
# current directory. `go install module@version` refuses modules with any
# replace; a wrapper module that carries the non-local ones builds them.
copy_remote_replaces() {
  local from=$1 line
  while IFS= read -r line; do
    [[ -n $line ]] || continue
    log "  replace $line"
    "$SHIMLESS_GO" mod edit -replace "$line"
  done < <("$SHIMLESS_GO" mod edit -json "$from" | "$SHIMLESS_PYTHON" -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    new = r["New"]
    if not new.get("Version"):
        continue  # local directory: not usable outside its repository
    old = r["Old"]["Path"] + ("@" + r["Old"]["Version"] if r["Old"].get("Version") else "")
    print("%s=%s@%s" % (old, new["Path"], new["Version"]))')
}

# go_directive GOMOD: the `go` line of a go.mod.
go_directive() {
  "$SHIMLESS_GO" mod edit -json "$1" | "$SHIMLESS_PYTHON" -c 'import json,sys; print(json.load(sys.stdin).get("Go") or "1.21")'
}

# cache_dir NAME VERSION: where a built/installed binary of that version lives.
cache_dir() {
  printf '%s/%s/%s' "$SHIMLESS_CACHE" "$1" "$2"
}

# cached NAME VERSION: is a complete copy in the cache?
cached() {
  [[ -f $(cache_dir "$1" "$2")/.complete && -x $(cache_dir "$1" "$2")/$1 ]]
}

# mark_cached NAME VERSION FILE...: put FILEs into the cache dir and seal it.
mark_cached() {
  local name=$1 version=$2 dir
  shift 2
  dir=$(cache_dir "$name" "$version")
  mkdir -p "$dir"
  rm -f "$dir/.complete"
  install -m 0755 "$@" "$dir/"
  date -u +%FT%TZ >"$dir/.complete"
}

# official_installer_reachable: can get.pulumi.com be reached (5 s)?
# Memoised: probed once per run.
official_installer_reachable() {
  if [[ -z ${SHIMLESS_OFFICIAL_REACHABLE:-} ]]; then
    if curl -fsS -m 5 -o /dev/null https://get.pulumi.com/ 2>/dev/null; then
      SHIMLESS_OFFICIAL_REACHABLE=yes
    else
      SHIMLESS_OFFICIAL_REACHABLE=no
      log "get.pulumi.com is not reachable: building from upstream source"
    fi
  fi
  [[ $SHIMLESS_OFFICIAL_REACHABLE == yes ]]
}
