#!/usr/bin/env bash
# Functions shared by the node-side steps. Sourced, never run directly.
# shellcheck disable=SC2034  # variables here are read by the sourcing step

SHIMLESS_STATE=/var/lib/shimless
BACKUP_ORIGINAL=$SHIMLESS_STATE/backup/original
BACKUP_PREVIOUS=$SHIMLESS_STATE/backup/previous
# The switch journal: present only while a switch (or its undoing) is under
# way. It holds a copy of the switch's bundle and the phase reached, so that a
# node that loses power mid-switch finishes or undoes it at boot on its own.
JOURNAL=$SHIMLESS_STATE/journal
RECOVERY_UNIT=shimless-recover.service
RECOVERY_VERIFY_UNIT=shimless-recover-verify.service
SHIMLESS_BUNDLE=${SHIMLESS_BUNDLE:-}

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

runtime_service() {
  case "$1" in
    containerd) echo containerd ;;
    cri-o) echo crio ;;
    *) die "unknown runtime '$1'" ;;
  esac
}

# --------------------------------------------------------------- Docker's images
# Which of Docker's images the target's store gets (target.images), decided
# here once: pre-stage copies them, the probe counts them for the preview.

# The kubelet's kubeadm flags, where its --pod-infra-container-image is.
KUBEADM_FLAGS_ENV=/var/lib/kubelet/kubeadm-flags.env

# docker_serves_images: Docker is running and its client is here to ask it.
docker_serves_images() { unit_active docker.service && command -v docker >/dev/null 2>&1; }

# images_to_carry MODE PAUSE: the ID and the tags of each image to carry, "ID
# REF" lines. Untagged images (dangling, or pulled by digest only) have none.
images_to_carry() {
  local mode=$1 pause=$2 ids infra
  case "$mode" in
    all) ids=$(docker images -q --no-trunc | sort -u) ;;
    pods)
      # the node's pod containers and sandboxes (dockershim names them k8s_*),
      # the kubelet's pod-infra image and the target's sandbox image
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
  docker image inspect --format '{{range .RepoTags}}{{$.Id}} {{.}}{{println}}{{end}}' $ids | grep -v '^$' || true
}

# cri_answers ENDPOINT: the runtime answers CRI Version and Status.
cri_answers() {
  local endpoint=$1
  if command -v crictl >/dev/null 2>&1; then
    crictl --runtime-endpoint "$endpoint" --timeout 5s version >/dev/null 2>&1 &&
      crictl --runtime-endpoint "$endpoint" --timeout 5s info >/dev/null 2>&1
  elif [ "$endpoint" = unix:///run/containerd/containerd.sock ] && command -v ctr >/dev/null 2>&1; then
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

# in_target_state SERVICE: desired files live, the runtime enabled and active,
# the source units (Docker, cri-dockerd, ...) disabled and stopped, the kubelet active.
in_target_state() {
  local service=$1 unit
  files_match && unit_enabled "$service" && unit_active "$service" && unit_active kubelet || return 1
  for unit in $(var source_units); do
    if unit_enabled "$unit" || unit_active "$unit"; then return 1; fi
  done
}

# kubelet_settled: active now and not restarted during the settle period.
kubelet_settled() {
  unit_active kubelet || return 1
  local before after
  before=$(systemctl show -p NRestarts --value kubelet)
  sleep "${SETTLE_SECONDS:-5}"
  after=$(systemctl show -p NRestarts --value kubelet)
  unit_active kubelet && [ "$before" = "$after" ]
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

# backup_file PATH: copy PATH into the backup with its mode and owner.
backup_file() {
  mkdir -p "$(dirname "$BACKUP_PREVIOUS$1")"
  cp -a "$1" "$BACKUP_PREVIOUS$1"
}

# restore_files: put back every backed-up file (mode and owner as they were)
# and remove the files the switch created. Atomic per file.
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
# and running as the backup recorded. At boot (--no-block) the starts are
# queued behind the recovery unit instead of waited for.
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
  systemctl stop kubelet
  stop_cri_pods "$(var cri_endpoint)"
  restore_files
  systemctl daemon-reload
  restore_units --wait
  rm -f "$SHIMLESS_STATE/token"
  sync
  systemctl reset-failed kubelet
  systemctl start kubelet
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
  local dir=/etc/systemd/system script="$JOURNAL/bundle/switch.sh" changed=0 unit text
  for unit in "$RECOVERY_UNIT" "$RECOVERY_VERIFY_UNIT"; do
    if [ "$unit" = "$RECOVERY_UNIT" ]; then
      text="[Unit]
Description=shimless: finish or undo a container runtime switch interrupted by a power cut
ConditionPathExists=$JOURNAL/phase
DefaultDependencies=no
After=local-fs.target
Before=kubelet.service containerd.service crio.service $(var source_units)

[Service]
Type=oneshot
ExecStart=/bin/bash $script $JOURNAL/bundle --recover boot

[Install]
WantedBy=multi-user.target"
    else
      text="[Unit]
Description=shimless: check the kubelet after a recovered runtime switch, restore the old runtime if it fails
ConditionPathExists=$JOURNAL/phase
After=kubelet.service $RECOVERY_UNIT network-online.target

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
