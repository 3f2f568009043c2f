#!/usr/bin/env bash
# Check what tools/setup.sh provided:
#   1. .tools/bin/pulumi version is the pinned version
#   2. pulumi plugin ls lists command and kubernetes at their pinned versions
#   3. smoke: a tiny Python Pulumi project (the project's .venv) with one
#      pulumi_command.local.Command runs `pulumi preview` against a file
#      backend in a temp dir, without network (in a network namespace of its
#      own when `unshare -n` is allowed here; plugin downloads are off anyway).
#   4. the same with one pulumi_kubernetes ConfigMap (no cluster needed).
#   and that the cached containerd 2.x (tests only) is the pinned release.
# Prints one PASS/FAIL line per check and "N passed, N failed" at the end.
set -euo pipefail

# shellcheck source=tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tools/versions.sh
source "$SHIMLESS_ROOT/tools/versions.sh"
# shellcheck source=tools/env.sh
source "$SHIMLESS_ROOT/tools/env.sh"

PASSED=0
FAILED=0
pass() {
  PASSED=$((PASSED + 1))
  printf 'PASS  %s\n' "$*"
}
fail() {
  FAILED=$((FAILED + 1))
  printf 'FAIL  %s\n' "$*"
}
indent() { sed 's/^/      | /'; }

echo "== shimless toolchain verification ($SHIMLESS_ROOT)"
if [[ -f $SHIMLESS_TOOLS/versions.txt ]]; then
  grep -v '^#' "$SHIMLESS_TOOLS/versions.txt" | sed 's/^/   installed: /'
fi

# 1. CLI version ---------------------------------------------------------------
if [[ -x $SHIMLESS_BIN/pulumi ]]; then
  got=$("$SHIMLESS_BIN/pulumi" version 2>&1 || true)
  if [[ $got == "v$PULUMI_VERSION" ]]; then
    pass "pulumi version: $got"
  else
    fail "pulumi version: want v$PULUMI_VERSION, got: $got"
  fi
else
  fail "pulumi: $SHIMLESS_BIN/pulumi missing (run make setup)"
fi

# 2. plugins -------------------------------------------------------------------
plugins=$(pulumi plugin ls 2>&1 || true)
for want in "command $COMMAND_VERSION" "kubernetes $KUBERNETES_VERSION"; do
  name=${want% *}
  version=${want#* }
  if awk -v n="$name" -v v="$version" '$1 == n && $2 == "resource" && $3 == v { found = 1 } END { exit !found }' <<<"$plugins"; then
    pass "pulumi plugin ls: resource $name $version"
  else
    fail "pulumi plugin ls: resource $name $version not listed"
    indent <<<"$plugins"
  fi
done

# 2a. every binary is the upstream one: its Go build info names the upstream
# main package (never a stand-in), and the language host matches the CLI.
for want in "pulumi github.com/pulumi/pulumi/pkg/v3/cmd/pulumi" \
  "pulumi-language-python github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3" \
  "pulumi-resource-command github.com/pulumi/pulumi-command/provider/cmd/pulumi-resource-command" \
  "pulumi-resource-kubernetes github.com/pulumi/pulumi-kubernetes/provider/v4/cmd/pulumi-resource-kubernetes"; do
  bin=$SHIMLESS_BIN/${want%% *}
  path=$("$SHIMLESS_GO" version -m "$bin" 2>/dev/null | awk '$1 == "path" { print $2 }' || true)
  if [[ $path == "${want#* }" ]]; then
    pass "${want%% *}: built from ${want#* }"
  else
    fail "${want%% *}: go version -m names '${path:-nothing}', want ${want#* }"
  fi
done
# 2b. containerd 2.x for the tests (cached, not on PATH): upstream's module at the pinned version.
containerd2=$(cache_dir containerd "$CONTAINERD2_VERSION")/containerd
got=$("$containerd2" --version 2>&1 || true)
if [[ $got == "containerd github.com/containerd/containerd/v2 v$CONTAINERD2_VERSION"* ]]; then
  pass "containerd $CONTAINERD2_VERSION: $got"
else
  fail "containerd $CONTAINERD2_VERSION: $containerd2 --version said '${got:-nothing}' (run make setup)"
fi
got=$("$SHIMLESS_BIN/pulumi-language-python" --version 2>&1 || true)
if [[ $got == *"$PULUMI_VERSION"* ]]; then
  pass "pulumi-language-python version: $got (the CLI's)"
else
  fail "pulumi-language-python version: want $PULUMI_VERSION, got: $got"
fi

# 2b. the virtualenv's packages ask for these same versions ---------------------
if [[ -x $SHIMLESS_VENV/bin/python ]]; then
  got=$("$SHIMLESS_VENV/bin/python" - <<'EOF' 2>&1 || true
import importlib.metadata as md, json, importlib.resources as res
print("pulumi", md.version("pulumi"))
for pkg in ("pulumi_command", "pulumi_kubernetes"):
    meta = json.loads(res.files(pkg).joinpath("pulumi-plugin.json").read_text())
    print(meta["name"], meta["version"])
EOF
  )
  want=$(printf '%s\n' "pulumi $PULUMI_VERSION" "command $COMMAND_VERSION" "kubernetes $KUBERNETES_VERSION")
  if [[ $got == "$want" ]]; then
    pass ".venv: pulumi $PULUMI_VERSION; pulumi_command and pulumi_kubernetes ask for plugins $COMMAND_VERSION and $KUBERNETES_VERSION"
  else
    fail ".venv packages do not match tools/versions.sh"
    indent <<<"$got"
  fi
else
  fail ".venv: $SHIMLESS_VENV/bin/python missing (run make setup)"
fi

# 3. smoke previews --------------------------------------------------------------
smoke=$(mktemp -d "${TMPDIR:-/tmp}/shimless-smoke.XXXXXX")
trap 'rm -rf "$smoke"' EXIT

# A network namespace of its own has only a loopback interface (brought up:
# the CLI and its plugins talk gRPC over 127.0.0.1).
netns=()
if unshare -n sh -c 'ip link set lo up' 2>/dev/null; then
  netns=(unshare -n sh -c 'ip link set lo up && exec "$@"' netns)
  note="no network: own network namespace"
else
  note="network namespace not available here; plugin downloads disabled"
fi

# smoke NAME TYPE-TOKEN: preview the program read from stdin as a Python
# project using the project's .venv, file backend in a temp dir; the preview
# must plan one TYPE-TOKEN resource.
smoke() {
  local name=$1 token=$2 dir=$smoke/$1 out
  mkdir -p "$dir/project" "$dir/state"
  cat >"$dir/project/__main__.py"
  cat >"$dir/project/Pulumi.yaml" <<EOF
name: shimless-smoke-$name
runtime:
  name: python
  options:
    virtualenv: $SHIMLESS_VENV
    toolchain: pip
EOF
  if out=$(
    {
      cd "$dir/project" &&
        export PULUMI_BACKEND_URL="file://$dir/state" PULUMI_CONFIG_PASSPHRASE=smoke KUBECONFIG=/nonexistent &&
        "${netns[@]}" pulumi stack init smoke --non-interactive &&
        "${netns[@]}" pulumi preview --non-interactive --stack smoke
    } 2>&1
  ); then
    if grep -q "+ *$token " <<<"$out" && grep -q '+ 2 to create' <<<"$out"; then
      pass "smoke $name: pulumi preview plans a $token ($note)"
    else
      fail "smoke $name: preview succeeded but did not plan a $token"
    fi
  else
    fail "smoke $name: pulumi preview failed ($note)"
  fi
  indent <<<"$out"
}

smoke command command:local:Command <<'EOF'
import pulumi
from pulumi_command import local

hello = local.Command("hello", create="echo hello from shimless")
pulumi.export("stdout", hello.stdout)
EOF

# The kubernetes provider previews without a cluster (KUBECONFIG points
# nowhere): this checks that the plugin loads and serves its schema.
smoke kubernetes kubernetes:core/v1:ConfigMap <<'EOF'
import pulumi
import pulumi_kubernetes as k8s

cm = k8s.core.v1.ConfigMap("hello", metadata={"name": "hello"}, data={"greeting": "hello"})
pulumi.export("name", cm.metadata["name"])
EOF

echo "verify: $PASSED passed, $FAILED failed"
((FAILED == 0))
