#!/usr/bin/env bash
# Functions shared by the node-side steps. Sourced, never run directly.
# shellcheck disable=SC2034  # variables here are read by the sourcing step

SHIMLESS_BUNDLE=${SHIMLESS_BUNDLE:-}
# The manifest (components/manifest.py): shimless' state and backup paths, the
# node files it reads, the units it stops and starts, the CRI endpoint and
# sockets, the units' states on the target. A step's bundle carries it as
# manifest.sh; the probe (and a test) has it set in front of this file.
# Sourcing is a builtin: nothing can fail here before a step has named itself.
if [ -n "$SHIMLESS_BUNDLE" ] && [ -f "$SHIMLESS_BUNDLE/manifest.sh" ]; then
  # shellcheck source=/dev/null
  . "$SHIMLESS_BUNDLE/manifest.sh"
fi
: "${SHIMLESS_STATE:?no manifest: the bundle lacks manifest.sh (components/manifest.py)}"
# The switch journal ($JOURNAL): present only while a switch (or its undoing)
# is under way. It holds a copy of the switch's bundle and the phase reached, so
# that a node that loses power mid-switch finishes or undoes it at boot on its own.

log() { printf 'shimless[%s] %s\n' "${SHIMLESS_NODE:-node}" "$*" >&2; }

die() { log "ERROR: $*"; exit 1; }

# var NAME: a value shipped in the bundle (empty when absent). Read with
# bash's own `read`: no external command that could fail before a step has
# even named itself.
var() {
  local file="$SHIMLESS_BUNDLE/var/$1" value=""
  if [ -f "$file" ]; then IFS= read -r -d '' value <"$file" || true; fi
  printf '%s' "$value"
}

# Desired files live in the bundle under root/<absolute node path>.
desired_paths() {
  if [ -d "$SHIMLESS_BUNDLE/root" ]; then
    (cd "$SHIMLESS_BUNDLE/root" && find . -type f | sed 's|^\.||' | LC_ALL=C sort)
  fi
}

unit_exists() { systemctl cat "$1" >/dev/null 2>&1; }

unit_enabled() { [ "$(systemctl is-enabled "$1" 2>/dev/null || true)" = enabled ]; }

unit_active() { systemctl is-active --quiet "$1"; }

# --------------------------------------------------------------- Docker's images
# Which of Docker's images the target's store gets (target.images), decided
# here once: pre-stage copies them, the probe counts them for the preview.

# docker_serves_images: Docker is running and its client is here to ask it.
docker_serves_images() { unit_active "$DOCKER_SERVICE" && command -v docker >/dev/null 2>&1; }

# images_to_carry MODE PAUSE: the ID and the names of each image to carry, "ID
# REF" lines: its tags (repo:tag) and the registry digests Docker recorded when
# it pulled or pushed it (repo@sha256:..., what a pod pinned by digest asks
# for). Dangling images have neither.
images_to_carry() {
  local mode=$1 pause=$2 ids infra
  case "$mode" in
    all) ids=$(docker images -q --no-trunc | sort -u) ;;
    pods)
      # the node's pod containers and sandboxes (dockershim names them k8s_*),
      # the kubelet's pod-infra image (its kubeadm flags' --pod-infra-container-image)
      # and the target's sandbox image
      infra=$(sed -n 's/.*--pod-infra-container-image=\([^ "]*\).*/\1/p' "$KUBEADM_FLAGS_ENV" 2>/dev/null || true)
      ids=$({ docker ps -aq --no-trunc --filter name=k8s_ | xargs -r docker inspect --format '{{.Image}}'
              local ref
              for ref in $pause $infra; do docker image inspect --format '{{.Id}}' "$ref" 2>/dev/null || true; done
            } | sort -u)
      ;;
    *) return 0 ;;
  esac
  [ -n "$ids" ] || return 0
  # shellcheck disable=SC2086  # one argument per image ID
  docker image inspect --format \
    '{{range .RepoTags}}{{$.Id}} {{.}}{{println}}{{end}}{{range .RepoDigests}}{{$.Id}} {{.}}{{println}}{{end}}' \
    $ids | grep -v '^$' || true
}

# takes_name RUNTIME REF: the target's store can hold Docker's REF. CRI-O
# takes tags only: a registry digest names the manifest the registry served,
# which Docker did not keep, and a copy out of Docker has another digest.
takes_name() { [ "$1" != cri-o ] || [[ "$2" != *@* ]]; }

# names_not_taken RUNTIME: of images_to_carry's lines on stdin, those whose
# name the target cannot hold (takes_name).
names_not_taken() {
  local id ref
  while read -r id ref; do
    if [ -n "$ref" ] && ! takes_name "$1" "$ref"; then printf '%s %s\n' "$id" "$ref"; fi
  done
}

# images_wanted RUNTIME: of images_to_carry's lines on stdin, those the target
# can take and does not hold yet under that name with the same image ID.
# Needs CTR (containerd) or CRIO_STORAGE (CRI-O) set; unset: the store is empty.
images_wanted() {
  local runtime=$1 id ref
  while read -r id ref; do
    [ -n "$ref" ] || continue
    takes_name "$runtime" "$ref" || continue
    [ "$(target_image_id "$runtime" "$ref")" = "$id" ] && continue
    printf '%s %s\n' "$id" "$ref"
  done
}

# What the target's store calls REF (containerd and containers-storage both
# keep the fully qualified name: busybox:1 is docker.io/library/busybox:1,
# nginx@sha256:... is docker.io/library/nginx@sha256:...).
qualified() {
  local ref=$1 first=${1%%/*}
  if [ "$first" = "$ref" ]; then
    echo "docker.io/library/$ref"
  elif [[ "$first" != *.* && "$first" != *:* && "$first" != localhost ]]; then
    echo "docker.io/$ref"
  else
    echo "$ref"
  fi
}

# The image ID (config digest) containerd's k8s.io namespace holds under REF,
# or nothing. CTR_IMAGES, when set, is `ctr images ls` read once (the probe).
containerd_image_id() {
  local target content
  [ -n "${CTR:-}" ] || return 0
  target=$(printf '%s\n' "${CTR_IMAGES-$("$CTR" -n k8s.io images ls 2>/dev/null || true)}" |
    awk -v r="$1" '$1 == r { print $3 }')
  [ -n "$target" ] || return 0
  content=$("$CTR" -n k8s.io content get "$target" 2>/dev/null || true)
  if [[ "$content" == *'"manifests"'* ]]; then
    # an index (an image imported on its own keeps one): its first manifest's
    target=$(grep -o '"digest":"sha256:[0-9a-f]\{64\}"' <<<"$content" | head -1 | grep -o 'sha256:[0-9a-f]*' || true)
    content=$(if [ -n "$target" ]; then "$CTR" -n k8s.io content get "$target" 2>/dev/null || true; fi)
  fi
  grep -o '"config":{[^}]*}' <<<"$content" | grep -o 'sha256:[0-9a-f]\{64\}' | head -1 || true
}

crio_setting() { sed -n "s/^[[:space:]]*#\{0,1\}[[:space:]]*$1 = \"\(.*\)\"\$/\1/p" | head -1; }

# crio_storage: sets CRIO_STORAGE, containers-storage as CRI-O uses it
# ([driver@root+runroot]), and CRIO_ROOT; fails when `crio config` cannot say.
crio_storage() {
  local conf driver root runroot
  conf=$(crio config 2>/dev/null) || return 1
  # `crio config` prints the effective configuration; values equal to CRI-O's
  # defaults come commented out ("# root = ..."), and count all the same.
  driver=$(crio_setting storage_driver <<<"$conf")
  root=$(crio_setting root <<<"$conf")
  runroot=$(crio_setting runroot <<<"$conf")
  if [ -z "$root" ] || [ -z "$runroot" ]; then return 1; fi
  CRIO_STORAGE="[${driver:+$driver@}$root+$runroot]"
  CRIO_ROOT=$root
}

crio_image_id() {
  local config
  [ -n "${CRIO_STORAGE:-}" ] || return 0
  config=$(skopeo inspect --config --raw "containers-storage:$CRIO_STORAGE$1" 2>/dev/null) || return 0
  printf '%s' "$config" | sha256sum | awk '{ print "sha256:" $1 }'
}

# target_image_id RUNTIME REF: the image ID the target's store holds as Docker's REF.
target_image_id() {
  case "$1" in
    containerd) containerd_image_id "$(qualified "$2")" ;;
    cri-o) crio_image_id "$(qualified "$2")" ;;
  esac
}

# cri_answers ENDPOINT: the runtime answers CRI Version and Status.
cri_answers() {
  local endpoint=$1
  if command -v crictl >/dev/null 2>&1; then
    crictl --runtime-endpoint "$endpoint" --timeout 5s version >/dev/null 2>&1 &&
      crictl --runtime-endpoint "$endpoint" --timeout 5s info >/dev/null 2>&1
  elif [ "$endpoint" = "unix://$CONTAINERD_SOCKET" ] && command -v ctr >/dev/null 2>&1; then
    ctr plugins ls 2>/dev/null | grep -Eq 'io\.containerd\.grpc\.v1[[:space:]]+cri[[:space:]].*ok'
  else
    die "cannot check the CRI endpoint: install cri-tools (crictl)"
  fi
}

# wait_for TIMEOUT DESCRIPTION COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local timeout=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "gave up after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 1
  done
}

now_ms() { date +%s%3N; }

# files_match: every desired file equals the live one.
files_match() {
  local path
  while IFS= read -r path; do
    cmp -s "$SHIMLESS_BUNDLE/root$path" "$path" || return 1
  done < <(desired_paths)
}

# unit_as_expected UNIT ENABLED ACTIVE: the unit's state matches one line of
# the manifest's TARGET_UNITS (ENABLED: enabled, disabled or any; ACTIVE:
# active or inactive), as components/manifest.py UnitExpectation reads it.
unit_as_expected() {
  local unit=$1 enabled=$2 active=$3
  case "$enabled" in
    enabled) unit_enabled "$unit" || return 1 ;;
    disabled) ! unit_enabled "$unit" || return 1 ;;
  esac
  if [ "$active" = active ]; then unit_active "$unit"; else ! unit_active "$unit"; fi
}

# in_target_state: desired files live and every unit as the manifest's
# TARGET_UNITS has it on the target (the runtime enabled and active, the
# kubelet active, the source units: Docker, cri-dockerd, ... disabled and
# stopped). The plan's drift (components/plan.py) applies the same table.
in_target_state() {
  local unit enabled active
  files_match || return 1
  while read -r unit enabled active; do
    [ -n "$unit" ] || continue
    unit_as_expected "$unit" "$enabled" "$active" || return 1
  done <<<"$TARGET_UNITS"
}

# kubelet_settled: active now and not restarted during the settle period.
kubelet_settled() {
  unit_active "$KUBELET" || return 1
  local before after
  before=$(systemctl show -p NRestarts --value "$KUBELET")
  sleep "${SETTLE_SECONDS:-5}"
  after=$(systemctl show -p NRestarts --value "$KUBELET")
  unit_active "$KUBELET" && [ "$before" = "$after" ]
}

# stop_cri_pods ENDPOINT: stop every pod sandbox (and so its containers) the
# runtime behind ENDPOINT runs. Before a rollback: what the kubelet started
# there would otherwise run on beside the copies it starts again on Docker.
stop_cri_pods() {
  local endpoint=$1 pods
  [ -n "$endpoint" ] || return 0
  command -v crictl >/dev/null 2>&1 || { log "crictl not found: pods on $endpoint left as they are"; return 0; }
  cri_answers "$endpoint" || return 0
  pods=$(crictl --runtime-endpoint "$endpoint" --timeout 10s pods -q 2>/dev/null) || return 0
  [ -n "$pods" ] || return 0
  log "stopping $(wc -w <<<"$pods") pod sandboxes on $endpoint"
  # shellcheck disable=SC2086  # one argument per sandbox id
  crictl --runtime-endpoint "$endpoint" --timeout 60s stopp $pods >/dev/null ||
    log "could not stop every pod sandbox on $endpoint; see 'crictl pods'"
}

# The backup (layout in components/manifest.py): $BACKUP_PREVIOUS holds each
# file the last switch replaced at its node path (cp -a: mode and owner), and
#   .absent  the node paths it created, one a line: a restore removes them;
#   .units   "UNIT ENABLED ACTIVE" a line: each unit it stopped or started, as
#            it was (systemctl is-enabled / is-active).
# switch.sh `backup` writes it; restore_files and restore_units read it.
# $BACKUP_ORIGINAL is the first migration's copy of it, kept for good.

# backup_file PATH: copy PATH into the backup with its mode and owner.
backup_file() {
  mkdir -p "$(dirname "$BACKUP_PREVIOUS$1")"
  cp -a "$1" "$BACKUP_PREVIOUS$1"
}

# restore_files: put back every backed-up file (mode and owner as they were)
# and remove the files the switch created. Atomic per file. Reads
# $BACKUP_PREVIOUS/.absent (created files) and the files at their node paths
# under $BACKUP_PREVIOUS (the dot files at its top are the layout's own).
restore_files() {
  local path
  while IFS= read -r path; do
    [ -n "$path" ] || continue
    rm -f "$path"
    # Directories the switch created for it (e.g. certs.d/<registry>/) go too.
    rmdir -p --ignore-fail-on-non-empty "$(dirname "$path")" 2>/dev/null || true
  done <"$BACKUP_PREVIOUS/.absent"
  while IFS= read -r path; do
    mkdir -p "$(dirname "$path")"
    cp -a "$BACKUP_PREVIOUS$path" "$path.shimless-tmp"
    mv -f "$path.shimless-tmp" "$path"
  done < <(cd "$BACKUP_PREVIOUS" && find . -type f ! -path './.*' | sed 's|^\.||')
}

# restore_units --wait|--no-block: Docker's and the runtime's units enabled
# and running as the backup recorded in $BACKUP_PREVIOUS/.units ("UNIT ENABLED
# ACTIVE" lines). At boot (--no-block) the starts are queued behind the
# recovery unit instead of waited for.
restore_units() {
  local block=$1 unit enabled active
  [ "$block" = --no-block ] || block=
  while read -r unit enabled active; do
    if [ "$enabled" = enabled ]; then systemctl enable "$unit"; else systemctl disable "$unit"; fi
    if [ "$active" = active ]; then
      # shellcheck disable=SC2086  # $block is empty or one flag
      systemctl $block restart "$unit"
    else
      # shellcheck disable=SC2086
      systemctl $block stop "$unit"
    fi
  done <"$BACKUP_PREVIOUS/.units"
}

# restore_previous TIMEOUT: put back what the last switch backed up (files,
# Docker's and the runtime's unit states), restart the kubelet on its old
# flags and wait until it stays up. Forgets the recorded token, so the next
# plan sees the node as needing work.
restore_previous() {
  local timeout=$1
  [ -f "$BACKUP_PREVIOUS/.units" ] || { log "no backup at $BACKUP_PREVIOUS: nothing to restore"; return 1; }
  systemctl stop "$KUBELET"
  stop_cri_pods "$CRI_ENDPOINT"
  restore_files
  systemctl daemon-reload
  restore_units --wait
  rm -f "$TOKEN_FILE"
  sync
  systemctl reset-failed "$KUBELET"
  systemctl start "$KUBELET"
  if wait_for "$timeout" "the kubelet on its old flags" kubelet_settled; then
    log "ROLLED BACK: node is on its previous runtime again (kubelet active on its old flags)"
  else
    log "ROLLBACK INCOMPLETE: the kubelet is not staying up on its old flags; see 'journalctl -u kubelet'"
    return 1
  fi
}

# --------------------------------------------------------------- the journal

journal_phase() { cat "$JOURNAL/phase" 2>/dev/null || true; }

# journal_set PHASE: record the phase reached, durably.
journal_set() {
  printf '%s\n' "$1" >"$JOURNAL/phase.tmp"
  mv -f "$JOURNAL/phase.tmp" "$JOURNAL/phase"
  sync
}

# journal_begin: a switch starts; keep its bundle where the boot units find it.
journal_begin() {
  rm -rf "$JOURNAL" "$JOURNAL.new"
  mkdir -p "$JOURNAL.new"
  cp -a "$SHIMLESS_BUNDLE" "$JOURNAL.new/bundle"
  printf 'begun\n' >"$JOURNAL.new/phase"
  sync
  mv -T "$JOURNAL.new" "$JOURNAL"
  sync
}

journal_end() {
  rm -rf "$JOURNAL"
  sync
}

# install_recovery_units: the two boot units that finish or undo a switch a
# power cut interrupted. Both do nothing unless a journal is present:
#   shimless-recover         before the kubelet and the runtimes: puts the
#                            files and unit states of one side in place;
#   shimless-recover-verify  after the kubelet: waits until it stays up on
#                            that side; if the new side fails, restores the old.
install_recovery_units() {
  local dir=$RECOVERY_UNIT_DIR script="$JOURNAL/bundle/switch.sh" changed=0 unit text
  for unit in "$RECOVERY_UNIT" "$RECOVERY_VERIFY_UNIT"; do
    if [ "$unit" = "$RECOVERY_UNIT" ]; then
      text="[Unit]
Description=shimless: finish or undo a container runtime switch interrupted by a power cut
ConditionPathExists=$JOURNAL/phase
DefaultDependencies=no
After=local-fs.target
Before=$KUBELET_UNIT $RUNTIME_UNITS $SOURCE_UNITS

[Service]
Type=oneshot
ExecStart=/bin/bash $script $JOURNAL/bundle --recover boot

[Install]
WantedBy=multi-user.target"
    else
      text="[Unit]
Description=shimless: check the kubelet after a recovered runtime switch, restore the old runtime if it fails
ConditionPathExists=$JOURNAL/phase
After=$KUBELET_UNIT $RECOVERY_UNIT network-online.target

[Service]
Type=oneshot
TimeoutStartSec=30min
ExecStart=/bin/bash $script $JOURNAL/bundle --recover verify

[Install]
WantedBy=multi-user.target"
    fi
    if [ "$(cat "$dir/$unit" 2>/dev/null)" != "$text" ]; then
      printf '%s\n' "$text" >"$dir/$unit.shimless-tmp"
      mv -f "$dir/$unit.shimless-tmp" "$dir/$unit"
      changed=1
    fi
  done
  if [ "$changed" = 1 ]; then systemctl daemon-reload; fi
  unit_enabled "$RECOVERY_UNIT" || systemctl enable "$RECOVERY_UNIT" 2>/dev/null
  unit_enabled "$RECOVERY_VERIFY_UNIT" || systemctl enable "$RECOVERY_VERIFY_UNIT" 2>/dev/null
  unit_enabled "$RECOVERY_UNIT" && unit_enabled "$RECOVERY_VERIFY_UNIT"
}

# --------------------------------------------------------------- which binaries run
# A service runs a bare command from the PATH systemd gives it, not from this
# shell's (sshd's or sudo's): pre-stage validates, the probe reports and the
# switch checks the containerd systemd finds (components/runtime_unit.py).
SYSTEMD_DEFAULT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# systemd_path: the PATH systemd gives services (its manager's environment).
systemd_path() {
  local path
  path=$(systemctl show-environment 2>/dev/null | sed -n 's/^PATH=//p' | head -n 1 || true)
  printf '%s' "${path:-$SYSTEMD_DEFAULT_PATH}"
}

# systemd_which COMMAND: the executable a service runs for COMMAND ("" = none).
systemd_which() { PATH=$(systemd_path) type -P -- "$1" || true; }

# running_containerd: the executable containerd.service runs now ("" = not running).
running_containerd() {
  local pid
  pid=$(systemctl show -p MainPID --value "$CONTAINERD_UNIT" 2>/dev/null || true)
  if [ -n "$pid" ] && [ "$pid" != 0 ]; then readlink -f "/proc/$pid/exe" 2>/dev/null || true; fi
}

# running_ctr: the ctr of the running containerd's own release, beside it (a
# ctr 2.x imports through the transfer service, which containerd 1.6 lacks);
# else ctr on PATH; "" when there is none.
running_ctr() {
  local running
  running=$(running_containerd)
  if [ -n "$running" ] && [ -x "${running%/*}/ctr" ]; then
    printf '%s' "${running%/*}/ctr"
  else
    command -v ctr || true
  fi
}
