#!/usr/bin/python3
"""watchdog: the test-only stall hook (--test-hooks, POST /test/stall) stops a worker's
heartbeat; within a few seconds /status says healthy=false and sluice_dataplane_healthy is 0;
released, the node is healthy again."""

import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sluice_it as it  # noqa: E402

it.isolate()
a = it.args()


def healthy_metric(node):
    m = re.search(r"^sluice_dataplane_healthy(\{[^}]*\})? (\S+)$", node.metrics(), re.M)
    return None if m is None else float(m.group(2))


def wait_for(pred, timeout=6.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return False


work = it.tmpdir()
try:
    empty = os.path.join(work, "empty.pcap")
    it.write_empty_pcap(empty)
    node = it.Node(a.dataplane, work,
                   "net_pcap0,rx_pcap=%s,tx_pcap=%s" % (empty, os.path.join(work, "o0.pcap")),
                   "net_pcap1,rx_pcap=%s,tx_pcap=%s" % (empty, os.path.join(work, "o1.pcap")),
                   ["--test-hooks", "--node-id", "it-watchdog"])
    it.check(wait_for(lambda: healthy_metric(node) == 1.0), "healthy at start (metric 1)")
    it.check(node.status()["healthy"] is True, "/status healthy at start")
    code, _ = node.post("/test/stall?worker=1")
    it.check(code == 200, "stall hook accepted")
    t0 = time.time()
    it.check(wait_for(lambda: node.status()["healthy"] is False), "/status unhealthy")
    st = node.status()
    it.check(st["workers"][1]["stalled"] and not st["workers"][0]["stalled"],
             "only worker 1 marked stalled")
    it.check(wait_for(lambda: healthy_metric(node) == 0.0), "sluice_dataplane_healthy 0")
    print("noticed after %.1f s" % (time.time() - t0))
    code, _ = node.post("/test/unstall?worker=1")
    it.check(wait_for(lambda: node.status()["healthy"] is True), "healthy again once released")
    stats = node.stop()
    it.check(stats["healthy"] is True, "final counters: healthy")
finally:
    if os.environ.get("SLUICE_KEEP_TEST_DIR") is None:
        shutil.rmtree(work, ignore_errors=True)
