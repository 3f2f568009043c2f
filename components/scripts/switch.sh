#!/usr/bin/env bash
# The switch: stop the kubelet and Docker, activate the runtime's config,
# start the runtime, rewrite the kubelet's flags, start the kubelet on the new
# runtime and check it stays up. Any failure restores the backups, re-enables
# Docker and restarts the kubelet on its old flags (see rollback()).
#
# Runs detached from the SSH session (setsid) under a lock, so a dropped
# connection never leaves the node half-switched: the switch finishes or rolls
# back on its own, and a re-run waits for it and then converges.
set -euo pipefail
SHIMLESS_BUNDLE=$1
# shellcheck source=components/scripts/node-lib.sh
. "$SHIMLESS_BUNDLE/node-lib.sh"
SHIMLESS_NODE=$(var node)

DOCKER_UNITS=(docker.socket docker.service)
STEP=start

runtime=$(var runtime)
endpoint=$(var cri_endpoint)
token=$(var token)
health_timeout=$(var health_timeout)
SETTLE_SECONDS=$(var settle_seconds)
service=$(runtime_service "$runtime")

record() {
  printf '%s\n' "$token" >"$SHIMLESS_STATE/token"
}

backup() {
  rm -rf "$BACKUP_PREVIOUS"
  mkdir -p "$BACKUP_PREVIOUS"
  : >"$BACKUP_PREVIOUS/.absent"
  local path
  for path in $(desired_paths) /etc/docker/daemon.json; do
    if [ -e "$path" ]; then
      install -D -m 0600 "$path" "$BACKUP_PREVIOUS$path"
    else
      printf '%s\n' "$path" >>"$BACKUP_PREVIOUS/.absent"
    fi
  done
  local unit
  for unit in "${DOCKER_UNITS[@]}" "$service"; do
    printf '%s %s %s\n' "$unit" \
      "$(systemctl is-enabled "$unit" 2>/dev/null || echo disabled)" \
      "$(systemctl is-active "$unit" 2>/dev/null || echo inactive)"
  done >"$BACKUP_PREVIOUS/.units"
  # The first migration's backup is kept for good: it is the way back to Docker.
  if [ ! -e "$BACKUP_ORIGINAL/.complete" ]; then
    rm -rf "$BACKUP_ORIGINAL"
    cp -a "$BACKUP_PREVIOUS" "$BACKUP_ORIGINAL"
    touch "$BACKUP_ORIGINAL/.complete"
  fi
  log "backed up $(find "$BACKUP_PREVIOUS" -type f ! -name '.*' | wc -l) files to $BACKUP_PREVIOUS"
}

rollback() {
  local failed_step=$STEP
  trap - ERR
  set +e
  log "step '$failed_step' failed: rolling back to the previous runtime"
  if restore_previous "$health_timeout"; then
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
  if unit_active docker.service && ids=$(docker ps -q 2>/dev/null) && [ -n "$ids" ]; then
    log "stopping $(wc -w <<<"$ids") Docker containers (what the drain left: DaemonSet and static pods)"
    # shellcheck disable=SC2086  # one argument per container id
    docker stop -t "$CONTAINER_STOP_SECONDS" $ids >/dev/null
  fi
}

kill_leftover_docker_tasks() {
  command -v ctr >/dev/null && [ -S /run/containerd/containerd.sock ] || return 0
  local task
  for task in $(ctr -n moby tasks ls 2>/dev/null | awk '$3 == "RUNNING" {print $1}'); do
    log "Docker container $task still running without dockerd: killing it"
    ctr -n moby tasks kill -s SIGKILL "$task" || true
  done
}

kubelet_on_runtime() {
  kubelet_settled && cri_answers "$endpoint"
}

switch() {
  STEP=backup
  backup
  trap rollback ERR

  STEP=stop-kubelet
  systemctl stop kubelet
  local docker_stopped; docker_stopped=$(now_ms)
  STEP=stop-containers
  stop_docker_containers
  STEP=stop-docker
  local unit
  for unit in "${DOCKER_UNITS[@]}"; do
    if unit_exists "$unit"; then systemctl disable --now "$unit"; fi
  done
  kill_leftover_docker_tasks
  log "kubelet, Docker and its containers stopped"

  STEP=write-config
  local path
  while IFS= read -r path; do
    install -D -m 0644 "$SHIMLESS_BUNDLE/root$path" "$path.shimless-tmp"
    mv -f "$path.shimless-tmp" "$path"
  done < <(desired_paths)
  systemctl daemon-reload

  STEP=start-runtime
  systemctl enable "$service"
  systemctl restart "$service"
  STEP=wait-cri
  wait_for 60 "the CRI endpoint $endpoint" cri_answers "$endpoint"
  log "$runtime answers CRI on $endpoint"

  STEP=start-kubelet
  systemctl reset-failed kubelet || true
  systemctl start kubelet
  STEP=verify-kubelet
  wait_for "$health_timeout" "the kubelet on $runtime" kubelet_on_runtime
  local kubelet_up; kubelet_up=$(now_ms)
  trap - ERR

  STEP=record
  record
  printf 'switched runtime=%s docker_stopped_ms=%s kubelet_up_ms=%s window_ms=%s\n' \
    "$runtime" "$docker_stopped" "$kubelet_up" "$((kubelet_up - docker_stopped))"
}

run() {
  exec 9>"$SHIMLESS_STATE/switch.lock"
  flock 9
  if in_target_state "$service"; then
    record
    log "already on $runtime with the desired config: nothing to switch"
    printf 'in-sync runtime=%s\n' "$runtime"
    return 0
  fi
  switch
}

main() {
  mkdir -p "$SHIMLESS_STATE"
  if [ "${2:-}" = --detached ]; then
    run
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
