#!/usr/bin/python3
"""The main job, end to end: a ministry's signed directive blocks Telegram on two fast-path nodes
and a later one lifts it, with the real binaries and real traffic.

  tools/demo.py [--build DIR] [--source DIR] [--testdata DIR] [--mode auto|namespaces|replay]
                [--time-limit SECONDS] [--hold]

What runs (all of it created here, all of it removed on every exit path):
  - sluice-controld on 127.0.0.1 (SQLite in a temp dir, fresh tokens, fresh controller key);
  - two sluice-dataplane nodes in controller mode (edge-a: the canary, edge-b), each inline on
    net_af_packet between its own pair of network namespaces:
        [client ns: 10.99.N.1] -- veth -- [sluice-dataplane edge-X] -- veth -- [server ns]
    the server namespace answers TLS (:443) and plain HTTP (:80) on an ordinary address
    (10.99.N.2) and on an address inside Telegram's 149.154.160.0/20 (149.154.167.99);
  - the ministry's directives (config/directives/telegram-{block,unblock}.yaml, their times moved
    to now) signed with a ministry key made now, submitted with the ministry's token and approved
    with an engineer's.
The story: baseline (everything flows) -> block submitted + approved -> both nodes converge ->
Telegram stopped by name (TLS SNI: reset; HTTP Host: 451 page) and by address while example.org
on the same server flows, with the nodes' counters -> signed unblock -> both converge -> Telegram
flows again -> audit trail, rollout timeline, where the metrics are.

Everything runs inside a network namespace of its own (`unshare --net`, re-executing this
script): loopback ports, veths and the four named namespaces never touch the host's interfaces.
Without root or network namespaces (or with --mode replay) it falls back to capture replay: the
real agent code (sluice-fleet-sim, two nodes) converges on the same directives, and the policy
snapshot each node persisted is replayed by sluice-classify over Telegram's and other messengers'
captures (../shared/testdata/captures), checked against their ground truth.

Exit 0: every step happened as described; 1: some step did not (each is printed as FAIL);
2: usage / missing binaries."""

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netlab import (Story, controld_yaml, controller_tls, curl_error, dataplane_cmd, free_port, http_json,  # noqa: E402
                    in_ns, isolate, namespaces_unavailable, run, run_story, self_signed_cert,
                    sluicectl, sweep_stale_namespaces, wait_for)

ISSUER = "ministry-of-communications"
TELEGRAM_ADDR = "149.154.167.99"  # inside 149.154.160.0/20 (config/apps/telegram.yaml)
CONTROLLER_PORT = 9480
NODES = [  # id, labels, mgmt port, metrics port, subnet
    {"id": "edge-a", "labels": "site=edge-a,group=canary", "mgmt": 9470, "metrics": 9460,
     "net": "10.99.1"},
    {"id": "edge-b", "labels": "site=edge-b,group=main", "mgmt": 9471, "metrics": 9461,
     "net": "10.99.2"},
]
CAPTURES_TELEGRAM = ["telegram.pcap", "telegram_videocall.pcapng"]
CAPTURES_OTHERS = ["teams.pcap", "signal.pcap", "whatsapp.pcap"]

class Demo(Story):
    def __init__(self, a, port):
        super().__init__("sluice-demo-", "SLUICE_DEMO_KEEP")
        self.a = a
        self.tokens = {role: "%s-%s" % (role, secrets.token_hex(16))
                       for role in ("ministry", "engineer", "viewer", "node")}
        # Every hop over TLS (issue 14): operators and nodes verify the controller against its
        # CA (ctl-ca.crt), nodes present their own certificates from the node CA.
        self.url = "https://127.0.0.1:%d" % port
        self.ca = None  # ctl-ca.crt, made by start_controller()

    def file_prefix(self, n):
        return "sluice-demo-%d-%s" % (os.getpid(), n["id"])

    # ---- the controller ----------------------------------------------------------------------
    def ctl(self, args, role=None, check=True):
        p = sluicectl(self.bin("sluicectl"), self.url, args, self.tokens[role] if role else None,
                      self.work, ca=self.ca)
        if check and p.returncode != 0:
            self.say("sluicectl %s -> exit %d\n%s%s" % (" ".join(args), p.returncode,
                                                        p.stdout, p.stderr))
        return p

    def bin(self, name):
        return os.path.join(self.a.build, name)

    def get(self, path, role="viewer"):
        return http_json(self.url + path, self.tokens[role] if role else None, ca=self.ca)

    def start_controller(self):
        self.ca = controller_tls(self.work)
        p = self.ctl(["ca", "init", "--out", "node-ca"])
        self.must(p.returncode == 0, "sluicectl ca init: the controller's node CA (node-ca/)")
        config = controld_yaml(
            "tools/demo.py", self.url[len("https://"):], self.a.source, ISSUER,
            [("demo-" + role, role, tok) for role, tok in self.tokens.items()],
            "max_wait_seconds: 5\n"
            "canary: { labels: { group: canary }, soak_seconds: 2 }\n"
            "inventory: { sites: [edge-a, edge-b], labels: { group: [canary, main] } }\n"
            "tls: { cert: ctl.crt, key: ctl.key }\n"
            "node_ca: { cert: node-ca/node-ca.crt, key: node-ca/node-ca.key }\n"
            # The controller serves only the nodes in its inventory (issue 14): the dataplane
            # nodes are enrolled with sluicectl below; offline, the two simulated ones are here.
            "nodes:\n"
            "  - { id: edge-0001, labels: { site: edge-a, group: canary } }\n"
            "  - { id: edge-0002, labels: { site: edge-a } }\n")
        self.controller = super().start_controller(self.bin("sluice-controld"), config,
                                                   self.tokens["node"], self.url + "/v1/health",
                                                   ca=self.ca)

    def enroll(self, n):
        """One command per node: its key and CSR made here, the certificate from the controller."""
        p = self.ctl(["nodes", "enroll", n["id"], "--labels", n["labels"], "--out", "node-" + n["id"]],
                     role="engineer")
        self.check(p.returncode == 0, "sluicectl nodes enroll %s --labels %s: key and certificate "
                   "in node-%s/" % (n["id"], n["labels"], n["id"]))

    def nodes(self):
        return {n["node"] if "node" in n else n.get("id"): n
                for n in (self.get("/v1/nodes") or {}).get("nodes", [])}

    def converged(self, rev, ids):
        ns = self.nodes()
        return all(i in ns and ns[i]["applied_revision"] >= rev and ns[i]["state"] == "converged"
                   for i in ids)

    def wait_converged(self, rev, ids, what):
        t = time.time()
        ok = wait_for(lambda: self.converged(rev, ids), 30, 0.1)
        took = time.time() - t
        ns = self.nodes()
        for i in ids:
            n = ns.get(i, {})
            self.say("%-7s applied revision %s, %s, ruleset sha256 %s" % (
                i, n.get("applied_revision"), n.get("state"), (n.get("ruleset_sha256") or "")[:16]))
        self.must(ok, "%s: both nodes converged on revision %d (%.1f s)" % (what, rev, took))

    def directive(self, name, replace):
        """config/directives/NAME with its times moved to now; signed with the ministry key."""
        with open(os.path.join(self.a.source, "config", "directives", name)) as f:
            text = f.read()
        # The sample's header comment talks about its sample dates: replace it.
        body = "".join(line for line in text.splitlines(True) if not line.startswith("#"))
        for key, value in replace.items():
            body, n = re.subn(r"(?m)^%s: .*$" % key, "%s: %s" % (key, value), body)
            if n != 1:
                raise RuntimeError("%s: no single '%s:' line" % (name, key))
        doc = "# %s, times regenerated by tools/demo.py at %s\n%s" % (name, rfc(now()), body)
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write(doc)
        p = self.ctl(["sign", "--secret", "ministry.key", name])
        self.must(p.returncode == 0 and os.path.exists(path + ".minisig"),
                  "%s signed with the ministry's key (detached minisign signature)" % name)
        return name, doc

    def rollout_target(self):
        return (self.get("/v1/rollout") or {}).get("target", 0)

    # ---- network ------------------------------------------------------------------------------
    def ns_names(self, n):
        return "sl-demo-%d-%s-cli" % (os.getpid(), n["id"]), "sl-demo-%d-%s-srv" % (os.getpid(), n["id"])

    def build_topology(self, n, cert, key):
        cli, srv = self.ns_names(n)
        net = n["net"]
        tag = n["id"][-1]  # a / b: interface names must stay under 16 bytes
        n["cli_if"], n["srv_if"] = "dp%s-cli" % tag, "dp%s-srv" % tag
        n["client"], n["server"] = net + ".1", net + ".2"
        self.add_namespace(cli, n["cli_if"], [net + ".1/24"])
        self.add_namespace(srv, n["srv_if"], [net + ".2/24", TELEGRAM_ADDR + "/32"])
        # The Telegram address is one hop away on the same link (the dataplane bridges L2).
        run(in_ns(cli, ["ip", "route", "add", TELEGRAM_ADDR + "/32", "dev", "eth0"]))
        self.start_origin(srv, cert, key, "origin-%s.log" % n["id"])

    def start_node(self, n):
        state = os.path.join(self.work, "state-" + n["id"])
        os.mkdir(state)
        n["state"] = state
        n["log"] = "dataplane-%s.log" % n["id"]
        cmd = dataplane_cmd(self.bin("sluice-dataplane"), self.file_prefix(n), n["cli_if"],
                            n["srv_if"], n["mgmt"], n["metrics"]) + [
            "--stats-json", os.path.join(self.work, "stats-%s.json" % n["id"]),
            "--controller", self.url, "--controller-key", "controller.pub",
            "--node-id", n["id"], "--labels", n["labels"], "--controller-ca", self.ca,
            "--node-cert", os.path.join(self.work, "node-%s" % n["id"], "node.crt"),
            "--node-key", os.path.join(self.work, "node-%s" % n["id"], "node.key"),
            "--state-dir", state]
        n["proc"] = self.start_dataplane("sluice-dataplane " + n["id"], cmd, n["log"],
                                         lambda: self.node_get(n, "/status"), self.file_prefix(n))
        return n["proc"] is not None

    def node_get(self, n, path, port="mgmt"):
        return http_json("http://127.0.0.1:%d%s" % (n[port], path))

    def curl(self, n, url, name=None, addr=None):
        """curl in the node's client namespace -> (exit code, HTTP code, body, seconds)."""
        cli, _ = self.ns_names(n)
        args = ["curl", "-sk", "--connect-timeout", "4", "--max-time", "6",
                "-o", "-", "-w", "\n%{http_code}"]
        if name:
            port = 443 if url.startswith("https") else 80
            args += ["--resolve", "%s:%d:%s" % (name, port, addr)]
        t = time.time()
        r = subprocess.run(in_ns(cli, args + [url]), capture_output=True, text=True, timeout=20)
        body, _, code = r.stdout.rpartition("\n")
        return r.returncode, code, body, time.time() - t

    # ---- the story over namespaces ----------------------------------------------------------
    def requests(self, n):
        srv = n["server"]
        return {
            "tls-name": ("https://telegram.org/ (SNI telegram.org, server %s)" % srv,
                         lambda: self.curl(n, "https://telegram.org/", "telegram.org", srv)),
            "tls-addr": ("https://%s/ (Telegram address, no name)" % TELEGRAM_ADDR,
                         lambda: self.curl(n, "https://%s/" % TELEGRAM_ADDR)),
            "http-name": ("http://telegram.org/ (Host telegram.org, server %s)" % srv,
                          lambda: self.curl(n, "http://telegram.org/", "telegram.org", srv)),
            "tls-other": ("https://example.org/ (SNI example.org, same server %s)" % srv,
                          lambda: self.curl(n, "https://example.org/", "example.org", srv)),
            "http-other": ("http://example.org/ (Host example.org, same server %s)" % srv,
                           lambda: self.curl(n, "http://example.org/", "example.org", srv)),
        }

    def expect_flows(self, n, keys):
        for k in keys:
            what, go = self.requests(n)[k]
            rc, code, body, secs = go()
            self.check(rc == 0 and code == "200" and "origin server" in body,
                       "%s %s: flows (HTTP %s from the origin, curl %d, %.1f s)"
                       % (n["id"], what, code, rc, secs))

    def expect_blocked(self, n, legal_basis):
        r = self.requests(n)
        what, go = r["tls-name"]
        rc, code, body, secs = go()
        self.check(rc in (35, 56) and secs < 4,
                   "%s %s: reset by name (curl %d%s, %.1f s)"
                   % (n["id"], what, rc, " " + curl_error(rc), secs))
        what, go = r["tls-addr"]
        rc, code, body, secs = go()
        self.check(rc != 0 and "origin server" not in body,
                   "%s %s: stopped by address (curl %d%s, %.1f s)"
                   % (n["id"], what, rc, " " + curl_error(rc), secs))
        what, go = r["http-name"]
        rc, code, body, secs = go()
        self.check(code == "451" and legal_basis in body and "origin server" not in body,
                   "%s %s: HTTP %s, the notice page naming \"%s\""
                   % (n["id"], what, code, legal_basis))
        if code == "451":
            page = re.sub(r"<[^>]+>", " ", body)
            self.say("        451 page: " + " ".join(page.split())[:150])
        self.expect_flows(n, ["tls-other", "http-other"])

    def samples(self, n, names):
        """[(metric, {labels}, value)] of the node's Prometheus endpoint, non-zero only."""
        out = []
        for line in (self.node_get(n, "/metrics", "metrics") or "").splitlines():
            m = re.match(r"^(\w+)\{(.*)\} (\S+)$", line)
            if m and m.group(1) in names and float(m.group(3)):
                out.append((m.group(1), dict(re.findall(r'(\w+)="([^"]*)"', m.group(2))),
                            float(m.group(3))))
        return out

    def verdicts(self, n):
        return sum(v for _, _, v in self.samples(n, ("sluice_dataplane_verdicts_total",)))

    def show_counters(self, n, baseline):
        st = self.node_get(n, "/status") or {}
        c = st.get("controller", {})
        self.say("%s /status: revision %s, healthy %s; controller: held %s, applied %s, ACKs %s, "
                 "NACKs %s" % (n["id"], st.get("revision"), st.get("healthy"),
                               c.get("held_revision"), c.get("applied_revision"),
                               c.get("acks"), c.get("nacks")))
        # The control loop refreshes the metrics: poll until the verdicts show up.
        wait_for(lambda: self.verdicts(n) - baseline >= 3, 10, 0.2)
        shown = ("sluice_dataplane_verdicts_total", "sluice_dataplane_rule_packets_total",
                 "sluice_dataplane_responses_total")
        for name, labels, v in self.samples(n, shown):
            labels.pop("node", None)
            if "rule" in labels and labels.get("directive") == labels["rule"]:
                labels.pop("directive")  # the controller names each rule after its directive
            self.say("%s %s{%s} %g" % (n["id"], name, ",".join(
                '%s="%s"' % kv for kv in sorted(labels.items())), v))
        moved = self.verdicts(n) - baseline
        self.check(moved >= 3, "%s counters: %g new verdicts by the directive's rule (>= 3: SNI, "
                   "address, Host)" % (n["id"], moved))

    def run_namespaces(self):
        a = self.a
        self.step("setup: controller, two nodes, four network namespaces")
        cert, key = self_signed_cert(self.work, "telegram.org", [
            "DNS:telegram.org", "DNS:example.org", "IP:" + TELEGRAM_ADDR])
        self.start_controller()
        for n in NODES:
            self.build_topology(n, cert, key)
            cli, srv = self.ns_names(n)
            self.say("%s: [%s %s] -- %s [sluice-dataplane] %s -- [%s %s, %s]"
                     % (n["id"], cli, n["client"], n["cli_if"], n["srv_if"], srv, n["server"],
                        TELEGRAM_ADDR))
        for n in NODES:
            self.enroll(n)
        for n in NODES:  # one at a time: see start_node
            self.start_node(n)
        ids = [n["id"] for n in NODES]
        up = all(n["proc"].poll() is None and self.node_get(n, "/status") for n in NODES)
        if not up:
            for n in NODES:
                self.say("%s log:\n%s" % (n["id"], self.log_tail(n["log"])))
        self.must(up, "both sluice-dataplane nodes up (management API answers)")
        self.wait_converged(1, ids, "registration")

        self.step("baseline: no directive, everything flows")
        for n in NODES:
            self.expect_flows(n, ["tls-name", "tls-addr", "http-name", "tls-other"])
        baseline = {n["id"]: self.verdicts(n) for n in NODES}  # 0: nothing matched yet

        block_rev, legal = self.submit_block()
        self.step("(2) both nodes converge; Telegram stopped by name and by address")
        self.wait_converged(block_rev, ids, "block")
        self.check_enforcement()
        for n in NODES:
            self.expect_blocked(n, legal)
        self.step("(2) counters on the nodes (verdicts by rule)")
        for n in NODES:
            self.show_counters(n, baseline[n["id"]])

        lift_rev = self.submit_lift(block_rev)
        self.step("(3) both nodes converge; Telegram flows again")
        self.wait_converged(lift_rev, ids, "lift")
        for n in NODES:
            self.expect_flows(n, ["tls-name", "tls-addr", "http-name", "tls-other", "http-other"])
        for n in NODES:
            st = self.node_get(n, "/status") or {}
            self.check(st.get("revision") == lift_rev,
                       "%s /status: revision %s in force (the lift's)" % (n["id"], st.get("revision")))

        self.report()
        self.step("(4) where the metrics are")
        self.say("controller:  %s/metrics  (sluice_control_*: nodes by state, rollout, directives;"
                 " TLS: curl --cacert %s)" % (self.url, self.ca))
        for n in NODES:
            self.say("%s:      http://127.0.0.1:%d/metrics (sluice_dataplane_*: verdicts by rule, "
                     "Mpps, cycles/packet)\n             http://127.0.0.1:%d/status (JSON)"
                     % (n["id"], n["metrics"], n["mgmt"]))
        self.say("(loopback of the demo's own network namespace: `nsenter --net=/proc/%d/ns/net "
                 "curl -s URL` while it runs;\n in production, deploy/prometheus/prometheus.yml "
                 "scrapes them and deploy/ holds the alert rules and dashboard)" % os.getpid())
        # The controller counts its nodes into the gauges at most once a second (a national
        # fleet would otherwise be recounted on every tick), so the gauge may trail /v1/nodes.
        want = 'sluice_control_nodes{state="converged"} 2'
        wait_for(lambda: want in (self.get("/metrics", None) or ""), 3, 0.2)
        m = self.get("/metrics", None) or ""
        lines = [l for l in m.splitlines() if l.startswith("sluice_control_nodes{")]
        self.say("now: " + "; ".join(lines))
        self.check(want in m, "controller metrics: 2 nodes converged")
        if a.hold:
            self.say("--hold: everything stays up until Ctrl-C")
            self.console_login(in_namespace=True)
            signal.pause()

    def console_login(self, in_namespace):
        """--hold: where the operators' console is and a ready login for each role (issue 15)."""
        # The browser pins the controller's key (its CA is a throwaway one): the SHA-256 of the
        # certificate's SubjectPublicKeyInfo, which is the DER inside the PEM "PUBLIC KEY".
        pem = subprocess.run(["openssl", "x509", "-in", os.path.join(self.work, "ctl.crt"), "-pubkey",
                              "-noout"], capture_output=True, text=True).stdout
        der = base64.b64decode("".join(l for l in pem.splitlines() if not l.startswith("-----")))
        pin = base64.b64encode(hashlib.sha256(der).digest()).decode()
        self.step("the operators' console")
        self.say("console:  %s/ui/" % self.url)
        self.say("  sign in as the engineer (approves): %s" % self.tokens["engineer"])
        self.say("  sign in as the ministry (submits):  %s" % self.tokens["ministry"])
        self.say("  sign in as a viewer (reads):         %s" % self.tokens["viewer"])
        self.say("  the controller's certificate is from a throwaway CA: %s (trust it, or start "
                 "chromium with --ignore-certificate-errors-spki-list=%s)" % (self.ca, pin))
        # Fresh ids: the story's own documents are spent (a replayed id is refused).
        t = now()
        times = {"issued_at": rfc(t - timedelta(minutes=1)), "not_before": rfc(t)}
        self.directive("telegram-block.yaml", dict(times, id="MINCOM-2026-101"))
        self.directive("telegram-unblock.yaml", dict(times, id="MINCOM-2026-102", lifts="[MINCOM-2026-101]"))
        self.say("  to upload as the ministry: %s/telegram-block.yaml with telegram-block.yaml.minisig "
                 "(MINCOM-2026-101), then telegram-unblock.yaml with its .minisig" % self.work)
        if in_namespace:
            self.say("  the controller listens in the demo's own network namespace; a browser "
                     "there: nsenter --net=/proc/%d/ns/net chromium --no-sandbox "
                     "--ignore-certificate-errors-spki-list=%s %s/ui/" % (os.getpid(), pin, self.url))

    # ---- directives (shared by both modes) ---------------------------------------------------
    def submit_block(self):
        self.step("(1) the ministry's block directive: signed, submitted, approved")
        t = now()
        name, doc = self.directive("telegram-block.yaml", {
            "issued_at": rfc(t - timedelta(minutes=2)), "not_before": rfc(t - timedelta(minutes=1))})
        legal = re.search(r'(?m)^legal_basis: "?([^"\n]*)"?$', doc).group(1)
        did = ISSUER + "/" + re.search(r"(?m)^id: (\S+)", doc).group(1)
        self.say(doc.strip())
        p = self.ctl(["--json", "submit", name], role="ministry")
        st = json.loads(p.stdout or "{}") if p.returncode == 0 else {}
        self.must(st.get("state") == "awaiting_approval",
                  "submitted with the ministry's token: %s awaiting approval" % did)
        p = self.ctl(["approve", did], role="ministry", check=False)
        self.check(p.returncode != 0, "the submitter's (ministry) token may not approve (exit %d)"
                   % p.returncode)
        before = self.rollout_target()
        p = self.ctl(["--json", "approve", did], role="engineer")
        self.must(p.returncode == 0, "approved by an engineer's token (four eyes)")
        rev = wait_for(lambda: (lambda r: r if r > before else 0)(self.rollout_target()), 5)
        self.must(rev > before, "approval compiled revision %d" % rev)
        self.block_id = did
        return rev, legal

    def check_enforcement(self):
        p = self.ctl(["--json", "show", self.block_id], role="viewer")
        st = json.loads(p.stdout or "{}") if p.returncode == 0 else {}
        enf = st.get("enforcement") or {}
        self.check(st.get("state") == "active" and enf.get("in_scope") == 2 and enf.get("enforcing") == 2,
                   "%s active, enforced by %s of %s nodes" % (
                       self.block_id, st.get("enforcement", {}).get("enforcing"),
                       st.get("enforcement", {}).get("in_scope")))

    def submit_lift(self, block_rev):
        self.step("(3) the ministry's unblock directive: signed, submitted, approved")
        t = now()
        name, doc = self.directive("telegram-unblock.yaml", {
            "issued_at": rfc(t - timedelta(seconds=1)), "not_before": rfc(t - timedelta(seconds=1))})
        did = ISSUER + "/" + re.search(r"(?m)^id: (\S+)", doc).group(1)
        self.say(doc.strip())
        p = self.ctl(["lift", name], role="ministry")
        self.must(p.returncode == 0, "unblock submitted with the ministry's token")
        p = self.ctl(["approve", did], role="engineer")
        self.must(p.returncode == 0, "unblock approved by an engineer's token")
        rev = wait_for(lambda: (lambda r: r if r > block_rev else 0)(self.rollout_target()), 5)
        self.must(rev > block_rev, "the lift compiled revision %d" % rev)
        st = self.get("/v1/directives/" + self.block_id) or {}
        self.check(st.get("state") == "ended" and st.get("end_reason") == "lifted",
                   "%s ended (%s)" % (self.block_id, st.get("end_reason")))
        return rev

    # ---- audit trail and rollout timeline ----------------------------------------------------
    def report(self):
        self.step("(4) the audit trail (sluicectl audit export, condensed)")
        p = self.ctl(["audit", "export"], role="viewer")
        records = []
        for line in p.stdout.splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
        self.check(p.returncode == 0 and records, "sluicectl audit export: %d records" % len(records))
        skipped = 0
        for r in records:
            if r.get("event", "").startswith("node."):
                skipped += 1  # per-node registrations; the timeline below shows the rollout
                continue
            self.say("#%-3s %s %-22s %-15s %s %s" % (
                r.get("seq"), short_time(r.get("at")), r.get("event"), r.get("actor", "-"),
                r.get("subject") or "", condense(r.get("detail"), 70)))
        if skipped:
            self.say("(%d node.* records not shown)" % skipped)
        p = self.ctl(["audit", "verify", "--controller-key", "controller.pub"], role="viewer")
        self.check(p.returncode == 0, "sluicectl audit verify: " + p.stdout.strip().replace("\n", "; "))

        self.step("(4) the rollout timeline (audit: revision.created, rollout.*)")
        timeline = [r for r in records if r.get("event") == "revision.created"
                    or r.get("event", "").startswith("rollout.")]
        for r in timeline:
            self.say("%s %-20s %s" % (short_time(r.get("at")), r.get("event"),
                                      condense(r.get("detail"))))
        self.check(len([r for r in timeline if r.get("event") == "revision.created"]) >= 2,
                   "two revisions created (block, lift) and rolled out")

    # ---- fallback: capture replay --------------------------------------------------------------
    def classify(self, policy_text, captures, tag):
        path = os.path.join(self.work, "policy-%s.yaml" % tag)
        with open(path, "w") as f:
            f.write(policy_text)
        cap_paths = [os.path.join(self.a.testdata, "captures", c) for c in captures]
        p = subprocess.run([self.bin("sluice-classify"), "--policy", path, "--at", rfc(now()),
                            "--stopped"] + cap_paths, capture_output=True, text=True, timeout=120)
        if p.returncode not in (0,):
            self.say("sluice-classify exit %d: %s" % (p.returncode, p.stderr.strip()[:500]))
        stopped, current = {}, None
        for line in p.stdout.splitlines():
            m = re.match(r"^(\S+):", line)
            if m and os.path.basename(m.group(1)) in captures:
                current = os.path.basename(m.group(1))
            m = re.search(r"=> .*enforced: (\d+) by address, (\d+) by name", line)
            if m and current:
                stopped[current] = (int(m.group(1)), int(m.group(2)))
        return stopped

    def truth(self, capture):
        n = 0
        with open(os.path.join(self.a.testdata, "captures", capture + ".truth.tsv")) as f:
            for line in f:
                if line.startswith("#"):
                    continue
                c = line.rstrip("\n").split("\t")
                if len(c) >= 16 and c[0] in ("tcp", "udp") and "yes" in (c[14], c[15]):
                    n += 1
        return n

    def replay_check(self, sim_nodes, blocked):
        for node in sim_nodes:
            with open(os.path.join(self.work, "state", node, "snapshot.json")) as f:
                snap = json.load(f)
            self.say("%s: persisted snapshot revision %d (%s/state/%s/snapshot.json)"
                     % (node, snap["revision"], self.work, node))
            got = self.classify(snap["policy"], CAPTURES_TELEGRAM + CAPTURES_OTHERS,
                                "%s-%d" % (node, snap["revision"]))
            for c in CAPTURES_TELEGRAM + CAPTURES_OTHERS:
                addr, name = got.get(c, (-1, -1))
                want = self.truth(c) if blocked else 0
                self.check(addr + name == want,
                           "%s replay %-26s Telegram flows in truth %3d, stopped %3d (%d by "
                           "address, %d by name)" % (node, c, self.truth(c), addr + name, addr, name))

    def run_replay(self, why):
        self.step("FALLBACK: capture replay (%s)" % why)
        self.say("No real traffic: the real agent code (sluice-fleet-sim, 2 nodes) takes the "
                 "snapshots,\nand sluice-classify replays real captures through each node's "
                 "persisted snapshot.")
        for f in ("sluice-fleet-sim", "sluice-classify"):
            if not os.access(self.bin(f), os.X_OK):
                self.must(False, "%s built" % self.bin(f))
        self.start_controller()
        os.mkdir(os.path.join(self.work, "state"))
        sim = self.spawn("sluice-fleet-sim", [
            self.bin("sluice-fleet-sim"), "--controller", self.url, "--nodes", "2",
            "--node-prefix", "edge-", "--labels", "site=edge-a", "--canary", "1",
            "--controller-key", "controller.pub", "--ca-file", self.ca,
            "--node-ca-cert", "node-ca/node-ca.crt", "--node-ca-key", "node-ca/node-ca.key",
            "--state-root", os.path.join(self.work, "state"), "--wait", "5",
            "--status-interval", "1"], "fleet-sim.log", cwd=self.work)
        ids = wait_for(lambda: sorted(self.nodes()) if len(self.nodes()) >= 2 else None, 20)
        self.must(bool(ids) and sim.poll() is None, "two agents registered: %s" % ids)
        self.wait_converged(1, ids, "registration")
        block_rev, _ = self.submit_block()
        self.step("(2) both nodes converge; their snapshots stop Telegram's flows, no other")
        self.wait_converged(block_rev, ids, "block")
        self.check_enforcement()
        self.replay_check(ids, True)
        lift_rev = self.submit_lift(block_rev)
        self.step("(3) both nodes converge; their snapshots stop nothing")
        self.wait_converged(lift_rev, ids, "lift")
        self.replay_check(ids, False)
        self.report()
        self.step("(4) where the metrics are")
        self.say("controller: %s/metrics (while the demo runs); nodes: sluice-dataplane "
                 "--metrics (not run in replay mode)" % self.url)
        if self.a.hold:
            self.say("--hold: everything stays up until Ctrl-C")
            self.console_login(in_namespace=False)
            signal.pause()


def now():
    return datetime.now(timezone.utc).replace(microsecond=0)


def rfc(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def short_time(at):
    """Audit times are milliseconds since the epoch (UTC)."""
    if isinstance(at, (int, float)):
        return datetime.fromtimestamp(at / 1000, timezone.utc).strftime("%H:%M:%S.%f")[:-3]
    m = re.search(r"T(\d\d:\d\d:\d\d(\.\d{1,3})?)", str(at))
    return m.group(1) if m else str(at)


def condense(detail, width=100):
    if isinstance(detail, str) and detail.startswith("{"):
        try:
            detail = json.loads(detail)
        except ValueError:
            pass
    if isinstance(detail, dict):
        keep = []
        # The revision first; flags that are off and empty reasons say nothing.
        items = sorted(detail.items(), key=lambda kv: kv[0] != "revision")
        for k, v in items:
            if v is False or v == "":
                continue
            if isinstance(v, (dict, list)):
                v = json.dumps(v, separators=(",", ":"))
            v = str(v)
            keep.append("%s=%s" % (k, v if len(v) <= 40 else v[:37] + "..."))
        text = " ".join(keep)
    else:
        text = "" if detail is None else str(detail)
    return text if len(text) <= width else text[:width - 3] + "..."


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default=os.path.dirname(here), help="source tree (config/)")
    p.add_argument("--build", help="build dir with the binaries (default SOURCE/build)")
    p.add_argument("--testdata", help="captures (default SOURCE/../shared/testdata)")
    p.add_argument("--mode", choices=("auto", "namespaces", "replay"), default="auto",
                   help="namespaces: real traffic (root); replay: captures; auto: the first "
                        "that can run")
    p.add_argument("--time-limit", type=int, default=170, help="seconds; then fail and clean up")
    p.add_argument("--hold", action="store_true", help="keep everything up after the story "
                   "until Ctrl-C (interactive)")
    a = p.parse_args()
    a.source = os.path.abspath(a.source)
    a.build = os.path.abspath(a.build or os.path.join(a.source, "build"))
    a.testdata = os.path.abspath(a.testdata or os.path.join(a.source, "..", "shared", "testdata"))

    mode, why = a.mode, None
    if mode != "replay":
        why = namespaces_unavailable() if os.environ.get("SLUICE_DEMO_ISOLATED") != "1" else None
        if why and mode == "namespaces":
            print("demo: --mode namespaces: " + why)
            return 2
        mode = "replay" if why else "namespaces"
    else:
        why = "--mode replay"
    if mode == "namespaces" and os.environ.get("SLUICE_DEMO_ISOLATED") != "1":
        return isolate("SLUICE_DEMO_ISOLATED")

    need = ["sluice-controld", "sluicectl"] + (["sluice-dataplane"] if mode == "namespaces" else
                                               ["sluice-fleet-sim", "sluice-classify"])
    missing = [b for b in need if not os.access(os.path.join(a.build, b), os.X_OK)]
    if missing:
        print("demo: not built in %s: %s (tools/demo.sh builds them)" % (a.build, " ".join(missing)))
        return 2

    if mode == "namespaces":
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        sweep_stale_namespaces(r"^(sl-demo-(\d+)-edge-[ab]-(cli|srv))\b", "demo")
    # Our own network namespace: the usual port. Replay runs on the host's loopback: any free one.
    d = Demo(a, CONTROLLER_PORT if mode == "namespaces" else free_port())
    print("Sluice demo: a ministry blocks Telegram on two nodes, then lifts the block (%s mode; "
          "binaries %s; work dir %s)" % (mode, a.build, d.work), flush=True)
    story = d.run_namespaces if mode == "namespaces" else lambda: d.run_replay(why)
    logs = ("controld.log",) + tuple("dataplane-%s.log" % n["id"] for n in NODES)
    rc = run_story(d, story, "demo", logs, None if a.hold else a.time_limit, a.hold)
    if rc == 0:
        print("demo: the story happened as described (%s mode, %.1f s)" % (mode, time.time() - d.t0))
    return rc


if __name__ == "__main__":
    sys.exit(main())
