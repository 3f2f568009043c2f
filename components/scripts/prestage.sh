#!/usr/bin/env bash
# Pre-stage while the node still serves: install the target runtime from the
# chosen source, check the rendered config with the real binary, and copy
# Docker's images into the target's store. Nothing is activated: Docker, the kubelet and the live config files are untouched.
set -euo pipefail
SHIMLESS_BUNDLE=$1
# shellcheck source=components/scripts/node-lib.sh
. "$SHIMLESS_BUNDLE/node-lib.sh"
SHIMLESS_NODE=$(var node)

# The installed version: of the containerd a service runs (the first on
# systemd's PATH), which pre-stage validates; of crio.
installed_version() {
  local binary
  case "$1" in
    containerd)
      binary=$(systemd_which containerd)
      if [ -n "$binary" ]; then "$binary" --version 2>/dev/null | awk '{print $3}' | sed 's/^v//' || true; fi
      ;;
    cri-o) crio --version 2>/dev/null | awk '/^Version:/ {print $2; exit}' || true ;;
  esac
}

# --------------------------------------------------------------- containerd.service's binary
# After the switch containerd.service must run the containerd validated here,
# and that containerd must start a runc shim of its own release: a 2.3+ shim
# refuses a daemon that starts it the 1.x way, and the other way round.
# containerd looks its shim up on its PATH first, then beside itself
# (containerd v2.4.2 core/runtime/v2/shim_manager.go, resolveRuntimePath).

# The file the switch installs over containerd.service when it must be told
# which binary to run (components/runtime_unit.py), as the bundle holds it.
binary_drop_in() { printf '%s' "$SHIMLESS_BUNDLE/root$CONTAINERD_BINARY_DROP_IN"; }

# The binary containerd.service runs after the switch: the drop-in's, else its own.
service_binary_after_switch() {
  if [ -f "$(binary_drop_in)" ]; then
    sed -n 's/^ExecStart=[-@:+!]*\([^ ]\{1,\}\).*/\1/p' "$(binary_drop_in)" | tail -n 1
  else
    systemctl show -p ExecStart --value "$CONTAINERD_UNIT" 2>/dev/null | sed -n 's/^{ path=\([^ ;]*\) .*/\1/p' | head -n 1 || true
  fi
}

# The PATH containerd.service has after the switch: the drop-in's, else systemd's.
service_path_after_switch() {
  local path=""
  if [ -f "$(binary_drop_in)" ]; then path=$(sed -n 's/^Environment="PATH=\(.*\)"$/\1/p' "$(binary_drop_in)" | tail -n 1); fi
  printf '%s' "${path:-$(systemd_path)}"
}

# runc_shim BINARY PATH: the shim containerd BINARY starts when it runs with PATH.
runc_shim() {
  local beside
  beside=$(dirname "$(readlink -f "$1")")/containerd-shim-runc-v2
  PATH=$2 type -P -- containerd-shim-runc-v2 || { if [ -x "$beside" ]; then printf '%s\n' "$beside"; fi; }
}

# "2.4" of "v2.4.2", "1.6" of "1.6.20~ds1".
release_line() { sed -n 's/^v\{0,1\}\([0-9]\{1,\}\.[0-9]\{1,\}\).*/\1/p' <<<"$1"; }

# check_containerd_service BINARY VERSION: the validated containerd is what
# containerd.service will run, with a shim of its release; dies otherwise.
check_containerd_service() {
  local binary=$1 version=$2 runs shim shim_version
  runs=$(service_binary_after_switch)
  if [ -z "$runs" ] || [ "$(readlink -f "$runs")" != "$(readlink -f "$binary")" ]; then
    die "$CONTAINERD_UNIT would run ${runs:-nothing} after the switch, not $binary (containerd $version, the first on systemd's PATH, which pre-stage checked): run preview again"
  fi
  shim=$(runc_shim "$binary" "$(service_path_after_switch)")
  [ -n "$shim" ] || die "containerd $version ($binary) would find no containerd-shim-runc-v2 on its PATH or beside it"
  shim_version=$("$shim" -v 2>/dev/null | awk '$1 == "Version:" { print $2; exit }' || true)
  if [ -n "$shim_version" ] && [ "$(release_line "$shim_version")" != "$(release_line "$version")" ]; then
    die "containerd $version ($binary) would start the shim $shim of containerd $shim_version, which refuses it: put containerd-shim-runc-v2 $version beside $(readlink -f "$binary") (it is looked up on PATH first)"
  fi
  log "$CONTAINERD_UNIT will run $binary (containerd $version) with the shim $shim (${shim_version:-version unknown})"
}

version_ok() {
  local want=$1 have=$2
  [ -n "$have" ] && { [ -z "$want" ] || [[ "$have" == "$want"* ]]; }
}

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

install_package_repo() {
  local runtime=$1 version=$2 codename arch
  command -v apt-get >/dev/null 2>&1 || die "source 'package' is implemented for apt nodes only; this node has no apt-get"
  # shellcheck disable=SC1091
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  # shellcheck disable=SC1091
  local os_id; os_id=$(. /etc/os-release && echo "${ID:-}")
  arch=$(dpkg --print-architecture)
  install -d -m 0755 /etc/apt/keyrings
  case "$runtime" in
    containerd)
      curl -fsSL "https://download.docker.com/linux/$os_id/gpg" -o /etc/apt/keyrings/docker.asc
      echo "deb [arch=$arch signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/$os_id $codename stable" \
        >/etc/apt/sources.list.d/docker.list
      apt-get update -q
      apt_install "containerd.io${version:+=$version*}"
      ;;
    cri-o)
      [ -n "$version" ] || die "target.version is required for cri-o from pkgs.k8s.io (its minor follows the kubelet's)"
      local minor=${version%.*}
      curl -fsSL "https://pkgs.k8s.io/addons:/cri-o:/stable:/v$minor/deb/Release.key" |
        gpg --dearmor --yes -o /etc/apt/keyrings/cri-o-apt-keyring.gpg
      echo "deb [signed-by=/etc/apt/keyrings/cri-o-apt-keyring.gpg] https://pkgs.k8s.io/addons:/cri-o:/stable:/v$minor/deb/ /" \
        >/etc/apt/sources.list.d/cri-o.list
      apt-get update -q
      apt_install "cri-o=$version*"
      ;;
  esac
}

install_distro() {
  local runtime=$1 version=$2
  [ "$runtime" = containerd ] || die "no distro package for $runtime: use source 'package' or 'preinstalled'"
  if command -v apt-get >/dev/null 2>&1; then
    apt_install "containerd${version:+=$version*}"
  elif command -v dnf >/dev/null 2>&1; then
    dnf install -y containerd
  elif command -v yum >/dev/null 2>&1; then
    yum install -y containerd
  else
    die "no supported package manager (apt, dnf, yum)"
  fi
}

# --------------------------------------------------------------- images
# Docker's images the target runtime's store gets, so that no pod has to pull
# again after the switch (air-gapped sites, images built on the node,
# imagePullPolicy: Never). Copied while the node still serves; a re-run copies
# only what the target does not already hold with the same image ID. Which
# images: images_to_carry (node-lib.sh), the selection the probe counts too.

# The directory the target keeps its images under (for the space check).
store_dir() {
  local dir binary
  case "$1" in
    containerd)
      # the root of the running containerd, which the images are imported into
      binary=$(running_containerd)
      dir=$("${binary:-containerd}" config dump 2>/dev/null | sed -n 's/^root = "\(.*\)"/\1/p' | head -1 || true)
      ;;
    cri-o) dir=$CRIO_ROOT ;;
  esac
  dir=${dir:-/var/lib}
  while [ ! -d "$dir" ]; do dir=$(dirname "$dir"); done
  echo "$dir"
}

carry_images() {
  local mode=$1 runtime=$2 pause=$3 start=$SECONDS list todo id ref have ids count=0 bytes=0 need avail dir skipped
  CARRIED_IMAGES=0 CARRIED_BYTES=0 CARRIED_SECONDS=0
  if [ "$mode" = none ]; then log "images: not carried (target.images: none)"; return 0; fi
  if ! docker_serves_images; then
    log "images: Docker is not running: nothing to carry"
    return 0
  fi
  case "$runtime" in
    containerd)
      # Into the containerd running now (Docker's), with its own release's client.
      CTR=$(running_ctr)
      [ -n "$CTR" ] || die "ctr (containerd's client) is missing: cannot carry Docker's images into containerd"
      [ -S "$CONTAINERD_SOCKET" ] || die "containerd is not running: cannot carry Docker's images into it before the switch"
      ;;
    cri-o)
      command -v skopeo >/dev/null 2>&1 ||
        die "skopeo is not installed: cannot carry Docker's images into CRI-O's storage (install skopeo, or set target.images: none and let the pods pull again)"
      crio_storage || die "'crio config' failed or names no storage root/runroot: cannot tell where CRI-O keeps its images"
      ;;
  esac
  list=$(images_to_carry "$mode" "$pause")
  skipped=$(names_not_taken "$runtime" <<<"$list" | grep -c . || true)
  if [ "$skipped" -gt 0 ]; then
    log "images: $skipped registry digest name(s) not carried into CRI-O: a copy out of Docker cannot have the digest its registry gave it; pods naming an image by digest pull it again"
  fi
  todo=$(images_wanted "$runtime" <<<"$list")
  if [ -z "$todo" ]; then
    log "images: every name to carry is already in $runtime's store"
    return 0
  fi
  ids=$(awk 'NF { print $1 }' <<<"$todo" | sort -u)
  count=$(grep -c . <<<"$ids")
  # shellcheck disable=SC2086  # one argument per image ID
  bytes=$(docker image inspect --format '{{.Size}} {{len .RootFS.Layers}}' $ids |
    awk -v vfs="$([[ "${CRIO_STORAGE:-}" == '[vfs@'* ]] && echo 1)" '{ s += vfs ? $1 * $2 : $1 } END { printf "%d", s }')
  # unpacked copy plus (containerd) its content store: twice the bytes, and a margin
  need=$((bytes * 2 + 256 * 1024 * 1024))
  dir=$(store_dir "$runtime")
  avail=$(df -PB1 "$dir" | awk 'NR == 2 { print $4 }')
  if [ "${avail:-0}" -lt "$need" ]; then
    die "not enough space for Docker's images in $dir: $count image(s), $((bytes / 1048576)) MiB to copy, $((need / 1048576)) MiB needed with margin, $((avail / 1048576)) MiB free (free space, or set target.images: none)"
  fi
  log "images: carrying $count image(s) ($((bytes / 1048576)) MiB) from Docker into $runtime: $(awk 'NF { printf "%s%s", sep, $2; sep = " " }' <<<"$todo")"
  case "$runtime" in
    containerd) import_into_containerd "$todo" "$list" ;;
    cri-o)
      while read -r id ref; do
        [ -n "$ref" ] || continue
        skopeo copy --quiet "docker-daemon:$ref" "containers-storage:$CRIO_STORAGE$(qualified "$ref")" >&2 ||
          die "copying $ref from Docker into CRI-O's storage failed"
      done <<<"$todo"
      ;;
  esac
  # every carried name must now be there under the same image ID
  while read -r id ref; do
    [ -n "$ref" ] || continue
    have=$(target_image_id "$runtime" "$ref")
    [ "$have" = "$id" ] || die "$ref is not in $runtime's store as $id after the copy (found: ${have:-nothing})"
  done <<<"$todo"
  CARRIED_IMAGES=$count CARRIED_BYTES=$bytes CARRIED_SECONDS=$((SECONDS - start))
  log "images: carried $count image(s) in $((SECONDS - start))s"
}

# import_into_containerd TODO LIST: TODO's "ID REF" lines into containerd's k8s.io
# namespace. The tags in one stream, no temporary file. Then each registry
# digest (repo@sha256:...) as a second name of its image: from a name the
# image already has there; an image Docker knows only by digest is saved by
# its ID and imported on its own, kept under that name.
import_into_containerd() {
  local todo=$1 list=$2 tags id ref name from
  tags=$(awk 'NF && $2 !~ /@/ { print $2 }' <<<"$todo")
  if [ -n "$tags" ]; then
    # shellcheck disable=SC2086  # one argument per tag
    docker save $tags | "$CTR" -n k8s.io images import - >&2 || die "importing Docker's images into containerd failed"
  fi
  while read -r id ref; do
    [[ "$ref" == *@* ]] || continue
    name=$(qualified "$ref")
    from=$(containerd_name_of "$id" "$list")
    if [ -n "$from" ]; then
      "$CTR" -n k8s.io images tag --force "$from" "$name" >/dev/null ||
        die "naming $from $name in containerd failed"
    else
      docker save "$id" | "$CTR" -n k8s.io images import --index-name "$name" - >&2 ||
        die "importing $ref ($id) from Docker into containerd failed"
    fi
  done <<<"$todo"
}

# containerd_name_of ID LIST: a name LIST gives image ID that containerd's
# k8s.io namespace already holds it under, or nothing.
containerd_name_of() {
  local id ref name
  while read -r id ref; do
    [ "$id" = "$1" ] || continue
    name=$(qualified "$ref")
    if [ "$(containerd_image_id "$name")" = "$1" ]; then
      echo "$name"
      return 0
    fi
  done <<<"$2"
}

main() {
  local runtime source version have containerd
  runtime=$(var runtime)
  source=$(var source)
  version=$(var version)
  have=$(installed_version "$runtime")
  log "pre-stage: $runtime (source $source, wanted ${version:-any}, installed ${have:-none})"

  if version_ok "$version" "$have"; then
    # Docker nodes already run containerd: never reinstall it under Docker's feet.
    log "$runtime $have is already installed; not reinstalling"
  else
    case "$source" in
      preinstalled) die "$runtime ${version:-} is not installed and target.source is 'preinstalled'" ;;
      distro) install_distro "$runtime" "$version" ;;
      package) install_package_repo "$runtime" "$version" ;;
      *) die "unknown install source '$source'" ;;
    esac
    have=$(installed_version "$runtime")
    version_ok "$version" "$have" || die "$runtime ${version} wanted, ${have:-nothing} installed after install"
  fi

  # Stage the rendered files beside the live system, where nothing reads them.
  local staged=$STAGED_DIR path
  rm -rf "$staged"
  mkdir -p "$staged"
  while IFS= read -r path; do
    install -D -m 0644 "$SHIMLESS_BUNDLE/root$path" "$staged$path"
  done < <(desired_paths)

  if [ "$runtime" = containerd ] && [ -f "$staged$CONTAINERD_CONFIG" ]; then
    # The containerd the service will run must accept the config before we cordon.
    containerd=$(systemd_which containerd)
    "$containerd" --config "$staged$CONTAINERD_CONFIG" config dump >/dev/null ||
      die "containerd $have ($containerd) rejects the rendered config.toml (staged at $staged$CONTAINERD_CONFIG)"
    check_containerd_service "$containerd" "$have"
  fi
  if ! command -v crictl >/dev/null 2>&1; then
    # The switch checks the new runtime through CRI: find out now, before the
    # node is cordoned, whether it can.
    if [ "$runtime" != containerd ] || ! command -v ctr >/dev/null 2>&1; then
      die "crictl (cri-tools) is not installed: the switch could not check $runtime's CRI endpoint; install cri-tools"
    fi
    log "warning: crictl (cri-tools) is missing; the CRI check will fall back to ctr"
  fi
  carry_images "$(var images)" "$runtime" "$(var pause_image)"
  # Boot units that finish or undo a switch a power cut interrupts.
  install_recovery_units || die "could not install the boot recovery units ($RECOVERY_UNIT, $RECOVERY_VERIFY_UNIT)"
  printf 'prestaged runtime=%s version=%s images=%s image_bytes=%s image_seconds=%s\n' \
    "$runtime" "$have" "$CARRIED_IMAGES" "$CARRIED_BYTES" "$CARRIED_SECONDS"
}

main "$@"
