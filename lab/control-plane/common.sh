# shellcheck shell=bash
# Shared settings of lab/control-plane/*.sh (sourced).
set -euo pipefail
CP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAB_DIR="$(cd "$CP_DIR/.." && pwd)"
LAB_STATE_DIR="${LAB_STATE_DIR:-$LAB_DIR/state}"
CP_STATE_DIR="${CP_STATE_DIR:-$LAB_STATE_DIR/control-plane}"
CP_CACHE_DIR="${CP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shimless/control-plane}"
CP_K8S_VERSION="${CP_K8S_VERSION:-v1.24.17}"
CP_K8S_VERSION="v${CP_K8S_VERSION#v}"
CP_ETCD_VERSION="${CP_ETCD_VERSION:-v3.5.6}"
CP_ETCD_VERSION="v${CP_ETCD_VERSION#v}"
# loopback ports of the lab control plane (all on 127.0.0.1)
CP_ETCD_CLIENT_PORT="${CP_ETCD_CLIENT_PORT:-22379}"
CP_ETCD_PEER_PORT="${CP_ETCD_PEER_PORT:-22380}"
CP_APISERVER_PORT="${CP_APISERVER_PORT:-26443}"
CP_CM_PORT="${CP_CM_PORT:-20257}"
CP_SCHED_PORT="${CP_SCHED_PORT:-20259}"
CP_SERVICE_CIDR="${CP_SERVICE_CIDR:-10.96.0.0/16}"
CP_CLUSTER_CIDR="${CP_CLUSTER_CIDR:-10.244.0.0/16}"
CP_KUBECONFIG="${CP_KUBECONFIG:-$LAB_STATE_DIR/kubeconfig}"
# shellcheck disable=SC2034 # used by the scripts that source this file
CP_SERVER="https://127.0.0.1:$CP_APISERVER_PORT"

_cp_t0="${LAB_T0:-$(date +%s.%N)}"
cp_log() { printf '[control-plane %ss] %s\n' "$(awk -v t0="$_cp_t0" -v t1="$(date +%s.%N)" 'BEGIN { printf "%6.1f", t1 - t0 }')" "$*" >&2; }
if ! declare -F die >/dev/null; then
  die() { printf '[control-plane] ERROR: %s\n' "$*" >&2; exit 1; }
fi

cp_find_go() {
  local g
  for g in "${GO:-}" /usr/local/go/bin/go "$(command -v go 2>/dev/null || true)" /usr/lib/go/bin/go; do
    [ -n "$g" ] && [ -x "$g" ] && { echo "$g"; return 0; }
  done
  return 1
}

# "wall 3:48.34, cpu 308 s, peak RSS 1095 MiB (largest process), 1262 MiB (whole build)"
# from a /usr/bin/time -v file (+ FILE.tree: peak summed RSS of the build's process tree)
cp_time_summary() {
  local tree=""
  [ -s "$1.tree" ] && tree=", $(($(cat "$1.tree") / 1024)) MiB (whole build, 1 s samples)"
  awk -F': ' '/Elapsed \(wall clock\)/ { w = $2 } /Maximum resident set size/ { m = $2 }
    /User time/ { u = $2 } /System time/ { s = $2 }
    END { printf "wall %s, cpu %d s, peak RSS %d MiB (largest process)", w, u + s, m / 1024 }' "$1" 2>/dev/null
  echo "$tree"
}

# cp_sample_tree_rss PID OUT: until PID exits, keep in OUT the peak summed RSS (KiB) of PID + descendants
cp_sample_tree_rss() {
  local root="$1" out="$2" max=0 s
  while [ -d "/proc/$root" ]; do
    s="$(ps -e -o pid=,ppid=,rss= | awk -v r="$root" '{ p[$1] = $2; m[$1] = $3 }
      END { for (x in p) { y = x; while (y > 1) { if (y == r) { t += m[x]; break } y = p[y] } } print t + 0 }')"
    if [ "$s" -gt "$max" ]; then max="$s"; echo "$max" >"$out"; fi
    sleep 1
  done
}

# cp_fresh_src OUT: OUT/src made empty, for a build's wrapper module; prints it.
cp_fresh_src() {
  mkdir -p "$1"
  rm -rf "$1/src"
  mkdir -p "$1/src"
  echo "$1/src"
}

# cp_k8s_wrapper_module DIR VERSION NAME: DIR/go.mod of a module NAME that
# requires k8s.io/kubernetes@VERSION. k8s.io/kubernetes replaces its staging
# modules (k8s.io/api, client-go, ...) with ./staging paths, so it cannot be
# built with `go install mod@version`: the wrapper takes its go.mod, keeps its
# requires and pins and points each staging module at the published
# v0.<minor>.<patch>.
cp_k8s_wrapper_module() {
  local w="$1" v="$2" name="$3" staging="v0.${2#v1.}"
  curl -fsS "${CP_GOPROXY:-https://proxy.golang.org}/k8s.io/kubernetes/@v/$v.mod" -o "$w/kubernetes.mod" \
    || die "k8s.io/kubernetes $v: go.mod not served by the module proxy"
  awk -v kv="$v" -v sv="$staging" -v name="$name" '
    /^module / { print "module " name; next }
    /^replace \($/ { inrep = 1; print; next }
    inrep && /^\)$/ { inrep = 0; print; next }
    inrep && /=> \.\/staging\/src\// { sub(/=> \.\/staging\/src\/.*/, "=> " $1 " " sv); print; next }
    { print }
    END { print ""; print "require k8s.io/kubernetes " kv }
  ' "$w/kubernetes.mod" >"$w/go.mod"
}

# cp_k8s_version_ldflags VERSION: -ldflags stamping VERSION where `--version`
# and the API's /version read it (component-base and client-go).
cp_k8s_version_ldflags() {
  local v="$1" ldpkg ld date minor
  date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  minor="${v#v1.}"; minor="${minor%%.*}"
  ld="-s -w"
  for ldpkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $ldpkg.gitVersion=$v -X $ldpkg.gitMajor=1 -X $ldpkg.gitMinor=$minor"
    ld="$ld -X $ldpkg.gitTreeState=clean -X $ldpkg.buildDate=$date -X $ldpkg.gitCommit=shimless-lab-from-module-proxy"
  done
  echo "$ld"
}

# pid of a control-plane component started by up.sh, if it still runs that binary.
cp_pid() {
  local name="$1" pf pid exe
  pf="$CP_STATE_DIR/$name.pid"
  [ -f "$pf" ] || return 1
  pid="$(cat "$pf")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -d "/proc/$pid" ] || return 1
  [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || echo X)" != Z ] || return 1
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || return 1
  [ "$(basename "${exe% (deleted)}")" = "$name" ] || return 1
  echo "$pid"
}

# shellcheck disable=SC2034 # used by the scripts that source this file
CP_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler)
