#!/usr/bin/python3
"""impact_e2e: issue 8 end to end — before a block takes effect, operators see what it would hit.

  impact_e2e.py BUILD_DIR SOURCE_DIR

Real binaries, real traffic: sluice-controld on 127.0.0.1 over TLS (a throwaway CA; SQLite in
a temp dir; protected target cdn-shared = 149.154.167.0/24; approval needs an impact report
younger than 600 s and two override consents), one sluice-dataplane node in controller mode
(--impact-interval 2) inline on net_af_packet between a client and a server network namespace;
the server answers TLS on 149.154.167.99 (the threaded origin of tools/netlab.py, shared with
tools/demo.py).
The story asserted (each step printed ok/FAIL):
  1. controller and node up, node converged;
  2. the ministry's signed block (prefix 149.154.167.0/24 + domain telegram.org, response reset)
     awaits approval; the node converges on the shadow revision (monitor rules);
  3. approving now is refused: impact_report_required (no report yet);
  4. 12 TLS flows SNI telegram.org, 6 SNI drive.example.com, 3 unnamed TCP flows to
     149.154.167.99:443 all succeed (shadow rules never enforce);
  5. `sluicectl directive impact --json` shows them for 149.154.167.0/24: counts and shares;
  6. approval refused with protected_overlap (naming the prefix and cdn-shared) until two
     engineers override; a third approves; the node enforces: both names on that address reset;
  7. the audit trail holds the story in order and verifies.
Everything runs in a network namespace of its own (`unshare --net`, re-executing this script)
plus two named namespaces; all processes and namespaces are removed on every exit path.
Exit 0 pass, 1 fail, 2 usage / missing binaries, 77 skipped (not root / no namespaces)."""

import json
import os
import re
import secrets
import subprocess
import sys
import time
from datetime import timedelta

# The namespace plumbing shared with the main job (tools/netlab.py) and its time formatting.
sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tools"))
import netlab  # noqa: E402
from netlab import Story, in_ns, wait_for  # noqa: E402
from demo import condense, now, rfc  # noqa: E402

ISSUER = "ministry-of-communications"
DIRECTIVE_ID = "MINCOM-IMPACT-E2E-001"
KEY = ISSUER + "/" + DIRECTIVE_ID
PREFIX = "149.154.167.0/24"
ADDR = "149.154.167.99"
OWN, OTHER = "telegram.org", "drive.example.com"
N1, N2, N3 = 12, 6, 3
PORT = 9481          # the controller, on the loopback of our own network namespace
MGMT, METRICS = 9472, 9462
NET = "10.98.1"
TIME_LIMIT = 115     # seconds (ctest TIMEOUT should be a bit above)
ENV_FLAG = "SLUICE_IMPACT_E2E_ISOLATED"
NS_PATTERN = r"^(sl-imp-(\d+)-(cli|srv))\b"

# Garbage that is neither TLS nor HTTP: the classifier gives up on it at once, so the flow is
# reported unnamed without waiting for it to expire.
UNNAMED_CLIENT = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], 443), timeout=4)
s.sendall(bytes(range(1, 64)) * 4)
s.settimeout(1)
try:
    s.recv(100)
except OSError:
    pass
s.close()
"""


class Lab(Story):
    def __init__(self, build, source):
        super().__init__("sluice-impact-", "SLUICE_IMPACT_KEEP")
        self.build, self.source = build, source
        self.url = "https://127.0.0.1:%d" % PORT  # TLS, as every controller in the tests
        self.ca = None  # the throwaway CA of the controller's certificate (start_controller)
        # token name (the principal the audit names) -> (role, secret)
        self.tokens = {name: (role, "%s-%s" % (name, secrets.token_hex(16))) for name, role in (
            ("ministry", "ministry"), ("eng-a", "engineer"), ("eng-b", "engineer"),
            ("eng-c", "engineer"), ("viewer", "viewer"), ("node", "node"))}
        self.cli = "sl-imp-%d-cli" % os.getpid()
        self.srv = "sl-imp-%d-srv" % os.getpid()
        self.file_prefix = "sluice-impact-%d" % os.getpid()
        self.node = None

    # ---- controller ----------------------------------------------------------------------------
    def bin(self, name):
        return os.path.join(self.build, name)

    def ctl(self, args, who=None, show=False):
        p = netlab.sluicectl(self.bin("sluicectl"), self.url, args,
                             self.tokens[who][1] if who else None, self.work, timeout=30, ca=self.ca)
        if show or p.returncode != 0:
            self.say("$ sluicectl %s  [%s] -> exit %d\n%s%s" % (
                " ".join(args), who or "-", p.returncode, p.stdout, p.stderr))
        return p

    def ctl_json(self, args, who=None, show=False):
        p = self.ctl(args + ["--json"], who, show)
        try:
            body = json.loads(p.stdout) if p.stdout.strip() else {}
        except ValueError:
            body = {}
        return p.returncode, body

    def get(self, path, who="viewer"):
        return netlab.http_json(self.url + path, self.tokens[who][1] if who else None, ca=self.ca)

    def start_controller(self):
        self.ca = netlab.controller_tls(self.work)
        config = netlab.controld_yaml(
            "tests/integration/impact_e2e.py", "127.0.0.1:%d" % PORT, self.source, ISSUER,
            [(name, role, tok) for name, (role, tok) in self.tokens.items()],
            "protected:\n"
            "  - { name: cdn-shared, prefixes: [%s] }\n"
            "approval:\n"
            "  require_impact_report_within_seconds: 600\n"
            "tls: { cert: ctl.crt, key: ctl.key }\n"
            "nodes:\n"  # only the inventory's nodes are served (issue 14)
            "  - { id: edge-impact, labels: { site: edge-impact } }\n" % PREFIX)
        self.controller = super().start_controller(self.bin("sluice-controld"), config,
                                                   self.tokens["node"][1], self.url + "/v1/health",
                                                   ca=self.ca)

    def rollout_target(self):
        return (self.get("/v1/rollout") or {}).get("target", 0)

    def node_record(self):
        for n in (self.get("/v1/nodes") or {}).get("nodes", []):
            if n.get("node", n.get("id")) == "edge-impact":
                return n
        return {}

    def wait_converged(self, rev, what):
        t = time.time()
        ok = wait_for(lambda: (lambda n: n.get("applied_revision", 0) >= rev and
                                         n.get("state") == "converged")(self.node_record()),
                                30, 0.1)
        n = self.node_record()
        self.must(ok, "%s: node converged on revision %d (applied %s, %s, %.1f s)" % (
            what, rev, n.get("applied_revision"), n.get("state"), time.time() - t))

    # ---- network and node ----------------------------------------------------------------------
    def build_topology(self):
        cert, key = netlab.self_signed_cert(self.work, OWN, [
            "DNS:" + OWN, "DNS:" + OTHER, "IP:" + ADDR])
        self.cli_if, self.srv_if = "imp-cli", "imp-srv"
        self.add_namespace(self.cli, self.cli_if, [NET + ".1/24"])
        self.add_namespace(self.srv, self.srv_if, [NET + ".2/24", ADDR + "/32"])
        # The protected address is one hop away on the same link (the dataplane bridges L2).
        netlab.run(in_ns(self.cli, ["ip", "route", "add", ADDR + "/32", "dev", "eth0"]))
        self.start_origin(self.srv, cert, key, "origin.log")

    def node_get(self, path):
        return netlab.http_json("http://127.0.0.1:%d%s" % (MGMT, path))

    def start_node(self):
        state = os.path.join(self.work, "state")
        os.mkdir(state)
        cmd = netlab.dataplane_cmd(self.bin("sluice-dataplane"), self.file_prefix, self.cli_if,
                                   self.srv_if, MGMT, METRICS) + [
            "--controller", self.url, "--controller-ca", self.ca, "--controller-key", "controller.pub",
            "--node-id", "edge-impact", "--labels", "site=edge-impact",
            "--node-token-file", "node.token", "--state-dir", state,
            "--impact-interval", "2"]
        self.node = self.start_dataplane("sluice-dataplane", cmd, "dataplane.log",
                                         lambda: self.node_get("/status"), self.file_prefix)
        return self.node is not None

    def curl(self, name):
        """TLS to ADDR with SNI `name`, in the client namespace -> (curl exit, HTTP code, secs)."""
        args = ["curl", "-sk", "--connect-timeout", "4", "--max-time", "6", "-o", "/dev/null",
                "-w", "%{http_code}", "--resolve", "%s:443:%s" % (name, ADDR), "https://%s/" % name]
        t = time.time()
        r = subprocess.run(in_ns(self.cli, args), capture_output=True, text=True,
                           timeout=20)
        return r.returncode, r.stdout.strip(), time.time() - t

    def unnamed_flow(self):
        r = subprocess.run(in_ns(self.cli, [sys.executable, "-c", UNNAMED_CLIENT, ADDR]),
                           capture_output=True, text=True, timeout=20)
        return r.returncode, r.stderr.strip()

    # ---- the story -----------------------------------------------------------------------------
    def directive(self):
        t = now()
        doc = """# written by tests/integration/impact_e2e.py
id: %s
issuer: %s
issued_at: %s
legal_basis: "Order No. 8 of 2026 (impact test)"
action: block
response: reset
targets:
  prefixes: [%s]
  domains: [%s]
scope: all
not_before: %s
""" % (DIRECTIVE_ID, ISSUER, rfc(t - timedelta(minutes=2)), PREFIX, OWN,
            rfc(t - timedelta(minutes=1)))
        with open(os.path.join(self.work, "block.yaml"), "w") as f:
            f.write(doc)
        p = self.ctl(["sign", "--secret", "ministry.key", "block.yaml"])
        self.must(p.returncode == 0 and os.path.exists(os.path.join(self.work, "block.yaml.minisig")),
                  "block.yaml signed with the ministry's key (sluicectl sign)")
        self.say(doc.strip())

    def approve_refused(self, who, code):
        rc, body = self.ctl_json(["approve", KEY], who)
        got = body.get("error") or body.get("code")
        self.check(rc != 0 and got == code, "approve by %s refused with %s (exit %d, got %s)"
                   % (who, code, rc, got))
        return body.get("message", "")

    def impact_json(self):
        rc, body = self.ctl_json(["directive", "impact", KEY, "--window", "600"], "viewer")
        return body if rc == 0 else {}

    @staticmethod
    def prefix_entry(report):
        for p in report.get("prefixes", []):
            if p.get("prefix") == PREFIX:
                return p
        return {}

    def run(self):
        self.step("1. controller (protected cdn-shared %s, fresh report required), one node "
                  "(--impact-interval 2)" % PREFIX)
        self.start_controller()
        self.build_topology()
        self.say("[%s %s.1] -- %s [sluice-dataplane edge-impact] %s -- [%s %s.2, %s]" % (
            self.cli, NET, self.cli_if, self.srv_if, self.srv, NET, ADDR))
        up = self.start_node()
        if not up:
            self.say(self.log_tail("dataplane.log"))
        self.must(up, "sluice-dataplane up (management API answers)")
        self.wait_converged(1, "registration")

        self.step("2. the ministry's block (prefix %s + domain %s, reset) awaits approval; "
                  "shadow rules roll out" % (PREFIX, OWN))
        self.directive()
        before = self.rollout_target()
        rc, st = self.ctl_json(["submit", "block.yaml"], "ministry")
        self.must(rc == 0 and st.get("state") == "awaiting_approval",
                  "submitted with the ministry's token: %s %s" % (KEY, st.get("state")))
        shadow_rev = wait_for(lambda: (lambda r: r if r > before else 0)(self.rollout_target()), 5)
        self.must(shadow_rev > before, "submission compiled shadow revision %d" % shadow_rev)
        self.wait_converged(shadow_rev, "shadow")
        rep = self.get("/v1/directives/%s/impact?window=600" % KEY) or {}
        self.check(rep.get("shadow_rules") is True and rep.get("state") == "awaiting_approval",
                   "impact view: shadow_rules %s, state %s" % (rep.get("shadow_rules"), rep.get("state")))

        self.step("3. approving before any impact report")
        self.approve_refused("eng-a", "impact_report_required")

        self.step("4. traffic through the node to %s:443 (shadow rules must not enforce)" % ADDR)
        results = {OWN: [], OTHER: []}
        for name, count in ((OWN, N1), (OTHER, N2)):
            for _ in range(count):
                results[name].append(self.curl(name))
        for name, count in ((OWN, N1), (OTHER, N2)):
            ok = [r for r in results[name] if r[0] == 0 and r[1] == "200"]
            self.check(len(ok) == count, "%d/%d TLS flows SNI %s: curl exit 0, HTTP 200 (exits %s)"
                       % (len(ok), count, name, sorted({r[0] for r in results[name]})))
        unnamed = [self.unnamed_flow() for _ in range(N3)]
        self.check(all(rc == 0 for rc, _ in unnamed),
                   "%d unnamed TCP flows (connect, send non-TLS bytes, close): %s"
                   % (N3, [rc if rc == 0 else err[-80:] for rc, err in unnamed]))

        self.step("5. sluicectl directive impact %s --window 600 --json" % KEY)
        t = time.time()

        def settled():
            p = self.prefix_entry(self.impact_json())
            return p if (p.get("flows", 0) >= N1 + N2 + N3 and
                         p.get("own_flows", 0) >= N1 and p.get("unnamed", 0) >= N3) else None
        wait_for(settled, 15, 0.5)
        time.sleep(2.5)  # one more window: nothing late may arrive on top
        report = self.impact_json()
        p = self.prefix_entry(report)
        self.say("after %.1f s: %s" % (time.time() - t, json.dumps(p, sort_keys=True)))
        if not p:
            self.say("node's last impact body (GET /impact): %s" % (self.node_get("/impact") or "")[:600])
            self.say("node /status: %s" % json.dumps(self.node_get("/status"))[:600])
        flows, unnamed_n = p.get("flows", -1), p.get("unnamed", -1)
        others = {o.get("name"): o for o in p.get("top_other", [])}
        other_flows = others.get(OTHER, {}).get("flows", -1)
        self.check(unnamed_n >= N3, "unnamed flows %d (>= N3 = %d)" % (unnamed_n, N3))
        self.check(flows == N1 + N2 + unnamed_n and (unnamed_n != N3 or flows == N1 + N2 + N3),
                   "flows %d == N1+N2+unnamed = %d+%d+%d" % (flows, N1, N2, unnamed_n))
        self.check(p.get("own_flows") == N1, "own flows (%s) %s == N1 = %d"
                   % (OWN, p.get("own_flows"), N1))
        self.check(other_flows == N2, "top_other %s flows %d == N2 = %d" % (OTHER, other_flows, N2))
        if flows > 0:
            self.check(abs(p.get("own_share", -1) - N1 / flows) < 0.001,
                       "own_share %s == %d/%d" % (p.get("own_share"), N1, flows))
            self.check(abs(others.get(OTHER, {}).get("share", -1) - N2 / flows) < 0.001,
                       "%s share %s == %d/%d" % (OTHER, others.get(OTHER, {}).get("share"), N2, flows))
            self.check(abs(p.get("unnamed_share", -1) - unnamed_n / flows) < 0.001,
                       "unnamed_share %s == %d/%d" % (p.get("unnamed_share"), unnamed_n, flows))
        self.check(any(PREFIX in o and "cdn-shared" in o for o in report.get("protected_overlaps", [])),
                   "impact view lists the protected overlap: %s" % report.get("protected_overlaps"))
        self.ctl(["directive", "impact", KEY, "--window", "600"], "viewer", show=True)
        # The node's own count of delivered windows (a counter; names never become labels).
        m = netlab.http_json("http://127.0.0.1:%d/metrics" % METRICS) or ""
        sent = re.search(r'(?m)^sluice_dataplane_impact_reports_total\{[^}]*result="delivered"[^}]*\} (\S+)$', m)
        self.check(sent is not None and float(sent.group(1)) >= 1,
                   "node metrics: sluice_dataplane_impact_reports_total{result=delivered} = %s"
                   % (sent.group(1) if sent else "absent"))
        self.check(OWN not in m and OTHER not in m, "no name from the sketches in the node's metrics")

        self.step("6. protected target: overrides, then approval; the node enforces")
        msg = self.approve_refused("eng-a", "protected_overlap")
        self.check(PREFIX in msg and "cdn-shared" in msg,
                   "the refusal names %s and cdn-shared: %s" % (PREFIX, msg))
        p = self.ctl(["directive", "override", KEY, "--reason", "collateral reviewed (impact e2e)"],
                     "eng-a", show=True)
        self.check(p.returncode == 0, "eng-a overrides (exit %d)" % p.returncode)
        self.approve_refused("eng-a", "protected_overlap")
        p = self.ctl(["directive", "override", KEY, "--reason", "second engineer agrees"],
                     "eng-b", show=True)
        self.check(p.returncode == 0, "eng-b overrides (exit %d)" % p.returncode)
        before = self.rollout_target()
        rc, st = self.ctl_json(["approve", KEY], "eng-c")
        self.must(rc == 0 and st.get("state") == "active",
                  "eng-c approves: exit %d, state %s" % (rc, st.get("state")))
        rev = wait_for(lambda: (lambda r: r if r > before else 0)(self.rollout_target()), 5)
        self.must(rev > before, "approval compiled enforcing revision %d" % rev)
        self.wait_converged(rev, "enforcing")
        for name in (OWN, OTHER):
            rc, code, secs = self.curl(name)
            self.check(rc != 0 and code != "200" and secs < 3.5,
                       "TLS SNI %s to %s now stopped (curl %d%s, %.1f s)" % (
                           name, ADDR, rc, " " + netlab.curl_error(rc), secs))

        self.step("7. the audit trail")
        p = self.ctl(["audit", "export"], "viewer")
        records = []
        for line in p.stdout.splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
        mine = []
        for r in records:
            if r.get("subject") != KEY:
                continue
            detail = r.get("detail")
            if isinstance(detail, str):
                try:
                    detail = json.loads(detail)
                except ValueError:
                    detail = {}
            code = detail.get("code") if isinstance(detail, dict) else None
            label = r.get("event") + ("(%s)" % code if code else "")
            mine.append(label)
            self.say("#%-4s %-18s %-8s %s" % (r.get("seq"), label, r.get("actor"),
                                              condense(r.get("detail"), 80)))
        want = ["directive.received", "request.refused(impact_report_required)",
                "request.refused(protected_overlap)", "directive.override_approved",
                "directive.override_approved", "directive.approved"]
        i = 0
        for label in mine:
            if i < len(want) and label == want[i]:
                i += 1
        self.check(p.returncode == 0 and i == len(want),
                   "audit export holds, in order: %s (matched %d of %d)" % (", ".join(want), i, len(want)))
        p = self.ctl(["audit", "verify"], "viewer")
        self.check(p.returncode == 0, "sluicectl audit verify: %s" % p.stdout.strip().replace("\n", "; "))


def main():
    if len(sys.argv) != 3:
        print(__doc__.split("\n\n")[1])
        return 2
    build, source = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    if os.environ.get(ENV_FLAG) != "1":
        why = netlab.namespaces_unavailable()
        if why:
            print("impact_e2e: SKIP (%s)" % why)
            return 77
        missing = [b for b in ("sluice-controld", "sluicectl", "sluice-dataplane")
                   if not os.access(os.path.join(build, b), os.X_OK)]
        if missing:
            print("impact_e2e: not built in %s: %s" % (build, " ".join(missing)))
            return 2
        return netlab.isolate(ENV_FLAG)

    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    netlab.sweep_stale_namespaces(NS_PATTERN, "impact_e2e")
    lab = Lab(build, source)
    print("impact_e2e: shadow rules, impact report, protected override (work dir %s)" % lab.work,
          flush=True)
    rc = netlab.run_story(lab, lab.run, "impact_e2e", ("controld.log", "dataplane.log"), TIME_LIMIT)
    if rc == 0:
        print("impact_e2e: PASS (%.1f s)" % (time.time() - lab.t0))
    return rc


if __name__ == "__main__":
    sys.exit(main())
