#!/usr/bin/env bash
# Runs where Pulumi runs: wait until the Node is Ready with a heartbeat newer
# than the switch and reports the target runtime. Kubeconfig on stdin.
set -euo pipefail

main() {
  local kubeconfig
  kubeconfig=$(mktemp)
  trap 'rm -f "$kubeconfig"' EXIT
  cat >"$kubeconfig"
  export KUBECONFIG=$kubeconfig
  local since_ms=0
  if [[ "$SWITCH_OUTPUT" =~ docker_stopped_ms=([0-9]+) ]]; then since_ms=${BASH_REMATCH[1]}; fi
  local since
  since=$(date -u -d "@$((since_ms / 1000))" +%Y-%m-%dT%H:%M:%SZ)
  local deadline=$((SECONDS + HEALTH_TIMEOUT)) ready="" beat="" runtime=""
  while [ "$SECONDS" -lt "$deadline" ]; do
    ready=$(kubectl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' || true)
    beat=$(kubectl get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].lastHeartbeatTime}' || true)
    runtime=$(kubectl get node "$NODE" -o jsonpath='{.status.nodeInfo.containerRuntimeVersion}' || true)
    if [ "$ready" = True ] && [[ "$runtime" == "$RUNTIME_PREFIX"* ]] && [[ ! "$beat" < "$since" ]]; then
      echo "verified ready=$ready runtime=$runtime heartbeat=$beat"
      return 0
    fi
    sleep 2
  done
  echo "shimless[$NODE] step verify failed: after ${HEALTH_TIMEOUT}s Ready=$ready runtime=$runtime heartbeat=$beat (switch at $since)" >&2
  return 1
}

main "$@"
