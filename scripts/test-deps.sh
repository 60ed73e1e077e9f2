#!/usr/bin/env bash
# Installs what the test suite needs and a fresh Debian machine lacks. Idempotent and quiet
# when everything is present, so `npm test` stays fast on a developer's machine.
set -euo pipefail
need=()
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)
# Restore fidelity: POSIX ACLs and capabilities on test files, a vfat target without attributes.
command -v setfacl >/dev/null 2>&1 || need+=(acl)
command -v setcap >/dev/null 2>&1 || need+=(libcap2-bin)
command -v mkfs.vfat >/dev/null 2>&1 || need+=(dosfstools)
# File backups from volume snapshots: btrfs images.
command -v mkfs.btrfs >/dev/null 2>&1 || need+=(btrfs-progs)
# VM tests through QEMU's block layer: qemu-storage-daemon, and nbdinfo to cross-check the NBD client.
command -v qemu-storage-daemon >/dev/null 2>&1 || need+=(qemu-system-common)
command -v nbdinfo >/dev/null 2>&1 || need+=(libnbd-bin)
# PostgreSQL 15 (the database tests start their own clusters with its initdb and pg_ctl) and
# pgBackRest (the database benchmark's peer).
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
command -v pgbackrest >/dev/null 2>&1 || need+=(pgbackrest)
# The Backup center's browser tests drive Debian's Chromium (playwright-core never downloads one).
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing test dependencies: ${need[*]}" >&2
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "missing test dependencies (${need[*]}): install them with apt-get as root" >&2
    exit 1
  fi
fi
