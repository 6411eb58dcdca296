#!/usr/bin/python3
"""bad_policy: a policy with a YAML error is refused (422 naming line and column), the previous
one stays in force (/status, and traffic sent afterwards is still enforced by it), and start-up
with a bad policy exits non-zero with the error. Traffic comes in live through a veth pair (net_pcap
rx_iface) inside the test's own network namespace."""

import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sluice_it as it  # noqa: E402

it.isolate()
a = it.args()

work = it.tmpdir()
try:
    good = os.path.join(work, "good.yaml")
    with open(good, "w") as f:
        f.write(it.policy_yaml(7, ["telegram.org", "*.telegram.org"]))
    bad = os.path.join(work, "bad.yaml")
    with open(bad, "w") as f:
        f.write("revision: 8\nrules:\n  - id: broken\n    action: drop\n    domains: [telegram.org\n")

    # Start-up with the bad policy: refused before any device is touched.
    r = subprocess.run([a.dataplane, "--no-huge", "--no-pci", "--", "--subscriber-port", "0",
                        "--internet-port", "1", "--policy", bad], capture_output=True, text=True)
    it.check(r.returncode != 0, "start-up with a bad policy exits non-zero (%d)" % r.returncode)
    it.check(re.search(r"bad\.yaml:\d+:\d+:", r.stderr) is not None,
             "start-up error names file:line:column: " + r.stderr.strip().splitlines()[-1])

    for cmd in (["ip", "link", "add", "sl_va", "type", "veth", "peer", "name", "sl_vb"],
                ["sysctl", "-qw", "net.ipv6.conf.sl_va.disable_ipv6=1"],
                ["sysctl", "-qw", "net.ipv6.conf.sl_vb.disable_ipv6=1"],
                ["ip", "link", "set", "sl_va", "up"], ["ip", "link", "set", "sl_vb", "up"]):
        subprocess.run(cmd, check=True)
    empty = os.path.join(work, "empty.pcap")
    it.write_empty_pcap(empty)
    out1 = os.path.join(work, "out1.pcap")
    node = it.Node(a.dataplane, work,
                   "net_pcap0,rx_iface=sl_vb,tx_pcap=%s" % os.path.join(work, "out0.pcap"),
                   "net_pcap1,rx_pcap=%s,tx_pcap=%s" % (empty, out1),
                   ["--policy", good])
    it.check(node.status()["revision"] == 7, "good policy (revision 7) in force")
    code, body = node.post("/policy/reload", {"path": bad})
    it.check(code == 422, "reload of a YAML error -> 422")
    it.check(re.search(r"bad\.yaml:\d+:\d+:", body.get("error", "")) is not None,
             "the error names line and column: " + body.get("error", ""))
    st = node.status()
    it.check(st["revision"] == 7 and st["reload_failures"] == 1,
             "/status: still revision 7, 1 reload failure")

    from scapy.all import rdpcap, sendp  # noqa: E402
    blocked = [bytes(p) for p in rdpcap(os.path.join(a.generated, "plain_sni.pcap"))]
    allowed = [bytes(p) for p in rdpcap(os.path.join(a.generated, "allowed_example_org.pcap"))]
    for f in allowed + blocked:
        sendp(f, iface="sl_va", verbose=False)
        time.sleep(0.01)
    node.wait_quiet()
    stats = node.stop()
    out = [bytes(p) for p in rdpcap(out1)]
    it.check(all(f in out for f in allowed), "allowed flow (example.org) forwarded")
    it.check(all(f in out for f in blocked[:3]) and not any(f in out for f in blocked[3:]),
             "telegram.org stopped at its ClientHello (frame 4) by the old policy")
    it.check(stats["policy_revision"] == 7 and stats["policy_reload_failures"] == 1,
             "final counters: revision 7, 1 reload failure")
finally:
    subprocess.run(["ip", "link", "del", "sl_va"], stderr=subprocess.DEVNULL)
    if os.environ.get("SLUICE_KEEP_TEST_DIR") is None:
        shutil.rmtree(work, ignore_errors=True)
