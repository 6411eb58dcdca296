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
#   - Resolver snippets for sluice-rpz: `named-checkconf -z` on a minimal named.conf that includes
#     deploy/bind/named.conf.sluice-rpz and has the response-policy statement of its comment in
#     `options`; `unbound-checkconf` on a minimal unbound.conf that includes
#     deploy/unbound/sluice-rpz.conf as Debian's does (include-toplevel). Both load a sample zone
#     of every answer kind sluice-rpz writes, from a temp path put in place of the snippets'.
#     No resolver is started (tests/integration/rpz_test.py runs Unbound on the real file).
# Exit: 0 pass, 1 fail, 77 skipped (systemd-analyze, promtool, named-checkconf or
# unbound-checkconf missing; the rest still runs).
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

# ---- resolver snippets for sluice-rpz --------------------------------------------------------
# The snippets name /var/lib/sluice/rpz/sluice.rpz.zone; both checkers open the zone file, so the
# copies point at a sample of ours: each answer kind (nxdomain, nodata, notice, a wildcard).
rpz_path=/var/lib/sluice/rpz/sluice.rpz.zone
rpz_zone="$tmp/rpz/sluice.rpz.zone"
mkdir -p "$tmp/rpz"
cat >"$rpz_zone" <<'ZONE'
; sample in the form sluice-rpz writes (control/rpz/README.md)
$ORIGIN sluice.rpz.
$TTL 60
@ IN SOA localhost. nobody.invalid. 1796665153 3600 600 86400 60
@ IN NS localhost.
*.telegram.org CNAME .
nodata.example CNAME *.
t.me CNAME notice.isp.example.
telegram.org CNAME .
ZONE

bind_snippet="$here/bind/named.conf.sluice-rpz"
if ! command -v named-checkconf >/dev/null; then
  echo "skip  named-checkconf not found (apt-get install bind9-utils)"; skipped+=(named-checkconf)
elif ! grep -q "\"$rpz_path\"" "$bind_snippet"; then
  fail "named.conf.sluice-rpz: no zone file $rpz_path to point at the sample"
else
  mkdir -p "$tmp/bind"
  sed "s#\"$rpz_path\"#\"$rpz_zone\"#" "$bind_snippet" >"$tmp/bind/named.conf.sluice-rpz"
  # The response-policy statement is the snippet's own comment ("// In options { ... }:" and the
  # commented lines after it), uncommented, so the text operators copy is what gets checked.
  policy="$(sed -n '/^\/\/ In options/,$p' "$bind_snippet" | tail -n +2 | sed 's#^//##')"
  if ! grep -q "response-policy" <<<"$policy"; then
    fail "named.conf.sluice-rpz: no response-policy statement after '// In options'"
  else
    bind_conf() {  # bind_conf FILE POLICY: named.conf with POLICY in options, the snippet included
      printf 'options {\n    directory "%s";\n%s\n};\ninclude "%s";\n' \
        "$tmp/bind" "$2" "$tmp/bind/named.conf.sluice-rpz" >"$1"
    }
    bind_conf "$tmp/bind/named.conf" "$policy"
    expect_rc 0 "named-checkconf -z: named.conf.sluice-rpz and its response-policy (zone loaded)" \
      named-checkconf -z "$tmp/bind/named.conf"
    # Self-test: the wrapper really carries the policy: naming an undefined zone is refused.
    bind_conf "$tmp/bind/bad.conf" "${policy//\"sluice.rpz\"/\"other.rpz\"}"
    expect_rc 1 "named-checkconf refuses a response-policy zone that is not defined" \
      named-checkconf "$tmp/bind/bad.conf"
  fi
fi

unbound_snippet="$here/unbound/sluice-rpz.conf"
if ! command -v unbound-checkconf >/dev/null; then
  echo "skip  unbound-checkconf not found (apt-get install unbound)"; skipped+=(unbound-checkconf)
elif ! grep -q "zonefile: $rpz_path\$" "$unbound_snippet"; then
  fail "sluice-rpz.conf: no zonefile $rpz_path to point at the sample"
else
  # As Debian's /etc/unbound/unbound.conf (include-toplevel of unbound.conf.d), with a directory of
  # ours and no chroot or user switch.
  mkdir -p "$tmp/unbound/unbound.conf.d"
  sed "s#zonefile: $rpz_path\$#zonefile: $rpz_zone#" "$unbound_snippet" \
    >"$tmp/unbound/unbound.conf.d/sluice-rpz.conf"
  printf 'server:\n    directory: "%s"\n    chroot: ""\n    username: ""\n    pidfile: "%s"\ninclude-toplevel: "%s"\n' \
    "$tmp/unbound" "$tmp/unbound/unbound.pid" "$tmp/unbound/unbound.conf.d/*.conf" \
    >"$tmp/unbound/unbound.conf"
  expect_rc 0 "unbound-checkconf: sluice-rpz.conf in unbound.conf.d (rpz zone loaded)" \
    unbound-checkconf "$tmp/unbound/unbound.conf"
  # Self-test: the snippet was read (its module-config, with respip, is in force).
  expect_rc 0 "unbound-checkconf sees sluice-rpz.conf's module-config (respip)" bash -c \
    "unbound-checkconf -o module-config '$tmp/unbound/unbound.conf' | grep -q '^respip '"
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
