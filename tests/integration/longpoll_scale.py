#!/usr/bin/python3
"""Issue 13, "done when": one sluice-controld (SQLite) holds 5,000 concurrent TLS long polls, and
meanwhile an engineer's API request is answered in under 100 ms and a new node registers in
under 1 s; then one new revision answers every waiting poll.

  longpoll_scale.py BIN_DIR SOURCE_DIR        (LONGPOLL_NODES=500 for a smaller run)

1. A throwaway CA and a server certificate for IP 127.0.0.1 (openssl, EC P-256) in a temp dir;
   every client here verifies the server against that CA, host name checked on the IP SAN.
2. LONGPOLL_NODES (default 5,000) nodes lp-00001.. each open their own TLS connection from one
   asyncio loop (a background thread) and send GET /v1/nodes/ID/snapshot?wait=WAIT_S with
   If-None-Match: the revision the controller offers, so each poll waits. Connects are ramped
   (RAMP_INFLIGHT handshakes at a time). They count as held when the controller lists every one
   of them in GET /v1/nodes (it records a node when its poll arrives, before waiting) and the
   client has had no answer on any of them. The controller's resident memory per waiting poll
   (VmRSS after the ramp less before, over N) must stay under IDLE_TLS_KIB_BOUND (not checked
   under the sanitizers, SLUICE_SANITIZED: their allocator's own overhead).
3. While they wait: ENGINEER_SAMPLES times, a fresh TLS connection for GET /v1/rollout (time
   with the handshake) and a second GET /v1/rollout on that open connection (request time).
   Both maxima must be under 100 ms.
4. While they wait: lp-new posts its first status and fetches its snapshot (fresh connection,
   handshake included) in under 1 s, and GET /v1/nodes lists it within 1 s of its start.
5. All polls are still pending; an engineer's emergency stop starts a new revision for every
   node at once; every poll must be answered 200 with the new ETag within ANSWER_BOUND_S.
   The stop is cleared, the controller gets SIGTERM and must exit 0 within STOP_BOUND_S.
The figures are printed on "figure" lines. Exit 0 pass, 1 fail, 77 when a prerequisite (openssl,
the binaries, a file-descriptor limit for two ends of N connections) is missing."""

import asyncio
import hashlib
import http.client
import json
import os
import resource
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time

from control_harness import TOKENS, Controller, check, failures, tls_prerequisites, wait_for

BIN, SRC = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
NODES = int(os.environ.get("LONGPOLL_NODES", "5000"))
HOST = "127.0.0.1"
# The bounds (strict) and this test's own (generous: a loaded 2-core CI machine).
API_BOUND_S = 0.100
REGISTER_BOUND_S = 1.0
ANSWER_BOUND_S = 30.0
STOP_BOUND_S = 30.0
RAMP_TIMEOUT_S = 240.0     # all N polls connected and seen by the controller
CONNECT_TIMEOUT_S = 60.0   # one TLS connect + request write
RAMP_INFLIGHT = 200        # TLS handshakes in flight at once during the ramp
ENGINEER_SAMPLES = 20
# The poll's wait, and the controller's cap on it (max_wait_seconds, default 60): long enough
# that no poll times out (304) during a slow ramp plus the measurements, so "all pending" holds.
WAIT_S = 300
SERVED = "sluice_control_snapshots_served_total"
WAITING = "sluice_control_long_polls_waiting"  # polls registered with the controller, not answered
FD_MARGIN = 500            # fds beyond one per connection (store, logs, engineer connections)
IDLE_TLS_KIB_BOUND = 48    # resident KiB per waiting TLS poll (asio::ssl's streams took ~80)


def prerequisites():
    """None when the test can run, else why not (exit 77)."""
    why = tls_prerequisites(BIN)
    if why:
        return why
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NODES + FD_MARGIN
    if hard != resource.RLIM_INFINITY and hard < want:
        return f"RLIMIT_NOFILE hard limit {hard} < {want} (N connections + margin)"
    # Raised for this process and, inherited, for the controller it starts.
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return None


def make_certs(root):
    """ca.crt, and tls.crt / tls.key for IP 127.0.0.1 signed by it; returns the CA's path."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=root, check=True, capture_output=True, timeout=60)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=sluice-test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(root, "tls.ext"), "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n"
                "authorityKeyIdentifier=keyid\n")
    run("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "tls.ext", "-out", "tls.crt")
    return os.path.join(root, "ca.crt")


class TlsController(Controller):
    """The harness's controller (keys, hashed TOKENS, SQLite in root) with its own config: TLS,
    the long wait cap; requests over TLS verified against ca."""

    def __init__(self, root, ca):
        self.ctx = ssl.create_default_context(cafile=ca)   # CERT_REQUIRED, check_hostname
        super().__init__(root, BIN, SRC, keys=("ministry", "controller"), tls=False)
        self.url = f"https://{HOST}:{self.port}"

    def _write_config(self):
        tokens = "\n".join(
            f"  - {{ name: {role}-user, role: {role}, sha256: {hashlib.sha256(t.encode()).hexdigest()} }}"
            for role, t in TOKENS.items())
        with open(os.path.join(self.root, self.config_name), "w") as f:
            f.write(f"""listen: {HOST}:{self.port}
database: controld.db
apps_dir: {self.src}/config/apps
signing_key: controller.key
issuers:
  - {{ name: ministry-of-communications, public_key: ministry.pub }}
approvals_required: 1
stale_after_seconds: {WAIT_S + 120}
max_wait_seconds: {WAIT_S}
tls: {{ cert: tls.crt, key: tls.key }}
inventory: {{ sites: [lp-a, lp-b], labels: {{ group: [canary, main] }} }}
tokens:
{tokens}
""")

    def connection(self, timeout=10):
        return http.client.HTTPSConnection(HOST, self.port, context=self.ctx, timeout=timeout)

    def request(self, method, path, role="viewer", body=None, timeout=10):
        """(status, parsed JSON or text); 0 when the controller did not answer."""
        conn = self.connection(timeout)
        try:
            status, data, _ = send(conn, method, path, role, body)
        except (OSError, http.client.HTTPException):
            return 0, None
        finally:
            conn.close()
        try:
            return status, json.loads(data) if data[:1] in (b"{", b"[") else data.decode()
        except ValueError:
            return status, data.decode(errors="replace")


def send(conn, method, path, role, body=None, headers=None):
    """One request on conn -> (status, body bytes, response headers)."""
    h = dict(headers or {})
    if role:
        h["Authorization"] = "Bearer " + TOKENS[role]
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=h)
    r = conn.getresponse()
    return r.status, r.read(), r


def labels_of(i):
    return {"site": "lp-a" if i % 2 else "lp-b", "group": "main"}


def labels_header(labels):
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


# ---- the long polls: one asyncio loop in a background thread --------------------------------

class Poll:
    __slots__ = ("node", "labels", "state", "status", "etag", "body", "answered_at", "error")

    def __init__(self, node, labels):
        self.node, self.labels = node, labels
        self.state = "connecting"    # -> waiting -> answered | closed
        self.status = self.etag = self.body = self.answered_at = self.error = None


async def read_response(reader):
    """(status, headers with lower-case names, body) of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    elif status in (204, 304):
        body = b""
    else:
        body = await reader.read()
    return status, headers, body


async def long_poll(p, port, ctx, held, gate):
    writer = None
    try:
        async with gate:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, port, ssl=ctx, server_hostname=HOST,
                                        ssl_handshake_timeout=CONNECT_TIMEOUT_S),
                CONNECT_TIMEOUT_S)
            writer.write((f"GET /v1/nodes/{p.node}/snapshot?wait={WAIT_S} HTTP/1.1\r\n"
                          f"Host: {HOST}:{port}\r\n"
                          f"Authorization: Bearer {TOKENS['node']}\r\n"
                          f"X-Sluice-Labels: {labels_header(p.labels)}\r\n"
                          f"If-None-Match: \"{held}\"\r\n\r\n").encode())
            await writer.drain()
        p.state = "waiting"
        p.status, headers, p.body = await read_response(reader)
        p.etag = headers.get("etag")
        p.answered_at = time.monotonic()
        p.state = "answered"
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ssl.SSLError,
            ValueError, IndexError) as e:
        p.error = (f"TLS connect not done in {CONNECT_TIMEOUT_S:.0f} s"
                   if isinstance(e, TimeoutError) and p.state == "connecting"
                   else f"{p.state}: {type(e).__name__}: {e}")
        p.state = "closed"
    finally:
        if writer is not None:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 5)
            except (OSError, asyncio.TimeoutError, ssl.SSLError):
                pass


class PollFleet:
    def __init__(self, port, ctx, held):
        self.polls = [Poll(f"lp-{i:05d}", labels_of(i)) for i in range(1, NODES + 1)]
        self.tasks = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.done = asyncio.run_coroutine_threadsafe(self._run(port, ctx, held), self.loop)

    async def _run(self, port, ctx, held):
        gate = asyncio.Semaphore(RAMP_INFLIGHT)
        self.tasks = [asyncio.create_task(long_poll(p, port, ctx, held, gate)) for p in self.polls]
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _cancel(self):
        for t in self.tasks:
            t.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=20)

    def lost(self):
        return any(p.state in ("closed", "answered") for p in self.polls)

    def count(self, state):
        return sum(1 for p in self.polls if p.state == state)

    def states(self):
        out = {}
        for p in self.polls:
            out[p.state] = out.get(p.state, 0) + 1
        return out

    def first_errors(self, n=3):
        return [f"{p.node}: {p.error}" for p in self.polls if p.error][:n]

    def stop(self):
        """Cancels what is still pending, lets every connection close, stops the loop."""
        try:
            asyncio.run_coroutine_threadsafe(self._cancel(), self.loop).result(timeout=30)
        except Exception as e:  # noqa: BLE001  (teardown: report, carry on)
            print(f"  poll teardown: {type(e).__name__}: {e}")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


# ---- measurements --------------------------------------------------------------------------

def body_revision(body):
    try:
        return json.loads(body).get("revision")
    except (ValueError, AttributeError):
        return None


def p95(xs):
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def engineer_samples(ctl):
    """[(with handshake, on the open connection, handshake alone)] seconds for GET /v1/rollout,
    or None on error."""
    out = []
    for _ in range(ENGINEER_SAMPLES):
        conn = ctl.connection()
        try:
            t0 = time.perf_counter()
            conn.connect()                                     # TCP + TLS handshake
            th = time.perf_counter()
            s1, _, _ = send(conn, "GET", "/v1/rollout", "engineer")
            t1 = time.perf_counter()
            s2, _, _ = send(conn, "GET", "/v1/rollout", "engineer")   # same connection
            t2 = time.perf_counter()
        except (OSError, http.client.HTTPException) as e:
            print(f"  engineer request failed: {e}")
            return None
        finally:
            conn.close()
        if s1 != 200 or s2 != 200:
            print(f"  engineer GET /v1/rollout -> {s1}, {s2}")
            return None
        out.append((t1 - t0, t2 - t1, th - t0))
    return out


def register_new_node(ctl, node="lp-new"):
    """lp-new's first status report and snapshot on a fresh connection; returns
    (seconds for both, status code, snapshot code, snapshot JSON, listed-within seconds)."""
    labels = {"site": "lp-a", "group": "main"}
    report = {"revision": 0, "offered": 0, "ruleset_sha256": "", "result": "ack", "error": "",
              "health": "ok", "labels": labels}
    conn = ctl.connection()
    t0 = time.perf_counter()
    try:
        st, _, _ = send(conn, "POST", f"/v1/nodes/{node}/status", "node", report)
        ss, body, _ = send(conn, "GET", f"/v1/nodes/{node}/snapshot", "node",
                           headers={"X-Sluice-Labels": labels_header(labels)})
    except (OSError, http.client.HTTPException) as e:
        print(f"  {node} failed: {e}")
        return None
    finally:
        conn.close()
    took = time.perf_counter() - t0
    try:
        snap = json.loads(body)
    except ValueError:
        snap = None

    # When the first listing that names it was asked for (each listing is a fresh request): the
    # node is registered by then. Not when it was answered: listing 5,001 nodes takes over a
    # second in the sanitizer build, which is the listing's cost, not the registration's.
    def listed():
        asked = time.perf_counter() - t0
        status, b = ctl.request("GET", "/v1/nodes", "engineer", timeout=30)
        return asked if status == 200 and any(n["node"] == node for n in b["nodes"]) else None
    return took, st, ss, snap, wait_for(listed, 30, step=0.02)


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def metric(ctl, name, labels=""):
    """The value of one sample in GET /metrics (labels: the exact text between the braces, in
    the exposition's order), 0 when absent, None when /metrics did not answer."""
    status, text = ctl.request("GET", "/metrics", None)
    if status != 200 or not isinstance(text, str):
        return None
    want = name + ("{" + labels + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0.0


def nodes_seen(ctl):
    """How many lp-NNNNN nodes the controller lists (each recorded when its poll arrived)."""
    status, b = ctl.request("GET", "/v1/nodes", "viewer", timeout=30)
    if status != 200:
        return -1
    return sum(1 for n in b["nodes"] if n["node"].startswith("lp-") and n["node"] != "lp-new")


def main():
    why = prerequisites()
    if why:
        print(f"skip: {why}")
        return 77
    root = tempfile.mkdtemp(prefix="sluice-longpoll-")
    print(f"== {NODES} TLS long polls against one sluice-controld (work dir {root})")
    ca = make_certs(root)
    ctl = TlsController(root, ca)
    if not ctl.start(timeout=60):
        print(ctl.log_tail())
        return 1
    rollout = ctl.rollout()
    held = rollout.get("released", 0)
    if not check(held > 0, f"the controller offers a revision ({held})"):
        return 1
    # The controller's count of snapshots it answered (200): a server-side view of "none of the
    # polls was answered" before the revision, and "exactly N were" after it.
    served0 = metric(ctl, SERVED)
    # Only the inventory's nodes are served (issue 14): an engineer enrols the fleet first.
    t_enrol = time.monotonic()
    ctl.enroll_nodes([(f"lp-{i:05d}", labels_of(i)) for i in range(1, NODES + 1)])
    print(f"figure enrolment: {NODES} nodes in {time.monotonic() - t_enrol:.2f} s (bulk, 250 per request)")

    rss_before = vm_rss_kib(ctl.proc.pid)
    print(f"== ramp: {NODES} polls, {RAMP_INFLIGHT} handshakes in flight")
    t_ramp = time.monotonic()
    fleet = PollFleet(ctl.port, ctl.ctx, held)
    # Done when every poll is sent; fails fast once one poll is lost (closed or answered: a
    # refused or timed-out connect, a 304, an error) or the controller dies.
    wait_for(lambda: (fleet.count("waiting") == NODES or fleet.lost() or not ctl.alive()),
             RAMP_TIMEOUT_S, step=0.25)
    sent = fleet.count("waiting") == NODES and ctl.alive()
    sent_s = time.monotonic() - t_ramp
    seen = sent and bool(wait_for(lambda: (not ctl.alive() or fleet.lost()
                                           or metric(ctl, WAITING) == NODES),
                                  max(10.0, RAMP_TIMEOUT_S - sent_s), step=0.5)
                         and ctl.alive() and not fleet.lost())
    ramp_s = time.monotonic() - t_ramp
    print(f"figure ramp: {NODES} polls sent in {sent_s:.1f} s, all seen by the controller after "
          f"{ramp_s:.1f} s; client states {fleet.states()}" if seen else
          f"figure ramp: stopped after {ramp_s:.1f} s; client states {fleet.states()}")
    held_all = (check(ctl.alive(), f"the controller is still running during the ramp "
                                   f"(exit {ctl.proc.poll()})")
                and check(sent, f"all {NODES} polls connected over TLS and sent within "
                                f"{RAMP_TIMEOUT_S:.0f} s (states {fleet.states()}, first errors "
                                f"{fleet.first_errors()})")
                and check(seen, f"the controller holds all {NODES} polls waiting "
                                f"({WAITING} {metric(ctl, WAITING)}; states {fleet.states()})")
                and check(nodes_seen(ctl) == NODES, f"the controller lists all {NODES} polling "
                                                    f"nodes (it lists {nodes_seen(ctl)})"))
    if not held_all:
        print(f"FAIL the controller did not hold {NODES} concurrent TLS long polls; "
              f"controller log tail:\n{ctl.log_tail()}")
        fleet.stop()
        return 1
    check(fleet.count("waiting") == NODES,
          f"all {NODES} polls pending before the measurements ({fleet.states()})")
    # What a waiting TLS node costs the controller: its connection and its node state. On
    # asio::ssl::stream it was ~80 KiB (four 17 KiB buffers per connection, idle or not);
    # tls_stream holds none while idle.
    per_poll = (vm_rss_kib(ctl.proc.pid) - rss_before) / NODES
    print(f"figure resident memory: {rss_before / 1024:.0f} MiB before the polls, "
          f"{per_poll:.1f} KiB more per waiting TLS poll")
    if not os.environ.get("SLUICE_SANITIZED"):
        check(per_poll < IDLE_TLS_KIB_BOUND,
              f"a waiting TLS poll costs under {IDLE_TLS_KIB_BOUND} KiB resident ({per_poll:.1f} KiB)")

    print("== while they wait: an engineer's request, a new node")
    # Asserted on the max of both figures, the open connection's and the fresh one's: with EC
    # P-256 the handshake is a few ms. (On the old cpp-httplib server a small response waits
    # ~40 ms, likely Nagle on its separate header and body writes against the client's delayed
    # ACK: the 44 ms median is that timer, not the controller's work.)
    samples = engineer_samples(ctl)
    if check(samples is not None, f"{ENGINEER_SAMPLES} engineer GET /v1/rollout answered 200"):
        full = [a for a, _, _ in samples]
        req = [b for _, b, _ in samples]
        hs = [c for _, _, c in samples]
        print(f"figure engineer GET /v1/rollout, fresh TLS connection (handshake included): "
              f"max {max(full) * 1e3:.1f} ms, p95 {p95(full) * 1e3:.1f} ms, "
              f"median {sorted(full)[len(full) // 2] * 1e3:.1f} ms; the handshake alone max "
              f"{max(hs) * 1e3:.1f} ms")
        print(f"figure engineer GET /v1/rollout on an open connection: max {max(req) * 1e3:.1f} ms, "
              f"p95 {p95(req) * 1e3:.1f} ms, median {sorted(req)[len(req) // 2] * 1e3:.1f} ms")
        check(max(req) < API_BOUND_S, f"engineer request on an open connection: max "
                                      f"{max(req) * 1e3:.1f} ms < {API_BOUND_S * 1e3:.0f} ms")
        check(max(full) < API_BOUND_S, f"engineer request with its TLS handshake: max "
                                       f"{max(full) * 1e3:.1f} ms < {API_BOUND_S * 1e3:.0f} ms")
    t0 = time.perf_counter()
    ctl.request("GET", "/v1/nodes", "engineer", timeout=30)
    print(f"figure engineer GET /v1/nodes ({NODES + 1} nodes, fresh connection): "
          f"{(time.perf_counter() - t0) * 1e3:.1f} ms (not bounded by the issue)")

    t0 = time.perf_counter()
    ctl.enroll_nodes([("lp-new", {"site": "lp-a", "group": "main"})])
    print(f"figure an engineer enrols lp-new: {(time.perf_counter() - t0) * 1e3:.1f} ms")
    reg = register_new_node(ctl)
    if check(reg is not None, "lp-new's status report and snapshot answered"):
        took, st, ss, snap, listed_at = reg
        print(f"figure new node: status + snapshot (handshake included) {took * 1e3:.1f} ms; "
              f"listed in GET /v1/nodes after "
              f"{'never' if listed_at is None else f'{listed_at * 1e3:.1f} ms'}")
        check(st == 204, f"lp-new POST status -> {st} (204)")
        check(ss == 200 and isinstance(snap, dict) and "revision" in snap and "policy" in snap,
              f"lp-new GET snapshot -> {ss} with revision and policy")
        check(took < REGISTER_BOUND_S, f"lp-new registered in {took * 1e3:.1f} ms < "
                                       f"{REGISTER_BOUND_S * 1e3:.0f} ms")
        check(listed_at is not None and listed_at < REGISTER_BOUND_S,
              f"lp-new listed in GET /v1/nodes within {REGISTER_BOUND_S * 1e3:.0f} ms")

    print("== a new revision for every node at once (emergency stop)")
    check(fleet.count("waiting") == NODES,
          f"all {NODES} polls still pending after the measurements ({fleet.states()})")
    served = metric(ctl, SERVED)
    check(served == served0 + 1, f"{SERVED} went {served0} -> {served}: lp-new's snapshot only")
    t_stop = time.monotonic()
    status, view = ctl.request("POST", "/v1/emergency-stop", "engineer", {"reason": "test"},
                               timeout=30)
    new_rev = view.get("released", 0) if isinstance(view, dict) else 0
    if check(status == 200 and new_rev > held,
             f"emergency stop -> {status}, revision {held} -> {new_rev}"):
        wait_for(lambda: fleet.count("waiting") == 0, ANSWER_BOUND_S, step=0.05)
        answered = [p for p in fleet.polls if p.state == "answered"]
        last = max((p.answered_at for p in answered), default=t_stop) - t_stop
        good = [p for p in answered if p.status == 200 and p.etag == f'"{new_rev}"'
                and body_revision(p.body) == new_rev]
        print(f"figure all polls answered: {len(good)}/{NODES} with 200 and ETag \"{new_rev}\", "
              f"the last {last:.2f} s after the emergency stop; client states {fleet.states()}")
        check(len(good) == NODES and last < ANSWER_BOUND_S,
              f"all {NODES} polls answered 200 with the new ETag within {ANSWER_BOUND_S:.0f} s "
              f"({len(good)}, first errors {fleet.first_errors()}, statuses "
              f"{sorted({p.status for p in answered if p not in good} - {None})})")
        served_now = metric(ctl, SERVED)
        check(served_now == served + NODES, f"{SERVED} went {served} -> {served_now} (+{NODES})")
    status, _ = ctl.request("DELETE", "/v1/emergency-stop", "engineer", {"reason": "test done"},
                            timeout=30)
    check(status == 200, f"emergency stop cleared -> {status}")
    fleet.stop()

    t_term = time.monotonic()
    ctl.proc.send_signal(signal.SIGTERM)
    try:
        rc = ctl.proc.wait(timeout=STOP_BOUND_S)
    except subprocess.TimeoutExpired:
        rc = None
    print(f"figure SIGTERM to exit: {time.monotonic() - t_term:.2f} s")
    check(rc == 0, f"the controller exits 0 on SIGTERM within {STOP_BOUND_S:.0f} s (rc {rc})")

    if failures:
        print(f"{len(failures)} failed; controller log tail:\n{ctl.log_tail()}")
        return 1
    shutil.rmtree(root, ignore_errors=True)
    print("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
