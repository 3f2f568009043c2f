#!/bin/bash
# node-kubeconfig.sh NODE OUT: write the kubelet kubeconfig of NODE (client
# certificate CN=system:node:NODE, O=system:nodes, signed by the lab CA; the
# Node authorizer limits it to its own Node, Lease and pods) to OUT.
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# shellcheck source=pki.sh
source "$CP_DIR/pki.sh"
[ "$#" = 2 ] || die "usage: node-kubeconfig.sh NODE OUT"
[ -s "$CP_STATE_DIR/pki/ca.key" ] || die "no lab CA yet: run lab/control-plane/up.sh first"
cp_node_kubeconfig "$1" "$2"
chmod 600 "$2"
