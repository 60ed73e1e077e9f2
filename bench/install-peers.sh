#!/usr/bin/env bash
# Installs what `npm run bench` compares against and measures with, when missing:
# restic and borg (Debian packages restic, borgbackup) and GNU time (package time).
# Idempotent and quiet when everything is present. Needs root for apt-get; otherwise it only
# says what is missing (the benchmark then skips the peers it cannot find).
set -euo pipefail
need=()
command -v restic >/dev/null 2>&1 || need+=(restic)
command -v borg >/dev/null 2>&1 || need+=(borgbackup)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing benchmark peers: ${need[*]}" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "missing benchmark tools (${need[*]}): install them with apt-get as root" >&2
    exit 1
  fi
fi
