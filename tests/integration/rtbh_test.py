#!/usr/bin/env python3
"""sluice-rtbh in network namespaces (root): kernel routes, and two BIRD 2 instances exporting them.

  rtbh_test.py BUILD_DIR SOURCE_DIR      exit 0 pass, 1 fail, 77 skip (not root, no bird)

Namespace A holds sluice-rtbh (standalone --policy, SIGHUP reloads) and BIRD "trigger" running
deploy/bird/bird-rtbh.conf (its defines rewritten for the test addresses); namespace B holds
BIRD "peer", joined to A by a veth. Everything the test creates (namespaces, veth, processes,
temp dir) is removed at the end; the host's routes and links are never touched.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TABLE = 4242
PROTO = 165
TAG = f"{os.getpid() % 100000}"
NS_A = f"sluice-rtbh-a-{TAG}"
NS_B = f"sluice-rtbh-b-{TAG}"
NS_C = f"sluice-rtbh-c-{TAG}"
NODE = "rtbh-1"
NODE_TOKEN = "tok-node-rtbh"

# A stand-in for sluice-controld's node protocol (control/README.md): offers offer.json's body
# (a signed snapshot) when its revision differs from If-None-Match, else 304 after the wait;
# appends every status report to status.jsonl.
FAKE_CONTROLLER = r"""
import json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs
DIR, PORT, NODE, TOKEN = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def auth(self):
        if self.headers.get("Authorization") != "Bearer " + TOKEN:
            self.send_response(401); self.end_headers(); return False
        return True
    def do_GET(self):
        u = urlparse(self.path)
        if u.path != f"/v1/nodes/{NODE}/snapshot" or not self.auth():
            if u.path != f"/v1/nodes/{NODE}/snapshot": self.send_response(404); self.end_headers()
            return
        held = (self.headers.get("If-None-Match") or "").strip('"')
        end = time.time() + min(float(parse_qs(u.query).get("wait", ["0"])[0]), 60)
        while True:
            try:
                body = open(os.path.join(DIR, "offer.json")).read()
                rev = str(json.loads(body)["revision"])
            except (OSError, ValueError):
                body, rev = None, None
            if body and rev != held:
                data = body.encode()
                self.send_response(200); self.send_header("ETag", f'"{rev}"')
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data))); self.end_headers()
                self.wfile.write(data); return
            if time.time() >= end:
                self.send_response(304); self.end_headers(); return
            time.sleep(0.1)
    def do_POST(self):
        if self.path != f"/v1/nodes/{NODE}/status" or not self.auth():
            return
        n = int(self.headers.get("Content-Length", "0"))
        with open(os.path.join(DIR, "status.jsonl"), "a") as f:
            f.write(self.rfile.read(n).decode() + "\n")
        self.send_response(204); self.end_headers()
ThreadingHTTPServer(("127.0.0.1", PORT), H).serve_forever()
"""
VETH_A = f"rtbh{TAG}a"
VETH_B = f"rtbh{TAG}b"
ADDR_A, ADDR_B = "198.18.0.1", "198.18.0.2"  # inside the namespaces only

failures = []
procs = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def run(*args, ns=None, check_rc=True, **kw):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check_rc and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: rc {r.returncode}: {r.stderr.strip()}")
    return r


def our_routes(ns=NS_A):
    """Our routes (table, protocol) as a set of 'prefix' strings, both families."""
    out = set()
    for fam in ("-4", "-6"):
        # (an empty IPv6 table does not exist yet: "FIB table does not exist", nothing of ours)
        text = run("ip", fam, "route", "show", "table", str(TABLE), "proto", str(PROTO), ns=ns,
                   check_rc=False).stdout
        for line in text.splitlines():
            words = line.split()
            if not words:
                continue
            dst = words[1] if words[0] in ("blackhole", "unreachable") else words[0]
            if "/" not in dst:
                dst += "/32" if fam == "-4" else "/128"
            out.add(dst)
    return out


def foreign_routes(ns=NS_A):
    return run("ip", "route", "show", "table", str(TABLE), "proto", "static", ns=ns).stdout.strip()


def wait_for(pred, timeout, step=0.2):
    end = time.time() + timeout
    while True:
        v = pred()
        if v or time.time() >= end:
            return v
        time.sleep(step)


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def policy(revision, window_end, extra_prefix=None, rules=True):
    if not rules:
        return f"revision: {revision}\nrules: []\n"
    block = ["198.51.100.0/24", "2001:db8:1::/48"] + ([extra_prefix] if extra_prefix else [])
    return (f"revision: {revision}\nrules:\n"
            f"  - id: block\n    action: drop\n    prefixes: [{', '.join(block)}]\n"
            f"  - id: window\n    action: reset\n    not_after: {rfc3339(window_end)}\n"
            f"    prefixes: [203.0.113.0/25]\n"
            f"  - id: shadow\n    action: monitor\n    prefixes: [192.0.2.0/24]\n")


def birdc(sock, *cmd):
    return run("birdc", "-s", sock, *cmd, check_rc=False).stdout


def peer_route(sock, prefix):
    """The peer's 'show route all' text for prefix, '' when it has none."""
    out = birdc(sock, "show", "route", "for", prefix, "all")
    return out if prefix.split("/")[0] in out and "BGP" in out else ""


def peer_v6(sock):
    out = birdc(sock, "show", "route", "table", "master6", "all")
    return out if "2001:db8:1::/48" in out else ""


def start(cmd, log_path, ns):
    log = open(log_path, "w")
    p = subprocess.Popen(["ip", "netns", "exec", ns] + cmd, stdout=log, stderr=subprocess.STDOUT)
    procs.append(p)
    return p


def main():
    if len(sys.argv) != 3:
        print("usage: rtbh_test.py BUILD_DIR SOURCE_DIR", file=sys.stderr)
        return 2
    build, source = sys.argv[1], sys.argv[2]
    if os.geteuid() != 0:
        print("SKIPPED: needs root (network namespaces)")
        return 77
    if not shutil.which("bird") or not shutil.which("birdc"):
        print("SKIPPED: bird/birdc (BIRD 2) not installed")
        return 77
    rtbh = os.path.join(build, "sluice-rtbh")
    if not os.access(rtbh, os.X_OK):
        print(f"FAIL: {rtbh} not built")
        return 1

    tmp = tempfile.mkdtemp(prefix="sluice-rtbh-it-")
    os.chmod(tmp, 0o755)  # the unprivileged run reads its policy here
    try:
        return scenario(rtbh, source, tmp)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for pidfile in ("bird-a.pid", "bird-b.pid"):
            try:
                os.kill(int(open(os.path.join(tmp, pidfile)).read().strip()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        for ns in (NS_A, NS_B, NS_C):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if failures:
            print(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def scenario(rtbh, source, tmp):
    # ---- namespaces and the veth between them (created inside them: the host is not touched)
    run("ip", "netns", "add", NS_A)
    run("ip", "netns", "add", NS_B)
    run("ip", "link", "add", VETH_A, "type", "veth", "peer", "name", VETH_B, "netns", NS_B, ns=NS_A)
    for ns, dev, addr in ((NS_A, VETH_A, ADDR_A), (NS_B, VETH_B, ADDR_B)):
        run("ip", "link", "set", "lo", "up", ns=ns)
        run("ip", "addr", "add", addr + "/30", "dev", dev, ns=ns)
        run("ip", "link", "set", dev, "up", ns=ns)

    # ---- BIRD: the shipped config beside sluice-rtbh, a plain eBGP peer on the other side
    conf = open(os.path.join(source, "deploy/bird/bird-rtbh.conf")).read()
    for name, value in (("ROUTER_ID", ADDR_A), ("PEER_ADDR", ADDR_B), ("LOCAL_AS", "64512"),
                        ("PEER_AS", "64513"), ("RTBH_TABLE", str(TABLE))):
        conf, n = re.subn(rf"define {name}\s*=\s*[^;]+;", f"define {name} = {value};", conf)
        assert n == 1, name
    conf = conf.replace("scan time 10;", "scan time 1;")
    conf_a = os.path.join(tmp, "bird-a.conf")
    open(conf_a, "w").write(conf)
    conf_b = os.path.join(tmp, "bird-b.conf")
    open(conf_b, "w").write(f"""router id {ADDR_B};
log stderr all;
protocol device {{ }}
protocol bgp sluice_trigger {{
  local as 64513;
  neighbor {ADDR_A} as 64512;
  ipv4 {{ import all; export none; }};
  ipv6 {{ import all; export none; extended next hop on; }};
}}
""")
    sock_a, sock_b = os.path.join(tmp, "bird-a.ctl"), os.path.join(tmp, "bird-b.ctl")
    start(["bird", "-f", "-c", conf_a, "-s", sock_a, "-P", os.path.join(tmp, "bird-a.pid")],
          os.path.join(tmp, "bird-a.log"), NS_A)
    start(["bird", "-f", "-c", conf_b, "-s", sock_b, "-P", os.path.join(tmp, "bird-b.pid")],
          os.path.join(tmp, "bird-b.log"), NS_B)

    # ---- before sluice-rtbh: a foreign route in its table, and leftovers of a "previous run"
    run("ip", "route", "add", "blackhole", "198.51.100.128/25", "table", str(TABLE), "proto", "static", ns=NS_A)
    run("ip", "route", "add", "blackhole", "198.51.100.0/24", "table", str(TABLE), "proto", str(PROTO), ns=NS_A)
    run("ip", "route", "add", "blackhole", "10.66.0.0/16", "table", str(TABLE), "proto", str(PROTO), ns=NS_A)
    foreign_before = foreign_routes()
    check("198.51.100.128/25" in foreign_before, "foreign route set up")

    # ---- block: sluice-rtbh standalone
    window_end = int(time.time()) + 30
    pol = os.path.join(tmp, "policy.yaml")
    open(pol, "w").write(policy(1, window_end))
    os.chmod(pol, 0o644)
    log_path = os.path.join(tmp, "rtbh.log")
    metrics_port = 19500 + int(TAG) % 500
    cmd = [rtbh, "--policy", pol, "--reconcile-interval", "1", "--metrics", f"127.0.0.1:{metrics_port}"]
    p = start(cmd, log_path, NS_A)
    wanted = {"198.51.100.0/24", "2001:db8:1::/48", "203.0.113.0/25"}
    got = wait_for(lambda: our_routes() == wanted, 10)
    check(got, f"block installed: {sorted(our_routes())}")
    check("10.66.0.0/16" not in our_routes(), "leftover not wanted any more is removed at start-up")
    check("192.0.2.0/24" not in our_routes(), "monitor rule installs nothing")
    check(foreign_routes() == foreign_before, "foreign route (proto static) untouched")
    kinds = run("ip", "route", "show", "table", str(TABLE), "proto", str(PROTO), ns=NS_A).stdout
    check(all(l.startswith("blackhole") for l in kinds.splitlines() if l), "routes are blackhole routes")

    # ---- a route deleted by hand comes back on the next reconcile
    run("ip", "route", "del", "198.51.100.0/24", "table", str(TABLE), "proto", str(PROTO), ns=NS_A)
    check(wait_for(lambda: "198.51.100.0/24" in our_routes() and
                   "reconcile: 3 routes (+1 -0, 2 kept)" in open(log_path).read(), 5),
          "route deleted by hand restored by the next reconcile")

    # ---- metrics
    m = run("curl", "-s", f"http://127.0.0.1:{metrics_port}/metrics", ns=NS_A, check_rc=False).stdout
    check(re.search(r"^sluice_rtbh_routes 3$", m, re.M) is not None, "sluice_rtbh_routes 3")
    check(re.search(r"^sluice_rtbh_applied_revision 1$", m, re.M) is not None, "applied revision 1")
    runs = re.search(r"^sluice_rtbh_reconcile_runs_total (\d+)", m, re.M)
    check(runs is not None and int(runs.group(1)) >= 2, "reconcile runs counted")
    check("sluice_rtbh_reconcile_seconds_bucket" in m and "sluice_rtbh_netlink_errors_total" in m,
          "histogram and error counter exported")

    # ---- an invalid prefix: refused whole, routes stay
    open(pol, "w").write(policy(2, window_end, extra_prefix="10.0.0.1/8"))
    p.send_signal(signal.SIGHUP)
    check(wait_for(lambda: "invalid policy" in open(log_path).read(), 5), "invalid prefix refused with a clear error")
    time.sleep(1.2)
    check(our_routes() == wanted, "routes unchanged after the invalid policy")
    open(pol, "w").write(policy(1, window_end))

    # ---- no CAP_NET_ADMIN: a second instance as nobody cannot lift; the routes stay
    lift = os.path.join(tmp, "lift.yaml")
    open(lift, "w").write(policy(3, 0, rules=False))
    os.chmod(lift, 0o644)
    r = run("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", rtbh, "--policy", lift, ns=NS_A, check_rc=False, timeout=20)
    check(r.returncode == 1, f"unprivileged run fails (rc {r.returncode})")
    check("Operation not permitted" in r.stderr and "CAP_NET_ADMIN" in r.stderr,
          f"permission error is clear: {r.stderr.strip().splitlines()[-1:]}")
    check(our_routes() == wanted, "routes unchanged after the permission error")

    # ---- BGP: the peer gets the blocked prefixes with BLACKHOLE and NO_EXPORT
    text = wait_for(lambda: peer_route(sock_b, "198.51.100.0/24"), 40, step=0.5)
    check(bool(text), "peer received 198.51.100.0/24 over BGP")
    check("(65535,666)" in text, "with community (65535,666) BLACKHOLE")
    check("(65535,65281)" in text, "and (65535,65281) NO_EXPORT")
    check(bool(wait_for(lambda: peer_route(sock_b, "203.0.113.0/25"), 10, step=0.5)),
          "peer received the windowed prefix while its window is open")
    check(not peer_route(sock_b, "198.51.100.128/0") and "198.51.100.128/25" not in
          birdc(sock_b, "show", "route", "all"), "foreign route in the table is not exported")
    v6 = wait_for(lambda: peer_v6(sock_b), 15, step=0.5)
    check("2001:db8:1::/48" in v6 and "(65535,666)" in v6 and "(65535,65281)" in v6,
          "peer received 2001:db8:1::/48 (IPv6 over the IPv4 session) with both communities")

    # ---- the window closes by itself: no reload
    left = window_end - time.time()
    check(left > 0, f"window still open when checked ({left:.1f} s left)")
    check(wait_for(lambda: "203.0.113.0/25" not in our_routes(), left + 5),
          "window end removes its route by itself")
    check(our_routes() == {"198.51.100.0/24", "2001:db8:1::/48"}, "the rest stays")
    check(wait_for(lambda: not peer_route(sock_b, "203.0.113.0/25"), 15, step=0.5),
          "peer: the windowed prefix withdrawn")

    # ---- restart: leftovers adopted as they are
    p.send_signal(signal.SIGTERM)
    p.wait(10)
    check(our_routes() == {"198.51.100.0/24", "2001:db8:1::/48"}, "routes stay over a restart")
    open(log_path, "a").write("---- restart ----\n")
    p = start(cmd, log_path + ".2", NS_A)
    check(wait_for(lambda: "in force" in open(log_path + ".2").read(), 10), "restarted")
    check("+0 -0" in open(log_path + ".2").read(), "restart adopts its routes without churn")

    # ---- lift
    open(pol, "w").write(policy(4, 0, rules=False))
    p.send_signal(signal.SIGHUP)
    check(wait_for(lambda: our_routes() == set(), 5), "lift removes every route of ours")
    check(foreign_routes() == foreign_before, "foreign route still untouched after the lift")
    check(wait_for(lambda: not peer_route(sock_b, "198.51.100.0/24"), 20, step=0.5),
          "peer: lifted prefix withdrawn")
    check(wait_for(lambda: not peer_v6(sock_b), 10, step=0.5), "peer: lifted IPv6 prefix withdrawn")

    controller_mode(rtbh, tmp)

    if failures:
        print(f"{len(failures)} check(s) failed")
        for path in (log_path, os.path.join(tmp, "bird-a.log"), os.path.join(tmp, "bird-b.log")):
            print(f"---- {path}\n{open(path).read()[-3000:]}")
        return 1
    print("all checks passed")
    return 0


def controller_mode(rtbh, tmp):
    """The agent path: signed snapshots from a (fake) controller, ACKs and NACKs with errors."""
    print("---- controller mode")
    ctl = os.path.join(tmp, "ctl")
    os.makedirs(ctl)
    os.chmod(ctl, 0o755)
    run("ip", "netns", "add", NS_C)
    run("ip", "link", "set", "lo", "up", ns=NS_C)
    pub, sec = os.path.join(ctl, "controller.pub"), os.path.join(ctl, "controller.sec")
    run("minisign", "-G", "-W", "-p", pub, "-s", sec, input="")
    token = os.path.join(ctl, "node.token")
    open(token, "w").write(NODE_TOKEN + "\n")
    for f in (pub, token):
        os.chmod(f, 0o644)

    def offer(revision, text):
        doc = os.path.join(ctl, f"policy-{revision}.yaml")
        open(doc, "w").write(text)
        run("minisign", "-S", "-s", sec, "-m", doc, "-x", doc + ".minisig",
            "-t", f"sluice-snapshot node={NODE} revision={revision}", input="")
        body = json.dumps({"node": NODE, "revision": revision, "policy": text,
                           "signature": open(doc + ".minisig").read()})
        open(os.path.join(ctl, "offer.json.tmp"), "w").write(body)
        os.rename(os.path.join(ctl, "offer.json.tmp"), os.path.join(ctl, "offer.json"))

    def report(offered):
        try:
            lines = [json.loads(l) for l in open(os.path.join(ctl, "status.jsonl")) if l.strip()]
        except OSError:
            return None
        hits = [r for r in lines if r.get("offered") == offered]
        return hits[-1] if hits else None

    port = 19000 + int(TAG) % 500
    script = os.path.join(ctl, "fake_controller.py")
    open(script, "w").write(FAKE_CONTROLLER)
    start(["/usr/bin/python3", script, ctl, str(port), NODE, NODE_TOKEN],
          os.path.join(ctl, "controller.log"), NS_C)
    state = os.path.join(ctl, "state")
    os.makedirs(state)
    cmd = [rtbh, "--controller", f"http://127.0.0.1:{port}", "--controller-key", pub,
           "--node-id", NODE, "--labels", "role=rtbh", "--node-token-file", token,
           "--state-dir", state, "--reconcile-interval", "1"]
    routes = lambda: our_routes(NS_C)
    block = "revision: 1\nrules:\n  - id: r1\n    action: drop\n    prefixes: [198.51.100.0/24]\n"

    offer(1, block)
    p = start(cmd, os.path.join(ctl, "rtbh-1.log"), NS_C)
    check(wait_for(lambda: routes() == {"198.51.100.0/24"}, 15), "controller: block installed")
    r = wait_for(lambda: report(1), 10)
    check(r is not None and r["result"] == "ack" and r["revision"] == 1, f"controller: ACK of revision 1: {r}")
    p.send_signal(signal.SIGTERM)
    p.wait(10)

    # Without CAP_NET_ADMIN (user nobody, its own state dir): the lift is NACKed, routes stay.
    offer(2, "revision: 2\nrules: []\n")
    state_nobody = os.path.join(ctl, "state-nobody")
    os.makedirs(state_nobody)
    shutil.chown(state_nobody, "nobody", "nogroup")
    cmd_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                  "--inh-caps=-all", "--bounding-set=-all"] + cmd[:-4] + [
                  "--state-dir", state_nobody, "--reconcile-interval", "1"]
    p = start(cmd_nobody, os.path.join(ctl, "rtbh-nobody.log"), NS_C)
    r = wait_for(lambda: report(2), 15)
    check(r is not None and r["result"] == "nack" and "Operation not permitted" in r.get("error", "")
          and "CAP_NET_ADMIN" in r.get("error", ""), f"controller: NACK without CAP_NET_ADMIN: {r}")
    check(routes() == {"198.51.100.0/24"}, "controller: routes stay after the permission NACK")
    p.send_signal(signal.SIGTERM)
    p.wait(10)

    # An invalid prefix: NACKed with the error; the restarted node keeps (adopts) revision 1.
    offer(3, "revision: 3\nrules:\n  - id: r1\n    action: drop\n    prefixes: [10.0.0.1/8]\n")
    p = start(cmd, os.path.join(ctl, "rtbh-2.log"), NS_C)
    r = wait_for(lambda: report(3), 15)
    check(r is not None and r["result"] == "nack" and r["revision"] == 1 and
          "10.0.0.1/8" in r.get("error", ""), f"controller: NACK of the invalid prefix: {r}")
    check(routes() == {"198.51.100.0/24"}, "controller: routes stay after the invalid snapshot")

    offer(4, "revision: 4\nrules: []\n")
    check(wait_for(lambda: routes() == set(), 15), "controller: lift removes the route")
    r = wait_for(lambda: report(4), 10)
    check(r is not None and r["result"] == "ack" and r["revision"] == 4, f"controller: ACK of the lift: {r}")


if __name__ == "__main__":
    sys.exit(main())
