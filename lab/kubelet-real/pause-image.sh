#!/bin/bash
# lab/kubelet-real/pause-image.sh OUT.tar: the lab's pause image as a
# docker-archive (the `docker save` layout: manifest.json, config, one
# layer.tar) that both `docker load` and `ctr -n k8s.io images import` read.
# No registry is reachable, so the image is made here: one layer holding
# /pause, a static Go program (lab/kubelet-real/pause/), tagged with every
# name the lab asks for (LAB_PAUSE_IMAGES): the kubeadm flag's
# k8s.gcr.io/pause:3.6 of the Docker era and shimless' pauseImage
# registry.k8s.io/pause:3.6. Deterministic: same source, same image ID.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAB_PAUSE_IMAGES="${LAB_PAUSE_IMAGES:-registry.k8s.io/pause:3.6 k8s.gcr.io/pause:3.6}"
out="${1:?usage: pause-image.sh OUT.tar}"
go="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$tmp/rootfs" "$tmp/image"
(cd "$here/pause" && CGO_ENABLED=0 GOFLAGS=-mod=mod "$go" build -trimpath -ldflags "-s -w" -o "$tmp/rootfs/pause" .)
tar -C "$tmp/rootfs" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$tmp/layer.tar" pause
diff_id="$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)"
mkdir -p "$tmp/image/$diff_id"
mv "$tmp/layer.tar" "$tmp/image/$diff_id/layer.tar"
# The image config; like the upstream pause image: entrypoint /pause, user 65535.
printf '%s' '{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z",' \
  '"config":{"User":"65535:65535","Entrypoint":["/pause"],"WorkingDir":"/"},' \
  '"rootfs":{"type":"layers","diff_ids":["sha256:'"$diff_id"'"]},' \
  '"history":[{"created":"1970-01-01T00:00:00Z","created_by":"shimless lab: lab/kubelet-real/pause"}]}' \
  >"$tmp/config.json"
config_id="$(sha256sum "$tmp/config.json" | cut -d' ' -f1)"
mv "$tmp/config.json" "$tmp/image/$config_id.json"
tags=""
for image in $LAB_PAUSE_IMAGES; do tags="$tags${tags:+,}\"$image\""; done
printf '[{"Config":"%s.json","RepoTags":[%s],"Layers":["%s/layer.tar"]}]\n' "$config_id" "$tags" "$diff_id" \
  >"$tmp/image/manifest.json"
tar -C "$tmp/image" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$out.tmp" .
mv "$out.tmp" "$out"
echo "sha256:$config_id"
