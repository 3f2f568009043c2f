#!/usr/bin/env bash
# The switch: stop the kubelet and Docker (with cri-dockerd, where the kubelet
# used it, and any other CRI runtime), activate the runtime's config,
# start the runtime, rewrite the kubelet's flags, start the kubelet on the new
# runtime and check it stays up. Any failure, wherever it happens (a failed
# command in any function, a `die`), restores the backups, re-enables Docker
# and restarts the kubelet on its old flags (see on_exit()).
#
# Runs detached from the SSH session (setsid) under a lock, so a dropped
# connection never leaves the node half-switched: the switch finishes or rolls
# back on its own, and a re-run waits for it and then converges. A journal
# (node-lib.sh) covers a power cut: at boot, `switch.sh BUNDLE --recover boot`
# and `--recover verify` finish the switch if every new file is in place, and
# otherwise restore the backup.
set -euo pipefail
SHIMLESS_BUNDLE=$1
# shellcheck source=components/scripts/node-lib.sh
. "$SHIMLESS_BUNDLE/node-lib.sh"
SHIMLESS_NODE=$(var node)

# The units of what the node leaves (Docker, cri-dockerd, another CRI runtime),
# in the order they stop and are restored: the manifest's SOURCE_UNITS.
read -ra LEFT_UNITS <<<"${SOURCE_UNITS:-}"
[ "${#LEFT_UNITS[@]}" -gt 0 ] || die "the bundle names no source units"
STEP=start

runtime=$(var runtime)
endpoint=$CRI_ENDPOINT
token=$(var token)
health_timeout=$(var health_timeout)
SETTLE_SECONDS=$(var settle_seconds)
service=$RUNTIME_SERVICE

record() {
  printf '%s\n' "$token" >"$TOKEN_FILE"
}

# backup: $BACKUP_PREVIOUS as the layout in node-lib.sh (and
# components/manifest.py) describes it: the files the switch writes (and the
# manifest's KEPT_PATHS, Docker's daemon.json) at their node paths, .absent
# for those not there yet, .units for the units the switch stops and starts.
# The first one is copied to $BACKUP_ORIGINAL for good.
backup() {
  rm -rf "$BACKUP_PREVIOUS"
  mkdir -p "$BACKUP_PREVIOUS"
  : >"$BACKUP_PREVIOUS/.absent"
  local path
  # shellcheck disable=SC2086  # KEPT_PATHS: one word a path
  for path in $(desired_paths) $KEPT_PATHS; do
    if [ -e "$path" ]; then
      backup_file "$path"
    else
      printf '%s\n' "$path" >>"$BACKUP_PREVIOUS/.absent"
    fi
  done
  local unit enabled active
  # The runtime's service first: a rollback restores it (Docker's own containerd
  # on its own binary and config, when it is containerd) before Docker starts on it.
  for unit in "$service" "${LEFT_UNITS[@]}"; do
    # A source unit the node does not have has nothing to restore.
    [ "$unit" = "$service" ] || unit_exists "$unit" || continue
    # is-enabled/is-active print the state and fail for disabled/inactive.
    enabled=$(systemctl is-enabled "$unit" 2>/dev/null) || true
    active=$(systemctl is-active "$unit" 2>/dev/null) || true
    printf '%s %s %s\n' "$unit" "${enabled:-disabled}" "${active:-inactive}"
  done >"$BACKUP_PREVIOUS/.units"
  # The first migration's backup is kept for good: it is the way back to Docker.
  if [ ! -e "$BACKUP_ORIGINAL/.complete" ]; then
    rm -rf "$BACKUP_ORIGINAL"
    cp -a "$BACKUP_PREVIOUS" "$BACKUP_ORIGINAL"
    touch "$BACKUP_ORIGINAL/.complete"
  fi
  sync
  log "backed up $(find "$BACKUP_PREVIOUS" -type f ! -name '.*' | wc -l) files to $BACKUP_PREVIOUS"
}

# Set while the node is between runtimes: any exit then rolls back.
ARMED=0
# Set once this run starts its own journal (not one an earlier run left).
JOURNAL_OURS=0

# on_exit: the EXIT trap. Unlike an ERR trap it also fires for a failure inside
# a function, a `die` or a failed command substitution.
on_exit() {
  local rc=$?
  if [ "$ARMED" != 1 ]; then
    if [ "$rc" != 0 ]; then
      # A journal this run began but never armed describes nothing: drop it.
      if [ "$JOURNAL_OURS" = 1 ]; then rm -rf "$JOURNAL" "$JOURNAL.new" || true; fi
      log "step '$STEP' failed (exit $rc) before the node was touched: it still runs on its previous runtime"
      printf 'failed step=%s rolled_back=not-needed\n' "$STEP"
    fi
    return 0
  fi
  ARMED=0
  set +e
  local failed_step=$STEP
  log "step '$failed_step' failed (exit $rc): rolling back to the previous runtime"
  journal_set rolling-back
  if restore_previous "$health_timeout"; then
    journal_end
    printf 'failed step=%s rolled_back=yes\n' "$failed_step"
  else
    printf 'failed step=%s rolled_back=incomplete\n' "$failed_step"
  fi
  exit 1
}

# Seconds a pod container gets to stop on SIGTERM, as the kubelet's default grace.
CONTAINER_STOP_SECONDS=30

# What is left on Docker after the drain (DaemonSet pods, static pods such as
# the control plane's) must stop with it. Without live-restore stopping dockerd
# stops them; with it they would run on, unmanaged, beside the copies the
# kubelet starts on the new runtime (two apiservers on one port). So stop them
# first, and kill any that are still running in containerd's `moby` namespace.
stop_docker_containers() {
  local ids
  if unit_active "$DOCKER_SERVICE" && ids=$(docker ps -q 2>/dev/null) && [ -n "$ids" ]; then
    log "stopping $(wc -w <<<"$ids") Docker containers (what the drain left: DaemonSet and static pods)"
    # shellcheck disable=SC2086  # one argument per container id
    docker stop -t "$CONTAINER_STOP_SECONDS" $ids >/dev/null
  fi
}

kill_leftover_docker_tasks() {
  local ctr task
  # asked with the client of the running containerd's own release (Docker's)
  ctr=$(running_ctr)
  [ -n "$ctr" ] && [ -S "$CONTAINERD_SOCKET" ] && unit_active "$CONTAINERD_UNIT" || return 0
  for task in $("$ctr" -n moby tasks ls 2>/dev/null | awk '$3 == "RUNNING" {print $1}'); do
    log "Docker container $task still running without dockerd: killing it"
    "$ctr" -n moby tasks kill -s SIGKILL "$task" || true
  done
}

# runs_validated_containerd: containerd.service runs the containerd pre-stage
# validated, the first on systemd's PATH (components/runtime_unit.py).
runs_validated_containerd() {
  local want running
  want=$(systemd_which containerd)
  running=$(running_containerd)
  if [ -n "$want" ] && [ "$running" = "$(readlink -f "$want")" ]; then return 0; fi
  log "$CONTAINERD_UNIT runs ${running:-nothing}, not $want (the first containerd on systemd's PATH, which pre-stage validated)"
  return 1
}

kubelet_on_runtime() {
  kubelet_settled && cri_answers "$endpoint"
}

# target_socket: the path of the runtime's CRI socket (/var/run is /run).
target_socket() {
  local path=${endpoint#unix://}
  case "$path" in /var/run/*) path=/run/${path#/var/run/} ;; esac
  printf '%s' "$path"
}

# remove_stale_cri_sockets: a CRI socket whose units are all stopped is left
# behind (systemd keeps a socket unit's file; a stopped kubelet its
# dockershim.sock), and kubeadm would count it. Units re-create their own on a
# rollback.
remove_stale_cri_sockets() {
  local path units unit target live
  target=$(target_socket)
  while read -r path units; do
    if [ -z "$path" ] || [ "$path" = "$target" ] || [ ! -S "$path" ]; then continue; fi
    live=0
    for unit in $units; do
      if unit_active "$unit"; then live=1; fi
    done
    if [ "$live" = 0 ]; then
      log "removing the stale CRI socket $path ($units stopped)"
      rm -f "$path"
    fi
  done <<<"$CRI_SOCKETS"
}

# one_cri_socket: of the CRI sockets kubeadm looks for, the target's alone is
# there (kubeadm refuses a host with several: "found multiple CRI endpoints").
one_cri_socket() {
  local path units found=()
  while read -r path units; do
    if [ -n "$path" ] && [ -S "$path" ]; then found+=("$path"); fi
  done <<<"$CRI_SOCKETS"
  [ "${found[*]:-}" = "$(target_socket)" ] && return 0
  log "CRI sockets on the node: ${found[*]:-none}; expected $(target_socket) alone"
  return 1
}

switch() {
  STEP=backup
  install_recovery_units || die "could not install the boot recovery units"
  backup
  JOURNAL_OURS=1
  journal_begin
  ARMED=1

  STEP=stop-kubelet
  systemctl stop "$KUBELET"
  local docker_stopped; docker_stopped=$(now_ms)
  STEP=stop-containers
  stop_docker_containers
  STEP=stop-docker
  local unit
  for unit in "${LEFT_UNITS[@]}"; do
    # Docker's containers left running in containerd go before containerd does.
    if [ "$unit" = "$CONTAINERD_UNIT" ]; then kill_leftover_docker_tasks; fi
    if unit_exists "$unit"; then systemctl disable --now "$unit"; fi
  done
  kill_leftover_docker_tasks
  remove_stale_cri_sockets
  log "kubelet, ${LEFT_UNITS[*]} and Docker's containers stopped"

  STEP=write-config
  local path
  while IFS= read -r path; do
    install -D -m 0644 "$SHIMLESS_BUNDLE/root$path" "$path.shimless-tmp"
    mv -f "$path.shimless-tmp" "$path"
  done < <(desired_paths)
  files_match || die "the new files did not land as rendered"
  journal_set config-written
  systemctl daemon-reload

  STEP=start-runtime
  systemctl enable "$service"
  systemctl restart "$service"
  if [ "$runtime" = containerd ]; then
    runs_validated_containerd || die "$CONTAINERD_UNIT does not run the containerd pre-stage validated"
  fi
  STEP=wait-cri
  wait_for 60 "the CRI endpoint $endpoint" cri_answers "$endpoint"
  log "$runtime answers CRI on $endpoint"

  STEP=start-kubelet
  systemctl reset-failed "$KUBELET" || true
  systemctl start "$KUBELET"
  STEP=verify-kubelet
  wait_for "$health_timeout" "the kubelet on $runtime" kubelet_on_runtime
  local kubelet_up; kubelet_up=$(now_ms)
  STEP=one-cri-socket
  one_cri_socket || die "more than one CRI endpoint is left on the node"

  STEP=record
  record
  journal_end
  ARMED=0
  printf 'switched runtime=%s docker_stopped_ms=%s kubelet_up_ms=%s window_ms=%s\n' \
    "$runtime" "$docker_stopped" "$kubelet_up" "$((kubelet_up - docker_stopped))"
}

# complete_at_boot: every new file is in place; make the units match the new
# side (Docker off, the runtime on). Starts are queued behind this unit.
complete_at_boot() {
  local unit
  for unit in "${LEFT_UNITS[@]}"; do
    if unit_exists "$unit"; then systemctl disable "$unit"; systemctl --no-block stop "$unit"; fi
  done
  systemctl enable "$service"
  systemctl --no-block start "$service"
}

# recover MODE: finish or undo a switch the journal says was interrupted.
#   boot    before the kubelet starts: put one side's files and units in place
#   verify  after the kubelet started: check it; undo a failed completion
#   inline  a later run found the journal without a reboot: restore
recover() {
  local mode=$1 phase
  phase=$(journal_phase)
  [ -n "$phase" ] || return 0
  case "$mode" in
    boot)
      if { [ "$phase" = config-written ] || [ "$phase" = completing ]; } && files_match; then
        log "boot: a switch to $runtime was interrupted after every new file was in place: completing it"
        complete_at_boot
        journal_set completing
      else
        log "boot: a switch to $runtime was interrupted at phase '$phase': restoring the previous runtime"
        restore_files
        systemctl daemon-reload
        restore_units --no-block
        rm -f "$TOKEN_FILE"
        journal_set restoring
      fi
      ;;
    verify)
      case "$phase" in
        completing)
          if wait_for "$health_timeout" "the kubelet on $runtime" kubelet_on_runtime; then
            record
            journal_end
            log "RECOVERED: the interrupted switch to $runtime is complete"
          else
            log "the kubelet does not stay up on $runtime: restoring the previous runtime"
            journal_set rolling-back
            restore_previous "$health_timeout" && journal_end
          fi
          ;;
        restoring)
          if wait_for "$health_timeout" "the kubelet on its old flags" kubelet_settled; then
            journal_end
            log "RECOVERED: the node is on its previous runtime again"
          else
            log "RECOVERY INCOMPLETE: the kubelet does not stay up on its old flags; see 'journalctl -u kubelet'"
            return 1
          fi
          ;;
        *) recover inline ;;
      esac
      ;;
    inline)
      log "a switch interrupted at phase '$phase' is still recorded: restoring the previous runtime first"
      journal_set rolling-back
      restore_previous "$health_timeout" || die "could not restore the previous runtime"
      journal_end
      ;;
  esac
}

run() {
  exec 9>"$SWITCH_LOCK"
  flock 9
  recover inline
  if in_target_state; then
    record
    log "already on $runtime with the desired config: nothing to switch"
    printf 'in-sync runtime=%s\n' "$runtime"
    return 0
  fi
  switch
}

main() {
  if [ "${2:-}" = --detached ]; then
    # The trap first: a failure of the very first command names its step too.
    trap on_exit EXIT
    mkdir -p "$SHIMLESS_STATE"
    run
    return
  fi
  mkdir -p "$SHIMLESS_STATE"
  if [ "${2:-}" = --recover ]; then
    exec 9>"$SWITCH_LOCK"
    flock 9
    recover "$3"
    return
  fi
  # Detach from the SSH session; stream the log and pass on the exit code.
  local log_file=$SHIMLESS_BUNDLE/switch.log rc_file=$SHIMLESS_BUNDLE/switch.rc
  : >"$log_file"
  # shellcheck disable=SC2016  # expanded by the inner bash, from its arguments
  setsid bash -c 'bash "$0" "$1" --detached >>"$2" 2>&1; echo $? >"$3"' \
    "${BASH_SOURCE[0]}" "$SHIMLESS_BUNDLE" "$log_file" "$rc_file" </dev/null &
  local pid=$!
  tail -n +1 -f --pid="$pid" "$log_file"
  wait "$pid" || true
  [ -s "$rc_file" ] || die "the detached switch ended without an exit code"
  return "$(cat "$rc_file")"
}

main "$@"
