#!/usr/bin/env bash
# `make demo`: the main job on the lab. Three Docker-era nodes with the lab's
# control plane and real 1.23 kubelets run a workload (the cluster smoke test's
# Deployment + PodDisruptionBudget + DaemonSet, and the control plane's static
# pods on lab-cp1); `pulumi preview` shows the plan, `pulumi up` migrates the
# nodes to containerd one batch at a time; then a table per node and the
# rollout report (.state/lab-report.html, from the update's engine event log).
# On a lab already migrated the preview shows no changes and nothing is run.
set -euo pipefail
cd "$(dirname "$0")/.."

STACK=lab
NAMESPACE=shimless-demo
PHASES=6
CACHE=${SHIMLESS_CACHE:-$HOME/.cache/shimless}  # the toolchain's (tools/lib.sh)
LAB_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/shimless  # the lab's builds (lab/lib.sh, lab/*/build.sh)
export LAB_CLUSTER=1

start_us=${EPOCHREALTIME/[.,]/}
elapsed() {
  local now=${EPOCHREALTIME/[.,]/} us
  us=$((now - start_us))
  printf '%d.%d' $((us / 1000000)) $((us / 100000 % 10))
}
say() { printf '[demo %ss] %s\n' "$(elapsed)" "$*"; }
die() {
  say "FAILED: $*" >&2
  exit 1
}

# A line a minute during long phases, so that a quiet build never looks hung.
heartbeat_pid=""
heartbeat_stop() {
  if [ -n "$heartbeat_pid" ]; then
    kill "$heartbeat_pid" 2>/dev/null || true
    wait "$heartbeat_pid" 2>/dev/null || true
    heartbeat_pid=""
  fi
}
heartbeat_start() {
  heartbeat_stop
  (while sleep 60; do say "still working: $*"; done) &
  heartbeat_pid=$!
}
phase_no=0
phase() {
  heartbeat_stop
  phase_no=$((phase_no + 1))
  say "phase $phase_no/$PHASES: $*"
}

work=$(mktemp -d)
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  heartbeat_stop
  rm -rf "$work"
}
trap cleanup EXIT

# Running pods per node ("count node" lines), as the API sees them.
pods_running() {
  lab/kubectl get pods -A --field-selector=status.phase=Running \
    -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort | uniq -c
}

node_runtimes() {
  lab/kubectl get nodes -o custom-columns='NODE:.metadata.name,RUNTIME:.status.nodeInfo.containerRuntimeVersion,KUBELET:.status.nodeInfo.kubeletVersion,UNSCHEDULABLE:.spec.unschedulable'
}

# The workload waits until it runs and the PDB allows one eviction (so the drain can go through).
workload_ready() {
  lab/kubectl -n "$NAMESPACE" rollout status deployment/pause --timeout=180s &&
    lab/kubectl -n "$NAMESPACE" rollout status daemonset/node-agent --timeout=180s || return 1
  local _
  for _ in $(seq 60); do
    [ "$(lab/kubectl -n "$NAMESPACE" get pdb pause -o jsonpath='{.status.disruptionsAllowed}')" -ge 1 ] 2>/dev/null &&
      return 0
    sleep 1
  done
  return 1
}

# The node table (with the pods counted before and after) and the report, from
# `--events FILE` (none: the newest event log); sets `report` to the page's path.
summary_table() {
  python -m components.report --stack "$STACK" "$@" --summary \
    --pods-before "$work/pods-before" --pods-after "$work/pods-after" >"$work/summary" || return 1
  grep -v '^report: ' "$work/summary"
  report=$(sed -n 's/^report: //p' "$work/summary")
}

# ---------------------------------------------------------------------------
# What a first run builds (everything is cached in ~/.cache/shimless after).
# Times measured on 2 cores (README, "The two commands").
builds=()
for tool in pulumi pulumi-language-python pulumi-resource-command pulumi-resource-kubernetes; do
  if [ ! -d "$CACHE/$tool" ]; then
    builds+=("the Pulumi CLI, language host and providers: up to 36 min when built from source (18 min of it the kubernetes provider, 4.2 GiB peak); minutes with the official installer")
    break
  fi
done
compgen -G "$LAB_CACHE/lab/base-*" >/dev/null || builds+=("the lab's base image and node tools: about 5 min")
compgen -G "$LAB_CACHE/kubelet/v*" >/dev/null || builds+=("the real kubelet 1.23: about 5 min")
compgen -G "$LAB_CACHE/control-plane/v*" >/dev/null || builds+=("the lab's control plane (etcd, kube-apiserver, controller manager, scheduler 1.24): about 10 min")
if [ "${#builds[@]}" -gt 0 ]; then
  say "first run: these are built once, then cached under ~/.cache/shimless:"
  for build in "${builds[@]}"; do say "  - $build"; done
  say "later runs take a minute or two."
fi

# ---------------------------------------------------------------------------
phase "toolchain (make setup)"
heartbeat_start "setting up the toolchain (see above for the expected time)"
bash tools/setup.sh
# shellcheck source=tools/env.sh
source tools/env.sh

# ---------------------------------------------------------------------------
phase "the lab: 3 nodes on Docker, the control plane and real kubelets (LAB_CLUSTER=1 lab/lab-up.sh)"
# Nodes a plain `make lab-up` or `make lab-reset` left with standalone kubelets
# would never register with the control plane: give them cluster kubelets first.
mapfile -t standalone < <(bash -c 'source lab/lib.sh
  for node in $(lab_node_names); do
    if lab_node_pid "$node" >/dev/null && [ "$(lab_node_kubelet "$node")" != cluster ]; then echo "$node"; fi
  done')
if [ "${#standalone[@]}" -gt 0 ]; then
  say "${standalone[*]}: running a standalone kubelet (a lab-up or lab-reset without LAB_CLUSTER=1); resetting them for the cluster"
  heartbeat_start "resetting ${standalone[*]}"
  bash lab/lab-reset.sh "${standalone[@]}"
fi
heartbeat_start "starting the lab (see above for the expected build times)"
bash lab/lab-up.sh
heartbeat_stop
check=$(python -m components.cli check-config --stack "$STACK")
say "$check"
case "$check" in
  *"cluster.mode kubeconfig"*) ;;
  *) die "the lab stack has no cluster (cluster.mode is not kubeconfig): run 'make lab-down && make demo'" ;;
esac

# ---------------------------------------------------------------------------
phase "the workload: Deployment pause (2 replicas) + PodDisruptionBudget (minAvailable 1) + DaemonSet node-agent, namespace $NAMESPACE"
# The manifest is the cluster smoke test's own (lab/control-plane/smoke.sh), as the cluster e2e uses it.
manifest=$(awk '/<<\047YAML\047$/ { on = 1; next } /^YAML$/ { on = 0 } on' lab/control-plane/smoke.sh)
[ -n "$manifest" ] || die "no workload manifest found in lab/control-plane/smoke.sh"
lab/kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | lab/kubectl apply -f - >/dev/null
lab/kubectl apply -n "$NAMESPACE" -f - <<<"$manifest"
heartbeat_start "waiting for the workload to run"
workload_ready || die "the workload does not run: lab/kubectl -n $NAMESPACE get pods -o wide"
heartbeat_stop
node_runtimes
pods_running >"$work/pods-before"
say "Running pods per node: $(awk '{ printf "%s%s %s", sep, $2, $1; sep = ", " }' "$work/pods-before")"

# ---------------------------------------------------------------------------
phase "the plan: pulumi preview --stack $STACK"
pulumi stack select --create "$STACK" >/dev/null
rc=0
pulumi preview --stack "$STACK" --non-interactive --expect-no-changes 2>&1 | tee "$work/preview.log" || rc=$?
if [ "$rc" = 0 ]; then
  say "the preview shows no changes: every node is already on its target; nothing was changed"
  cp "$work/pods-before" "$work/pods-after"
  say "the last rollout, from its event log (pods: now):"
  if summary_table 2>/dev/null; then
    say "report of the last rollout: $report; to watch the migration again: make lab-reset && make demo"
  else
    say "no event log of an earlier rollout, so no report; to watch the migration again: make lab-reset && make demo"
  fi
  exit 0
fi
# The CLI's words for --expect-no-changes (3.259: "... expected for preview but changes were proposed").
grep -qE "no changes were expected( for [a-z]+)? but changes were proposed" "$work/preview.log" ||
  die "pulumi preview failed (exit $rc): see its output above"

# ---------------------------------------------------------------------------
phase "the rollout: pulumi up --stack $STACK (cordon, drain, switch, verify, uncordon; node by node)"
events=$(python -m components.report --stack "$STACK" --new-event-log)
say "engine event log: $events"
up_rc=0
PULUMI_DEBUG_COMMANDS=true pulumi up --stack "$STACK" --yes --skip-preview --non-interactive --suppress-outputs \
  --event-log "$events" || up_rc=$?

# ---------------------------------------------------------------------------
phase "the result"
if [ "$up_rc" = 0 ]; then
  heartbeat_start "waiting for the workload to run again"
  workload_ready || say "warning: the workload is not back to full strength yet"
  heartbeat_stop
fi
node_runtimes
pods_running >"$work/pods-after"
summary_table --events "$events"
if [ "$up_rc" != 0 ]; then
  say "pulumi up failed (exit $up_rc): the table and the report say which node and step; run 'make up' to continue"
fi
say "report: $report (open it in a browser); to run the demo again from the Docker era: make lab-reset && make demo"
exit "$up_rc"
