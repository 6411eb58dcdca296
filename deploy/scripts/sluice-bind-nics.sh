#!/bin/bash
# sluice-bind-nics.sh: bind the dataplane's NICs to a DPDK driver (vfio-pci) with dpdk-devbind.py
# (Debian package `dpdk`), and give their VFIO group devices to the dataplane's user.
# Idempotent: a NIC already on the driver is left alone.
#
# Settings (environment, usually from /etc/sluice/dataplane.env):
#   SLUICE_NIC_PCI            PCI addresses, space separated: "0000:03:00.0 0000:03:00.1"
#   SLUICE_NIC_DRIVER         vfio-pci (default), or uio_pci_generic / igb_uio (root dataplane)
#   SLUICE_NIC_KERNEL_DRIVER  kernel driver to give them back to with --unbind (e.g. ixgbe, ice)
#   SLUICE_DPDK_USER          owner of /dev/vfio/<group> (default sluice)
#
# dpdk-devbind.py refuses a NIC whose kernel interface is up with routes ("Active"); we never
# pass --force: a NIC carrying the management address is not taken by accident.
# Exit: 0 done (or nothing to do), 1 could not, 2 bad settings or arguments.
set -euo pipefail

prog=sluice-bind-nics.sh
mode=bind
dry_run=0
devbind="${SLUICE_DEVBIND:-dpdk-devbind.py}"

usage() {
  cat <<USAGE
Usage: $prog [--bind | --unbind | --status] [--dry-run] [--env FILE]
Bind the NICs in SLUICE_NIC_PCI to SLUICE_NIC_DRIVER (default vfio-pci) for sluice-dataplane.
  --bind      bind them (default); chowns /dev/vfio/<group> to SLUICE_DPDK_USER (default sluice)
  --unbind    give them back to SLUICE_NIC_KERNEL_DRIVER
  --status    show dpdk-devbind.py --status for network devices
  --dry-run   print what would be done, change nothing (reads /sys only)
  --env FILE  read the settings from FILE (shell KEY=value lines) first
Exit: 0 ok, 1 failed, 2 bad settings.
USAGE
}

while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --bind) mode=bind ;;
    --unbind) mode=unbind ;;
    --status) mode=status ;;
    --dry-run) dry_run=1 ;;
    --env) [ $# -ge 2 ] || { echo "$prog: --env needs a file" >&2; exit 2; }
           # shellcheck disable=SC1090
           . "$2"; shift ;;
    *) echo "$prog: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$mode" = status ]; then
  exec "$devbind" --status-dev net
fi

driver="${SLUICE_NIC_DRIVER:-vfio-pci}"
owner="${SLUICE_DPDK_USER:-sluice}"
case "$driver" in
  vfio-pci|uio_pci_generic|igb_uio) ;;
  *) echo "$prog: SLUICE_NIC_DRIVER must be vfio-pci, uio_pci_generic or igb_uio, not '$driver'" >&2
     exit 2 ;;
esac
if [ "$mode" = unbind ]; then
  driver="${SLUICE_NIC_KERNEL_DRIVER:-}"
  [[ "$driver" =~ ^[A-Za-z0-9_-]+$ ]] || {
    echo "$prog: --unbind needs SLUICE_NIC_KERNEL_DRIVER (the NICs' kernel driver, e.g. ixgbe)" >&2
    exit 2; }
fi

# Validate every address before touching anything.
addrs=()
for a in ${SLUICE_NIC_PCI:-}; do
  a="${a,,}"
  [[ "$a" =~ ^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$ ]] && a="0000:$a"
  if ! [[ "$a" =~ ^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$ ]]; then
    echo "$prog: SLUICE_NIC_PCI: '$a' is not a PCI address (DDDD:BB:DD.F)" >&2; exit 2
  fi
  addrs+=("$a")
done
if [ "${#addrs[@]}" -eq 0 ]; then
  echo "$prog: SLUICE_NIC_PCI is empty: no NIC to bind" >&2; exit 2
fi

run() {
  if [ "$dry_run" = 1 ]; then echo "would run: $*"; else "$@"; fi
}

failed=0
todo=()
for a in "${addrs[@]}"; do
  dev="/sys/bus/pci/devices/$a"
  if [ ! -e "$dev" ]; then
    echo "$prog: $a: no such PCI device" >&2; failed=1; continue
  fi
  cur=""
  [ -e "$dev/driver" ] && cur=$(basename "$(readlink -f "$dev/driver")")
  if [ "$cur" = "$driver" ]; then
    echo "$a: already on $driver: ok"
  else
    echo "$a: ${cur:-no driver} -> $driver"
    todo+=("$a")
  fi
done
[ "$failed" = 0 ] || exit 1

if [ "${#todo[@]}" -gt 0 ]; then
  command -v "$devbind" >/dev/null || {
    echo "$prog: $devbind not found (apt-get install dpdk)" >&2; exit 1; }
  if [ "$mode" = bind ] && [ ! -d "/sys/module/${driver//-/_}" ]; then
    run modprobe "$driver"
  fi
  run "$devbind" --bind="$driver" "${todo[@]}"
fi

# The dataplane runs as $owner: it needs the VFIO group device of every NIC.
if [ "$mode" = bind ] && [ "$driver" = vfio-pci ]; then
  for a in "${addrs[@]}"; do
    group_link="/sys/bus/pci/devices/$a/iommu_group"
    if [ ! -e "$group_link" ]; then
      echo "$prog: $a has no IOMMU group: enable the IOMMU (intel_iommu=on / amd_iommu=on)" >&2
      failed=1; continue
    fi
    group=$(basename "$(readlink -f "$group_link")")
    run chown "$owner:" "/dev/vfio/$group"
    run chmod 0600 "/dev/vfio/$group"
  done
fi
exit "$failed"
