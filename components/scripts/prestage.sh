#!/usr/bin/env bash
# Pre-stage while the node still serves: install the target runtime from the
# chosen source and check the rendered config with the real binary. Nothing
# is activated: Docker, the kubelet and the live config files are untouched.
set -euo pipefail
SHIMLESS_BUNDLE=$1
# shellcheck source=components/scripts/node-lib.sh
. "$SHIMLESS_BUNDLE/node-lib.sh"
SHIMLESS_NODE=$(var node)

installed_version() {
  case "$1" in
    containerd) containerd --version 2>/dev/null | awk '{print $3}' | sed 's/^v//' ;;
    cri-o) crio --version 2>/dev/null | awk '/^Version:/ {print $2; exit}' ;;
  esac
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

main() {
  local runtime source version have
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
  local staged=$SHIMLESS_STATE/staged path
  rm -rf "$staged"
  mkdir -p "$staged"
  while IFS= read -r path; do
    install -D -m 0644 "$SHIMLESS_BUNDLE/root$path" "$staged$path"
  done < <(desired_paths)

  if [ "$runtime" = containerd ] && [ -f "$staged/etc/containerd/config.toml" ]; then
    # The node's own containerd must accept the config before we cordon.
    containerd --config "$staged/etc/containerd/config.toml" config dump >/dev/null ||
      die "containerd $have rejects the rendered config.toml (staged at $staged/etc/containerd/config.toml)"
  fi
  if ! command -v crictl >/dev/null 2>&1; then
    # The switch checks the new runtime through CRI: find out now, before the
    # node is cordoned, whether it can.
    if [ "$runtime" != containerd ] || ! command -v ctr >/dev/null 2>&1; then
      die "crictl (cri-tools) is not installed: the switch could not check $runtime's CRI endpoint; install cri-tools"
    fi
    log "warning: crictl (cri-tools) is missing; the CRI check will fall back to ctr"
  fi
  # Boot units that finish or undo a switch a power cut interrupts.
  install_recovery_units || die "could not install the boot recovery units ($RECOVERY_UNIT, $RECOVERY_VERIFY_UNIT)"
  printf 'prestaged runtime=%s version=%s\n' "$runtime" "$have"
}

main "$@"
