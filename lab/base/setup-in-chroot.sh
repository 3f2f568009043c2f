#!/bin/bash
# Runs inside the freshly debootstrapped lab base image (chroot), once per
# recipe hash, from lab/lib.sh. Turns it into a kubeadm-era node on Docker.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

cat > /etc/apt/sources.list.d/debian.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
rm -f /etc/apt/sources.list

# kubeadm-era directories
mkdir -p /etc/kubernetes/manifests /etc/kubernetes/pki /opt/cni/bin /etc/cni/net.d \
         /var/lib/kubelet /var/lib/docker /var/lib/containerd /root/.ssh
chmod 700 /root/.ssh

# Units: the Docker era runs containerd + docker + kubelet (the lab kubelet stand-in) + sshd.
systemctl enable containerd.service docker.service docker.socket kubelet.service ssh.service
# Nothing in a lab node should reach out or do periodic work.
for u in apt-daily.timer apt-daily-upgrade.timer fstrim.timer e2scrub_all.timer \
         e2scrub_reap.service systemd-timesyncd.service getty@tty1.service; do
  systemctl mask "$u" >/dev/null 2>&1 || true
done

# Per-node identity is added by lab-up (host keys, machine-id, hostname).
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
echo "lab-node" > /etc/hostname

# Small and reproducible.
apt-get clean
rm -rf /var/cache/apt/*.bin /var/log/*.log /var/log/apt/* /tmp/* /var/tmp/*
