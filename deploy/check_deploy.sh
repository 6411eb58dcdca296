#!/bin/bash
# check_deploy.sh [BUILD_DIR]: checks the operations kit in deploy/ without touching the host.
#   - systemd units: `systemd-analyze verify` on a temporary copy whose /usr/bin/sluice-* and
#     /usr/libexec/sluice/* paths point at BUILD_DIR's binaries (stubs for those not built) and
#     at deploy/scripts/; any warning about our units fails; `systemd-analyze security --offline`
#     with a per-unit exposure ceiling so hardening cannot silently regress.
#   - scripts: bash -n, shellcheck when installed, --help, and --dry-run / bad-input cases only.
#     They are never run for real here: no sysfs write, no mount, no driver binding.
#   - Prometheus: promtool check rules / test rules / check config.
#   - Grafana: python3 -m json.tool, then check_metric_names.py (every metric an expression uses
#     is registered by an exporter in the sources), and a self-test that it catches a bad name.
# Exit: 0 pass, 1 fail, 77 skipped (systemd-analyze or promtool missing; the rest still runs).
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
build="${1:-}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fails=0
skipped=()

pass() { echo "ok    $*"; }
fail() { echo "FAIL  $*"; fails=$((fails + 1)); }

expect_rc() {  # expect_rc WANT DESCRIPTION CMD...: run CMD, compare its exit code
  local want="$1" what="$2" rc
  shift 2
  "$@" >"$tmp/out" 2>&1
  rc=$?
  if [ "$rc" = "$want" ]; then pass "$what"; else
    fail "$what: exit $rc, want $want"; sed 's/^/      /' "$tmp/out"; fi
}

# ---- scripts --------------------------------------------------------------------------------
hp="$here/scripts/sluice-hugepages.sh"
nic="$here/scripts/sluice-bind-nics.sh"
for s in "$hp" "$nic"; do
  expect_rc 0 "bash -n $(basename "$s")" bash -n "$s"
  [ -x "$s" ] && pass "$(basename "$s") is executable" || fail "$(basename "$s") is not executable"
  expect_rc 0 "$(basename "$s") --help" "$s" --help
  if command -v shellcheck >/dev/null; then
    expect_rc 0 "shellcheck $(basename "$s")" shellcheck "$s"
  fi
done
expect_rc 0 "bash -n check_deploy.sh" bash -n "$0"

# Bad settings are refused (exit 2) before anything is touched.
expect_rc 2 "hugepages: no page count" env -i PATH="$PATH" "$hp" --dry-run
expect_rc 2 "hugepages: bad page size" env -i PATH="$PATH" SLUICE_HUGEPAGES=8 SLUICE_HUGEPAGE_SIZE=4M "$hp" --dry-run
expect_rc 2 "hugepages: relative mount" env -i PATH="$PATH" SLUICE_HUGEPAGES=8 SLUICE_HUGEPAGES_MOUNT=rel "$hp" --dry-run
expect_rc 2 "hugepages: unknown argument" "$hp" --bogus
# A dry run plans the mount and creates nothing (mount point in our temp dir, never made).
mnt="$tmp/huge-mnt"
env -i PATH="$PATH" SLUICE_HUGEPAGES=1 SLUICE_DPDK_USER=root SLUICE_HUGEPAGES_MOUNT="$mnt" \
  "$hp" --dry-run >"$tmp/out" 2>&1
rc=$?
if { [ "$rc" = 0 ] || [ "$rc" = 1 ]; } && grep -q "would run: mount -t hugetlbfs -o pagesize=2M,uid=0,gid=0,mode=0770 nodev $mnt" "$tmp/out" \
   && [ ! -e "$mnt" ]; then
  pass "hugepages --dry-run plans the mount and changes nothing"
else
  fail "hugepages --dry-run (exit $rc)"; sed 's/^/      /' "$tmp/out"
fi

expect_rc 2 "bind-nics: no NICs" env -i PATH="$PATH" "$nic" --dry-run
expect_rc 2 "bind-nics: malformed address" env -i PATH="$PATH" SLUICE_NIC_PCI="0000:03:00.0 eth0" "$nic" --dry-run
expect_rc 2 "bind-nics: unsupported driver" env -i PATH="$PATH" SLUICE_NIC_PCI="0000:03:00.0" SLUICE_NIC_DRIVER=e1000 "$nic" --dry-run
expect_rc 2 "bind-nics: --unbind without kernel driver" env -i PATH="$PATH" SLUICE_NIC_PCI="0000:03:00.0" "$nic" --unbind --dry-run
# PCI domain ffff does not exist on real hosts: reported, nothing run.
env -i PATH="$PATH" SLUICE_NIC_PCI="ffff:ff:1f.7" "$nic" --dry-run >"$tmp/out" 2>&1
rc=$?
if [ "$rc" = 1 ] && grep -q "ffff:ff:1f.7: no such PCI device" "$tmp/out" && ! grep -q "would run" "$tmp/out"; then
  pass "bind-nics --dry-run reports an absent NIC and plans nothing"
else
  fail "bind-nics --dry-run on an absent NIC (exit $rc)"; sed 's/^/      /' "$tmp/out"
fi
# The sample env files are valid for the scripts (settings only; absent NICs are expected).
expect_rc 0 "bind-nics accepts deploy/config/dataplane.env settings" bash -c \
  "set -a; . '$here/config/dataplane.env'; out=\$('$nic' --dry-run 2>&1); rc=\$?; [ \$rc -ne 2 ] || { echo \"\$out\"; exit 1; }"

# ---- systemd units ----------------------------------------------------------------------------
units=(sluice-controld.service sluice-rtbh.service sluice-dataplane.service sluice-dataplane-setup.service)
if ! command -v systemd-analyze >/dev/null; then
  echo "skip  systemd-analyze not found (apt-get install systemd)"; skipped+=(systemd-analyze)
else
  mkdir -p "$tmp/units" "$tmp/bin"
  for b in sluice-controld sluice-rtbh sluice-dataplane; do
    if [ -n "$build" ] && [ -x "$build/$b" ]; then
      ln -s "$(cd "$build" && pwd)/$b" "$tmp/bin/$b"
    else
      printf '#!/bin/sh\nexit 0\n' >"$tmp/bin/$b"; chmod +x "$tmp/bin/$b"
      echo "note  $b not built${build:+ in $build}: verifying against a stub"
    fi
  done
  for u in "${units[@]}"; do
    sed -e "s#/usr/bin/sluice-#$tmp/bin/sluice-#g" -e "s#/usr/libexec/sluice/#$here/scripts/#g" \
      "$here/systemd/$u" >"$tmp/units/$u"
  done
  (cd "$tmp/units" && systemd-analyze verify "${units[@]/#/./}") >"$tmp/out" 2>&1
  rc=$?
  # Unknown keys and bad values are only warnings to systemd-analyze: any line about our units
  # fails the check.
  if [ "$rc" = 0 ] && ! grep -q "sluice" "$tmp/out"; then
    pass "systemd-analyze verify ${units[*]}"
  else
    fail "systemd-analyze verify (exit $rc)"; sed 's/^/      /' "$tmp/out"
  fi
  declare -A ceiling=([sluice-controld.service]=2.0 [sluice-rtbh.service]=2.5
                      [sluice-dataplane.service]=5.0 [sluice-dataplane-setup.service]=7.0)
  for u in "${units[@]}"; do
    expect_rc 0 "systemd-analyze security $u <= ${ceiling[$u]}" \
      bash -c "cd '$tmp/units' && systemd-analyze security --offline=true --threshold=${ceiling[$u]/./} ./$u"
  done
fi

# ---- Prometheus -------------------------------------------------------------------------------
if ! command -v promtool >/dev/null; then
  echo "skip  promtool not found (apt-get install prometheus)"; skipped+=(promtool)
else
  cd "$here/prometheus" || exit 1
  for r in sluice-control.rules.yml sluice-dataplane.rules.yml; do
    expect_rc 0 "promtool check rules $r" promtool check rules "$r"
    expect_rc 0 "promtool test rules ${r%.yml}.test.yml" promtool test rules "${r%.yml}.test.yml"
  done
  expect_rc 0 "promtool check config prometheus.yml" promtool check config prometheus.yml
  cd "$root" || exit 1
fi

# ---- Grafana and metric names -----------------------------------------------------------------
dash="$here/grafana/sluice-noc.json"
expect_rc 0 "python3 -m json.tool sluice-noc.json" python3 -m json.tool "$dash"
expect_rc 0 "metric names in dashboard and rules exist in the exporters" \
  python3 "$here/check_metric_names.py" --root "$root"
# Self-test: a dashboard querying a metric nobody exports must fail the check.
python3 - "$dash" "$tmp/bad.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["panels"][1]["targets"][0]["expr"] = "rate(sluice_dataplane_no_such_metric_total[5m])"
json.dump(d, open(sys.argv[2], "w"))
PY
expect_rc 1 "metric-name check catches an unknown metric" \
  python3 "$here/check_metric_names.py" --root "$root" --dashboard "$tmp/bad.json"

echo
if [ "$fails" -gt 0 ]; then echo "check_deploy: $fails check(s) failed"; exit 1; fi
if [ "${#skipped[@]}" -gt 0 ]; then echo "check_deploy: SKIPPED (${skipped[*]} missing), the rest passed"; exit 77; fi
echo "check_deploy: all checks passed"
