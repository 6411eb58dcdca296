#!/usr/bin/env python3
"""sluicectl without sluice-controld: keys, signatures (and interop with /usr/bin/minisign),
help, usage errors, the exit status for an unreachable controller, and the API client against a
fake controller that answers as control/README.md "HTTP API (v1)" specifies (request shapes,
tokens, 4xx/5xx mapping, audit paging and chain checks).

Usage: sluicectl_offline.py PATH-TO-SLUICECTL. Exit 0 pass, 1 fail, 77 skip (no minisign).
Everything happens in a temp dir; network use is loopback only: a port that is bound but not
listening (connection refused) and the fake controller on an ephemeral port.
"""

import base64
import hashlib
import http.server
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import urllib.parse

MINISIGN = "/usr/bin/minisign"

BLOCK_DOC = b"""id: MINCOM-2026-001
issuer: ministry-of-communications
issued_at: 2026-11-20T09:00:00Z
legal_basis: "Order 123 of 2026-11-20"
action: block
targets:
  apps: [telegram]
scope: all
not_before: 2026-11-21T00:00:00Z
"""

UNBLOCK_DOC = b"""id: MINCOM-2026-002
issuer: ministry-of-communications
issued_at: 2026-11-22T09:00:00Z
legal_basis: "Order 124 of 2026-11-22"
action: unblock   # lifts the block
lifts: [MINCOM-2026-001]
scope: all
not_before: 2026-11-23T00:00:00Z
"""

SUBCOMMANDS = [
    [], ["keygen"], ["sign"], ["verify"], ["submit"], ["lift"], ["approve"], ["revoke"],
    ["reject"], ["show"], ["list"], ["nodes"], ["rollout"], ["rollout", "pause"], ["rollout", "resume"],
    ["emergency-stop"], ["audit"], ["audit", "verify"], ["audit", "export"],
]


class Failed(Exception):
    pass


class Ctx:
    def __init__(self, ctl, tmp):
        self.ctl = ctl
        self.tmp = tmp
        self.checks = 0

    def path(self, name):
        return os.path.join(self.tmp, name)

    def write(self, name, data):
        with open(self.path(name), "wb") as f:
            f.write(data)
        return self.path(name)

    def read(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()

    def run(self, args, expect, what, contains=None, program=None, env=None):
        """Runs sluicectl (or `program`) and checks the exit status and, if given, that the
        combined output contains `contains`."""
        cmd = (program or [self.ctl]) + args
        e = dict(os.environ)
        e.pop("SLUICE_CONTROLLER", None)
        e.pop("SLUICE_TOKEN", None)
        if env:
            e.update(env)
        p = subprocess.run(cmd, cwd=self.tmp, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=60, env=e)
        out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
        self.checks += 1
        if "Sanitizer" in out or "runtime error:" in out:  # an ASan/UBSan build's report
            raise Failed(f"{what}: sanitizer report from {' '.join(cmd)}\n{out}")
        if p.returncode != expect:
            raise Failed(f"{what}: {' '.join(cmd)} exited {p.returncode}, expected {expect}\n{out}")
        if contains is not None and contains not in out:
            raise Failed(f"{what}: output lacks {contains!r}\n{out}")
        return p

    def expect(self, cond, what):
        self.checks += 1
        if not cond:
            raise Failed(what)


def closed_port():
    """A loopback port that refuses connections: bound (so nobody else takes it) but not
    listening. The socket must stay open while it is used."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s


def test_help(c):
    for sub in SUBCOMMANDS:
        p = c.run(sub + ["--help"], 0, f"help for {sub}", contains="Usage")
        c.expect(b"Exit status" in p.stdout, f"--help for {sub} documents exit statuses")


def test_usage_errors(c):
    cases = [
        ("no subcommand", []),
        ("unknown subcommand", ["frobnicate"]),
        ("unknown option", ["list", "--no-such-option"]),
        ("sign without DOC", ["sign", "--secret", "k.sec"]),
        ("verify without --public", ["verify", "doc.yaml"]),
        ("keygen without --secret", ["keygen", "--public", "x.pub"]),
        ("approve with a bad reference", ["approve", "not-a-reference"]),
        ("show with an upper-case issuer", ["show", "Ministry/ID-1"]),
        ("revoke without --reason", ["revoke", "ministry/ID-1"]),
        ("reject without --reason", ["reject", "ministry/ID-1"]),
        ("rollout pause without --reason", ["rollout", "pause"]),
        ("emergency-stop without --reason", ["emergency-stop"]),
        ("emergency-stop --clear without --reason", ["emergency-stop", "--clear"]),
        ("audit without verify/export", ["audit"]),
        ("--token with --token-file", ["--token", "a", "--token-file", "b", "list"]),
        ("non-positive --timeout", ["--timeout", "0", "list"]),
        ("controller URL with a path", ["--controller", "http://127.0.0.1:1/v1", "list"]),
        ("controller URL with another scheme", ["--controller", "ftp://127.0.0.1:1", "list"]),
        ("trusted comment with a line break", ["sign", "--secret", "k.sec",
                                               "--trusted-comment", "a\nb", "doc.yaml"]),
    ]
    for what, args in cases:
        c.run(args, 2, what)


def test_keygen(c):
    p = c.run(["keygen", "--public", "our.pub", "--secret", "our.sec"], 0, "keygen")
    mode = stat.S_IMODE(os.stat(c.path("our.sec")).st_mode)
    c.expect(mode == 0o600, f"secret key mode is {oct(mode)}, expected 0o600")
    pub = c.read("our.pub").decode()
    raw = base64.b64decode(pub.splitlines()[1])
    c.expect(pub.startswith("untrusted comment: ") and len(raw) == 42 and raw[:2] == b"Ed",
             f"public key is in minisign's format:\n{pub}")
    key_id = p.stdout.decode().split()[2]
    c.expect(key_id in pub, "keygen prints the key id the public key names")

    before = (c.read("our.pub"), c.read("our.sec"))
    c.run(["keygen", "--public", "our.pub", "--secret", "other.sec"], 1,
          "keygen refuses to overwrite the public key", contains="--force")
    c.run(["keygen", "--public", "other.pub", "--secret", "our.sec"], 1,
          "keygen refuses to overwrite the secret key", contains="--force")
    c.expect((c.read("our.pub"), c.read("our.sec")) == before, "refused keygen changed nothing")
    c.expect(not os.path.exists(c.path("other.pub")) and not os.path.exists(c.path("other.sec")),
             "refused keygen wrote neither file")

    c.run(["keygen", "--public", "forced.pub", "--secret", "forced.sec"], 0, "second key pair")
    old = c.read("forced.pub")
    c.run(["keygen", "--force", "--public", "forced.pub", "--secret", "forced.sec",
           "--comment", "rotated"], 0, "keygen --force")
    c.expect(c.read("forced.pub") != old, "keygen --force replaced the public key")
    c.expect(c.read("forced.pub").startswith(b"untrusted comment: rotated\n"),
             "--comment is the public key's untrusted comment")
    mode = stat.S_IMODE(os.stat(c.path("forced.sec")).st_mode)
    c.expect(mode == 0o600, f"overwritten secret key mode is {oct(mode)}")
    leftovers = [n for n in os.listdir(c.tmp) if ".tmp." in n]
    c.expect(not leftovers, f"no temporary files left behind: {leftovers}")


def test_sign_verify(c):
    c.write("doc.yaml", BLOCK_DOC)
    c.run(["sign", "--secret", "our.sec", "doc.yaml"], 0, "sign")
    sig = c.read("doc.yaml.minisig").decode()
    trusted = [l for l in sig.splitlines() if l.startswith("trusted comment: ")]
    c.expect(len(trusted) == 1 and trusted[0].startswith("trusted comment: timestamp:")
             and "file:doc.yaml" in trusted[0], f"default trusted comment:\n{sig}")
    c.run(["verify", "--public", "our.pub", "doc.yaml"], 0, "verify our signature",
          contains=trusted[0][len("trusted comment: "):])

    p = c.run(["--json", "verify", "--public", "our.pub", "doc.yaml"], 0, "verify --json")
    j = json.loads(p.stdout)
    c.expect(j.get("valid") is True and j.get("trusted_comment", "").startswith("timestamp:"),
             f"verify --json answer: {j}")

    c.run(["sign", "--secret", "our.sec", "--trusted-comment", "MINCOM-2026-001 approved",
           "-x", "custom.minisig", "doc.yaml"], 0, "sign with a trusted comment")
    c.run(["verify", "--public", "our.pub", "--signature", "custom.minisig", "doc.yaml"], 0,
          "verify --signature", contains="MINCOM-2026-001 approved")

    # One byte of the document changed.
    c.write("tampered.yaml", BLOCK_DOC.replace(b"2026-11-21", b"2026-11-22"))
    c.run(["verify", "--public", "our.pub", "--signature", "doc.yaml.minisig", "tampered.yaml"], 1,
          "verify a changed document", contains="does not match the document")

    # One byte of the trusted comment changed.
    c.write("comment.minisig", c.read("custom.minisig").replace(b"approved", b"approvee"))
    c.run(["verify", "--public", "our.pub", "--signature", "comment.minisig", "doc.yaml"], 1,
          "verify a changed trusted comment", contains="comment")

    # Another key.
    c.run(["verify", "--public", "forced.pub", "doc.yaml"], 1, "verify with another key",
          contains="different key")
    c.write("garbage.minisig", b"not a signature\n")
    c.run(["verify", "--public", "our.pub", "--signature", "garbage.minisig", "doc.yaml"], 1,
          "verify a malformed signature")
    c.run(["verify", "--public", "our.pub", "--signature", "missing.minisig", "doc.yaml"], 1,
          "verify with a missing signature file")
    c.run(["sign", "--secret", "missing.sec", "doc.yaml"], 1, "sign with a missing key file")
    c.run(["sign", "--secret", "our.pub", "doc.yaml"], 1, "sign with a public key as secret")


def test_minisign_interop(c):
    # minisign checks what we sign.
    c.run(["-V", "-p", "our.pub", "-m", "doc.yaml"], 0, "minisign -V accepts our signature",
          program=[MINISIGN])
    c.run(["-V", "-p", "our.pub", "-m", "doc.yaml", "-x", "custom.minisig"], 0,
          "minisign -V accepts our trusted comment", program=[MINISIGN],
          contains="MINCOM-2026-001 approved")
    c.run(["-V", "-p", "our.pub", "-m", "tampered.yaml", "-x", "doc.yaml.minisig"], 1,
          "minisign -V refuses a changed document", program=[MINISIGN])

    # We check what minisign signs, with minisign's unencrypted key.
    c.run(["-G", "-W", "-p", "m.pub", "-s", "m.sec"], 0, "minisign -G -W", program=[MINISIGN])
    c.write("doc2.yaml", UNBLOCK_DOC)
    c.run(["-S", "-s", "m.sec", "-m", "doc2.yaml", "-t", "signed by minisign"], 0, "minisign -S",
          program=[MINISIGN])
    c.run(["verify", "--public", "m.pub", "doc2.yaml"], 0,
          "verify accepts minisign's signature", contains="signed by minisign")
    c.run(["-S", "-s", "m.sec", "-m", "doc.yaml", "-x", "m-default.minisig"], 0,
          "minisign -S, default comment", program=[MINISIGN])
    c.run(["verify", "--public", "m.pub", "-x", "m-default.minisig", "doc.yaml"], 0,
          "verify accepts minisign's default comment", contains="file:doc.yaml")
    c.run(["verify", "--public", "our.pub", "doc2.yaml"], 1,
          "verify refuses minisign's signature under our key", contains="different key")

    # We sign with minisign's secret key; minisign checks it.
    c.run(["sign", "--secret", "m.sec", "-x", "ours-with-m.minisig", "doc.yaml"], 0,
          "sign with minisign's unencrypted secret key")
    c.run(["-V", "-p", "m.pub", "-m", "doc.yaml", "-x", "ours-with-m.minisig"], 0,
          "minisign -V accepts our signature made with its key", program=[MINISIGN])

    # minisign's default (encrypted) key is refused with advice, not a crash.
    p = subprocess.run([MINISIGN, "-G", "-p", "enc.pub", "-s", "enc.sec"], cwd=c.tmp,
                       input=b"passphrase\npassphrase\n", capture_output=True, timeout=60)
    if p.returncode == 0:
        c.run(["sign", "--secret", "enc.sec", "doc.yaml"], 1,
              "sign refuses an encrypted minisign key", contains="-W")


def test_controller_unreachable(c):
    sock = closed_port()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        c.run(["--controller", url, "submit", "doc.yaml"], 3, "submit to a closed port",
              contains="cannot reach")
        c.run(["submit", "doc.yaml"], 3, "submit via SLUICE_CONTROLLER",
              env={"SLUICE_CONTROLLER": url})
        p = c.run(["--controller", url, "--json", "list"], 3, "list --json to a closed port")
        c.expect(json.loads(p.stdout).get("error") == "unreachable", "--json failure object")
        for args in (["approve", "ministry/ID-1"], ["show", "ministry/ID-1"], ["nodes"],
                     ["rollout"], ["rollout", "resume", "--reason", "r"],
                     ["emergency-stop", "--clear", "--reason", "r"], ["audit", "verify"],
                     ["audit", "export"]):
            c.run(["--controller", url] + args, 3, f"{args[0]} to a closed port")
        # lift sends an unblock; a block is refused before any connection is tried.
        c.run(["sign", "--secret", "our.sec", "doc2.yaml"], 0, "sign the unblock")
        c.run(["--controller", url, "lift", "doc2.yaml"], 3, "lift an unblock to a closed port")
        c.run(["--controller", url, "lift", "doc.yaml"], 1, "lift refuses a block",
              contains="unblock")
        for name, doc in [("flow.yaml", b"{action: unblock, id: X}\n"),
                          ("twice.yaml", UNBLOCK_DOC + b"action: block\n"),
                          ("nested.yaml", b"targets:\n  action: unblock\n")]:
            c.write(name, doc)
            c.run(["sign", "--secret", "our.sec", name], 0, f"sign {name}")
            c.run(["--controller", url, "lift", name], 1, f"lift refuses {name}",
                  contains="one top-level 'action:'")
        # A file that is no signature is refused locally.
        c.run(["--controller", url, "submit", "doc.yaml", "--signature", "garbage.minisig"], 1,
              "submit with a malformed signature")
        c.run(["--controller", url, "submit", "missing.yaml"], 1, "submit a missing file")
    finally:
        sock.close()


def test_audit_db_missing(c):
    c.run(["audit", "verify", "--db", "no-such.db"], 1, "audit verify of a missing database")
    c.expect(not os.path.exists(c.path("no-such.db")), "a missing database is not created")


# ---- a fake controller on loopback: request shapes and answer handling ------------------------

def audit_chain(n):
    """n records sealed as control/audit/audit.cpp does (canonical form v1)."""
    def field(b):
        return len(b).to_bytes(8, "big") + b
    records, prev = [], "0" * 64
    for seq in range(1, n + 1):
        r = {"seq": seq, "at": 1795900000000 + seq, "actor": "alice", "event": "directive.submitted",
             "subject": f"ministry/ID-{seq}", "detail": json.dumps({"n": seq}), "prev_hash": prev}
        form = b"".join(field(x.encode()) for x in
                        ["sluice-audit-v1", str(r["seq"]), str(r["at"]), r["actor"], r["event"],
                         r["subject"], r["detail"], r["prev_hash"]])
        r["hash"] = hashlib.sha256(form).hexdigest()
        records.append(r)
        prev = r["hash"]
    return records


DIRECTIVE = {"issuer": "ministry", "id": "ID-1", "action": "block", "state": "awaiting_approval",
             "end_reason": "", "submitted_by": "min", "received_at": 1795900000,
             "approvals": [{"actor": "bob", "at": 1795900100}], "not_before": 1795990000,
             "not_after": None, "enforcement": {"in_scope": 5, "enforcing": 3},
             "document": BLOCK_DOC.decode(), "signature": "untrusted comment: x\nRUQ\n"}


class FakeController(http.server.BaseHTTPRequestHandler):
    state = None  # set by the test: requests seen, audit records served, head override

    def log_message(self, *args):
        pass

    def answer(self, status, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self, method):
        st = self.state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        st["requests"].append({"method": method, "path": url.path, "query": query,
                               "auth": self.headers.get("Authorization"),
                               "body": json.loads(raw) if raw else None})
        if self.headers.get("Authorization") is None:
            return self.answer(401, {"error": "unauthorized", "message": "no token"})
        route = (method, url.path)
        if route == ("POST", "/v1/directives"):
            if "bad" in st["requests"][-1]["body"]["document"]:
                return self.answer(400, {"error": "bad_value", "message": "scope: unknown site",
                                         "line": 3, "column": 7})
            return self.answer(201, DIRECTIVE)
        if route == ("GET", "/v1/directives"):
            return self.answer(200, {"directives": [DIRECTIVE]})
        if route == ("GET", "/v1/directives/ministry/ID-1"):
            return self.answer(200, DIRECTIVE)
        if route == ("POST", "/v1/directives/ministry/ID-1/approve"):
            return self.answer(409, {"error": "wrong_state", "message": "already approved"})
        if route == ("POST", "/v1/directives/ministry/ID-1/revoke"):
            return self.answer(200, dict(DIRECTIVE, state="ended", end_reason="revoked"))
        if route == ("GET", "/v1/nodes"):
            return self.answer(503, {"error": "store_unavailable", "message": "disk full"})
        if route == ("GET", "/v1/rollout"):
            return self.answer(200, {"state": "rolling", "revision": 7,
                                     "timeline": [{"stage": "canary", "at": 1795900000}]})
        if route in (("POST", "/v1/rollout/pause"), ("POST", "/v1/emergency-stop"),
                     ("DELETE", "/v1/emergency-stop")):
            return self.answer(200, {"ok": True})
        if route == ("GET", "/v1/audit"):
            after = int(query["after"][0])
            page = [r for r in st["audit"] if r["seq"] > after][:2]  # smaller than asked for
            head = st["head"] or (st["audit"][-1]["hash"] if st["audit"] else "0" * 64)
            return self.answer(200, {"records": page, "head": head})
        return self.answer(404, {"error": "not_found", "message": url.path})

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_DELETE(self):
        self.handle_any("DELETE")


def test_fake_controller(c):
    state = {"requests": [], "audit": audit_chain(5), "head": None}
    FakeController.state = state
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeController)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"  # trailing slash accepted
    api = ["--controller", url, "--token", "tok"]

    def last():
        return state["requests"][-1]

    try:
        c.run(api + ["submit", "doc.yaml"], 0, "submit", contains="submitted ministry/ID-1")
        r = last()
        c.expect(r["method"] == "POST" and r["path"] == "/v1/directives", f"submit request {r}")
        c.expect(r["auth"] == "Bearer tok", f"submit sends the token: {r['auth']}")
        c.expect(r["body"] == {"document": BLOCK_DOC.decode(),
                               "signature": c.read("doc.yaml.minisig").decode()},
                 f"submit body is the document and its signature, byte-exact: {r['body']}")

        c.write("token", b"from-file\n")
        c.run(["--controller", url, "--token-file", "token", "list"], 0, "--token-file")
        c.expect(last()["auth"] == "Bearer from-file", f"token from file: {last()['auth']}")
        c.run(["--controller", url, "list"], 0, "SLUICE_TOKEN", env={"SLUICE_TOKEN": "env-tok"})
        c.expect(last()["auth"] == "Bearer env-tok", f"token from env: {last()['auth']}")
        c.run(["--controller", url, "list"], 1, "no token: 401", contains="unauthorized")

        c.write("bad.yaml", BLOCK_DOC + b"# bad\n")
        c.run(["sign", "--secret", "our.sec", "bad.yaml"], 0, "sign bad.yaml")
        c.run(api + ["submit", "bad.yaml"], 1, "submit refused with a position",
              contains="bad_value at 3:7: scope: unknown site")
        c.run(api + ["approve", "ministry/ID-1"], 1, "approve refused (409)",
              contains="wrong_state")
        c.expect(last()["path"] == "/v1/directives/ministry/ID-1/approve"
                 and last()["body"] == {}, f"approve request {last()}")
        c.run(api + ["revoke", "ministry/ID-1", "--reason", "court order"], 0, "revoke",
              contains="revoked")
        c.expect(last()["body"] == {"reason": "court order"}, f"revoke body {last()['body']}")
        c.run(api + ["nodes"], 3, "503 is exit 3", contains="store_unavailable")
        c.run(api + ["show", "ministry/ID-1"], 0, "show", contains="legal_basis")
        c.run(api + ["list"], 0, "list", contains="ministry/ID-1")
        p = c.run(api + ["list", "--json"], 0, "list --json (after the subcommand)")
        c.expect(json.loads(p.stdout) == {"directives": [DIRECTIVE]}, "list --json is the answer")
        c.run(api + ["rollout"], 0, "rollout status", contains="canary")
        c.run(api + ["rollout", "pause", "--reason", "canary nack"], 0, "rollout pause")
        c.expect(last()["path"] == "/v1/rollout/pause" and
                 last()["body"] == {"reason": "canary nack"}, f"pause request {last()}")
        c.run(api + ["emergency-stop", "--reason", "outage"], 0, "emergency stop")
        c.expect(last()["method"] == "POST" and last()["path"] == "/v1/emergency-stop",
                 f"stop request {last()}")
        c.run(api + ["emergency-stop", "--clear", "--reason", "checked"], 0, "clear emergency stop")
        c.expect(last()["method"] == "DELETE" and last()["path"] == "/v1/emergency-stop",
                 f"clear request {last()}")

        del state["requests"][:]
        head = state["audit"][-1]["hash"]
        c.run(api + ["audit", "verify"], 0, "audit verify via the API", contains="5 records")
        afters = [r["query"]["after"][0] for r in state["requests"]]
        c.expect(afters == ["0", "2", "4", "5"], f"audit pages asked after {afters}")
        p = c.run(api + ["--json", "audit", "verify"], 0, "audit verify --json")
        c.expect(json.loads(p.stdout) == {"ok": True, "records": 5, "head_hash": head},
                 f"audit verify --json: {p.stdout}")
        p = c.run(api + ["audit", "export"], 0, "audit export")
        lines = [json.loads(l) for l in p.stdout.decode().splitlines()]
        c.expect(lines == state["audit"], f"audit export is the records as JSON lines: {lines}")

        state["audit"][2]["actor"] = "mallory"
        c.run(api + ["audit", "verify"], 1, "edited record", contains="record 3")
        state["audit"] = audit_chain(5)
        del state["audit"][3]
        c.run(api + ["audit", "verify"], 1, "removed record", contains="BROKEN")
        state["audit"] = audit_chain(5)
        state["head"] = "f" * 64
        c.run(api + ["audit", "verify"], 1, "head is not the last record", contains="head")
        state["audit"], state["head"] = [], None
        c.run(api + ["audit", "verify"], 0, "empty chain", contains="0 records")
    finally:
        server.shutdown()
        server.server_close()


TESTS = [test_help, test_usage_errors, test_keygen, test_sign_verify, test_minisign_interop,
         test_controller_unreachable, test_audit_db_missing, test_fake_controller]


def main():
    if len(sys.argv) != 2:
        print("usage: sluicectl_offline.py PATH-TO-SLUICECTL", file=sys.stderr)
        return 1
    if not os.access(MINISIGN, os.X_OK):
        print(f"SKIP: {MINISIGN} not installed")
        return 77
    ctl = os.path.abspath(sys.argv[1])
    tmp = tempfile.mkdtemp(prefix="sluicectl-offline-")
    c = Ctx(ctl, tmp)
    try:
        for t in TESTS:  # in order: later tests use the keys and files earlier ones made
            t(c)
            print(f"ok   {t.__name__}")
    except Failed as e:
        print(f"FAIL {e}")
        print(f"(files kept in {tmp})")
        return 1
    shutil.rmtree(tmp)
    print(f"PASS: {c.checks} checks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
