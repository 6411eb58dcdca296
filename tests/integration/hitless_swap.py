#!/usr/bin/python3
"""hitless_swap: replay a capture mix through sluice-dataplane (offline mode: the replay is
lossless and the node exits once the input is drained) while POST /policy/reload swaps two
policies 100 times, then account for every packet: received = forwarded + dropped_by_rule,
the output holds exactly `forwarded` frames, nothing was refused or lost, and the revision in
force is the last one loaded."""

import glob
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sluice_it as it  # noqa: E402

it.isolate()
a = it.args()

work = it.tmpdir()
try:
    # The mix: every synthetic capture plus a few real ones, 40 times over.
    sources = sorted(glob.glob(os.path.join(a.generated, "*.pcap")))
    sources += [os.path.join(a.testdata, "captures", f) for f in
                ("443-curl.pcap", "dns.pcap", "quic-29.pcap", "http-lines-split.pcap")]
    frames = []
    for s in sources:
        try:
            frames += it.read_pcap_records(s)
        except ValueError as e:
            print("not in the mix: %s" % e)
    big = os.path.join(work, "mix.pcap")
    repeat = 1500
    with open(big, "wb") as f:
        f.write(it.PCAP_HEADER)
        blob = b"".join(frames)
        for _ in range(repeat):
            f.write(blob)
    total = len(frames) * repeat
    empty = os.path.join(work, "empty.pcap")
    it.write_empty_pcap(empty)
    policies = []
    for i in range(1, 101):
        path = os.path.join(work, "p%d.yaml" % i)
        domains = ["telegram.org", "*.telegram.org"] if i % 2 else ["example.org", "t.me"]
        with open(path, "w") as f:
            f.write(it.policy_yaml(i, domains))
        policies.append(path)

    node = it.Node(a.dataplane, work,
                   "net_pcap0,rx_pcap=%s,tx_pcap=%s" % (big, os.path.join(work, "out0.pcap")),
                   "net_pcap1,rx_pcap=%s,tx_pcap=%s" % (empty, os.path.join(work, "out1.pcap")),
                   ["--offline", "--policy", policies[0], "--no-checksum-check", "--burst", "8"])
    during = 0
    for i, path in enumerate(policies[1:], start=2):
        code, body = node.post("/policy/reload", {"path": path})
        it.check(code == 200 and body["revision"] == i, "reload %d -> 200, revision %d" % (i, i)) \
            if i in (2, 100) else (code == 200 and body["revision"] == i) or it.check(
                False, "reload %d: %d %s" % (i, code, body))
        st = node.status()
        if sum(w["packets"] for w in st["workers"]) < total:
            during += 1
    print("reloads while traffic was still flowing: %d of 99" % during)
    it.check(node.status()["revision"] == 100, "revision in force is the last one loaded (100)")
    it.check(during == 99, "every reload happened while traffic was flowing")
    stats = node.stop(signal_it=False)
    ev = stats["engine_events"]
    received = ev["packets_in"] + ev["packets_out"]
    it.check(received == total, "received %d = input %d" % (received, total))
    it.check(received == ev["forwarded"] + ev["dropped_by_rule"],
             "received = forwarded %d + dropped_by_rule %d" % (ev["forwarded"], ev["dropped_by_rule"]))
    out = it.count_pcap(os.path.join(work, "out1.pcap"))
    it.check(out == ev["forwarded"], "output frames %d = forwarded" % out)
    it.check(it.count_pcap(os.path.join(work, "out0.pcap")) == 0, "nothing sent back (drop rules)")
    it.check(ev["tx_refused"] == 0 and ev["dispatch_ring_full_drops"] == 0
             and ev["dispatch_tx_refused"] == 0, "no packet refused or dropped by the node")
    it.check(stats["policy_revision"] == 100 and stats["policy_reload_failures"] == 0,
             "final counters: revision 100, no reload failures")
    it.check(ev["dropped_by_rule"] > 0, "the policies did drop something")
finally:
    if os.environ.get("SLUICE_KEEP_TEST_DIR") is None:
        shutil.rmtree(work, ignore_errors=True)
