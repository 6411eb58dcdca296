#!/usr/bin/python3
"""Issue 14: every refusal of a controller on a hostile network, over TLS, with its status code
and its metric, against a real sluice-controld.

  hostile_network.py BIN_DIR SOURCE_DIR

The controller serves HTTPS (a certificate from a throwaway CA made with openssl, EC P-256) and
has its own node CA (`sluicectl ca init`); nodes are enrolled with `sluicectl nodes enroll`
(key and CSR made locally, the controller signs) and speak with their client certificates.
Small limits make each bound reachable quickly: header_timeout 2 s, per-token rate 20/s burst 40,
directive_entries 1000.

 1. enrolment: two nodes enrolled, one command each; their files are written;
 2. no credential: 401 (unauthenticated) on an operator route, on a node route, and a fleet-wide
    node token on a node route: 401 no_client_certificate (a node CA is configured);
 3. a node's certificate on another node's snapshot or status: 403 wrong_node, audited once
    however often it is tried (then aggregated);
 4. forged labels: a node declaring group=canary and another site is served by its inventory
    labels, and the ignored labels are counted;
 5. a revoked node: its waiting long poll is answered 403 at once, its next request is refused,
    and node.revoked is in the audit;
 6. an oversized body (1 GB declared) is refused 413 on its head, unread;
 7. slowloris: 10 clients trickling a request head are cut at the header deadline while an
    engineer's request is answered in under 100 ms;
 8. rate limit: a viewer over its budget gets 429 with Retry-After;
 9. a YAML bomb (anchors and aliases), signed by the ministry: 400 anchor_not_allowed with its
    line and column; a 2,000-domain directive: 400 too_many_entries;
10. one caller's repeated forbidden requests leave one full audit record (plus at most one
    summary), not one per request.
Each refusal's counter is read from /metrics: sluice_control_http_refused_total{reason},
sluice_control_node_refusals_total{code}, sluice_control_node_labels_ignored_total,
sluice_control_validation_failures_total{code}.
Exit 0 pass, 1 fail, 77 when openssl or the binaries are missing."""

import http.client
import json
import os
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone

from control_harness import TOKENS, Controller, HttpsRequests, check, failures, tls_prerequisites, wait_for

BIN, SRC = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
HOST = "127.0.0.1"
ISSUER = "ministry-of-communications"
HEADER_TIMEOUT_S = 2
API_BOUND_S = 0.100


class HostileController(HttpsRequests, Controller):
    """The harness's controller (TLS with its own CA and node CA), with small limits."""

    def __init__(self, root):
        super().__init__(root, BIN, SRC, keys=("ministry", "controller"), stale_after=300)
        self.ctx = ssl.create_default_context(cafile=self.ca)

    def _write_config(self):
        super()._write_config()
        path = os.path.join(self.root, self.config_name)
        with open(path) as f:
            text = f.read().replace("max_wait_seconds: 5\n", "max_wait_seconds: 30\n")
        with open(path, "w") as f:
            f.write(text + f"""server:
  header_timeout: {HEADER_TIMEOUT_S}
  rate_limit:
    per_token: {{ rate: 20, burst: 40 }}
limits: {{ directive_entries: 1000 }}
""")

    def node_ctx(self, node):
        ctx = ssl.create_default_context(cafile=self.ca)
        d = os.path.join(self.root, node)
        ctx.load_cert_chain(os.path.join(d, "node.crt"), os.path.join(d, "node.key"))
        return ctx


def rfc(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def signed(c, name, text):
    with open(os.path.join(c.root, name), "w") as f:
        f.write(text)
    c.ctl(["sign", "--secret", "ministry.key", name])
    with open(os.path.join(c.root, name + ".minisig")) as f:
        return {"document": text, "signature": f.read()}


def head(i):
    now = datetime.now(timezone.utc)
    return (f"id: HOSTILE-{i}\nissuer: {ISSUER}\nissued_at: {rfc(now - timedelta(minutes=5))}\n"
            f"legal_basis: \"Order No. {i}\"\n")


def slowloris(c, results, i):
    """Trickles a request head, one byte every 0.5 s, until the server closes: (seconds, why)."""
    t0 = time.monotonic()
    try:
        raw = socket.create_connection((HOST, c.port), timeout=10)
        s = c.ctx.wrap_socket(raw, server_hostname=HOST)
        head_bytes = b"GET /v1/rollout HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        for b in head_bytes:
            s.send(bytes([b]))
            time.sleep(0.5)
        results[i] = (time.monotonic() - t0, "never cut")
    except (OSError, ssl.SSLError) as e:
        results[i] = (time.monotonic() - t0, type(e).__name__)


def main():
    why = tls_prerequisites(BIN)
    if why:
        print(f"skip: {why}")
        return 77
    root = tempfile.mkdtemp(prefix="sluice-hostile-")
    print(f"== a hostile network against sluice-controld over TLS (work dir {root})")
    c = HostileController(root)
    if not c.start(timeout=30):
        print(c.log_tail())
        return 1
    refused = lambda reason: c.metric(f'sluice_control_http_refused_total{{reason="{reason}"}}') or 0.0

    # 1. enrolment: one command per node
    for node, labels in (("edge-1", "site=sim,group=main"), ("edge-2", "site=sim,group=main")):
        p = c.ctl(["nodes", "enroll", node, "--labels", labels, "--out", node], role="engineer")
        files = all(os.path.exists(os.path.join(root, node, f)) for f in ("node.key", "node.crt", "ca.crt"))
        check(p.returncode == 0 and files, f"sluicectl nodes enroll {node} writes node.key, node.crt, ca.crt")
        check(oct(os.stat(os.path.join(root, node, "node.key")).st_mode & 0o777) == "0o600",
              f"{node}'s key is private (0600)")
    e1, e2 = c.node_ctx("edge-1"), c.node_ctx("edge-2")

    # 2. no credential
    before = refused("unauthenticated")
    st, body = c.request("GET", "/v1/directives", None)
    check(st == 401, f"no credential on GET /v1/directives -> {st} (401)")
    st, _ = c.request("GET", "/v1/nodes/edge-1/snapshot", None)
    check(st == 401, f"no credential on a node route -> {st} (401)")
    st, body = c.request("GET", "/v1/nodes/edge-1/snapshot", "node")
    check(st == 401 and isinstance(body, dict) and body.get("error") == "no_client_certificate",
          f"the fleet-wide node token with a node CA configured -> {st} {body} (401 no_client_certificate)")
    check(refused("unauthenticated") - before == 3, "three refusals counted as unauthenticated")

    # 3. one node's certificate on another node's routes
    st, _ = c.request("GET", "/v1/nodes/edge-1/snapshot", None, ctx=e1)
    check(st == 200, f"edge-1's certificate fetches edge-1's snapshot ({st})")
    audited0 = sum(1 for r in c.audit_records() if r["event"] == "request.refused"
                   and r["actor"] == "node:edge-1")
    for _ in range(5):
        st, body = c.request("GET", "/v1/nodes/edge-2/snapshot", None, ctx=e1)
    check(st == 403 and body.get("error") == "wrong_node", f"edge-1's certificate on edge-2's snapshot -> {st} {body}")
    st, _ = c.request("POST", "/v1/nodes/edge-2/status", None, ctx=e1,
                      body={"revision": 1, "result": "ack"})
    check(st == 403, f"and on edge-2's status -> {st} (403)")
    check(c.metric('sluice_control_node_refusals_total{code="wrong_node"}') == 6,
          "six wrong_node refusals counted")
    check(wait_for(lambda: sum(1 for r in c.audit_records() if r["event"] == "request.refused"
                                and r["actor"] == "node:edge-1") - audited0 == 1, 5),
          "audited once, not six times (repeats are summarised per minute)")

    # 4. forged labels
    ignored0 = c.metric("sluice_control_node_labels_ignored_total") or 0.0
    st, snap = c.request("GET", "/v1/nodes/edge-1/snapshot", None, ctx=e1,
                         headers={"X-Sluice-Labels": "group=canary,site=elsewhere"})
    st2, _ = c.request("POST", "/v1/nodes/edge-1/status", None, ctx=e1,
                       body={"revision": snap.get("revision", 0) if isinstance(snap, dict) else 0,
                             "result": "ack", "labels": {"group": "canary", "site": "elsewhere"}})
    node = next((n for n in c.node_list() if n["node"] == "edge-1"), {})
    check(st == 200 and st2 == 204 and node.get("labels") == {"site": "sim", "group": "main"}
          and not node.get("canary"),
          f"edge-1 declaring group=canary,site=elsewhere is served and listed by its inventory "
          f"labels ({node.get('labels')}, canary {node.get('canary')})")
    check((c.metric("sluice_control_node_labels_ignored_total") or 0) - ignored0 >= 2,
          "the declared labels are counted as ignored")

    # 5. a revoked node: its waiting poll is answered at once
    st, snap2 = c.request("GET", "/v1/nodes/edge-2/snapshot", None, ctx=e2)
    held = snap2.get("revision", 0) if isinstance(snap2, dict) else 0
    poll = {}

    def wait_poll():
        t0 = time.monotonic()
        poll["status"], poll["body"] = c.request("GET", "/v1/nodes/edge-2/snapshot?wait=25", None, ctx=e2,
                                                 headers={"If-None-Match": f'"{held}"'}, timeout=40)
        poll["at"] = time.monotonic()
        poll["took"] = poll["at"] - t0

    t = threading.Thread(target=wait_poll, daemon=True)
    t.start()
    check(wait_for(lambda: c.metric("sluice_control_long_polls_waiting") == 1, 10, step=0.1),
          "edge-2's long poll waits")
    revoked_at = time.monotonic()
    p = c.ctl(["nodes", "revoke", "edge-2", "--reason", "stolen appliance"], role="engineer")
    t.join(timeout=30)
    answered = poll.get("at", 1e9) - revoked_at
    check(p.returncode == 0 and poll.get("status") == 403 and answered < 2.0,
          f"revoking edge-2 answers its waiting poll {poll.get('status')} "
          f"{poll.get('body')} {answered:.2f} s after the revoke (403, < 2 s)")
    st, body = c.request("GET", "/v1/nodes/edge-2/snapshot", None, ctx=e2)
    check(st == 403 and body.get("error") == "revoked", f"edge-2's next request -> {st} {body} (403 revoked)")
    check(any(r["event"] == "node.revoked" and r["subject"] == "edge-2" for r in c.audit_records()),
          "node.revoked is in the audit trail")

    # 6. an oversized body, refused on its head
    before = refused("too_large")
    conn = c.connection()
    conn.putrequest("POST", "/v1/directives")
    conn.putheader("Authorization", "Bearer " + TOKENS["ministry"])
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(1 << 30))
    conn.endheaders()
    try:
        conn.send(b"x" * 65536)
    except OSError:
        pass
    r = conn.getresponse()
    check(r.status == 413, f"a declared 1 GB directive -> {r.status} (413), answered on its head")
    conn.close()
    check(refused("too_large") - before == 1, "counted as too_large")

    # 7. slowloris, while an engineer is served
    before = refused("header_timeout")
    slow = [None] * 10
    threads = [threading.Thread(target=slowloris, args=(c, slow, i), daemon=True) for i in range(10)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    conn = c.connection()
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        conn.request("GET", "/v1/rollout", headers={"Authorization": "Bearer " + TOKENS["engineer"]})
        ok = conn.getresponse().read() and True
        times.append(time.perf_counter() - t0)
        time.sleep(0.05)
    conn.close()
    print(f"figure engineer GET /v1/rollout during slowloris: max {max(times) * 1e3:.1f} ms")
    check(ok and max(times) < API_BOUND_S, f"an engineer's requests answered in < 100 ms meanwhile "
                                            f"(max {max(times) * 1e3:.1f} ms)")
    for t in threads:
        t.join(timeout=30)
    cut = [s for s in slow if s and s[1] != "never cut"]
    longest = max((s[0] for s in slow if s), default=0)
    check(len(cut) == 10 and longest < HEADER_TIMEOUT_S + 2,
          f"all 10 slow heads cut by the {HEADER_TIMEOUT_S} s header deadline (longest {longest:.1f} s: {slow[:2]})")
    check(refused("header_timeout") - before == 10, f"counted as header_timeout ({refused('header_timeout') - before})")

    # 8. rate limit
    before = refused("rate_limited")
    conn = c.connection()
    codes, retry = [], None
    for _ in range(80):
        conn.request("GET", "/v1/rollout", headers={"Authorization": "Bearer " + TOKENS["viewer"]})
        r = conn.getresponse()
        r.read()
        codes.append(r.status)
        if r.status == 429:
            retry = r.getheader("Retry-After")
            conn.close()
            conn = c.connection()
    conn.close()
    check(codes.count(429) > 0 and codes[0] == 200 and retry is not None,
          f"a viewer over 20/s (burst 40) gets 429 with Retry-After {retry} ({codes.count(429)} of 80)")
    check(refused("rate_limited") - before == codes.count(429), "each 429 counted as rate_limited")
    time.sleep(2.5)  # the bucket refills before the next steps

    # 9. a YAML bomb and a directive with too many targets, both properly signed
    bomb = head(1) + "action: block\nscope: all\nnot_before: 2026-12-01T00:00:00Z\n" + \
        "targets:\n  domains: &a [a.example, b.example]\n" + \
        "".join(f"x{i}: &x{i} [*{'a' if i == 0 else 'x' + str(i - 1)}, *{'a' if i == 0 else 'x' + str(i - 1)}]\n"
                for i in range(30))
    st, body = c.request("POST", "/v1/directives", "ministry", body=signed(c, "bomb.yaml", bomb))
    check(st == 400 and body.get("error") == "anchor_not_allowed" and body.get("line") == 9,
          f"a signed YAML bomb -> {st} {body.get('error')} at line {body.get('line')} (400 anchor_not_allowed, line 9)")
    many = head(2) + "action: block\nscope: all\nnot_before: 2026-12-01T00:00:00Z\ntargets:\n  domains:\n" + \
        "".join(f"    - n{i}.example\n" for i in range(2000))
    st, body = c.request("POST", "/v1/directives", "ministry", body=signed(c, "many.yaml", many))
    check(st == 400 and body.get("error") == "too_many_entries",
          f"a signed 2,000-domain directive over directive_entries 1000 -> {st} {body.get('error')} "
          f"(400 too_many_entries: {body.get('message')})")
    check(c.metric('sluice_control_validation_failures_total{code="anchor_not_allowed"}') == 1 and
          c.metric('sluice_control_validation_failures_total{code="too_many_entries"}') == 1,
          "both counted in sluice_control_validation_failures_total")

    # 10. one caller's repeated forbidden writes: one audit record, then a count
    before = sum(1 for r in c.audit_records() if r["actor"] == "viewer-user" and r["event"] == "request.refused")
    for _ in range(15):
        st, _ = c.request("POST", "/v1/emergency-stop", "viewer", body={"reason": "x"})
    check(st == 403, f"a viewer's emergency stop -> {st} (403)")
    check(wait_for(lambda: sum(1 for r in c.audit_records() if r["actor"] == "viewer-user"
                                and r["event"] == "request.refused") - before == 1, 5),
          "15 forbidden writes leave one full audit record")
    check(c.ctl(["audit", "verify"], role="viewer").returncode == 0, "the audit chain verifies")
    c.kill()
    shutil.rmtree(root, ignore_errors=True)
    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
