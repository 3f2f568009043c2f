#!/bin/bash
# Start the lab control plane (idempotent): etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler as host processes on 127.0.0.1 only.
#   etcd                     http://127.0.0.1:$CP_ETCD_CLIENT_PORT (22379), peer 22380
#   kube-apiserver           https://127.0.0.1:$CP_APISERVER_PORT (26443)
#   kube-controller-manager  https://127.0.0.1:$CP_CM_PORT (20257, healthz)
#   kube-scheduler           https://127.0.0.1:$CP_SCHED_PORT (20259, healthz)
# State: lab/state/control-plane/ (pki/, etcd/, *.kubeconfig, <component>.pid/.log);
# admin kubeconfig: lab/state/kubeconfig (lab/kubectl uses it).
# Binaries: lab/control-plane/build.sh (cached under ~/.cache/shimless/control-plane/).
# Processes already running (recorded pid, same binary) are left alone.
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=build.sh
source "$CP_DIR/build.sh"
# shellcheck source=pki.sh
source "$CP_DIR/pki.sh"

[ "$(id -u)" = 0 ] || die "the lab control plane is started as root (like the lab)"
command -v openssl >/dev/null || die "openssl is needed for the lab control plane's certificates"
mkdir -p "$CP_STATE_DIR"
chmod 700 "$CP_STATE_DIR"
exec 7>"$CP_STATE_DIR/.lock"
flock -w 300 7 || die "another control-plane script holds $CP_STATE_DIR/.lock"

ETCD_BIN="$(cp_build_etcd)"
K8S_BIN="$(cp_build_k8s)"
cp_ensure_pki
S="$CP_STATE_DIR"
P="$S/pki"

# ---------------------------------------------------------------- helpers

cp_port_in_use() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

# start NAME PORT BINARY ARGS...: unless already running
cp_start() {
  local name="$1" port="$2" bin="$3"
  shift 3
  if cp_pid "$name" >/dev/null; then
    cp_log "$name: already running (pid $(cp_pid "$name"))"
    return 0
  fi
  if cp_port_in_use "$port"; then
    die "$name: 127.0.0.1:$port is already in use by a process this lab did not start"
  fi
  echo "=== $(date -Is) starting $name: $bin $*" >>"$S/$name.log"
  setsid "$bin" "$@" </dev/null >>"$S/$name.log" 2>&1 7>&- 8>&- 9>&- &
  echo $! >"$S/$name.pid"
  disown $! 2>/dev/null || true
  cp_log "$name: started (pid $!, log $S/$name.log)"
}

# wait_http NAME URL TIMEOUT [curl args...]: until URL answers 200 "ok"
cp_wait_http() {
  local name="$1" url="$2" timeout="$3" deadline out
  shift 3
  deadline=$((SECONDS + timeout))
  while [ "$SECONDS" -lt "$deadline" ]; do
    cp_pid "$name" >/dev/null || { tail -25 "$S/$name.log" >&2; die "$name exited (see $S/$name.log)"; }
    if out="$(curl -fsS --max-time 3 "$@" "$url" 2>/dev/null)" && [ -n "$out" ]; then
      case "$out" in ok | *'"health":"true"'* | *'"health": "true"'*) return 0 ;; esac
    fi
    sleep 0.5
  done
  tail -25 "$S/$name.log" >&2
  die "$name: $url not ok after ${timeout}s (see $S/$name.log)"
}

# ---------------------------------------------------------------- etcd

cp_start etcd "$CP_ETCD_CLIENT_PORT" "$ETCD_BIN/etcd" \
  --name=shimless-lab \
  --data-dir="$S/etcd" \
  --listen-client-urls="http://127.0.0.1:$CP_ETCD_CLIENT_PORT" \
  --advertise-client-urls="http://127.0.0.1:$CP_ETCD_CLIENT_PORT" \
  --listen-peer-urls="http://127.0.0.1:$CP_ETCD_PEER_PORT" \
  --initial-advertise-peer-urls="http://127.0.0.1:$CP_ETCD_PEER_PORT" \
  --initial-cluster="shimless-lab=http://127.0.0.1:$CP_ETCD_PEER_PORT" \
  --initial-cluster-state=new \
  --listen-metrics-urls="" \
  --snapshot-count=10000 \
  --unsafe-no-fsync=true \
  --log-level=warn
cp_wait_http etcd "http://127.0.0.1:$CP_ETCD_CLIENT_PORT/health" 30

# ---------------------------------------------------------------- kube-apiserver

cp_start kube-apiserver "$CP_APISERVER_PORT" "$K8S_BIN/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$CP_ETCD_CLIENT_PORT" \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --secure-port="$CP_APISERVER_PORT" \
  --tls-cert-file="$P/apiserver.crt" \
  --tls-private-key-file="$P/apiserver.key" \
  --client-ca-file="$P/ca.crt" \
  --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$P/apiserver-kubelet-client.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$P/sa.pub" \
  --service-account-signing-key-file="$P/sa.key" \
  --service-cluster-ip-range="$CP_SERVICE_CIDR" \
  --authorization-mode=Node,RBAC \
  --allow-privileged=true \
  --enable-bootstrap-token-auth=true \
  --endpoint-reconciler-type=none \
  --profiling=false \
  --v=1
cp_wait_http kube-apiserver "$CP_SERVER/readyz" 120 \
  --cacert "$P/ca.crt" --cert "$P/admin.crt" --key "$P/admin.key"
cp_log "kube-apiserver: $CP_SERVER/readyz ok"

# ---------------------------------------------------------------- controllers

cp_start kube-controller-manager "$CP_CM_PORT" "$K8S_BIN/kube-controller-manager" \
  --kubeconfig="$S/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$S/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$S/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 \
  --secure-port="$CP_CM_PORT" \
  --client-ca-file="$P/ca.crt" \
  --root-ca-file="$P/ca.crt" \
  --service-account-private-key-file="$P/sa.key" \
  --cluster-signing-cert-file="$P/ca.crt" \
  --cluster-signing-key-file="$P/ca.key" \
  --use-service-account-credentials=true \
  --controllers='*,bootstrapsigner,tokencleaner' \
  --cluster-name=shimless-lab \
  --service-cluster-ip-range="$CP_SERVICE_CIDR" \
  --leader-elect=false \
  --profiling=false \
  --v=1
cp_start kube-scheduler "$CP_SCHED_PORT" "$K8S_BIN/kube-scheduler" \
  --kubeconfig="$S/scheduler.kubeconfig" \
  --authentication-kubeconfig="$S/scheduler.kubeconfig" \
  --authorization-kubeconfig="$S/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 \
  --secure-port="$CP_SCHED_PORT" \
  --leader-elect=false \
  --profiling=false \
  --v=1
cp_wait_http kube-controller-manager "https://127.0.0.1:$CP_CM_PORT/healthz" 60 -k
cp_wait_http kube-scheduler "https://127.0.0.1:$CP_SCHED_PORT/healthz" 60 -k
cp_log "control plane up: $CP_SERVER (kubeconfig $CP_KUBECONFIG; lab/kubectl)"
