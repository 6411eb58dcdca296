#!/bin/bash
# sluice-hugepages.sh: reserve hugepages for sluice-dataplane and mount a hugetlbfs its user may
# write. Idempotent: run it as often as you like (sluice-dataplane-setup.service does, at boot).
#
# Settings (environment, usually from /etc/sluice/dataplane.env):
#   SLUICE_HUGEPAGE_SIZE    2M (default) or 1G
#   SLUICE_HUGEPAGES        pages to have reserved (per NUMA node if SLUICE_HUGEPAGES_NODES is set)
#   SLUICE_HUGEPAGES_NODES  optional NUMA node ids, e.g. "0 1"; empty: the kernel spreads them
#   SLUICE_HUGEPAGES_MOUNT  mount point (default /dev/hugepages-sluice); give it to EAL as --huge-dir
#   SLUICE_DPDK_USER        owner of the mount (default sluice)
#
# Only ever raises a reservation (pages another process uses are not taken away); fails if the
# kernel could not reserve as many as asked (fragmented memory: reserve at boot instead, kernel
# command line `hugepagesz=1G hugepages=N`, required for 1G pages on most hosts).
# Exit: 0 done (or nothing to do), 1 could not, 2 bad settings.
set -euo pipefail

prog=sluice-hugepages.sh
dry_run=0

usage() {
  cat <<USAGE
Usage: $prog [--dry-run] [--env FILE]
Reserve SLUICE_HUGEPAGES pages of SLUICE_HUGEPAGE_SIZE (2M|1G) and mount hugetlbfs at
SLUICE_HUGEPAGES_MOUNT (default /dev/hugepages-sluice) owned by SLUICE_DPDK_USER (default sluice).
  --dry-run   print what would be done, change nothing (reads /sys only)
  --env FILE  read the settings from FILE (shell KEY=value lines) first
Exit: 0 ok, 1 failed, 2 bad settings.
USAGE
}

while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dry-run) dry_run=1 ;;
    --env) [ $# -ge 2 ] || { echo "$prog: --env needs a file" >&2; exit 2; }
           # shellcheck disable=SC1090
           . "$2"; shift ;;
    *) echo "$prog: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

size="${SLUICE_HUGEPAGE_SIZE:-2M}"
count="${SLUICE_HUGEPAGES:-}"
nodes="${SLUICE_HUGEPAGES_NODES:-}"
mnt="${SLUICE_HUGEPAGES_MOUNT:-/dev/hugepages-sluice}"
owner="${SLUICE_DPDK_USER:-sluice}"

case "$size" in
  2M|2m|2048kB) kb=2048; size=2M ;;
  1G|1g|1048576kB) kb=1048576; size=1G ;;
  *) echo "$prog: SLUICE_HUGEPAGE_SIZE must be 2M or 1G, not '$size'" >&2; exit 2 ;;
esac
if ! [[ "$count" =~ ^[0-9]+$ ]] || [ "$count" -eq 0 ]; then
  echo "$prog: SLUICE_HUGEPAGES must be a positive number of pages, not '$count'" >&2; exit 2
fi
for n in $nodes; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "$prog: SLUICE_HUGEPAGES_NODES: '$n' is not a node id" >&2; exit 2; }
done
case "$mnt" in
  /*) ;;
  *) echo "$prog: SLUICE_HUGEPAGES_MOUNT must be an absolute path, not '$mnt'" >&2; exit 2 ;;
esac

run() {
  if [ "$dry_run" = 1 ]; then echo "would run: $*"; else "$@"; fi
}

failed=0
reserve() {  # reserve DIR LABEL
  local dir="$1" label="$2" have now
  if [ ! -r "$dir/nr_hugepages" ]; then
    echo "$prog: $label: no $size hugepages in this kernel ($dir missing)" >&2
    failed=1; return
  fi
  have=$(cat "$dir/nr_hugepages")
  if [ "$have" -ge "$count" ]; then
    echo "$label: $have $size pages reserved (want $count): ok"
    return
  fi
  if [ "$dry_run" = 1 ]; then
    echo "would write $count to $dir/nr_hugepages ($label: $have now)"
    return
  fi
  echo "$count" > "$dir/nr_hugepages"
  now=$(cat "$dir/nr_hugepages")
  if [ "$now" -lt "$count" ]; then
    echo "$prog: $label: the kernel reserved $now of $count $size pages (memory fragmented?);" \
         "reserve them at boot: hugepagesz=$size hugepages=$count" >&2
    failed=1
  else
    echo "$label: reserved $now $size pages"
  fi
}

if [ -z "$nodes" ]; then
  reserve "/sys/kernel/mm/hugepages/hugepages-${kb}kB" "system"
else
  for n in $nodes; do
    reserve "/sys/devices/system/node/node$n/hugepages/hugepages-${kb}kB" "node $n"
  done
fi

if ! uid=$(id -u "$owner" 2>/dev/null) || ! gid=$(id -g "$owner" 2>/dev/null); then
  echo "$prog: user '$owner' does not exist (install deploy/systemd/sluice.sysusers.conf)" >&2
  if [ "$dry_run" = 1 ]; then uid="<$owner>"; gid="<$owner>"; failed=1; else exit 1; fi
fi
opts="pagesize=$size,uid=$uid,gid=$gid,mode=0770"

# An existing mount is kept when it already is what we want; a hugetlbfs of another page size or
# owner at our path is mounted over with the right options (remount cannot change pagesize).
current=$(findmnt -n -o FSTYPE,OPTIONS --mountpoint "$mnt" 2>/dev/null | tail -n 1 || true)
current_opts=",${current#* },"
if [[ "$current" == hugetlbfs* ]] && [[ "$current_opts" == *",pagesize=$size,"* ]] \
   && [[ "$current_opts" == *",uid=$uid,"* || "$uid" == 0 ]]; then
  echo "$mnt: hugetlbfs ($size) already mounted: ok"
else
  run mkdir -p "$mnt"
  run mount -t hugetlbfs -o "$opts" nodev "$mnt"
  [ "$dry_run" = 1 ] || echo "$mnt: mounted hugetlbfs ($opts)"
fi

exit "$failed"
