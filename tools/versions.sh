# shellcheck shell=bash disable=SC2034  # variables for the scripts that source this
# Pinned versions of the Pulumi CLI and plugins. Sourced by tools/setup.sh.
#
# Keep these in step with requirements.txt:
#   pulumi==$PULUMI_VERSION
#   pulumi-command==$COMMAND_PY_VERSION          (plugin $COMMAND_VERSION)
#   pulumi-kubernetes==$KUBERNETES_PY_VERSION    (plugin $KUBERNETES_VERSION)
#
# Every Go module version below was checked to be served by the Go module
# proxy reachable from the project's machines (many versions are refused
# there with "403 This module version is not available"): see
# tools/README.md for what was tried and why these were chosen.

# --- Pulumi CLI (github.com/pulumi/pulumi/pkg/v3 cmd/pulumi) -----------------
# 3.260.0's pkg/v3 zip is refused by the proxy; 3.259.0 is served whole.
PULUMI_VERSION=3.259.0

# --- Python language host -----------------------------------------------------
# Preferred: the language host module at the v3.259.0 release commit
# (pkg/v3 tag pkg/v3.259.0 = a05d88f24d05, 2026-08-20T08:44:10Z).
PULUMI_LANGUAGE_PYTHON_MODULE=github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3
PULUMI_LANGUAGE_PYTHON_PSEUDO=v3.0.0-20260820084410-a05d88f24d05
# Fallback when that module is refused by the proxy (it is, for every
# pseudo-version tried): the last sdk/v3 release that still carried the
# language host inside the sdk module (python/cmd/pulumi-language-python).
PULUMI_LANGUAGE_PYTHON_FALLBACK_SDK=3.79.0

# --- pulumi-resource-command --------------------------------------------------
COMMAND_VERSION=1.2.1
COMMAND_PY_VERSION=1.2.1
COMMAND_MODULE=github.com/pulumi/pulumi-command/provider
# The provider module has no provider/ tags: candidates are pseudo-versions at
# the release commit (tag v1.2.1 = 7f3eb6f3b77c, 2026-03-03T23:59:22Z) and at
# the sdk/v1.2.1 tag commit. The first one the proxy serves is used.
COMMAND_MODULE_CANDIDATES=(
  v0.0.0-20260303235922-7f3eb6f3b77c
  v0.0.0-20260304002345-f0839b236d7b
)

# --- pulumi-resource-kubernetes -----------------------------------------------
# No provider/v4 tag of pulumi-kubernetes is served by the proxy; this
# pseudo-version is. Its commit f47bc2d6f199 (2026-01-15T03:34:56Z) is the
# commit PyPI's pulumi-kubernetes 4.25.0a1768448096 was built from (the alpha
# number is the commit's Unix time), so plugin and Python SDK match exactly.
KUBERNETES_VERSION=4.25.0-alpha.1768448096
KUBERNETES_PY_VERSION=4.25.0a1768448096
KUBERNETES_MODULE=github.com/pulumi/pulumi-kubernetes/provider/v4
KUBERNETES_MODULE_VERSION=v4.0.0-20260115033456-f47bc2d6f199
# The provider's go.mod replaces its Go SDK with ../sdk (same commit), which is
# not part of the module zip; the required release is used instead.
KUBERNETES_GO_SDK_VERSION=v4.24.0
