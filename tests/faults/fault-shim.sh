#!/bin/bash
# Test-side fault injection on a lab node (never shipped by shimless): this
# script is linked under the name of each command the switch runs, in
# /usr/local/sbin (first on root's PATH). For any process that descends from
# shimless' switch or rollback it counts the call; when the count reaches the
# armed number it fails the call (mode fail) or blocks it for a power cut
# (mode hang). Every other caller gets the real command untouched.
#   /var/lib/shimless-fault/armed   "MODE K" (absent: count only if counting)
#   /var/lib/shimless-fault/count   calls counted so far
#   /var/lib/shimless-fault/log     one line per counted call: N name args
#   /var/lib/shimless-fault/hung    written when a call blocks (mode hang)
name=${0##*/}
dir=/var/lib/shimless-fault
caller_path=$PATH
PATH=/usr/sbin:/usr/bin:/sbin:/bin
real=$(type -P "$name")

# Is an ancestor the detached switch, a rollback or a boot recovery?
in_shimless_step() {
  local pid=$PPID cmd stat
  while [ "$pid" -gt 1 ]; do
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    case "$cmd" in
      *switch.sh*--detached* | *rollback.sh*) return 0 ;;
    esac
    read -r stat <"/proc/$pid/stat" || return 1
    stat=${stat##*) }
    read -r _ pid _ <<<"$stat"
  done
  return 1
}

if [ -f "$dir/counting" ] && in_shimless_step; then
  exec 8>>"$dir/lock"
  flock 8
  n=$(($(cat "$dir/count" 2>/dev/null || echo 0) + 1))
  echo "$n" >"$dir/count"
  echo "$n $name $*" >>"$dir/log"
  armed=$(cat "$dir/armed" 2>/dev/null || true)
  flock -u 8
  exec 8>&-
  if [ -n "$armed" ] && [ "${armed#* }" = "$n" ]; then
    case "${armed%% *}" in
      fail)
        echo "fault-shim: $name failed (injected at call $n)" >&2
        exit 1
        ;;
      hang)
        echo "$n $name $*" >"$dir/hung"
        sync
        exec sleep infinity
        ;;
    esac
  fi
fi
PATH=$caller_path exec "$real" "$@"
