#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (root) and runs every test Sluice has:
#   1. the release build with -Werror and its full ctest suite (unit, captures against truth);
#   2. the unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer;
#   3. each libFuzzer target (clang) for a short run over the parsers.
# Exits non-zero on the first failure. SLUICE_FUZZ_SECONDS (default 20) sets each fuzz run.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=$(nproc)
fuzz_seconds=${SLUICE_FUZZ_SECONDS:-20}

step() { printf '\n=== %s\n' "$*"; }

step "setup: Debian packages"
bash tools/setup.sh

# setup.sh installed every client the integration tests drive: a test that finds one missing
# fails instead of skipping.
export SLUICE_REQUIRE_REAL_CLIENTS=1 SLUICE_REQUIRE_BROWSER=1

step "build (release, -Werror)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_WERROR=ON
ninja -C build -j "$jobs"

step "tests (release)"
ctest --test-dir build --output-on-failure -j "$jobs"

step "build (AddressSanitizer + UndefinedBehaviorSanitizer, -Werror)"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DSLUICE_WERROR=ON \
  -DSLUICE_SANITIZE=ON -DSLUICE_PERF=OFF
ninja -C build-asan -j "$jobs"

step "tests (sanitizers)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j "$jobs"

step "fuzz targets (clang, libFuzzer + ASan/UBSan), ${fuzz_seconds}s each"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSLUICE_WERROR=ON -DSLUICE_FUZZ=ON -DSLUICE_PERF=OFF
fuzzers=$(cd tests/fuzz && ls fuzz_*.cpp | sed 's/\.cpp$//')
ninja -C build-fuzz -j "$jobs" $fuzzers
for f in $fuzzers; do
  corpus=build-fuzz/corpus/$f
  mkdir -p "$corpus"
  echo "--- $f"
  ./build-fuzz/tests/"$f" -max_total_time="$fuzz_seconds" -print_final_stats=1 "$corpus" \
    2>&1 | tail -n 3
done

release=$(ctest --test-dir build -N | grep -c 'Test *#')
sanitized=$(ctest --test-dir build-asan -N | grep -c 'Test *#')
fuzzed=$(echo "$fuzzers" | wc -w)
echo
echo "all tests passed: $release release, $sanitized sanitizer, $fuzzed fuzz targets"
echo "tests: $((release + sanitized + fuzzed)) passed, 0 failed"
