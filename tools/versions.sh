# shellcheck shell=bash disable=SC2034  # variables for the scripts that source this
# Pinned versions of the Pulumi CLI and plugins. Sourced by tools/setup.sh.
# All stable upstream releases, the language host at the CLI's own version.
#
# Keep these in step with requirements.txt:
#   pulumi==$PULUMI_VERSION
#   pulumi-command==$COMMAND_VERSION
#   pulumi-kubernetes==$KUBERNETES_VERSION
#
# Why these: 3.259.0 is the newest CLI whose language host can be built here
# (its source archive stops at v3.259.0; the Go module proxy refuses the
# language host module); pulumi-kubernetes 4.32.0 is the newest provider with
# reachable source (4.33+/4.34.x are refused by the proxy and not archived),
# and the Python SDK 4.32.0 asks for exactly that plugin. See tools/README.md.

# Pulumi CLI (github.com/pulumi/pulumi/pkg/v3 cmd/pulumi, from the Go module
# proxy) and the Python language host with its two shims (upstream archive).
PULUMI_VERSION=3.259.0
# pulumi-resource-command (upstream archive pulumi-resource-command-1.2.1).
COMMAND_VERSION=1.2.1
# pulumi-resource-kubernetes (upstream archive pulumi-resource-kubernetes-4.32.0).
KUBERNETES_VERSION=4.32.0

# containerd 2.x (module github.com/containerd/containerd/v2 from the Go module
# proxy): containerd, ctr and containerd-shim-runc-v2, for the unit test in
# which containerd 2 reads the config shimless renders for it, and for the
# lab's nodes with LAB_CONTAINERD=2 (lab/containerd2/). Cached only, never
# placed on the host's PATH (the host's containerd stays the one `containerd` runs).
CONTAINERD2_VERSION=2.4.2
