#!/usr/bin/env python3
"""The whole sluice-dataplane process on net_null or net_pcap ports, to show what the I/O
layer (rx/tx bursts, mbufs, the lcore loop, telemetry) costs on top of the engine (issue 17).

Starts sluice-dataplane with two net_null vdevs (subscriber and internet side), one worker lcore
and the Telegram policy of config/policy.example.yaml, lets it run, and reads its Prometheus
counters twice, `--seconds` apart: packets per second of the worker and its busy cycles per
packet.

What the worker sees: net_null's rx hands out `--size`-byte frames as fast as they are polled,
with copy=1 each frame's bytes are copied into the mbuf (as a NIC's DMA would have written
them); the bytes are zeros, so every frame is "not IP" to the parser (Ethernet type 0) and is
forwarded without a flow: the figure is the I/O layer plus the cheapest parse, an upper bound
for the process. Compare with bench_ndpi's engine-only figures (tests/perf/bench_ndpi.cpp) for
what classification adds. No hugepages (--no-huge), no privileges, nothing leaves the process.

With --mix FLOWS the ports are net_pcap instead, replaying bench_ndpi's generated mix (written
with `bench_ndpi --pcap`: the client-to-server frames on the subscriber port, the replies on the
internet port) from memory in a loop (infinite_rx=1: each rx copies the frame into a fresh mbuf,
as a NIC's DMA would; tx drops). The first loop creates and classifies the flows; later loops
find them in the table (the idle timeout outlasts a loop), so the figure is mostly established
traffic of the mix's shapes (tunnels, IPv6, VLANs), plus blocked flows' drops and resets. The two
ports loop independently, so a reply may come before its request on later loops.

  tools/perf_dataplane.py --build build [--seconds 10] [--size 64]
  tools/perf_dataplane.py --build build --mix 10000
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    totals = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m:
            totals[m.group(1)] = totals.get(m.group(1), 0.0) + float(m.group(3))
    return totals


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--source", default=os.path.join(os.path.dirname(__file__), ".."))
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--size", type=int, default=64, help="net_null frame size, bytes")
    ap.add_argument("--no-policy", action="store_true", help="forward everything (no --policy)")
    ap.add_argument("--mix", type=int, default=0, metavar="FLOWS",
                    help="net_pcap ports replaying bench_ndpi's mix of FLOWS flows (0: net_null)")
    args = ap.parse_args()

    binary = os.path.join(args.build, "sluice-dataplane")
    if not os.path.exists(binary):
        found = [os.path.join(r, f) for r, _, fs in os.walk(args.build) for f in fs
                 if f == "sluice-dataplane"]
        if not found:
            print("sluice-dataplane not found under %s (ninja sluice-dataplane)" % args.build)
            return 1
        binary = found[0]
    metrics = free_port()
    cpus = os.cpu_count() or 1
    tmp = None  # the mix's pcap files, kept until the dataplane is gone
    if args.mix:
        tmp = tempfile.TemporaryDirectory(prefix="sluice-perf-dp-")
        bench = os.path.join(args.build, "tests", "bench_ndpi")
        mix = os.path.join(tmp.name, "mix.pcap")
        out = subprocess.run([bench, "--pcap", mix, "--flows", str(args.mix)],
                             capture_output=True, text=True)
        m = re.search(r"wrote (\d+) frames", out.stdout)
        if out.returncode != 0 or not m:
            print(out.stdout + out.stderr)
            print("FAIL: %s --pcap did not write the mix" % bench)
            return 1
        frames = int(m.group(1))
        # infinite_rx holds every frame of both files in mbufs, and copies each into a new one.
        mbufs = frames + 262144
        mem_mb = 1024 + mbufs * 2304 // (1 << 20)
        vdevs = ["--vdev", "net_pcap0,rx_pcap=%s.subscriber.pcap,infinite_rx=1" % mix,
                 "--vdev", "net_pcap1,rx_pcap=%s.internet.pcap,infinite_rx=1" % mix]
        extra = ["--mbufs", str(mbufs)]
        what = "net_pcap rx (infinite_rx) of bench_ndpi's mix, %d flows, %d frames a loop" % (
            args.mix, frames)
    else:
        vdev = "size=%d,copy=1" % args.size
        mem_mb = 1024
        vdevs = ["--vdev", "net_null0," + vdev, "--vdev", "net_null1," + vdev]
        extra = []
        what = ("net_null rx/tx, %d-byte zero frames (copy=1: not IP, forwarded unclassified)"
                % args.size)
    cmd = [binary, "--no-huge", "--no-pci", "--no-shconf", "--no-telemetry", "-m", str(mem_mb),
           "--file-prefix=perf-dp-%d" % os.getpid(), "--lcores", "0@0,1@%d" % (cpus - 1),
           "--log-level=warning"] + vdevs + [
           "--", "--subscriber-port", "0", "--internet-port", "1",
           "--metrics", "127.0.0.1:%d" % metrics, "--mgmt", "none"] + extra
    if not args.no_policy:
        cmd += ["--policy", os.path.join(args.source, "config", "policy.example.yaml")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 30
        first = None
        while time.time() < deadline:
            if proc.poll() is not None:
                print(proc.stdout.read())
                print("sluice-dataplane exited with %d" % proc.returncode)
                return 1
            try:
                first = scrape(metrics)
                if first.get("sluice_dataplane_worker_packets_total", 0) > 0:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        time.sleep(args.warmup)
        a = scrape(metrics)
        t0 = time.time()
        time.sleep(args.seconds)
        b = scrape(metrics)
        dt = time.time() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()

    def delta(name):
        return b.get(name, 0.0) - a.get(name, 0.0)

    pkts = delta("sluice_dataplane_worker_packets_total")
    port_pkts = delta("sluice_dataplane_port_packets_total")
    bursts = delta("sluice_dataplane_worker_bursts_total")
    busy = delta("sluice_dataplane_worker_busy_cycles_total")
    if pkts <= 0:
        print("FAIL: the worker counted no packets")
        return 1
    print("sluice-dataplane, 1 worker lcore (cpu %d), %s, %s, --no-huge" %
          (cpus - 1, what, "no policy" if args.no_policy else "policy.example.yaml"))
    print("  %.2f Mpps per worker over %.1f s (wall clock, %.0f ns per packet in all); %.0f busy "
          "cycles per packet (inside the engine's process(): rx_burst is outside)"
          % (pkts / dt / 1e6, dt, 1e9 * dt / pkts, busy / pkts if busy else float("nan")))
    print("  %.1f packets per burst; port counters (rx + tx, both ports) %.2f M/s"
          % (pkts / bursts if bursts else float("nan"), port_pkts / dt / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
