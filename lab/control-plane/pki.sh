# shellcheck shell=bash
# Certificates and kubeconfigs of the lab control plane (sourced; openssl).
# One lab CA (lab/state/control-plane/pki/ca.{crt,key}) signs everything:
#   apiserver (SANs 127.0.0.1, 10.96.0.1, localhost, kubernetes.default...),
#   admin (O=system:masters), controller-manager, scheduler,
#   apiserver-kubelet-client, and per node system:node:<name> (O=system:nodes).
# Service-account key pair: pki/sa.{key,pub}. Keys: EC P-256 (RSA 2048 for sa).

_cp_sign() { # NAME SUBJ [SAN] : pki/NAME.{key,crt} signed by the lab CA (kept if present)
  local name="$1" subj="$2" san="${3:-}" p="$CP_STATE_DIR/pki" ext
  [ -s "$p/$name.crt" ] && [ -s "$p/$name.key" ] && return 0
  openssl ecparam -name prime256v1 -genkey -noout -out "$p/$name.key.tmp" 2>/dev/null
  openssl req -new -key "$p/$name.key.tmp" -subj "$subj" -out "$p/$name.csr" 2>/dev/null
  ext="$p/$name.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then echo "extendedKeyUsage=serverAuth"; echo "subjectAltName=$san"
    else echo "extendedKeyUsage=clientAuth"; fi
  } >"$ext"
  openssl x509 -req -in "$p/$name.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$ext" -out "$p/$name.crt.tmp" 2>/dev/null
  rm -f "$p/$name.csr" "$ext"
  chmod 600 "$p/$name.key.tmp"
  mv "$p/$name.key.tmp" "$p/$name.key"
  mv "$p/$name.crt.tmp" "$p/$name.crt"
}

# cp_kubeconfig USER CERTNAME OUT: kubeconfig with embedded CA + client cert for $CP_SERVER
cp_kubeconfig() {
  local user="$1" name="$2" out="$3" p="$CP_STATE_DIR/pki"
  umask 077
  cat >"$out.tmp" <<KC
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: $(base64 -w0 <"$p/ca.crt")
    server: $CP_SERVER
  name: shimless-lab
contexts:
- context:
    cluster: shimless-lab
    user: $user
  name: $user@shimless-lab
current-context: $user@shimless-lab
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$p/$name.crt")
    client-key-data: $(base64 -w0 <"$p/$name.key")
KC
  mv "$out.tmp" "$out"
}

cp_ensure_pki() {
  local p="$CP_STATE_DIR/pki"
  mkdir -p "$p"
  chmod 700 "$p"
  if [ ! -s "$p/ca.crt" ] || [ ! -s "$p/ca.key" ]; then
    openssl ecparam -name prime256v1 -genkey -noout -out "$p/ca.key" 2>/dev/null
    chmod 600 "$p/ca.key"
    openssl req -x509 -new -key "$p/ca.key" -subj "/CN=shimless-lab-ca" -days 3650 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$p/ca.crt" 2>/dev/null
    cp_log "generated the lab CA $p/ca.crt"
  fi
  if [ ! -s "$p/sa.key" ]; then
    openssl genrsa -out "$p/sa.key.tmp" 2048 2>/dev/null
    openssl rsa -in "$p/sa.key.tmp" -pubout -out "$p/sa.pub" 2>/dev/null
    chmod 600 "$p/sa.key.tmp"
    mv "$p/sa.key.tmp" "$p/sa.key"
  fi
  local svc_ip
  svc_ip="$(cp_first_service_ip)"
  _cp_sign apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:$svc_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  _cp_sign admin "/O=system:masters/CN=kubernetes-admin"
  _cp_sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  _cp_sign controller-manager "/CN=system:kube-controller-manager"
  _cp_sign scheduler "/CN=system:kube-scheduler"
  cp_kubeconfig kubernetes-admin admin "$CP_KUBECONFIG"
  cp_kubeconfig system:kube-controller-manager controller-manager "$CP_STATE_DIR/controller-manager.kubeconfig"
  cp_kubeconfig system:kube-scheduler scheduler "$CP_STATE_DIR/scheduler.kubeconfig"
}

# 10.96.0.0/16 -> 10.96.0.1
cp_first_service_ip() {
  local net="${CP_SERVICE_CIDR%/*}"
  echo "${net%.*}.$((${net##*.} + 1))"
}

# cp_node_kubeconfig NODE OUT: the kubelet's kubeconfig for NODE (system:node:NODE, O=system:nodes)
cp_node_kubeconfig() {
  local node="$1" out="$2"
  _cp_sign "node-$node" "/O=system:nodes/CN=system:node:$node"
  cp_kubeconfig "system:node:$node" "node-$node" "$out"
}
