#!/usr/bin/python3
"""real_clients: today's clients through sluice-dataplane (issue 16), in network namespaces.

    [client ns: Chromium, ngtcp2-client] -- veth -- [sluice-dataplane] -- veth -- [server ns]

The server namespace runs the threaded TLS origin of tools/netlab.py on TCP 443 and Debian's
ngtcp2-server (HTTP/3) on UDP 443, both with one certificate for telegram.org and example.org.
The dataplane bridges the two veths on net_af_packet with a standalone policy: `reset` on
telegram.org and *.telegram.org. Each client's first flight is captured on the client side
(dumpcap) and read with tshark, so the test records how many TCP segments and QUIC packets the
ClientHello took, and which key shares it offered, instead of assuming it.

  1. Chromium (Debian's, headless, its own profile): https://example.org loads over TLS;
     https://telegram.org on the same address is reset. Its ClientHello carries the
     X25519MLKEM768 key share (0x11ec) and a GREASE encrypted_client_hello, and spans two TCP
     segments; the next one (after the lift) has its extensions in another order.
  2. The same with QUIC forced (--origin-to-force-quic-on) against ngtcp2-server:
     example.org loads over h3 (the page reports its nextHopProtocol); telegram.org does not
     load; its ClientHello spans two Initial packets.
  3. ngtcp2-client, QUIC v1 and the v2 draft codepoint it offers (0x709a50c4): telegram.org gets
     no answer, example.org is fetched.
  4. The lift (policy reloaded without the rule): every one of those loads telegram.org.
  5. The dataplane's counters agree: verdicts by rule, QUIC Initials decrypted.

Root, iproute2, chromium, ngtcp2-client/-server, dumpcap and tshark (tools/setup.sh installs
them); otherwise exit 77, unless SLUICE_REQUIRE_REAL_CLIENTS is set (then a missing tool fails).
Everything runs in a network namespace of the test's own plus two named ones, removed on every
exit path, with /etc/netns/<ns>/hosts for the client's name lookups.

    real_clients.py BUILD_DIR SOURCE_DIR [--keep]   (SLUICE_KEEP_TEST_DIR keeps the work dir)"""

import base64
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools"))
import netlab  # noqa: E402
from netlab import in_ns, wait_for, http_json, metric_sum, wait_metric  # noqa: E402

CLIENT, SERVER = "10.97.0.1", "10.97.0.2"
MGMT, METRICS = 9480, 9479
NAMES = ("telegram.org", "example.org")
TOOLS = ("ip", "unshare", "chromium", "gtlsclient", "gtlsserver", "dumpcap", "tshark", "openssl")
X25519MLKEM768 = 0x11ec
ENCRYPTED_CLIENT_HELLO = 0xfe0d


def rc_policy(revision, blocked):
    return netlab.telegram_policy(revision, "tg-reset", "TEST-REAL-CLIENTS", "reset", blocked)


class Lab:
    def __init__(self, story, build, tag):
        self.s, self.build, self.tag = story, build, tag
        self.ns_cli, self.ns_srv = "sl-rc-cli-" + tag, "sl-rc-srv-" + tag
        self.spki = None
        self.captures = 0

    # ---- set-up ----------------------------------------------------------------------------
    def up(self):
        s = self.s
        cert, key = netlab.self_signed_cert(s.work, "telegram.org",
                                            ["DNS:telegram.org", "DNS:example.org"])
        der = subprocess.run(["openssl", "x509", "-in", cert, "-pubkey", "-noout"],
                             capture_output=True, check=True).stdout
        der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=der,
                             capture_output=True, check=True).stdout
        self.spki = base64.b64encode(hashlib.sha256(der).digest()).decode()
        s.add_namespace(self.ns_cli, "rccli" + self.tag[-5:], [CLIENT + "/24"])
        s.add_namespace(self.ns_srv, "rcsrv" + self.tag[-5:], [SERVER + "/24"])
        hosts_dir = "/etc/netns/" + self.ns_cli
        os.makedirs(hosts_dir, exist_ok=True)
        with open(os.path.join(hosts_dir, "hosts"), "w") as f:
            f.write("127.0.0.1 localhost\n%s %s\n" % (SERVER, " ".join(NAMES)))
        s.start_origin(self.ns_srv, cert, key, "origin.log")
        htdocs = os.path.join(s.work, "htdocs")
        os.makedirs(htdocs)
        with open(os.path.join(htdocs, "index.html"), "w") as f:
            # The page says which protocol fetched it (h3 over QUIC, http/1.1 over TCP).
            f.write("<!doctype html><title>origin</title><p id=o>origin over quic</p><script>"
                    "document.getElementById('o').textContent += ' proto=' + "
                    "performance.getEntriesByType('navigation')[0].nextHopProtocol</script>\n")
        s.spawn("ngtcp2-server", in_ns(self.ns_srv, ["gtlsserver", "-q", "-d", htdocs, SERVER,
                                                     "443", key, cert]), "ngtcp2-server.log")
        ok = wait_for(lambda: subprocess.run(in_ns(self.ns_srv, ["ss", "-Hlun", "sport = :443"]),
                                             capture_output=True, text=True).stdout.strip(), 10)
        s.must(bool(ok), "ngtcp2-server listens on udp %s:443" % SERVER)
        self.policy_path = os.path.join(s.work, "policy.yaml")
        with open(self.policy_path, "w") as f:
            f.write(rc_policy(1, True))
        prefix = "sluice-rc-" + self.tag
        cmd = netlab.dataplane_cmd(os.path.join(self.build, "sluice-dataplane"), prefix,
                                   "rccli" + self.tag[-5:], "rcsrv" + self.tag[-5:], MGMT,
                                   METRICS) + ["--policy", self.policy_path]
        dp = s.start_dataplane("sluice-dataplane", cmd, "dataplane.log",
                               lambda: http_json("http://127.0.0.1:%d/status" % MGMT), prefix)
        s.must(dp is not None, "sluice-dataplane bridges the client and server namespaces")

    def cleanup(self):
        shutil.rmtree("/etc/netns/" + self.ns_cli, ignore_errors=True)

    def reload(self, revision, blocked):
        with open(self.policy_path, "w") as f:
            f.write(rc_policy(revision, blocked))
        req = urllib.request.Request("http://127.0.0.1:%d/policy/reload" % MGMT, data=b"{}",
                                     method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read()).get("revision")

    def metrics(self):
        return http_json("http://127.0.0.1:%d/metrics" % METRICS) or ""

    # ---- capture ---------------------------------------------------------------------------
    def capture(self, bpf):
        """Starts dumpcap on the client's interface; returns (Popen, pcap path)."""
        self.captures += 1
        path = os.path.join(self.s.work, "client-%d.pcap" % self.captures)
        p = subprocess.Popen(in_ns(self.ns_cli, ["dumpcap", "-q", "-P", "-i", "eth0", "-f", bpf,
                                                 "-w", path]),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # dumpcap says "Capturing on" once it listens.
        t0 = time.time()
        while time.time() - t0 < 10 and p.poll() is None:
            line = p.stderr.readline().decode(errors="replace")
            if "Capturing on" in line:
                break
        return p, path

    @staticmethod
    def stop_capture(p):
        time.sleep(0.3)
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()

    def tshark(self, path, display, fields):
        r = subprocess.run(["tshark", "-n", "-r", path, "-Y", display, "-T", "fields"] +
                           sum((["-e", f] for f in fields), []),
                           capture_output=True, text=True, timeout=60)
        return [line.split("\t") for line in r.stdout.splitlines() if line.strip()]

    def tcp_client_hello(self, path, name):
        """(segments, key share groups, extension types in order) of the first ClientHello naming
        `name`, or None."""
        rows = self.tshark(path, 'tls.handshake.type == 1 && tls.handshake.extensions_server_name'
                           ' == "%s"' % name,
                           ["tcp.segment.count", "tls.handshake.extensions_key_share_group",
                            "tls.handshake.extension.type"])
        if not rows:
            return None
        segments = int(rows[0][0]) if rows[0][0] else 1
        groups = [int(g) for g in rows[0][1].split(",") if g]
        extensions = [int(t) for t in rows[0][2].split(",") if t]
        return segments, groups, extensions

    def quic_client_hello(self, path):
        """(Initial packets the ClientHello took, key share groups, SNI) of the client's first
        flight, or None: the fewest leading client Initials whose CRYPTO ranges cover the whole
        ClientHello (tshark decrypts Initials and reassembles the handshake)."""
        rows = self.tshark(path, "ip.src == %s && quic.long.packet_type == 0" % CLIENT,
                           ["quic.crypto.offset", "quic.crypto.length", "tls.handshake.length",
                            "tls.handshake.extensions_key_share_group",
                            "tls.handshake.extensions_server_name"])
        total, groups, sni = None, [], None
        for r in rows:
            if r[2]:
                total, sni = int(r[2].split(",")[0]) + 4, r[4]
                groups = [int(g) for g in r[3].split(",") if g]
                break
        if total is None:
            return None
        covered = []
        for n, r in enumerate(rows, 1):
            for off, ln in zip(r[0].split(","), r[1].split(",")):
                if off and ln:
                    covered.append((int(off), int(off) + int(ln)))
            end = 0
            for a, b in sorted(covered):
                if a > end:
                    break
                end = max(end, b)
            if end >= total:
                return n, groups, sni
        return None

    # ---- clients ---------------------------------------------------------------------------
    def chromium(self, url, quic_origin=None, timeout=40):
        """Loads url in a fresh headless Chromium in the client namespace: (DOM text, error)."""
        profile = tempfile.mkdtemp(prefix="chromium-", dir=self.s.work)
        cmd = ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--user-data-dir=" + profile,
               "--ignore-certificate-errors-spki-list=" + self.spki,
               "--host-resolver-rules=MAP * %s, EXCLUDE localhost" % SERVER,
               "--timeout=20000", "--dump-dom"]
        if quic_origin:
            cmd += ["--enable-quic", "--origin-to-force-quic-on=%s:443" % quic_origin]
        else:
            cmd += ["--disable-quic"]
        try:
            r = subprocess.run(in_ns(self.ns_cli, cmd + [url]), capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            return "", "chromium did not finish in %d s" % timeout
        m = re.search(r"Page load failed: (net::\S+)", r.stderr)
        return r.stdout, (m.group(1) if m else None)

    def ngtcp2(self, version, name):
        """Fetches https://name/index.html with ngtcp2-client: (fetched, seconds)."""
        out = tempfile.mkdtemp(prefix="ngtcp2-", dir=self.s.work)
        t0 = time.time()
        subprocess.run(in_ns(self.ns_cli, ["gtlsclient", "-q", "--exit-on-all-streams-close",
                                           "--timeout=3s", "-v", version, "--download=" + out,
                                           name, "443", "https://%s/index.html" % name]),
                       capture_output=True, timeout=30)
        page = os.path.join(out, "index.html")
        fetched = os.path.exists(page) and "origin over quic" in open(page).read()
        return fetched, time.time() - t0


def main():
    build = os.path.abspath(sys.argv[1])  # argv[2], the source dir, is not needed
    absent = netlab.clients_missing(TOOLS)
    if absent is not None:
        return absent
    if os.environ.get("SLUICE_RC_ISOLATED") != "1":
        netlab.sweep_stale_namespaces(r"^(sl-rc-(?:cli|srv)-(\d+))", "real_clients")
        for d in glob.glob("/etc/netns/sl-rc-cli-*"):
            if not os.path.exists("/proc/" + d.rsplit("-", 1)[1]):
                shutil.rmtree(d, ignore_errors=True)
        return netlab.isolate("SLUICE_RC_ISOLATED")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)

    story = netlab.Story("sluice-real-clients-", "SLUICE_KEEP_TEST_DIR")
    lab = Lab(story, build, str(os.getpid()))
    s = story

    def chromium_tls(name, expect_loaded, what):
        cap, pcap = lab.capture("tcp port 443")
        dom, err = lab.chromium("https://%s/" % name)
        lab.stop_capture(cap)
        loaded = "origin server (tls) for %s" % name in dom
        s.check(loaded == expect_loaded,
                "%s: Chromium %s https://%s (%s)" % (what, "loads" if loaded else "does not load",
                                                     name, err or "page served by the origin"))
        if not expect_loaded:
            s.check(err == "net::ERR_CONNECTION_RESET",
                    "%s: the reset reached Chromium as net::ERR_CONNECTION_RESET (%s)" % (what, err))
        return lab.tcp_client_hello(pcap, name)

    def chromium_quic(name, expect_loaded, what):
        cap, pcap = lab.capture("udp port 443")
        dom, err = lab.chromium("https://%s/index.html" % name, quic_origin=name)
        lab.stop_capture(cap)
        loaded = "origin over quic proto=h3" in dom
        s.check(loaded == expect_loaded,
                "%s: Chromium, QUIC forced, %s https://%s over h3 (%s)"
                % (what, "loads" if loaded else "does not load", name, err or "served"))
        return lab.quic_client_hello(pcap)

    def body():
        version = subprocess.run(["chromium", "--version"], capture_output=True, text=True)
        s.say(version.stdout.strip())
        s.step("set-up: namespaces, origin (TLS) and ngtcp2-server (HTTP/3), dataplane")
        lab.up()

        s.step("Chromium over TLS, `reset` on telegram.org")
        chromium_tls("example.org", True, "blocked")
        hello = chromium_tls("telegram.org", False, "blocked")
        s.must(hello is not None, "the capture holds Chromium's ClientHello for telegram.org")
        segments, groups, blocked_order = hello
        s.say("Chromium's ClientHello: %d TCP segments, key shares %s, extensions %s"
              % (segments, ", ".join("0x%04x" % g for g in groups),
                 " ".join("%04x" % t for t in blocked_order)))
        s.check(X25519MLKEM768 in groups,
                "Chromium offered the post-quantum key share X25519MLKEM768 (0x11ec)")
        s.check(segments >= 2, "its ClientHello spanned %d TCP segments (>= 2)" % segments)
        s.check(ENCRYPTED_CLIENT_HELLO in blocked_order,
                "it carried an encrypted_client_hello extension (0xfe0d, GREASE: no ECH config)")

        s.step("Chromium with QUIC forced, against ngtcp2-server")
        chromium_quic("example.org", True, "blocked")
        hello = chromium_quic("telegram.org", False, "blocked")
        s.must(hello is not None, "the capture holds Chromium's QUIC ClientHello")
        packets, groups, sni = hello
        s.say("Chromium's QUIC ClientHello (SNI %s): %d Initial packets, key shares %s"
              % (sni, packets, ", ".join("0x%04x" % g for g in groups)))
        s.check(sni == "telegram.org" and X25519MLKEM768 in groups,
                "the QUIC ClientHello names telegram.org and offers X25519MLKEM768")
        s.check(packets >= 2, "it spanned %d QUIC Initial packets (>= 2)" % packets)

        s.step("ngtcp2-client, QUIC v1 and the v2 draft codepoint")
        for v in ("v1", "v2draft"):
            ok, secs = lab.ngtcp2(v, "example.org")
            s.check(ok, "blocked: ngtcp2-client -v %s fetches https://example.org (%.1f s)"
                    % (v, secs))
            ok, secs = lab.ngtcp2(v, "telegram.org")
            s.check(not ok, "blocked: ngtcp2-client -v %s gets nothing from https://telegram.org "
                    "(gave up after %.1f s)" % (v, secs))

        s.step("dataplane counters")
        verdicts = wait_metric("http://127.0.0.1:%d/metrics" % METRICS,
                               "sluice_dataplane_verdicts_total", 4, rule="tg-reset")
        # 1 TLS flow (Chromium may retry once), 1 Chromium QUIC flow, 2 ngtcp2 flows.
        s.check(verdicts >= 4, "verdicts_total{rule=tg-reset} = %g (>= 4: TLS, Chromium QUIC, "
                "ngtcp2 v1 and v2 draft)" % verdicts)

        s.step("the lift: the policy reloaded without the rule")
        s.must(lab.reload(2, False) == 2, "policy revision 2 (no rules) in force")
        hello = chromium_tls("telegram.org", True, "lifted")
        if hello is not None:
            def real(types):  # GREASE values (0x?a?a) are drawn anew for each hello
                return [t for t in types if (t & 0x0f0f) != 0x0a0a]
            order, before = real(hello[2]), real(blocked_order)
            s.say("after the lift, extensions %s" % " ".join("%04x" % t for t in hello[2]))
            s.check(sorted(order) == sorted(before) and order != before,
                    "Chromium's next ClientHello had its extensions in another order (the block "
                    "did not depend on one)")
        chromium_quic("telegram.org", True, "lifted")
        for v in ("v1", "v2draft"):
            ok, secs = lab.ngtcp2(v, "telegram.org")
            s.check(ok, "lifted: ngtcp2-client -v %s fetches https://telegram.org (%.1f s)"
                    % (v, secs))
        after = metric_sum(lab.metrics(), "sluice_dataplane_verdicts_total", rule="tg-reset")
        s.check(after == verdicts, "no verdict after the lift (tg-reset %g, was %g)"
                % (after, verdicts))
        st = http_json("http://127.0.0.1:%d/status" % MGMT) or {}
        s.check(st.get("healthy") is True, "the node is healthy")

    try:
        return netlab.run_story(story, body, "real_clients",
                                ["dataplane.log", "ngtcp2-server.log", "origin.log"],
                                time_limit=400)
    finally:
        lab.cleanup()


if __name__ == "__main__":
    sys.exit(main())
