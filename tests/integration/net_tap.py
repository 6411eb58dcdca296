#!/usr/bin/python3
"""net_tap: sluice-dataplane on DPDK's TAP PMD, and a ClientHello that arrives as a chained mbuf.

    [client ns] sltc<pid> (MTU 9000) = net_tap0 [sluice-dataplane] net_tap1 = slts<pid> [server ns]

The dataplane creates both TAP interfaces in the test's own network namespace; once it runs,
each is moved into a named namespace (client, server) and given an address. The server runs the
threaded TLS origin of tools/netlab.py; the policy resets telegram.org by name.

  1. curl -k https://example.org through the taps loads; https://telegram.org is reset.
  2. A 3 KB ClientHello for telegram.org, sent as ONE TCP segment (the client's tap has MTU
     9000 and the server advertises an MSS of 8960), reaches net_tap, which reads it into a
     chain of 2048-byte mbufs (scattered rx, --mbuf-size 2048); the worker judges the chain
     whole: the client gets a reset, and multiseg_gathered counts the chain.
  3. The same hello for example.org is read whole too and passes the policy; DPDK 22.11's
     net_tap reports a maximum frame of 1522 bytes (rte_eth_dev_set_mtu refuses more), so it
     refuses to send the 3 KB frame on: counted as tx_refused, not classified as anything else.

Root, /dev/net/tun, iproute2, unshare, curl, openssl; otherwise exit 77. Everything runs in a
network namespace of the test's own plus two named ones (sl-tap-{cli,srv}-<pid>), removed on
every exit path.

    net_tap.py --dataplane BIN   (SLUICE_KEEP_TEST_DIR keeps the work dir)"""

import argparse
import json
import os
import subprocess
import sys

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools"))
import netlab  # noqa: E402
from netlab import in_ns, http_json, metric_sum  # noqa: E402

CLIENT, SERVER, NET = "10.62.0.1", "10.62.0.2", "10.62.0.0/24"
MGMT, METRICS = 9492, 9491
JUMBO_MTU = 9000
BIG_HELLO = 3000  # bytes of TLS record: more than one 2048-byte mbuf, less than the MSS

# A ClientHello of about `size` bytes for `sni` (padding extension), sent with one send() on a
# TCP connection; prints the MSS, the hello's length and what came back.
HELLO_CLIENT = r"""
import json, os, socket, struct, sys
server, sni, size = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
def ext(t, body):
    return struct.pack("!HH", t, len(body)) + body
def hello(pad):
    name = struct.pack("!BH", 0, len(sni)) + sni
    exts = (ext(0, struct.pack("!H", len(name)) + name) +
            ext(16, struct.pack("!H", 3) + b"\x02h2") +
            ext(43, b"\x04\x03\x04\x03\x03") +                        # TLS 1.3, 1.2
            ext(10, struct.pack("!HH", 2, 0x001d)) +                    # x25519
            ext(13, struct.pack("!HHH", 4, 0x0804, 0x0403)) +
            ext(51, struct.pack("!HHH", 36, 0x001d, 32) + os.urandom(32)) +
            ext(21, bytes(pad)))
    body = (b"\x03\x03" + os.urandom(32) + b"\x20" + os.urandom(32) +
            struct.pack("!H", 6) + b"\x13\x01\x13\x02\x13\x03" + b"\x01\x00" +
            struct.pack("!H", len(exts)) + exts)
    msg = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(msg)) + msg
record = hello(0)
record = hello(max(0, size - len(record)))
s = socket.create_connection((server, 443), timeout=5)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
mss = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
s.sendall(record)
try:
    data = s.recv(4096)
    outcome = "answered" if data else "closed"
except ConnectionResetError:
    outcome = "reset"
except socket.timeout:
    outcome = "timeout"
print(json.dumps({"mss": mss, "length": len(record), "outcome": outcome}))
"""


class Lab:
    def __init__(self, story, dataplane, tag):
        self.s, self.dataplane, self.tag = story, dataplane, tag
        self.ns_cli, self.ns_srv = "sl-tap-cli-" + tag, "sl-tap-srv-" + tag
        self.if_cli, self.if_srv = "sltc" + tag, "slts" + tag  # <= 15 characters

    def namespace(self, ns):
        netlab.run(["ip", "netns", "add", ns])
        self.s.namespaces.append(ns)
        netlab.run(in_ns(ns, ["ip", "link", "set", "lo", "up"]))
        for scope in ("all", "default"):  # no IPv6 neighbour discovery noise on the taps
            netlab.run(in_ns(ns, ["sysctl", "-qw", "net.ipv6.conf.%s.disable_ipv6=1" % scope]))

    def move_tap(self, ifname, ns, addr, mtu):
        netlab.run(["ip", "link", "set", ifname, "netns", ns])
        netlab.run(in_ns(ns, ["ip", "addr", "add", addr, "dev", ifname]))
        netlab.run(in_ns(ns, ["ip", "link", "set", ifname, "mtu", str(mtu), "up"]))
        r = subprocess.run(in_ns(ns, [sys.executable, "-c", netlab.OFFLOADS_OFF, ifname]),
                           capture_output=True, text=True)
        if r.returncode != 0:
            self.s.say("offloads on %s: %s" % (ifname, r.stderr.strip()))

    def up(self):
        s = self.s
        cert, key = netlab.self_signed_cert(s.work, "telegram.org",
                                            ["DNS:telegram.org", "DNS:example.org"])
        path = os.path.join(s.work, "policy.yaml")
        with open(path, "w") as f:
            f.write(netlab.telegram_policy(1, "tg-reset", "TEST-NET-TAP", "reset"))
        prefix = "sluice-tap-" + self.tag
        s.dpdk_prefixes.append(prefix)
        cpus = os.cpu_count() or 1
        cmd = [self.dataplane, "--no-huge", "--no-pci", "--no-shconf", "--no-telemetry",
               "-m", "256", "--file-prefix=" + prefix, "--lcores", "(0-1)@(0-%d)" % (cpus - 1),
               "--log-level=warning",
               "--vdev", "net_tap0,iface=" + self.if_cli, "--vdev", "net_tap1,iface=" + self.if_srv,
               "--", "--subscriber-port", "0", "--internet-port", "1",
               "--mgmt", "127.0.0.1:%d" % MGMT, "--metrics", "127.0.0.1:%d" % METRICS,
               "--flow-table-size", "4096", "--reassembly-buffers", "256",
               "--frag-table-size", "256", "--mbuf-size", "2048", "--policy", path]
        proc = s.spawn("sluice-dataplane", cmd, "dataplane.log", cwd=s.work)
        ok = netlab.wait_for(lambda: proc.poll() is not None or self.status(), 30, 0.2)
        s.must(bool(ok) and proc.poll() is None, "sluice-dataplane runs on two net_tap ports")
        # The ports are started: the TAP netdevs can leave for their namespaces now (the PMD
        # keeps its file descriptors; only its own ioctls on the netdev stop reaching it).
        self.namespace(self.ns_cli)
        self.namespace(self.ns_srv)
        self.move_tap(self.if_cli, self.ns_cli, CLIENT + "/24", JUMBO_MTU)
        self.move_tap(self.if_srv, self.ns_srv, SERVER + "/24", 1500)
        # The server sends at most 1500-byte frames (what net_tap can pass on) but lets the
        # client send segments up to its own 9000-byte MTU.
        netlab.run(in_ns(self.ns_srv, ["ip", "route", "replace", NET, "dev", self.if_srv,
                                       "proto", "kernel", "scope", "link", "src", SERVER,
                                       "advmss", str(JUMBO_MTU - 40)]))
        s.start_origin(self.ns_srv, cert, key, "origin.log")

    def status(self):
        return http_json("http://127.0.0.1:%d/status" % MGMT)

    def metrics(self):
        return http_json("http://127.0.0.1:%d/metrics" % METRICS) or ""

    def event(self, name):
        return metric_sum(self.metrics(), "sluice_dataplane_engine_events_total", event=name)

    def event_reaches(self, name, at_least, timeout=5):
        """The counter once it is at least `at_least` (the metrics lag the workers by up to a
        control-loop period), or its value when `timeout` passed."""
        netlab.wait_for(lambda: self.event(name) >= at_least, timeout, 0.2)
        return self.event(name)

    def curl(self, name):
        r = subprocess.run(in_ns(self.ns_cli, [
            "curl", "-sk", "--max-time", "8", "--resolve", "%s:443:%s" % (name, SERVER),
            "https://%s/" % name]), capture_output=True, text=True)
        return r.returncode, r.stdout

    def big_hello(self, name):
        r = subprocess.run(in_ns(self.ns_cli, [sys.executable, "-c", HELLO_CLIENT, SERVER, name,
                                               str(BIG_HELLO)]),
                           capture_output=True, text=True, timeout=30)
        try:
            return json.loads(r.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            self.s.say("hello client: rc %d, %s" % (r.returncode, r.stderr.strip()))
            return {}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dataplane", required=True)
    a = p.parse_args()
    why = netlab.namespaces_unavailable()
    if why is None and not os.path.exists("/dev/net/tun"):
        why = "no /dev/net/tun"
    if why is not None:
        print("SKIPPED: %s" % why)
        return 77
    if os.environ.get("SLUICE_TAP_ISOLATED") != "1":
        netlab.sweep_stale_namespaces(r"^(sl-tap-(?:cli|srv)-(\d+))", "net_tap")
        return netlab.isolate("SLUICE_TAP_ISOLATED")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)

    story = netlab.Story("sluice-net-tap-", "SLUICE_KEEP_TEST_DIR")
    lab = Lab(story, os.path.abspath(a.dataplane), str(os.getpid()))
    s = story

    def body():
        s.step("set-up: the dataplane on net_tap, its taps moved into two namespaces")
        lab.up()

        s.step("curl through the taps, `reset` on telegram.org")
        rc, out = lab.curl("example.org")
        s.check(rc == 0 and "origin server (tls) for example.org" in out,
                "https://example.org loads through net_tap (curl rc %d)" % rc)
        rc, out = lab.curl("telegram.org")
        s.check(rc != 0 and "origin server" not in out,
                "https://telegram.org is stopped (curl rc %d %s)" % (rc, netlab.curl_error(rc)))
        resets = lab.event_reaches("resets_sent", 2)
        s.check(resets >= 2, "resets sent for it (resets_sent %g)" % resets)
        s.check(lab.event("multiseg_gathered") == 0,
                "no chained mbuf yet: curl's frames fit one mbuf")

        s.step("a %d-byte ClientHello for telegram.org in one frame" % BIG_HELLO)
        r = lab.big_hello("telegram.org")
        s.say("client: %s" % json.dumps(r))
        s.must(r.get("mss", 0) >= r.get("length", 1 << 20),
               "the hello (%s bytes) fits one segment (MSS %s)" % (r.get("length"), r.get("mss")))
        s.check(r.get("outcome") == "reset", "the client got a reset (%s)" % r.get("outcome"))
        gathered = lab.event_reaches("multiseg_gathered", 1)
        s.check(gathered == 1, "net_tap delivered it as a chained mbuf, judged whole "
                "(multiseg_gathered %g)" % gathered)
        after = lab.event_reaches("resets_sent", resets + 2)
        s.check(after >= resets + 2, "two resets sent for it (resets_sent %g -> %g)"
                % (resets, after))
        s.check(lab.event("multiseg_too_long") == 0, "nothing too long to read")
        verdicts = metric_sum(lab.metrics(), "sluice_dataplane_verdicts_total", rule="tg-reset")
        s.check(verdicts >= 2, "verdicts_total{rule=tg-reset} %g (curl's flow and this one)"
                % verdicts)

        s.step("the same hello for example.org: read whole, allowed, too big for net_tap's tx")
        refused = lab.event("tx_refused")
        r = lab.big_hello("example.org")
        s.say("client: %s" % json.dumps(r))
        s.check(r.get("outcome") != "reset", "not reset (%s)" % r.get("outcome"))
        again = lab.event_reaches("multiseg_gathered", gathered + 1)
        s.check(again > gathered, "read whole again (multiseg_gathered %g; the client "
                "retransmits it)" % again)
        now_refused = lab.event_reaches("tx_refused", refused + 1)
        s.check(now_refused > refused,
                "net_tap refused the 3 KB frame on (tx_refused %g -> %g): its maximum frame is "
                "1522 bytes in DPDK 22.11" % (refused, now_refused))
        st = lab.status() or {}
        s.check(st.get("healthy") is True, "the node is healthy")

    return netlab.run_story(story, body, "net_tap", ["dataplane.log", "origin.log"],
                            time_limit=90)


if __name__ == "__main__":
    sys.exit(main())
