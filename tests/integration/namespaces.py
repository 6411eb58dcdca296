#!/usr/bin/python3
"""namespaces: two network namespaces joined through sluice-dataplane on net_af_packet over veth
pairs (it bridges L2: client 10.99.0.1/24 and server 10.99.0.2/24 share one subnet). The server
runs the threaded origin of tools/netlab.py (TLS with one self-signed certificate for
telegram.org and example.org, and plain HTTP), on 10.99.0.2; curl runs in the client namespace.
  - policy 1, `reset` on telegram.org / *.telegram.org: https://telegram.org is reset while
    https://example.org, same address, succeeds (names decided, not addresses);
  - policy 2 (reloaded through /policy/reload), `notice` on the same names: http://telegram.org
    gets the 451 page naming the legal basis, http://example.org gets 200, and TLS to
    telegram.org is reset (a notice cannot be shown inside TLS);
  - the per-rule verdict counters and the responses counter moved.
Everything lives inside the test's own network namespace (it.isolate()) plus two named
namespaces it creates; all are removed on every exit path. Exit 77 = skipped."""

import os
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools"))
import sluice_it as it  # noqa: E402
from netlab import ORIGIN, add_namespace, in_ns, self_signed_cert, wait_listening  # noqa: E402

CLIENT_ADDR, SERVER_ADDR = "10.99.0.1", "10.99.0.2"
LEGAL_BASIS = "Order 123 of 2026-11-20"

def precheck():
    if os.geteuid() != 0:
        print("SKIPPED: needs root")
        sys.exit(77)
    if shutil.which("ip") is None or \
            subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        print("SKIPPED: `ip netns` unavailable")
        sys.exit(77)
    for tool in ("curl", "openssl"):
        if shutil.which(tool) is None:
            print("SKIPPED: %s not installed" % tool)
            sys.exit(77)


def policy(revision, rule, action):
    extra = '    legal_basis: "%s"\n' % LEGAL_BASIS if action == "notice" else ""
    return ("revision: %d\ngenerated_at: 2026-01-01T00:00:00Z\nrules:\n"
            "  - id: %s\n    directive: TEST-NS-%d\n    action: %s\n%s"
            "    domains: [\"telegram.org\", \"*.telegram.org\"]\n"
            % (revision, rule, revision, action, extra))


def established(ns, port):
    """Established TCP connections on the server's `port` (its side of the flows)."""
    r = subprocess.run(in_ns(ns, ["ss", "-Htn", "state", "established", "sport = :%d" % port]),
                       capture_output=True, text=True, check=True)
    return [line for line in r.stdout.splitlines() if line.strip()]


def wait_no_established(ns, port, timeout=3):
    deadline = time.time() + timeout
    while True:
        left = established(ns, port)
        if not left or time.time() >= deadline:
            return left
        time.sleep(0.1)


def curl(ns, args, timeout=20):
    """Runs curl in the client namespace; (exit code, stdout, seconds taken)."""
    t0 = time.time()
    r = subprocess.run(in_ns(ns, ["curl", "-s", "--max-time", "5"] + args),
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, time.time() - t0


def metric(text, name, **labels):
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all('%s="%s"' % (k, v) in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_metric(node, name, minimum, **labels):
    """Metrics are refreshed by the control loop; poll for a few seconds."""
    deadline, value = time.time() + 10, 0.0
    while time.time() < deadline:
        value = metric(node.metrics(), name, **labels)
        if value >= minimum:
            break
        time.sleep(0.2)
    return value


precheck()
it.isolate()
a = it.args()

tag = str(os.getpid())
NS_CLI, NS_SRV = "sl-cli-" + tag, "sl-srv-" + tag
work = it.tmpdir()
procs, node = [], None
try:
    cert, key = self_signed_cert(work, "telegram.org", ["DNS:telegram.org", "DNS:example.org"])
    # Topology: [sl-cli: cli0 10.99.0.1] -- cli1 [sluice-dataplane] srv1 -- [sl-srv: srv0 10.99.0.2]
    for ns, inner, outer, addr in ((NS_CLI, "cli0", "cli1", CLIENT_ADDR),
                                   (NS_SRV, "srv0", "srv1", SERVER_ADDR)):
        add_namespace(ns, outer, [addr + "/24"], inner=inner)
    procs.append(subprocess.Popen(in_ns(NS_SRV, [sys.executable, "-c", ORIGIN, cert, key]),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL))
    wait_listening(NS_SRV, 443)
    wait_listening(NS_SRV, 80)

    p1 = os.path.join(work, "reset.yaml")
    with open(p1, "w") as f:
        f.write(policy(1, "tg-reset", "reset"))
    node = it.Node(a.dataplane, work, "net_af_packet0,iface=cli1", "net_af_packet1,iface=srv1",
                   ["--policy", p1])
    it.check(node.status()["revision"] == 1, "policy 1 (reset telegram.org) in force")

    # TLS, reset rule. example.org first: it also proves the path forwards at all.
    rc, out, _ = curl(NS_CLI, ["-k", "--resolve", "example.org:443:" + SERVER_ADDR,
                               "https://example.org/"])
    it.check(rc == 0 and "origin server (tls)" in out,
             "https://example.org via %s succeeds through the dataplane (curl %d)"
             % (SERVER_ADDR, rc))
    rc, out, secs = curl(NS_CLI, ["-k", "--resolve", "telegram.org:443:" + SERVER_ADDR,
                                  "https://telegram.org/"])
    it.check(rc in (35, 56) and secs < 4.5,
             "https://telegram.org, same address, is reset (curl %d after %.1f s)" % (rc, secs))
    rc, out, _ = curl(NS_CLI, ["-k", "--resolve", "www.telegram.org:443:" + SERVER_ADDR,
                               "https://www.telegram.org/"])
    it.check(rc in (35, 56), "https://www.telegram.org (*.telegram.org) is reset (curl %d)" % rc)
    rc, out, _ = curl(NS_CLI, ["-k", "--resolve", "example.org:443:" + SERVER_ADDR,
                               "https://example.org/"])
    it.check(rc == 0, "https://example.org still succeeds afterwards (curl %d)" % rc)
    # reset = RST to both ends: the server's side of the blocked flows must be gone too
    # (checked last, so every client-visible result is reported first).
    lingering_tls = wait_no_established(NS_SRV, 443)
    v = wait_metric(node, "sluice_dataplane_verdicts_total", 2, rule="tg-reset", action="reset")
    it.check(v >= 2, "metrics: verdicts_total{rule=tg-reset,action=reset} = %g (>= 2)" % v)

    # Plain HTTP, notice rule.
    p2 = os.path.join(work, "notice.yaml")
    with open(p2, "w") as f:
        f.write(policy(2, "tg-notice", "notice"))
    code, body = node.post("/policy/reload", {"path": p2})
    it.check(code == 200 and body.get("revision") == 2, "reload to policy 2 (notice) -> 200")
    page = os.path.join(work, "page.html")
    rc, out, _ = curl(NS_CLI, ["--resolve", "telegram.org:80:" + SERVER_ADDR,
                               "http://telegram.org/", "-o", page, "-w", "%{http_code}"])
    text = open(page, errors="replace").read() if os.path.exists(page) else ""
    it.check(out == "451", "http://telegram.org -> HTTP %s (curl %d), expected 451" % (out, rc))
    it.check(LEGAL_BASIS in text, "the 451 page names the legal basis")
    it.check("origin server" not in text, "the origin's page did not reach the client")
    rc, out, _ = curl(NS_CLI, ["--resolve", "example.org:80:" + SERVER_ADDR,
                               "http://example.org/", "-o", page, "-w", "%{http_code}"])
    with open(page, errors="replace") as f:
        text = f.read()
    it.check(rc == 0 and out == "200" and "origin server" in text,
             "http://example.org, same address -> 200 with the origin's page (curl %d)" % rc)
    rc, out, _ = curl(NS_CLI, ["-k", "--resolve", "telegram.org:443:" + SERVER_ADDR,
                               "https://telegram.org/"])
    it.check(rc in (35, 56), "notice over TLS is a reset (curl %d)" % rc)
    lingering_http = wait_no_established(NS_SRV, 80)
    v = wait_metric(node, "sluice_dataplane_verdicts_total", 2, rule="tg-notice", action="notice")
    it.check(v >= 2, "metrics: verdicts_total{rule=tg-notice,action=notice} = %g (>= 2)" % v)

    st = node.status()
    it.check(st["healthy"] and st["revision"] == 2, "/status: healthy, revision 2")
    stats = node.stop()
    node = None
    flows = {r["rule"]: r["flows"] for r in stats["rules"]}
    it.check(flows.get("tg-reset", 0) >= 2 and flows.get("tg-notice", 0) >= 2,
             "final counters: flows per rule %s" % flows)
    it.check(sum(stats["responses_sent"].values()) >= 3,
             "final counters: responses sent %s" % stats["responses_sent"])
    it.check(stats["policy_revision"] == 2, "final counters: revision 2")
    it.check(not lingering_tls and not lingering_http,
             "server side of the blocked flows torn down by the dataplane's RST "
             "(still established on :443 %s, on :80 %s)" % (lingering_tls, lingering_http))
except Exception as e:  # noqa: BLE001 - report and fail, cleanup below
    print("FAIL: %s: %s" % (type(e).__name__, e))
    if node is not None:
        print(node.read_log())
    sys.exit(1)
finally:
    if node is not None and node.proc.poll() is None:
        node.proc.kill()
        node.proc.wait()
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    for ns in (NS_CLI, NS_SRV):
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
    for dev in ("cli1", "srv1"):
        subprocess.run(["ip", "link", "del", dev], stderr=subprocess.DEVNULL)
    if os.environ.get("SLUICE_KEEP_TEST_DIR") is None:
        shutil.rmtree(work, ignore_errors=True)
