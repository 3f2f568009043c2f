#!/bin/bash
# Smoke test of the lab cluster (control plane up, nodes registered):
# a Deployment (2 x pause) + PodDisruptionBudget (minAvailable 1) + DaemonSet
# in namespace shimless-smoke, pods Running (run by the real kubelets), then
# `kubectl drain NODE` (default lab-w1) honouring the PDB, and uncordon.
# Leaves the workload in place (--cleanup deletes the namespace at the end).
# The pods use the host network (the nodes share the host's; no pod network)
# and the pause image every node has locally (no registry: never pulled).
set -euo pipefail
LAB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
k() { "$LAB_DIR/kubectl" "$@"; }
node="${SMOKE_NODE:-lab-w1}"
ns=shimless-smoke
k get nodes -o wide
k create namespace "$ns" --dry-run=client -o yaml | k apply -f -
k apply -n "$ns" -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: pause, labels: {app: pause}}
spec:
  replicas: 2
  selector: {matchLabels: {app: pause}}
  template:
    metadata: {labels: {app: pause}}
    spec:
      hostNetwork: true
      containers: [{name: pause, image: registry.k8s.io/pause:3.6, imagePullPolicy: Never}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: pause}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: pause}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: node-agent, labels: {app: node-agent}}
spec:
  selector: {matchLabels: {app: node-agent}}
  template:
    metadata: {labels: {app: node-agent}}
    spec:
      tolerations: [{operator: Exists}]
      hostNetwork: true
      containers: [{name: agent, image: registry.k8s.io/pause:3.6, imagePullPolicy: Never}]
YAML
k -n "$ns" rollout status deployment/pause --timeout=90s
k -n "$ns" rollout status daemonset/node-agent --timeout=90s
for _ in $(seq 60); do
  [ "$(k -n "$ns" get pdb pause -o jsonpath='{.status.disruptionsAllowed}')" -ge 1 ] 2>/dev/null && break
  sleep 1
done
k -n "$ns" get pods -o wide
k -n "$ns" get pdb pause
time k drain "$node" --ignore-daemonsets --delete-emptydir-data --timeout=120s
k -n "$ns" get pods -o wide
k get node "$node"
k uncordon "$node"
if [ "${1:-}" = --cleanup ]; then k delete namespace "$ns" --wait=false; fi
echo "smoke: OK"
