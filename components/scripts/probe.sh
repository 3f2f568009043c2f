#!/usr/bin/env bash
# Read-only inventory of one node: OS, package manager, services, versions and
# the files shimless reads or manages. Prints "fact KEY VALUE" and
# "file PATH BASE64" lines; changes nothing on the node. In front of it
# (components/bundle.py probe_script): the manifest, whose PROBED_UNITS and
# PROBED_PATHS (every file shimless reads, and every file any target gets:
# components/manifest.py) say what to report, the target runtime and its
# sandbox image (PROBE_RUNTIME, PROBE_PAUSE_IMAGE), then node-lib.sh, for the
# image selection pre-stage makes.
set -euo pipefail
# Where the node's / is: always / on a node; a directory in tests.
PROBE_ROOT=${PROBE_ROOT:-}

fact() { printf 'fact %s %s\n' "$1" "$(printf '%s' "$2" | tr '\n' ' ' | sed 's/ *$//')"; }

# file_facts PATTERN: each file the node path or glob PATTERN names.
file_facts() {
  local path
  # shellcheck disable=SC2086  # a glob: one word a match
  for path in "$PROBE_ROOT"$1; do
    if [ -f "$path" ]; then
      printf 'file %s %s\n' "${path#"$PROBE_ROOT"}" "$(base64 -w0 <"$path")"
    fi
  done
}

unit_state() {
  local unit=$1 enabled active
  enabled=$(systemctl is-enabled "$unit" 2>/dev/null || true)
  active=$(systemctl is-active "$unit" 2>/dev/null || true)
  fact "unit.$unit" "${enabled:-not-found}/${active:-inactive}"
}

# The OCI runtimes daemon.json registers ("runtimes": {NAME: {"path": ...}}):
# each path as written and the executable the node has for it ("" = none).
# dockerd, containerd and CRI-O run under systemd, so a bare name is looked up
# in systemd's default PATH, not in this shell's.
oci_runtime_facts() {
  local path found number=0
  while IFS= read -r path; do
    number=$((number + 1))
    found=""
    if [[ "$path" == /* ]]; then
      if [ -f "$path" ] && [ -x "$path" ]; then found=$path; fi
    elif [[ "$path" != */* ]]; then
      found=$(systemd_which "$path")
    fi
    fact "ociruntime.$number.path" "$path"
    fact "ociruntime.$number.found" "$found"
  done < <(daemon_json_runtime_paths "$@")
}

# The containerd a service would run (the first on systemd's PATH), which
# pre-stage validates, and containerd.service's own unit file and drop-ins (as
# "file" lines, in systemd's order in unitfiles.UNIT): from them the plan
# decides whether the unit must be told to run it (components/runtime_unit.py).
containerd_facts() {
  local binary fragment drop_ins path
  binary=$(systemd_which containerd)
  fact systemd.path "$(systemd_path)"
  fact containerd.path "$binary"
  fact containerd.realpath "$(if [ -n "$binary" ]; then readlink -f "$binary"; fi)"
  fact containerd.version "$(if [ -n "$binary" ]; then "$binary" --version 2>/dev/null | awk '{print $3}'; fi || true)"
  fragment=$(systemctl show -p FragmentPath --value "$CONTAINERD_UNIT" 2>/dev/null || true)
  drop_ins=$(systemctl show -p DropInPaths --value "$CONTAINERD_UNIT" 2>/dev/null || true)
  if [ -z "$fragment" ]; then drop_ins=""; fi
  fact "unitfiles.$CONTAINERD_UNIT" "$fragment${drop_ins:+ $drop_ins}"
  for path in $fragment $drop_ins; do file_facts "$path"; done
}

daemon_json_runtime_paths() {
  local file
  for file in "$@"; do
    if [ -f "$file" ]; then grep -o '"path"[[:space:]]*:[[:space:]]*"[^"]*"' "$file" || true; fi
  done | sed -e 's/^"path"[[:space:]]*:[[:space:]]*"//' -e 's/"$//' -e 's#\\/#/#g' | sort -u
}

# What pre-stage would carry from Docker into the node's target runtime
# (PROBE_RUNTIME) under each target.images mode (the probe is not told the
# node's): the images, and their bytes, with a name the target can take and
# does not hold yet (images_wanted, node-lib.sh); for CRI-O, the registry
# digest names it cannot take and the images it gets no name of (known only
# by digest); and how many images no mode carries (dangling: no tag, no digest).
# Docker not running: nothing to carry (images.docker says so).
image_facts() {
  local pause=$1 runtime=$2 mode list wanted ids not_taken all=""
  if ! docker_serves_images; then
    fact images.docker not-running
    for mode in pods all; do
      fact "images.$mode.count" 0
      fact "images.$mode.bytes" 0
      fact "images.$mode.digests" 0
      fact "images.$mode.nameless" 0
    done
    fact images.untagged 0
    return 0
  fi
  fact images.docker running
  target_store "$runtime"
  for mode in pods all; do
    list=$(images_to_carry "$mode" "$pause" 2>/dev/null || true)
    wanted=$(images_wanted "$runtime" <<<"$list")
    ids=$(awk 'NF { print $1 }' <<<"$wanted" | sort -u)
    fact "images.$mode.count" "$(grep -c . <<<"$ids" || true)"
    fact "images.$mode.bytes" "$(image_bytes "$ids")"
    not_taken=$(names_not_taken "$runtime" <<<"$list")
    fact "images.$mode.digests" "$(grep -c . <<<"$not_taken" || true)"
    # images none of whose names the target takes
    fact "images.$mode.nameless" "$(awk 'NR == FNR { skip[$0]; next }
      NF { seen[$1]; if (!($0 in skip)) named[$1] } END { for (i in seen) if (!(i in named)) n++; print n + 0 }' \
      <(printf '%s\n' "$not_taken") <(printf '%s\n' "$list"))"
    if [ "$mode" = all ]; then all=$(awk 'NF { print $1 }' <<<"$list" | sort -u); fi
  done
  fact images.untagged "$(docker images -q --no-trunc 2>/dev/null | sort -u | grep -cvxF -f <(printf '%s\n' "$all") || true)"
}

# target_store RUNTIME: the target's image store as it is now, to be read
# only: the running containerd's k8s.io namespace (Docker's containerd, which
# pre-stage imports into), listed once; CRI-O's storage once CRI-O has made
# it. None (CTR and CRIO_STORAGE empty): nothing is there yet.
# shellcheck disable=SC2034  # CTR_IMAGES, CRIO_STORAGE: read by node-lib.sh's target_image_id
target_store() {
  CTR="" CRIO_STORAGE=""
  case "$1" in
    containerd)
      if [ -S "$CONTAINERD_SOCKET" ]; then CTR=$(running_ctr); fi
      if [ -n "$CTR" ]; then CTR_IMAGES=$("$CTR" -n k8s.io images ls 2>/dev/null || true); fi
      ;;
    cri-o)
      if command -v crio >/dev/null 2>&1 && command -v skopeo >/dev/null 2>&1 && crio_storage &&
        [ -d "$CRIO_ROOT" ]; then :; else CRIO_STORAGE=""; fi
      ;;
  esac
}

# image_bytes IDS: the sum of the images' sizes, one ID a line.
image_bytes() {
  local sizes=""
  # shellcheck disable=SC2086  # one argument per image ID
  if [ -n "$1" ]; then sizes=$(docker image inspect --format '{{.Size}}' $1 2>/dev/null || true); fi
  awk '{ s += $1 } END { printf "%.0f\n", s }' <<<"$sizes"
}

main() {
  local os_id="" os_version=""
  if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091
    os_id=$(. /etc/os-release && echo "${ID:-}")
    # shellcheck disable=SC1091
    os_version=$(. /etc/os-release && echo "${VERSION_ID:-}")
  fi
  fact os.id "$os_id"
  fact os.version "$os_version"
  local pm=unknown
  for candidate in apt-get dnf yum; do
    if command -v "$candidate" >/dev/null 2>&1; then pm=${candidate%-get}; break; fi
  done
  fact pkg.manager "$pm"
  fact user.uid "$(id -u)"
  fact sudo "$(if [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; then echo yes; else echo no; fi)"

  fact kubelet.version "$(kubelet --version 2>/dev/null || true)"
  local pid
  pid=$(pgrep -xo kubelet 2>/dev/null || true)
  if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ]; then
    fact kubelet.cmdline "$(tr '\0' ' ' <"/proc/$pid/cmdline")"
  fi
  containerd_facts
  fact crio.version "$(crio --version 2>/dev/null | awk '/^Version:/ {print $2; exit}' || true)"
  fact docker.version "$(docker version --format '{{.Server.Version}}' 2>/dev/null || true)"
  fact docker.cgroupdriver "$(docker info --format '{{.CgroupDriver}}' 2>/dev/null || true)"
  fact crictl.present "$(command -v crictl >/dev/null 2>&1 && echo yes || echo no)"
  local unit
  # shellcheck disable=SC2086  # PROBED_UNITS: one word a unit
  for unit in $PROBED_UNITS; do
    unit_state "$unit"
  done
  fact shimless.token "$(cat "$PROBE_ROOT$TOKEN_FILE" 2>/dev/null || true)"
  local settings=() path
  for path in $DAEMON_JSONS; do settings+=("$PROBE_ROOT$path"); done
  oci_runtime_facts "${settings[@]}"
  image_facts "${PROBE_PAUSE_IMAGE-}" "${PROBE_RUNTIME-}"

  while IFS= read -r path; do
    if [ -n "$path" ]; then file_facts "$path"; fi
  done <<<"$PROBED_PATHS"
}

main "$@"
