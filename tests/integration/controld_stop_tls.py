#!/usr/bin/python3
"""Issue 14: sluice-controld over TLS reloads its certificate on SIGHUP and stops cleanly on
SIGTERM.

  controld_stop_tls.py BIN_DIR SOURCE_DIR

1. A throwaway CA, two server certificates for IP 127.0.0.1 (A, B) and a node's client
   certificate (CN=stop-node), made with openssl (EC P-256); the controller serves TLS with A
   and verifies client certificates against the CA (tls.client_ca).
2. SIGHUP with B's files in place: a new handshake sees B, sluice_control_tls_reloads_total
   {result="ok"} is 1; a SIGHUP with a key that does not match keeps B and counts a failure.
3. BIG_CLIENTS clients at once each declare a 1 GB POST /v1/directives (no token, and with the
   ministry's: 401 and 413) and try to send it: each is answered on its head and cut after a
   few MB, and the controller's RSS grows by less than RSS_BOUND_MB.
4. POLLS long polls wait over TLS (the node certificate, no token: each for its own node id
   would need its own certificate, so they use the fleet token and one node id each). A node
   posts a status report (a unique error text) just before SIGTERM.
5. SIGTERM: the controller exits 0 within STOP_BOUND_S, every poll got 503 shutting_down or a
   close, and the status report is in the SQLite file (the last flush after the stop).
Exit 0 pass, 1 fail, 77 when openssl or the binaries are missing."""

import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time

from control_harness import TOKENS, Controller, HttpsRequests, check, failures, tls_prerequisites, wait_for

BIN, SRC = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
HOST = "127.0.0.1"
POLLS = 200
STOP_BOUND_S = 1.0
BIG_CLIENTS = 20
GIB = 1 << 30
RSS_BOUND_MB = 64


def openssl(root, *args):
    subprocess.run(["openssl", *args], cwd=root, check=True, capture_output=True, timeout=60)


def make_certs(root):
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(root, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", "/CN=sluice-stop-ca", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, subject, ext in (
            ("server-a", "/CN=127.0.0.1", "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n"),
            ("server-b", "/CN=127.0.0.1", "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n"),
            ("node", "/CN=stop-node", "extendedKeyUsage=clientAuth\n")):
        openssl(root, "req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
        with open(os.path.join(root, f"{name}.ext"), "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n" + ext)
        openssl(root, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt")
    shutil.copy(os.path.join(root, "server-a.crt"), os.path.join(root, "tls.crt"))
    shutil.copy(os.path.join(root, "server-a.key"), os.path.join(root, "tls.key"))


def der_sha256(root, name):
    out = subprocess.run(["openssl", "x509", "-in", os.path.join(root, name), "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return hashlib.sha256(out).hexdigest()


class TlsController(HttpsRequests, Controller):
    def __init__(self, root):
        super().__init__(root, BIN, SRC, keys=("ministry", "controller"), stale_after=300, tls=False)
        self.url = f"https://{HOST}:{self.port}"
        self.ctx = ssl.create_default_context(cafile=os.path.join(root, "ca.crt"))
        self.node_ctx = ssl.create_default_context(cafile=os.path.join(root, "ca.crt"))
        self.node_ctx.load_cert_chain(os.path.join(root, "node.crt"), os.path.join(root, "node.key"))

    def _write_config(self):
        """The harness's config, with TLS and polls that may wait a minute."""
        super()._write_config()
        path = os.path.join(self.root, self.config_name)
        with open(path) as f:
            text = f.read().replace("max_wait_seconds: 5\n", "max_wait_seconds: 60\n")
        with open(path, "w") as f:
            f.write(text + "tls: { cert: tls.crt, key: tls.key, client_ca: ca.crt }\n")

    def server_cert_sha256(self):
        with socket.create_connection((HOST, self.port), timeout=5) as s:
            with self.ctx.wrap_socket(s, server_hostname=HOST) as t:
                return hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest()


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def big_sender(ctl, token, results, i):
    """Declares a 1 GB body and sends until the controller cuts it; results[i] = (status line,
    bytes sent)."""
    sent, status = 0, "no answer"
    try:
        with socket.create_connection((HOST, ctl.port), timeout=20) as s:
            with ctl.ctx.wrap_socket(s, server_hostname=HOST) as t:
                auth = f"Authorization: Bearer {token}\r\n" if token else ""
                t.sendall((f"POST /v1/directives HTTP/1.1\r\nHost: {HOST}\r\n{auth}"
                           f"Content-Type: application/json\r\nContent-Length: {GIB}\r\n\r\n").encode())
                t.settimeout(5)
                head = t.recv(4096)
                status = head.split(b"\r\n", 1)[0].decode() if head else "closed"
                chunk = b"x" * (256 * 1024)
                t.settimeout(20)
                while sent < GIB:
                    t.sendall(chunk)
                    sent += len(chunk)
    except (OSError, ssl.SSLError):
        pass
    results[i] = (status, sent)


def long_poll(ctl, node, held, results, i):
    """One waiting GET /v1/nodes/NODE/snapshot; results[i] = status line or "closed"."""
    try:
        with socket.create_connection((HOST, ctl.port), timeout=30) as s:
            with ctl.ctx.wrap_socket(s, server_hostname=HOST) as t:
                t.sendall((f"GET /v1/nodes/{node}/snapshot?wait=60 HTTP/1.1\r\nHost: {HOST}\r\n"
                           f"Authorization: Bearer {TOKENS['node']}\r\n"
                           f"If-None-Match: \"{held}\"\r\n\r\n").encode())
                results[i] = "sent"
                got = b""
                while True:
                    chunk = t.recv(4096)
                    if not chunk:
                        break
                    got += chunk
                results[i] = got.split(b"\r\n", 1)[0].decode() if got else "closed"
                if got and b"shutting_down" not in got:
                    results[i] += " (unexpected body)"
    except (OSError, ssl.SSLError) as e:
        results[i] = f"error {type(e).__name__}: {e}" if results[i] != "sent" else "closed"


def main():
    why = tls_prerequisites(BIN)
    if why:
        print(f"skip: {why}")
        return 77
    root = tempfile.mkdtemp(prefix="sluice-stop-")
    print(f"== sluice-controld over TLS: reload on SIGHUP, clean stop on SIGTERM (work dir {root})")
    make_certs(root)
    ctl = TlsController(root)
    if not ctl.start(timeout=30):
        print(ctl.log_tail())
        return 1

    # Only the inventory's nodes are served (issue 14): the certificate's node and the pollers.
    ctl.enroll_nodes([("stop-node", {})] + [(f"stop-{i:03d}", {}) for i in range(POLLS)])

    # -- SIGHUP: certificate reload without restart
    a, b = der_sha256(root, "server-a.crt"), der_sha256(root, "server-b.crt")
    check(ctl.server_cert_sha256() == a, "the controller serves certificate A")
    shutil.copy(os.path.join(root, "server-b.crt"), os.path.join(root, "tls.crt"))
    shutil.copy(os.path.join(root, "server-b.key"), os.path.join(root, "tls.key"))
    ctl.proc.send_signal(signal.SIGHUP)
    check(wait_for(lambda: ctl.server_cert_sha256() == b, 10, step=0.1),
          "after SIGHUP a new handshake sees certificate B")
    check(ctl.metric('sluice_control_tls_reloads_total{result="ok"}') == 1, "one reload counted")
    shutil.copy(os.path.join(root, "server-a.key"), os.path.join(root, "tls.key"))  # mismatched
    ctl.proc.send_signal(signal.SIGHUP)
    check(wait_for(lambda: ctl.metric('sluice_control_tls_reloads_total{result="failed"}') == 1, 10, step=0.1),
          "a SIGHUP with a key that does not match is counted as failed")
    check(ctl.server_cert_sha256() == b and ctl.alive(), "and the controller keeps serving B")
    check("TLS reload failed" in ctl.log_tail(4000), "the failure is logged")

    # -- the node's certificate admits it for its own id only
    status, _ = ctl.request("GET", "/v1/nodes/stop-node/snapshot", None, ctx=ctl.node_ctx)
    check(status == 200, f"the node certificate fetches its own snapshot ({status})")
    status, _ = ctl.request("GET", "/v1/nodes/other-node/snapshot", None, ctx=ctl.node_ctx)
    check(status == 403, f"and not another node's ({status})")

    # -- 20 clients each declare and try to send 1 GB: refused on the head, cut early
    rss0 = rss_mb(ctl.proc.pid)
    big = [None] * BIG_CLIENTS
    senders = [threading.Thread(target=big_sender,
                                args=(ctl, TOKENS["ministry"] if i % 2 else None, big, i), daemon=True)
               for i in range(BIG_CLIENTS)]
    peak = rss0
    for t in senders:
        t.start()
    while any(t.is_alive() for t in senders):
        peak = max(peak, rss_mb(ctl.proc.pid))
        time.sleep(0.02)
    statuses = sorted({r[0] for r in big})
    most = max(r[1] for r in big) / (1 << 20)
    print(f"figure {BIG_CLIENTS} clients x 1 GB: answers {statuses}, the most any got out "
          f"{most:.1f} MiB; controller RSS {rss0:.1f} MiB -> peak {peak:.1f} MiB")
    check(statuses == ["HTTP/1.1 401 Unauthorized", "HTTP/1.1 413 Payload Too Large"],
          f"no token -> 401, the ministry's -> 413, both on the head ({statuses})")
    check(most < 64, f"every sender was cut after a few MB ({most:.1f} MiB at most)")
    check(peak - rss0 < RSS_BOUND_MB, f"controller RSS grew {peak - rss0:.1f} MiB < {RSS_BOUND_MB} MiB")
    check(ctl.metric('sluice_control_http_refused_total{reason="too_large"}') == BIG_CLIENTS // 2,
          "the 413s are counted as too_large")

    # -- long polls waiting, then SIGTERM
    held = ctl.rollout().get("released", 0)
    results = ["connecting"] * POLLS
    threads = [threading.Thread(target=long_poll, args=(ctl, f"stop-{i:03d}", held, results, i), daemon=True)
               for i in range(POLLS)]
    for t in threads:
        t.start()
    waiting = wait_for(lambda: ctl.metric("sluice_control_long_polls_waiting") == POLLS, 60, step=0.2)
    check(waiting, f"{POLLS} long polls wait over TLS "
                   f"({ctl.metric('sluice_control_long_polls_waiting')} waiting)")
    marker = f"flushed-at-stop-{time.time_ns()}"
    report = {"revision": 0, "offered": 0, "result": "nack", "error": marker, "health": "ok"}
    status, _ = ctl.request("POST", "/v1/nodes/stop-node/status", None, body=report, ctx=ctl.node_ctx)
    check(status == 204, f"a status report just before the stop ({status})")
    t0 = time.monotonic()
    ctl.proc.send_signal(signal.SIGTERM)
    try:
        code = ctl.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        code = None
    took = time.monotonic() - t0
    print(f"figure SIGTERM to exit with {POLLS} waiting TLS long polls: {took * 1e3:.0f} ms")
    check(code == 0, f"sluice-controld exits 0 on SIGTERM (exit {code})")
    check(took < STOP_BOUND_S, f"within {STOP_BOUND_S:.0f} s ({took * 1e3:.0f} ms)")
    for t in threads:
        t.join(timeout=10)
    answered = sum(1 for r in results if r.startswith("HTTP/1.1 503"))
    closed = sum(1 for r in results if r == "closed")
    other = [r for r in results if not (r.startswith("HTTP/1.1 503") and "unexpected" not in r) and r != "closed"]
    print(f"figure polls at stop: {answered} answered 503 shutting_down, {closed} closed, {len(other)} other")
    check(not other, f"every waiting poll got 503 shutting_down or a close (others: {other[:3]})")
    check(answered == POLLS, f"all {POLLS} were answered 503 ({answered})")
    db = sqlite3.connect(os.path.join(root, "controld.db"))
    row = db.execute("SELECT error FROM nodes WHERE node_id = 'stop-node'").fetchone()
    check(row is not None and row[0] == marker, "the status report posted just before SIGTERM is in the store")
    check("stopped" in ctl.log_tail(), "the log says it stopped")
    if failures:
        print(f"controller log tail:\n{ctl.log_tail(3000)}")
        return 1
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
