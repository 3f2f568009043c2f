#!/usr/bin/env bash
# Check what tools/setup.sh provided:
#   1. .tools/bin/pulumi version is the pinned version
#   2. pulumi plugin ls lists command and kubernetes at their pinned versions
#   3. smoke: a tiny Python Pulumi project (the project's .venv) with one
#      pulumi_command.local.Command runs `pulumi preview` against a file
#      backend in a temp dir, without network (in a network namespace of its
#      own when `unshare -n` is allowed here; plugin downloads are off anyway).
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

# 3. smoke preview --------------------------------------------------------------
smoke=$(mktemp -d "${TMPDIR:-/tmp}/shimless-smoke.XXXXXX")
trap 'rm -rf "$smoke"' EXIT
mkdir -p "$smoke/project" "$smoke/state"
cat >"$smoke/project/Pulumi.yaml" <<EOF
name: shimless-smoke
runtime:
  name: python
  options:
    virtualenv: $SHIMLESS_VENV
    toolchain: pip
EOF
cat >"$smoke/project/__main__.py" <<'EOF'
import pulumi
from pulumi_command import local

hello = local.Command("hello", create="echo hello from shimless")
pulumi.export("stdout", hello.stdout)
EOF

netns=()
if unshare -n true 2>/dev/null; then
  netns=(unshare -n)
  note="no network: own network namespace"
else
  note="network namespace not available here; plugin downloads disabled"
fi

smoke_run() {
  cd "$smoke/project" &&
    PULUMI_BACKEND_URL="file://$smoke/state" PULUMI_CONFIG_PASSPHRASE=smoke \
      "${netns[@]}" pulumi stack init smoke --non-interactive &&
    PULUMI_BACKEND_URL="file://$smoke/state" PULUMI_CONFIG_PASSPHRASE=smoke \
      "${netns[@]}" pulumi preview --non-interactive --stack smoke
}

if out=$(smoke_run 2>&1); then
  if grep -q 'command:local:Command' <<<"$out" && grep -q '+ 2 to create' <<<"$out"; then
    pass "smoke: pulumi preview of a pulumi_command.local.Command ($note)"
  else
    fail "smoke: preview succeeded but did not plan the Command resource"
  fi
  indent <<<"$out"
else
  fail "smoke: pulumi preview failed ($note)"
  indent <<<"$out"
fi

echo "verify: $PASSED passed, $FAILED failed"
((FAILED == 0))
