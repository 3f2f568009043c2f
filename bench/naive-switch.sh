#!/usr/bin/env bash
# Benchmark only: the naive order some tools use - stop the kubelet and Docker
# first, THEN install the runtime package - before handing over to shimless's
# own switch (which finds Docker already stopped). Sent on stdin as a bundle
# step by bench/disruption.py; prints the moment Docker stopped.
set -euo pipefail
SHIMLESS_BUNDLE=$1
# shellcheck source=components/scripts/node-lib.sh
. "$SHIMLESS_BUNDLE/node-lib.sh"

systemctl stop kubelet
systemctl disable --now docker.socket docker.service 2>/dev/null
printf 'naive docker_stopped_ms=%s\n' "$(now_ms)"
DEBIAN_FRONTEND=noninteractive apt-get install --reinstall -y -q containerd >/dev/null
bash "$SHIMLESS_BUNDLE/switch.sh" "$SHIMLESS_BUNDLE"
