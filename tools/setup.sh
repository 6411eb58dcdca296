#!/usr/bin/env bash
# Installs every Debian 12 package Sluice's build and tests need. Idempotent: packages already
# present are left as they are; a second run only refreshes the package lists.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  clang libclang-rt-14-dev
  libdpdk-dev dpdk
  libnl-3-dev libnl-route-3-dev
  libyaml-cpp-dev prometheus-cpp-dev doctest-dev
  libssl-dev libsqlite3-dev libpcap-dev libidn2-dev
  libndpi-dev
  libcpp-httplib-dev nlohmann-json3-dev libcli11-dev libboost-dev
  tshark python3-scapy python3-cryptography tcpreplay iproute2
  prometheus minisign curl openssl bird2
  etcd-server etcd-client
  chromium fonts-dejavu-core ngtcp2-client ngtcp2-server
  unbound bind9-dnsutils bind9-utils
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (it installs Debian packages)" >&2
  exit 1
fi

# The console's browser tests (tests/console): Debian's chromium (above), driven by
# playwright-core at the exact version of tests/console/package-lock.json (npm ci; no browser
# download). Node.js and npm: the machine's own (Node.js >= 20), else Debian's. npm ci runs
# again only when the lockfile changed since the last install.
console_test_deps() {
  local dir lock stamp
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/console"
  lock=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  stamp="$dir/node_modules/.sluice-lockfile-sha256"
  if ! command -v npm >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nodejs npm
  fi
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock" ] &&
     [ -f "$dir/node_modules/playwright-core/package.json" ]; then
    return 0
  fi
  echo "setup.sh: npm ci in tests/console (playwright-core, no browser download)"
  (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock" >"$stamp"
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup.sh: all ${#packages[@]} packages present"
  console_test_deps
  exit 0
fi

echo "setup.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts an etcd member on 127.0.0.1:2379 when it installs etcd-server; the tests start
# clusters of their own on free ports, so stop the one we just caused (a pre-existing one stays).
if [[ " ${missing[*]} " == *" etcd-server "* ]] && command -v systemctl >/dev/null; then
  systemctl disable --now etcd >/dev/null 2>&1 || true
fi
console_test_deps
