#!/bin/sh
# Times sluice-rtbh installing and then removing N blackhole routes (default 100,000: 90% IPv4
# /32../24, 10% IPv6 /48) in a throwaway network namespace. Root only; touches no host route.
#   tools/rtbh_bench.sh BUILD_DIR [N]
# Prints the enforcer's own timing (route dump + netlink batches) and the wall time from the
# start of the apply (parse of the policy included) to the routes being in the kernel, and the
# CPU time sluice-rtbh spent (user + system, the kernel's route work included): on a loaded
# machine wall time is mostly waiting for a CPU.
set -eu
build=${1:?usage: rtbh_bench.sh BUILD_DIR [N]}
n=${2:-100000}
bin="$build/sluice-rtbh"
ns="sluice-rtbh-bench-$$"
dir=$(mktemp -d)
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
/usr/bin/python3 - "$n" "$dir/block.yaml" <<'PY'
import sys
n = int(sys.argv[1])
with open(sys.argv[2], "w") as f:
    f.write("revision: 1\nrules:\n  - id: bulk\n    action: drop\n    prefixes:\n")
    v6 = n // 10
    for i in range(n - v6):  # distinct /32s in 10.0.0.0/8 and beyond
        f.write(f"      - {10 + (i >> 24)}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}/32\n")
    for i in range(v6):
        f.write(f"      - 2001:db8:{i >> 16:x}:{i & 0xffff:x}::/64\n")
PY
printf 'revision: 2\nrules: []\n' > "$dir/lift.yaml"
cp "$dir/block.yaml" "$dir/policy.yaml"
ip netns add "$ns"
cpu() { awk '{printf "%.2f", ($14 + $15) / '"$(getconf CLK_TCK)"'}' "/proc/$pid/stat"; }
count() { ip netns exec "$ns" sh -c "ip -4 route show table 4242 proto 165 | wc -l; ip -6 route show table 4242 proto 165 | wc -l" | paste -sd+ | bc; }
t0=$(date +%s.%N)
ip netns exec "$ns" "$bin" --policy "$dir/policy.yaml" --reconcile-interval 3600 2>"$dir/log" &
pid=$!
until grep -q "revision 1 in force" "$dir/log"; do sleep 0.05; kill -0 $pid; done
t1=$(date +%s.%N)
c1=$(cpu)
echo "install: $(grep 'revision 1 in force' "$dir/log" | sed 's/.*): //')"
echo "install wall (start, YAML parse, dump, adds): $(echo "$t1 - $t0" | bc) s (CPU of sluice-rtbh: $c1 s); routes in kernel: $(count)"
cp "$dir/lift.yaml" "$dir/policy.yaml"
c0=$(cpu)
t0=$(date +%s.%N)
kill -HUP $pid
until grep -q "revision 2 in force" "$dir/log"; do sleep 0.05; done
t1=$(date +%s.%N)
c1=$(cpu)
echo "removal: $(grep 'revision 2 in force' "$dir/log" | sed 's/.*): //')"
echo "removal wall (SIGHUP to done): $(echo "$t1 - $t0" | bc) s (CPU: $(echo "$c1 - $c0" | bc) s); routes in kernel: $(count)"
