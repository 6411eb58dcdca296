#!/usr/bin/python3
"""big_policy_bench: a big real policy end to end (issue 16). A ministry directive naming
1,000,000 domains and 100,000 prefixes goes through sluice-controld to two sluice-dataplane
nodes while traffic flows through one of them; prints the figures and writes them as JSON.

  tools/big_policy_bench.py [--build DIR] [--source DIR] [--domains N] [--prefixes N] [--smoke]
                            [--seed S] [--rate PPS] [--mem MB] [--json FILE] [--time-limit S]

What runs (all of it made here, all of it removed on every exit path):
  - the directive, generated deterministically (tools/big_policy_gen.py: realistic names under
    real TLDs, "*." patterns, IDN names, IPv4 and IPv6 prefixes of many lengths; always
    telegram.org, *.telegram.org and 149.154.160.0/20), signed with a ministry key made now;
  - sluice-controld over TLS (throwaway CA, SQLite, a node CA), its directive limits raised to
    what this directive needs (limits.directive_bytes / directive_entries and
    server.max_document_bytes / max_body_bytes: the defaults, 4 MiB and 200,000 entries, refuse
    it, as they should for an unconfigured controller);
  - two sluice-dataplane nodes (edge-a, edge-b) in controller mode, each with its own client
    certificate (sluicectl nodes enroll), inline on net_af_packet between a client and a server
    network namespace; EAL memory -m MB without hugepages;
  - through edge-a, a steady UDP stream (RATE packets a second, sequence-numbered) from the
    client namespace to the server namespace, counted on both sides from before the submission
    to after enforcement: the two policy swaps (the shadow revision at submission, the enforcing
    one at approval) must lose none of it.
The story: both nodes converge with no directive -> https://telegram.org flows through both ->
submit (shadow revision: counted, not enforced) -> approve -> both nodes enforce: telegram.org
reset by name, 149.154.167.99 stopped by address, example.org on the same server still flows,
the UDP stream lost nothing.

Figures: directive bytes and its generation/signing time; submit and approve wall times (the
controller parses, validates and compiles inside them); snapshot bytes as served (the
controller's snapshot_bytes_total over snapshots_served_total, and the node's persisted file);
the node's own timings from /status (controller.last_snapshot: signature check, policy parse,
compile + swap, persist); node RSS (VmRSS, VmHWM) before and after; the controller's RSS; for
each revision the time from the submit/approve answer to each node's /status showing it; the
UDP stream's sent/received/lost and its longest gap.

--smoke (20,000 domains, 2,000 prefixes) is the ctest integration_big_policy_smoke.
Exit 0: every check held; 1: some did not; 2: usage / missing binaries; 77: skipped (not
root, no network namespaces)."""

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from datetime import timedelta

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import big_policy_gen  # noqa: E402
import netlab  # noqa: E402
from netlab import Story, in_ns, wait_for  # noqa: E402
from demo import now, rfc  # noqa: E402

ISSUER = "ministry-of-communications"
TELEGRAM_ADDR = "149.154.167.99"  # inside 149.154.160.0/20, always in the directive
UDP_PORT = 5999
ENV_FLAG = "SLUICE_BIG_POLICY_ISOLATED"
NS_PATTERN = r"^(sl-big-(\d+)-edge-[ab]-(cli|srv))\b"
CONTROLLER_PORT = 9490  # in the benchmark's own network namespace
NODES = [
    {"id": "edge-a", "labels": "site=edge-a", "mgmt": 9475, "metrics": 9465, "net": "10.97.1",
     "traffic": True},
    {"id": "edge-b", "labels": "site=edge-b", "mgmt": 9476, "metrics": 9466, "net": "10.97.2",
     "traffic": False},
]

# The stream: sequence-numbered UDP datagrams at a fixed rate (paced by deadline, so a late
# wake-up sends the ones it owes at once) until SIGTERM; then prints how many it sent.
UDP_SENDER = r"""
import json, signal, socket, struct, sys, time
dst, port, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
seq, t0 = 0, time.monotonic()
last, gap, gap_at = t0, 0.0, 0.0
pad = b"\0" * 56
while not stop:
    now = time.monotonic()
    if now - last > gap:  # the sender's own stalls (a starved process), told apart from the path's
        gap, gap_at = now - last, time.time() - (now - last)
    last = now
    due = int((now - t0) * rate) + 1
    while seq < due and not stop:
        s.sendto(struct.pack("!Q", seq) + pad, (dst, port))
        seq += 1
    time.sleep(min(0.01, 1.0 / rate))
print(json.dumps({"sent": seq, "sender_max_gap_ms": round(gap * 1000, 1), "sender_max_gap_at": gap_at}),
      flush=True)
"""

# Counts what arrives: distinct sequence numbers, duplicates, the longest gap between two
# datagrams (when, as unix time), until SIGTERM; prints JSON.
UDP_RECEIVER = r"""
import json, signal, socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(0.2)
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
seen, dups, last, gap, gap_at = set(), 0, None, 0.0, 0.0
print("ready", flush=True)
while not stop:
    try:
        data = s.recv(2048)
    except socket.timeout:
        continue
    except InterruptedError:
        continue
    t = time.time()
    if last is not None and t - last > gap:
        gap, gap_at = t - last, last
    last = t
    (seq,) = struct.unpack("!Q", data[:8])
    if seq in seen:
        dups += 1
    seen.add(seq)
print(json.dumps({"received": len(seen), "duplicates": dups, "max_seq": max(seen) if seen else -1,
                  "max_gap_ms": round(gap * 1000, 1), "max_gap_at": gap_at}), flush=True)
"""


def vm(pid):
    """{VmRSS, VmHWM} of a process in MiB (None when it is gone)."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = round(int(v.split()[0]) / 1024, 1)
    except OSError:
        return None
    return out


def metric_sum(text, name):
    total, found = 0.0, False
    for m in re.finditer(r"(?m)^%s(?:\{[^}]*\})? (\S+)$" % re.escape(name), text or ""):
        total += float(m.group(1))
        found = True
    return total if found else None


class Bench(Story):
    def __init__(self, a):
        super().__init__("sluice-big-policy-", "SLUICE_BIG_POLICY_KEEP")
        self.a = a
        self.tokens = {role: "%s-%s" % (role, secrets.token_hex(16))
                       for role in ("ministry", "engineer", "viewer", "node")}
        self.url = "https://127.0.0.1:%d" % CONTROLLER_PORT
        self.ca = None
        self.results = {"scale": {"domains": a.domains, "prefixes": a.prefixes, "seed": a.seed,
                                  "rate_pps": a.rate, "eal_mem_mb": a.mem},
                        "nodes": {}, "revisions": {}}
        self.nodes = [dict(n) for n in NODES]

    # ---- helpers -----------------------------------------------------------------------------
    def bin(self, name):
        return os.path.join(self.a.build, name)

    def ctl(self, args, role=None, timeout=60):
        p = netlab.sluicectl(self.bin("sluicectl"), self.url, args,
                             self.tokens[role] if role else None, self.work, timeout=timeout,
                             ca=self.ca)
        if p.returncode != 0:
            self.say("sluicectl %s -> exit %d\n%s%s" % (" ".join(args), p.returncode,
                                                        p.stdout[-2000:], p.stderr[-2000:]))
        return p

    def get(self, path, role="viewer", timeout=10):
        return netlab.http_json(self.url + path, self.tokens[role] if role else None,
                                timeout=timeout, ca=self.ca)

    def node_get(self, n, path, port="mgmt"):
        return netlab.http_json("http://127.0.0.1:%d%s" % (n[port], path), timeout=5)

    def ns_names(self, n):
        return ("sl-big-%d-%s-cli" % (os.getpid(), n["id"]),
                "sl-big-%d-%s-srv" % (os.getpid(), n["id"]))

    def file_prefix(self, n):
        return "sluice-big-%d-%s" % (os.getpid(), n["id"])

    def rollout_target(self):
        return (self.get("/v1/rollout") or {}).get("target", 0)

    def fleet(self):
        return {n.get("node", n.get("id")): n for n in (self.get("/v1/nodes") or {}).get("nodes", [])}

    # ---- the directive -----------------------------------------------------------------------
    def make_directive(self):
        a = self.a
        self.step("the directive: %d domains, %d prefixes (seed %d)" % (a.domains, a.prefixes, a.seed))
        t = now()
        self.directive_id = "MINCOM-BIG-%d" % os.getpid()
        t0 = time.time()
        text, facts = big_policy_gen.directive_text(
            a.domains, a.prefixes, a.seed, self.directive_id, ISSUER,
            rfc(t - timedelta(minutes=2)), rfc(t - timedelta(minutes=1)),
            "Order No. 16 of 2026 (big policy benchmark)")
        gen_s = time.time() - t0
        path = os.path.join(self.work, "big.yaml")
        with open(path, "w") as f:
            f.write(text)
        size = os.path.getsize(path)
        self.say("%s bytes (%.1f MiB), generated in %.1f s: %s" % (
            format(size, ","), size / 2**20, gen_s, json.dumps(facts)))
        self.results["directive"] = dict(facts, bytes=size, generate_s=round(gen_s, 2))
        return size, facts

    def sign_directive(self):
        """With the ministry key start_controller() made."""
        t0 = time.time()
        p = self.ctl(["sign", "--secret", "ministry.key", "big.yaml"])
        sign_s = time.time() - t0
        self.must(p.returncode == 0 and os.path.exists(os.path.join(self.work, "big.yaml.minisig")),
                  "big.yaml signed with the ministry's key (sluicectl sign, %.2f s)" % sign_s)
        self.results["directive"]["sign_s"] = round(sign_s, 2)

    # ---- controller --------------------------------------------------------------------------
    def start_controller(self, directive_bytes, entries):
        self.ca = netlab.controller_tls(self.work)
        p = self.ctl(["ca", "init", "--out", "node-ca"])
        self.must(p.returncode == 0, "sluicectl ca init: the controller's node CA")
        # What this directive needs, with room: the defaults (4 MiB, 200,000 entries) are right
        # for an unconfigured controller; a deployment that takes national blocklists says so.
        doc_limit = max(4 << 20, directive_bytes * 2)
        entry_limit = max(200000, entries * 2)
        self.results["controller_limits"] = {"directive_bytes": doc_limit,
                                             "directive_entries": entry_limit}
        config = netlab.controld_yaml(
            "tools/big_policy_bench.py", self.url[len("https://"):], self.a.source, ISSUER,
            [("big-" + role, role, tok) for role, tok in self.tokens.items()],
            "max_wait_seconds: 5\n"
            "inventory: { sites: [edge-a, edge-b] }\n"
            "tls: { cert: ctl.crt, key: ctl.key }\n"
            "node_ca: { cert: node-ca/node-ca.crt, key: node-ca/node-ca.key }\n"
            "limits: { directive_bytes: %d, directive_entries: %d }\n"
            "server: { max_body_bytes: %d, max_document_bytes: %d }\n"
            % (doc_limit, entry_limit, doc_limit, doc_limit))
        self.controller = Story.start_controller(self, self.bin("sluice-controld"), config,
                                                 self.tokens["node"], self.url + "/v1/health",
                                                 ca=self.ca)

    # ---- network and nodes -------------------------------------------------------------------
    def build_topology(self, n, cert, key):
        cli, srv = self.ns_names(n)
        tag = n["id"][-1]
        n["cli_if"], n["srv_if"] = "bp%s-cli" % tag, "bp%s-srv" % tag
        n["client"], n["server"] = n["net"] + ".1", n["net"] + ".2"
        self.add_namespace(cli, n["cli_if"], [n["net"] + ".1/24"])
        self.add_namespace(srv, n["srv_if"], [n["net"] + ".2/24", TELEGRAM_ADDR + "/32"])
        netlab.run(in_ns(cli, ["ip", "route", "add", TELEGRAM_ADDR + "/32", "dev", "eth0"]))
        self.start_origin(srv, cert, key, "origin-%s.log" % n["id"])

    def start_node(self, n):
        state = os.path.join(self.work, "state-" + n["id"])
        os.mkdir(state)
        n["state"] = state
        n["log"] = "dataplane-%s.log" % n["id"]
        cmd = netlab.dataplane_cmd(self.bin("sluice-dataplane"), self.file_prefix(n), n["cli_if"],
                                   n["srv_if"], n["mgmt"], n["metrics"])
        # More EAL memory (the policy in force and the one being compiled both live in it during
        # a swap) and deeper af_packet rings (a worker sharing two cores with compiles).
        cmd[cmd.index("-m") + 1] = str(self.a.mem)
        cmd = [c + ",framecnt=4096" if c.startswith("net_af_packet") else c for c in cmd]
        cmd += ["--controller", self.url, "--controller-key", "controller.pub",
                "--node-id", n["id"], "--labels", n["labels"], "--controller-ca", self.ca,
                "--node-cert", os.path.join(self.work, "node-" + n["id"], "node.crt"),
                "--node-key", os.path.join(self.work, "node-" + n["id"], "node.key"),
                "--state-dir", state]
        n["proc"] = self.start_dataplane("sluice-dataplane " + n["id"], cmd, n["log"],
                                         lambda: self.node_get(n, "/status"), self.file_prefix(n))
        return n["proc"] is not None

    def curl(self, n, name, addr, url=None):
        cli, _ = self.ns_names(n)
        args = ["curl", "-sk", "--connect-timeout", "4", "--max-time", "6", "-o", "/dev/null",
                "-w", "%{http_code}"]
        if name:
            args += ["--resolve", "%s:443:%s" % (name, addr)]
        t = time.time()
        r = subprocess.run(in_ns(cli, args + [url or "https://%s/" % name]), capture_output=True,
                           text=True, timeout=20)
        return r.returncode, r.stdout.strip(), time.time() - t

    def expect_flows(self, n, name):
        rc, code, secs = self.curl(n, name, n["server"])
        self.check(rc == 0 and code == "200", "%s https://%s/ (server %s): HTTP %s (curl %d, %.1f s)"
                   % (n["id"], name, n["server"], code, rc, secs))

    def status_revision(self, n):
        return (self.node_get(n, "/status") or {}).get("revision", 0)

    # ---- traffic -----------------------------------------------------------------------------
    def start_traffic(self, n):
        cli, srv = self.ns_names(n)
        self.receiver = self.spawn("udp receiver", in_ns(srv, [sys.executable, "-u", "-c", UDP_RECEIVER,
                                                               str(UDP_PORT)]), "udp-receiver.log")
        self.must(wait_for(lambda: "ready" in self.log_tail("udp-receiver.log"), 10),
                  "UDP receiver listening in %s" % srv)
        self.sender = self.spawn("udp sender", in_ns(cli, [sys.executable, "-u", "-c", UDP_SENDER,
                                                           n["server"], str(UDP_PORT), str(self.a.rate)]),
                                 "udp-sender.log")
        self.traffic_started = time.time()

    def stop_traffic(self):
        self.sender.terminate()
        self.sender.wait(timeout=10)
        time.sleep(1.0)  # what is in flight arrives
        self.receiver.terminate()
        self.receiver.wait(timeout=10)
        sender = json.loads(self.log_tail("udp-sender.log").strip().splitlines()[-1])
        got = json.loads(self.log_tail("udp-receiver.log").strip().splitlines()[-1])
        got["sent"] = sender["sent"]
        got["lost"] = got["sent"] - got["received"]
        got["sender_max_gap_ms"] = sender["sender_max_gap_ms"]
        got["seconds"] = round(time.time() - self.traffic_started, 1)
        for k in ("max_gap_at", "sender_max_gap_at"):
            at = got.pop(k, None) if k in got else sender.get(k)
            if at:
                got[k + "_s"] = round(at - self.t0, 1)
        return got

    # ---- watching a revision reach the nodes -------------------------------------------------
    def watch_revision(self, rev, since, timeout):
        """Polls every node's /status until each shows revision >= rev; {node: seconds from
        `since`} (None for a node that did not get there)."""
        got = {}

        def poll(n):
            end = since + timeout
            while time.time() < end:
                if self.status_revision(n) >= rev:
                    got[n["id"]] = round(time.time() - since, 2)
                    return
                time.sleep(0.05)
            got[n["id"]] = None
        threads = [threading.Thread(target=poll, args=(n,)) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return got

    def node_figures(self, n):
        st = self.node_get(n, "/status") or {}
        c = st.get("controller", {})
        return {"revision": st.get("revision"), "rules": st.get("rules"),
                "load_seconds": st.get("load_seconds"),
                "last_snapshot": c.get("last_snapshot"),
                "memory": vm(n["proc"].pid)}

    def revision_step(self, what, rev, t_answer, answer_s):
        self.say("revision %d compiled; waiting for both nodes to show it" % rev)
        reached = self.watch_revision(rev, t_answer, self.a.converge_timeout)
        m = self.get("/metrics", None) or ""
        fig = {"revision": rev, "answer_s": round(answer_s, 2), "node_in_force_s": reached,
               "nodes": {n["id"]: self.node_figures(n) for n in self.nodes},
               # The controller's own timings (gauges of the last compile and snapshot signing).
               "controller_compile_s": metric_sum(m, "sluice_control_policy_compile_seconds"),
               "controller_snapshot_sign_s": metric_sum(m, "sluice_control_snapshot_sign_seconds")}
        self.results["revisions"][what] = fig
        for n in self.nodes:
            f = fig["nodes"][n["id"]]
            self.say("%s: revision %s in force %s s after the answer; %s rules; load %s s; "
                     "last snapshot %s; memory %s" % (n["id"], f["revision"], reached.get(n["id"]),
                                                       f["rules"], f["load_seconds"],
                                                       json.dumps(f["last_snapshot"]),
                                                       f["memory"]))
        self.must(all(v is not None for v in reached.values()),
                  "%s revision %d in force on both nodes: %s" % (what, rev, reached))
        return fig

    # ---- the story ---------------------------------------------------------------------------
    def run(self):
        a = self.a
        size, facts = self.make_directive()

        self.step("controller (TLS, SQLite, node CA), two nodes, four network namespaces")
        self.start_controller(size, facts["domains"] + facts["prefixes"] + 100)
        self.sign_directive()
        cert, key = netlab.self_signed_cert(self.work, "telegram.org", [
            "DNS:telegram.org", "DNS:example.org", "IP:" + TELEGRAM_ADDR])
        for n in self.nodes:
            self.build_topology(n, cert, key)
        for n in self.nodes:
            p = self.ctl(["nodes", "enroll", n["id"], "--labels", n["labels"], "--out",
                          "node-" + n["id"]], role="engineer")
            self.must(p.returncode == 0, "sluicectl nodes enroll %s: its own key and certificate"
                      % n["id"])
        for n in self.nodes:  # one at a time: see netlab.Story.start_dataplane
            ok = self.start_node(n)
            if not ok:
                self.say(self.log_tail(n["log"]))
            self.must(ok, "sluice-dataplane %s up (-m %d, management API answers)" % (n["id"], a.mem))
        ids = [n["id"] for n in self.nodes]
        self.must(wait_for(lambda: all(self.fleet().get(i, {}).get("state") == "converged"
                                       for i in ids), 30, 0.2),
                  "both nodes registered and converged")
        for n in self.nodes:
            self.expect_flows(n, "telegram.org")
        before = {n["id"]: vm(n["proc"].pid) for n in self.nodes}
        for n in self.nodes:
            self.results["nodes"][n["id"]] = {"memory_before": before[n["id"]]}
        self.results["controller_memory_before"] = vm(self.controller.pid)
        self.say("node memory before (MiB): %s; controller %s" % (
            json.dumps(before), self.results["controller_memory_before"]))
        metrics0 = self.get("/metrics", None) or ""

        traffic_node = next(n for n in self.nodes if n["traffic"])
        self.step("UDP stream through %s at %d packets/s (client %s -> server %s:%d)" % (
            traffic_node["id"], a.rate, traffic_node["client"], traffic_node["server"], UDP_PORT))
        self.start_traffic(traffic_node)
        time.sleep(2)

        self.step("submit (the controller parses, validates and compiles the shadow revision)")
        target0 = self.rollout_target()
        t0 = time.time()
        p = self.ctl(["--timeout", "600", "--json", "submit", "big.yaml"], role="ministry",
                     timeout=900)
        t_answer = time.time()
        st = json.loads(p.stdout or "{}") if p.returncode == 0 else {}
        key = ISSUER + "/" + self.directive_id
        self.must(st.get("state") == "awaiting_approval",
                  "submitted %s: awaiting approval (%.2f s)" % (key, t_answer - t0))
        shadow = wait_for(lambda: (lambda r: r if r > target0 else 0)(self.rollout_target()), 30)
        self.must(shadow > target0, "submission compiled shadow revision %s" % shadow)
        self.revision_step("shadow", shadow, t_answer, t_answer - t0)
        self.expect_flows(traffic_node, "telegram.org")  # shadow rules count, never enforce

        self.step("approve (the controller compiles the enforcing revision)")
        t0 = time.time()
        p = self.ctl(["--timeout", "600", "--json", "approve", key], role="engineer", timeout=900)
        t_answer = time.time()
        st = json.loads(p.stdout or "{}") if p.returncode == 0 else {}
        self.must(st.get("state") == "active", "approved: %s active (%.2f s)"
                  % (key, t_answer - t0))
        enforcing = wait_for(lambda: (lambda r: r if r > shadow else 0)(self.rollout_target()), 30)
        self.must(enforcing > shadow, "approval compiled enforcing revision %s" % enforcing)
        self.revision_step("enforce", enforcing, t_answer, t_answer - t0)
        converged = wait_for(lambda: all(
            self.fleet().get(i, {}).get("applied_revision", 0) >= enforcing and
            self.fleet().get(i, {}).get("state") == "converged" for i in ids), 60, 0.2)
        self.check(converged, "the controller's GET /v1/nodes: both nodes converged on %d"
                   % enforcing)
        fl = self.fleet()
        self.results["revisions"]["enforce"]["controller_view"] = {
            i: {k: fl.get(i, {}).get(k) for k in ("applied_revision", "state", "applied_at_ms")}
            for i in ids}

        self.step("enforcement on both nodes")
        for n in self.nodes:
            rc, code, secs = self.curl(n, "telegram.org", n["server"])
            self.check(rc != 0 and code != "200" and secs < 4,
                       "%s https://telegram.org/ (SNI, server %s): stopped (curl %d%s, %.1f s)"
                       % (n["id"], n["server"], rc, " " + netlab.curl_error(rc), secs))
            rc, code, secs = self.curl(n, None, None, "https://%s/" % TELEGRAM_ADDR)
            self.check(rc != 0 and code != "200",
                       "%s https://%s/ (Telegram address): stopped (curl %d%s)"
                       % (n["id"], TELEGRAM_ADDR, rc, " " + netlab.curl_error(rc)))
            self.expect_flows(n, "example.org")

        time.sleep(2)
        self.step("the stream, memory, snapshot bytes")
        udp = self.stop_traffic()
        self.results["udp_stream"] = udp
        self.check(udp["sent"] > 0 and udp["lost"] == 0 and udp["duplicates"] == 0,
                   "UDP stream through %s across both swaps: sent %d, received %d, lost %d, "
                   "longest gap %.1f ms" % (traffic_node["id"], udp["sent"], udp["received"],
                                            udp["lost"], udp["max_gap_ms"]))
        for n in self.nodes:
            r = self.results["nodes"][n["id"]]
            r["memory_after"] = vm(n["proc"].pid)
            snap = os.path.join(n["state"], "snapshot.json")
            r["persisted_snapshot_bytes"] = os.path.getsize(snap) if os.path.exists(snap) else None
            self.say("%s memory after (MiB): %s; persisted snapshot %s bytes" % (
                n["id"], r["memory_after"], r["persisted_snapshot_bytes"]))
        self.results["controller_memory_after"] = vm(self.controller.pid)
        metrics1 = self.get("/metrics", None) or ""
        served = (metric_sum(metrics1, "sluice_control_snapshots_served_total") or 0) - \
            (metric_sum(metrics0, "sluice_control_snapshots_served_total") or 0)
        sbytes = (metric_sum(metrics1, "sluice_control_snapshot_bytes_total") or 0) - \
            (metric_sum(metrics0, "sluice_control_snapshot_bytes_total") or 0)
        self.results["snapshots_served"] = int(served)
        self.results["snapshot_bytes_served_total"] = int(sbytes)
        self.results["snapshot_bytes_per_answer"] = int(sbytes / served) if served else None
        self.say("controller: %d snapshot answers, %s bytes (%s per answer); memory %s" % (
            served, format(int(sbytes), ","), self.results["snapshot_bytes_per_answer"],
            self.results["controller_memory_after"]))
        db = os.path.join(self.work, "controld.db")
        self.results["controller_db_bytes"] = sum(
            os.path.getsize(db + s) for s in ("", "-wal") if os.path.exists(db + s))
        for n in self.nodes:
            self.check(n["proc"].poll() is None and (self.node_get(n, "/status") or {}).get("healthy"),
                       "%s still running and healthy" % n["id"])


def _r(v, digits=2):
    return round(v, digits) if isinstance(v, float) else v


def table(r):
    """The figures as text."""
    d = r.get("directive", {})
    lines = ["", "big policy: %s domains (%s patterns, %s IDN), %s prefixes (%s v4, %s v6)" % (
        format(d.get("domains", 0), ","), d.get("patterns"), d.get("idn"),
        format(d.get("prefixes", 0), ","), d.get("prefixes_v4"), d.get("prefixes_v6"))]
    rows = [("directive bytes", format(d.get("bytes", 0), ",")),
            ("directive generation / signing", "%s s / %s s" % (d.get("generate_s"), d.get("sign_s")))]
    for what in ("shadow", "enforce"):
        v = r.get("revisions", {}).get(what)
        if not v:
            continue
        rows.append(("%s revision %d: %s answer" % (what, v["revision"],
                                                   "submit" if what == "shadow" else "approve"),
                     "%s s" % v["answer_s"]))
        rows.append(("  controller: compile / snapshot render+sign", "%s / %s s" % (
            _r(v.get("controller_compile_s")), _r(v.get("controller_snapshot_sign_s")))))
        for node, secs in sorted(v["node_in_force_s"].items()):
            f = v["nodes"][node]
            ls = f.get("last_snapshot") or {}
            rows.append(("  %s: in force after the answer" % node, "%s s" % secs))
            rows.append(("  %s: signature / parse / compile+swap" % node,
                         "%s / %s / %s s" % tuple(_r(ls.get(k)) for k in (
                             "verify_seconds", "parse_seconds", "compile_seconds"))))
            rows.append(("  %s: rules, snapshot bytes" % node, "%s, %s" % (f.get("rules"),
                                                                          format(ls.get("bytes") or 0, ","))))
            rows.append(("  %s: VmRSS / VmHWM (MiB)" % node, "%s / %s" % (
                (f.get("memory") or {}).get("VmRSS"), (f.get("memory") or {}).get("VmHWM"))))
    rows.append(("snapshot bytes per answer (controller)", format(r.get("snapshot_bytes_per_answer") or 0, ",")))
    for node, v in sorted(r.get("nodes", {}).items()):
        rows.append(("%s VmRSS before -> after (MiB)" % node, "%s -> %s (VmHWM %s)" % (
            (v.get("memory_before") or {}).get("VmRSS"), (v.get("memory_after") or {}).get("VmRSS"),
            (v.get("memory_after") or {}).get("VmHWM"))))
    rows.append(("controller VmRSS before -> after (VmHWM)", "%s -> %s (%s)" % (
        (r.get("controller_memory_before") or {}).get("VmRSS"),
        (r.get("controller_memory_after") or {}).get("VmRSS"),
        (r.get("controller_memory_after") or {}).get("VmHWM"))))
    rows.append(("controller store (SQLite + WAL) bytes", format(r.get("controller_db_bytes") or 0, ",")))
    u = r.get("udp_stream")
    if u:
        rows.append(("UDP stream sent / received / lost", "%d / %d / %d" % (u["sent"], u["received"], u["lost"])))
        rows.append(("UDP stream longest gap: received / sent", "%s ms (at %s s) / %s ms (at %s s)" % (
            u["max_gap_ms"], u.get("max_gap_at_s"), u.get("sender_max_gap_ms"),
            u.get("sender_max_gap_at_s"))))
    w = max(len(k) for k, _ in rows)
    lines += ["%-*s  %s" % (w, k, v) for k, v in rows]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default=os.path.dirname(HERE))
    p.add_argument("--build", help="build dir with the binaries (default SOURCE/build)")
    p.add_argument("--domains", type=int, default=1000000)
    p.add_argument("--prefixes", type=int, default=100000)
    p.add_argument("--smoke", action="store_true", help="20,000 domains, 2,000 prefixes (ctest)")
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--rate", type=int, default=1000, help="UDP packets a second through edge-a")
    p.add_argument("--mem", type=int, default=0, help="EAL -m MB per node (default by scale)")
    p.add_argument("--json", help="write the figures here (default BUILD/big_policy.json)")
    p.add_argument("--time-limit", type=int, default=0, help="seconds (default by scale)")
    p.add_argument("--converge-timeout", type=int, default=0, help="seconds per revision")
    a = p.parse_args()
    if a.smoke:
        a.domains, a.prefixes = 20000, 2000
    a.source = os.path.abspath(a.source)
    a.build = os.path.abspath(a.build or os.path.join(a.source, "build"))
    big = a.domains >= 200000
    a.mem = a.mem or (2048 if big else 512)
    a.time_limit = a.time_limit or (1800 if big else 200)
    a.converge_timeout = a.converge_timeout or (600 if big else 60)
    a.json = os.path.abspath(a.json or os.path.join(a.build, "big_policy%s.json" % ("_smoke" if a.smoke else "")))

    if os.environ.get(ENV_FLAG) != "1":
        why = netlab.namespaces_unavailable()
        if why:
            print("big_policy_bench: SKIP (%s)" % why)
            return 77
        missing = [b for b in ("sluice-controld", "sluicectl", "sluice-dataplane")
                   if not os.access(os.path.join(a.build, b), os.X_OK)]
        if missing:
            print("big_policy_bench: not built in %s: %s" % (a.build, " ".join(missing)))
            return 2
        return netlab.isolate(ENV_FLAG)

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    netlab.sweep_stale_namespaces(NS_PATTERN, "big_policy_bench")
    b = Bench(a)
    print("big_policy_bench: %d domains, %d prefixes through sluice-controld to two nodes "
          "(work dir %s)" % (a.domains, a.prefixes, b.work), flush=True)
    logs = ("controld.log", "dataplane-edge-a.log", "dataplane-edge-b.log", "udp-receiver.log")
    rc = netlab.run_story(b, b.run, "big_policy_bench", logs, a.time_limit)
    b.results["passed"] = rc == 0
    b.results["failures"] = b.failures
    b.results["seconds"] = round(time.time() - b.t0, 1)
    print(table(b.results))
    with open(a.json, "w") as f:
        json.dump(b.results, f, indent=2, sort_keys=True)
    print("\nfigures written to %s" % a.json)
    if rc == 0:
        print("big_policy_bench: PASS (%.1f s)" % (time.time() - b.t0))
    return rc


if __name__ == "__main__":
    sys.exit(main())
