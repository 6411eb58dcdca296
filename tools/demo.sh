#!/usr/bin/env bash
# The main job: on a fresh Debian 12 machine (root), build Sluice and tell its story end to end
# (tools/demo.py): sluice-controld and two sluice-dataplane nodes, each inline between network
# namespaces with real TLS and HTTP traffic; a ministry's signed directive blocks Telegram (by
# address and by name) and is approved; both nodes converge and stop Telegram while other traffic
# flows, shown with counters; a signed unblock lifts it; both converge and Telegram flows again;
# then the audit trail, the rollout timeline and where the metrics are. Without root or network
# namespaces it falls back to capture replay through the nodes' persisted snapshots, and says so.
#
# Then, as before, the classifier over real captures (Telegram's own traffic, and other
# messengers' that must not be touched) and the synthetic evasion/lookalike captures of
# tools/gen_captures.py, checked against the captures' ground truth (SLUICE_DEMO_CAPTURES=0
# skips it). Exits non-zero if any step did not happen as described.
#
#   tools/demo.sh [demo.py options: --mode auto|namespaces|replay, --hold, --time-limit S]
set -euo pipefail
cd "$(dirname "$0")/.."

testdata=${SLUICE_TESTDATA:-../shared/testdata}
captures=(telegram.pcap telegram_videocall.pcapng teams.pcap signal.pcap whatsapp.pcap
          tls_ech.pcapng dns.pcap)

if [ "$(id -u)" -eq 0 ]; then
  bash tools/setup.sh >/dev/null
else
  echo "demo.sh: not root: not installing packages (tools/setup.sh); the demo will replay captures"
fi
echo "demo.sh: building (build/) ..."
log=$(mktemp)
if ! { cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
       ninja -C build sluice-controld sluicectl sluice-dataplane sluice-fleet-sim sluice-classify \
         generated_captures; } >"$log" 2>&1; then
  tail -50 "$log" >&2
  rm -f "$log"
  echo "demo.sh: build failed" >&2
  exit 1
fi
rm -f "$log"

status=0
/usr/bin/python3 tools/demo.py --build build --source . --testdata "$testdata" "$@" || status=1
if [ "${SLUICE_DEMO_CAPTURES:-1}" = 0 ]; then
  exit $status
fi

echo
echo "== also: the classifier and the example policy over real and synthetic captures"

paths=()
for c in "${captures[@]}"; do paths+=("$testdata/captures/$c"); done
out=$(mktemp)
trap 'rm -f "$out"' EXIT
./build/sluice-classify --policy config/policy.example.yaml --apps config/apps \
  --at 2026-11-29T12:00:00Z --stopped "${paths[@]}" | tee "$out"

echo
echo "== checking against ground truth (tshark + nDPI prefixes, ${testdata}/captures/*.truth.tsv)"
for c in "${captures[@]}"; do
  # Telegram TCP/UDP flows per the truth: server address in Telegram's prefixes, or a Telegram name.
  want=$(grep -v '^#' "$testdata/captures/$c.truth.tsv" |
    awk -F'\t' '($1=="tcp"||$1=="udp") && ($15=="yes"||$16=="yes")' | wc -l)
  got=$(awk -v cap="$c:" '$1==cap {found=1} found && /^  => / {
          for (i=1;i<=NF;i++) { if ($i=="address,") a=$(i-2); if ($i=="name") n=$(i-2) }
          print a+n; exit }' "$out")
  if [ "$got" = "$want" ]; then verdict=ok; else verdict=MISMATCH; status=1; fi
  printf '  %-28s Telegram flows in truth %3s, stopped by policy %3s  %s\n' "$c" "$want" "$got" "$verdict"
done

# The real captures carry no Telegram *name* (Telegram's apps talk to addresses); synthetic ones
# (tools/gen_captures.py) show names deciding, through the tricks used to slip past DPI, and
# lookalike names that must not be touched. IP-fragment cases need the fast path's reassembly.
echo
echo "== names: evasion tricks and lookalikes (synthetic captures, build/generated)"
gen=build/generated
mapfile -t rows < <(awk -F'\t' 'NR>1 && $6 !~ /needs IP reassembly/ {print $1"\t"$5"\t"$2}' \
  "$gen/MANIFEST.tsv")
files=()
for r in "${rows[@]}"; do files+=("$gen/${r%%$'\t'*}"); done
./build/sluice-classify --policy config/policy.example.yaml --apps config/apps \
  --at 2026-11-29T12:00:00Z --verify-checksums "${files[@]}" >"$out"
for r in "${rows[@]}"; do
  IFS=$'\t' read -r file block description <<<"$r"
  got=$(awk -v cap="$file:" '$1==cap {found=1} found && /^  => / {
          for (i=1;i<=NF;i++) { if ($i=="address,") a=$(i-2); if ($i=="name") n=$(i-2) }
          print a+n; exit }' "$out")
  want=0
  [ "$block" = yes ] && want=1
  if [ "$got" = "$want" ]; then verdict=ok; else verdict=MISMATCH; status=1; fi
  word=forwarded
  [ "$got" = 1 ] && word=stopped
  printf '  %-40s %-9s %-4s %s\n' "$file" "$word" "$verdict" "$description"
done

echo
[ $status -eq 0 ] && echo "demo.sh: the story happened as described; in the captures every Telegram flow was stopped, nothing else touched" ||
  echo "demo.sh: FAILED (see FAIL and MISMATCH lines above)" >&2
exit $status
