"""Shared helpers for the sluice-dataplane integration scripts (run by ctest as root).

Each script calls `isolate()` first: it re-executes itself in a fresh network namespace
(`unshare --net`), so the management/metrics ports and any veth pairs it creates are its own
and vanish with it. Exit code 77 = skipped (not root / no unshare)."""

import argparse
import atexit
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

MGMT = "127.0.0.1:9470"
METRICS = "127.0.0.1:9469"


def args():
    p = argparse.ArgumentParser()
    p.add_argument("--dataplane", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--generated", required=True)
    p.add_argument("--testdata", required=True)
    return p.parse_args()


def isolate():
    if os.environ.get("SLUICE_IT_ISOLATED") == "1":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        return
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        print("SKIPPED: needs root and unshare (network namespace)")
        sys.exit(77)
    env = dict(os.environ, SLUICE_IT_ISOLATED="1")
    sys.exit(subprocess.call(["unshare", "--net", sys.executable] + sys.argv, env=env))


PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)


def write_empty_pcap(path):
    with open(path, "wb") as f:
        f.write(PCAP_HEADER)


def read_pcap_records(path):
    """Raw records (16-byte header + frame) of a little-endian classic Ethernet pcap."""
    out = []
    with open(path, "rb") as f:
        hdr = f.read(24)
        if struct.unpack("<I", hdr[:4])[0] not in (0xA1B2C3D4, 0xA1B23C4D) or \
                struct.unpack("<I", hdr[20:24])[0] != 1:
            raise ValueError("%s: not a little-endian Ethernet pcap" % path)
        while True:
            h = f.read(16)
            if len(h) < 16:
                return out
            caplen = struct.unpack("<IIII", h)[2]
            out.append(h + f.read(caplen))


def count_pcap(path):
    """Frames in a classic pcap file (what net_pcap writes)."""
    n = 0
    with open(path, "rb") as f:
        f.read(24)
        while True:
            h = f.read(16)
            if len(h) < 16:
                return n
            caplen = struct.unpack("<IIII", h)[2]
            f.seek(caplen, 1)
            n += 1


class Node:
    """A running sluice-dataplane (not offline): two ports, mgmt and metrics on loopback."""

    def __init__(self, binary, workdir, port0, port1, extra=(), lcores=None):
        self.workdir = workdir
        self.stats_json = os.path.join(workdir, "stats.json")
        self.log_path = os.path.join(workdir, "node.log")
        cpus = os.cpu_count() or 1
        lcores = lcores or ("0-2" if cpus >= 3 else "(0-2)@(0-%d)" % (cpus - 1))
        prefix = "sluice-it-%d" % os.getpid()
        # DPDK leaves its runtime directory behind (even with --no-shconf).
        atexit.register(shutil.rmtree, "/var/run/dpdk/" + prefix, True)
        cmd = [binary, "--no-huge", "--no-pci", "--no-shconf", "--no-telemetry", "-m", "768",
               "--file-prefix=" + prefix, "--lcores", lcores,
               "--log-level=warning", "--vdev", port0, "--vdev", port1, "--",
               "--subscriber-port", "0", "--internet-port", "1", "--mgmt", MGMT,
               "--metrics", METRICS, "--flow-table-size", "4096", "--reassembly-buffers", "256",
               "--frag-table-size", "256", "--stats-json", self.stats_json] + list(extra)
        self.cmd = cmd
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sluice-dataplane exited early:\n" + self.read_log())
            try:
                self.status()
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        raise RuntimeError("management endpoint did not come up:\n" + self.read_log())

    def read_log(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def status(self):
        with urllib.request.urlopen("http://%s/status" % MGMT, timeout=10) as r:
            return json.load(r)

    def post(self, path, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        req = urllib.request.Request("http://%s%s" % (MGMT, path), data=data, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def metrics(self):
        with urllib.request.urlopen("http://%s/metrics" % METRICS, timeout=10) as r:
            return r.read().decode()

    def wait_quiet(self, seconds=1.0, timeout=120):
        """Waits until the workers' packet counts stop moving for `seconds`."""
        last, since, deadline = None, time.time(), time.time() + timeout
        while time.time() < deadline:
            cur = [w["packets"] for w in self.status()["workers"]]
            if cur != last:
                last, since = cur, time.time()
            elif time.time() - since >= seconds:
                return sum(cur)
            time.sleep(0.1)
        raise RuntimeError("traffic did not settle")

    def stop(self, signal_it=True):
        """SIGTERM (unless the node exits by itself: offline), wait, return the final counters
        (the --stats-json dump)."""
        if signal_it and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if self.proc.returncode != 0:
            raise RuntimeError("sluice-dataplane exit code %d:\n%s"
                               % (self.proc.returncode, self.read_log()))
        with open(self.stats_json) as f:
            return json.load(f)


def tmpdir():
    return tempfile.mkdtemp(prefix="sluice-it-")


def policy_yaml(revision, domains, action="drop"):
    return ("revision: %d\ngenerated_at: 2026-01-01T00:00:00Z\nrules:\n"
            "  - id: names\n    directive: TEST-%d\n    action: %s\n    domains: [%s]\n"
            % (revision, revision, action, ", ".join('"%s"' % d for d in domains)))


def check(cond, msg):
    if not cond:
        print("FAIL: " + msg)
        sys.exit(1)
    print("ok: " + msg)
