#!/usr/bin/python3
"""console_browser: the operators' console (issue 15) in a real browser against a real controller.

  console_browser.py BUILD_DIR SOURCE_DIR

What runs: sluice-controld over TLS on SQLite with its node CA (tests/integration/
control_harness.py, as every control test), serving the console from BUILD_DIR/console; four
sluice-fleet-sim agents (sim-0001 is the canary, 2 s soak) with client certificates; the
ministry's block and unblock (config/directives/telegram-*.yaml, times moved to now), a
document carrying script/img payloads, two bad ones, a block of 198.51.100.0/25 inside the
protected range gov-services (198.51.100.0/24; approval.overrides_required 2, a second engineer
token engineer-bob for the overrides) and one to be rejected, signed here with `sluicectl sign`
(the ministry's secret key never reaches the browser). Then `node tests/console/story.mjs`
drives Debian's chromium (playwright-core, headless, 1280x800) through the console alone; see
its header for what it asserts. While it runs, a stand-in for the nodes' impact reporting posts
one impact report as sim-0001 for the block and one for the protected-range block (the fleet
simulator does not report impact), over TLS with a client certificate minted from the node CA,
as sluice-dataplane --impact-interval would.

Screenshots of every page in English and Arabic go to BUILD_DIR/console-screenshots/.

Exit 0 pass, 1 fail, 77 skipped: chromium, node or tests/console/node_modules (tools/setup.sh
installs all three) missing and SLUICE_REQUIRE_BROWSER unset. With SLUICE_REQUIRE_BROWSER=1 a
missing browser is a failure. SLUICE_CONSOLE_KEEP=1 keeps the work dir; SLUICE_CONSOLE_ASSETS=DIR serves the console from DIR
(e.g. control/console, without a rebuild) instead of BUILD_DIR/console."""

import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
from control_harness import (TOKENS, Controller, check, failures, popen,  # noqa: E402
                             tls_prerequisites, wait_for)

ISSUER = "ministry-of-communications"
BLOCK_ID, UNBLOCK_ID, XSS_ID = "MINCOM-2026-001", "MINCOM-2026-002", "MINCOM-XSS-001"
# Directives of their own (so the block's figures never move): a block of an address inside a
# protected range (overrides, approval, then revoked by the ministry) and one the engineer
# rejects with the keyboard alone.
PROTECTED_ID, REJECT_ID = "MINCOM-PROT-001", "MINCOM-REJ-001"
PROTECTED_NAME, PROTECTED_RANGE, PROTECTED_TARGET = "gov-services", "198.51.100.0/24", "198.51.100.0/25"
# A second engineer: a protected overlap needs two engineers' overrides (approval.overrides_required).
ENGINEER2 = ("engineer-bob", "tok-engineer-bob")
NODES, CANARY = 4, 1
CHROMIUM = os.environ.get("SLUICE_CHROMIUM", "/usr/bin/chromium")
# The console's files: BUILD/console (the controller's default, beside its binary), or this
# directory (e.g. control/console while editing it, without a rebuild).
ASSETS = os.environ.get("SLUICE_CONSOLE_ASSETS")
if ASSETS:  # the controller runs in its work dir: a relative DIR is the caller's
    ASSETS = os.path.abspath(ASSETS)
STORY_TIMEOUT = 300  # seconds; the ctest TIMEOUT is above it

# The payloads: they must show as text and never run. Each would set window.__pwned.
# No quotes in them: they sit in single-quoted YAML scalars.
SCRIPT = "<script>window.__pwned=1</script>"
IMG = "<img src=x onerror=window.__pwned=2>"


def rfc(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def browser_missing():
    """Why the browser side cannot run here, or None."""
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} missing (Debian package chromium; tools/setup.sh)"
    if not shutil.which("node"):
        return "node missing (tools/setup.sh)"
    if not os.path.exists(os.path.join(HERE, "node_modules", "playwright-core", "package.json")):
        return "tests/console/node_modules missing (tools/setup.sh runs npm ci there)"
    return None


class Console(Controller):
    """The controller of the story. It serves the console from BUILD/console, beside its binary
    (sluice-controld's default)."""

    def __init__(self, root, build, source):
        super().__init__(root, build, source, keys=("ministry", "controller"), canary_soak=2)
        self.sim = None

    def _write_config(self):
        super()._write_config()
        path = os.path.join(self.root, self.config_name)
        with open(path) as f:
            text = f.read()
        name, token = ENGINEER2
        bob = (f"  - {{ name: {name}, role: engineer, "
               f"sha256: {hashlib.sha256(token.encode()).hexdigest()} }}\n")
        if text.count("\ntokens:\n") != 1:
            raise RuntimeError(f"{path}: no single 'tokens:' list to add {name} to")
        text = text.replace("\ntokens:\n", "\ntokens:\n" + bob)
        text += (f"protected:\n  - {{ name: {PROTECTED_NAME}, prefixes: [{PROTECTED_RANGE}] }}\n"
                 "approval: { overrides_required: 2 }\n")
        if ASSETS:
            text += f"console: {{ assets: {ASSETS} }}\n"
        with open(path, "w") as f:
            f.write(text)

    def start_sim(self):
        self.enroll_sim(NODES, canary=CANARY)
        args = [os.path.join(self.bin, "sluice-fleet-sim"), "--controller", self.url,
                "--nodes", str(NODES), "--canary", str(CANARY), "--labels", "site=sim",
                "--controller-key", "controller.pub", *self.sim_auth(),
                "--state-root", os.path.join(self.root, "state"), "--wait", "5",
                "--status-interval", "1"]
        with open(os.path.join(self.root, "sim.log"), "a") as log:
            self.sim = popen(args, cwd=self.root, stdout=open(os.path.join(self.root, "sim.jsonl"), "a"),
                             stderr=log)

    def converged(self, rev):
        ns = self.node_list()
        return len(ns) == NODES and all(n["applied_revision"] >= rev and n["state"] == "converged"
                                        for n in ns)

    def write_signed(self, name, text):
        with open(os.path.join(self.root, name), "w") as f:
            f.write(text)
        p = self.ctl(["sign", "--secret", "ministry.key", name])
        return p.returncode == 0 and os.path.exists(os.path.join(self.root, name + ".minisig"))

    def node_context(self, node):
        """An ssl context presenting a client certificate for `node` from the node CA (as the
        agents' own), verifying the controller against its CA."""
        d = os.path.join(self.root, "probe")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "node.ext"), "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=clientAuth\n")
        ca = os.path.join(self.root, "node-ca")
        for args in (["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=" + node],
                     ["x509", "-req", "-in", "node.csr", "-CA", os.path.join(ca, "node-ca.crt"),
                      "-CAkey", os.path.join(ca, "node-ca.key"), "-CAcreateserial",
                      "-out", "node.crt", "-days", "1", "-extfile", "node.ext"]):
            subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.load_cert_chain(os.path.join(d, "node.crt"), os.path.join(d, "node.key"))
        return ctx


def directive_text(source, name, replace):
    """config/directives/NAME with its header comment dropped and `replace` {key: value}
    applied to its top-level lines."""
    with open(os.path.join(source, "config", "directives", name)) as f:
        body = "".join(line for line in f if not line.startswith("#"))
    for key, value in replace.items():
        body, n = re.subn(r"(?m)^%s: .*$" % key, "%s: %s" % (key, value), body)
        if n != 1:
            raise RuntimeError(f"{name}: no single '{key}:' line")
    return f"# {name}, times regenerated by tests/console/console_browser.py\n{body}"


def documents(c, source):
    """Writes and signs the story's documents in the controller's dir; returns what story.mjs
    needs to know about them (names and the lines of the bad ones' faults)."""
    t = datetime.now(timezone.utc).replace(microsecond=0)
    before = {"issued_at": rfc(t - timedelta(minutes=2)), "not_before": rfc(t - timedelta(minutes=1))}
    docs = {
        "block.yaml": directive_text(source, "telegram-block.yaml", before),
        "unblock.yaml": directive_text(source, "telegram-unblock.yaml", before),
        # Payloads in the free text (shown on list, detail, audit) and in a comment (shown in
        # the signed document as submitted).
        "xss.yaml": (f"# {SCRIPT} {IMG}\nid: {XSS_ID}\nissuer: {ISSUER}\n"
                     f"issued_at: {before['issued_at']}\n"
                     f"legal_basis: '{SCRIPT} {IMG}'\naction: block\nresponse: notice\n"
                     f"targets:\n  domains: [xss-probe.example]\nscope: all\n"
                     f"not_before: {before['not_before']}\n"),
        # A fault the dry-run check must place: line 7 (action), column 9 (its value).
        "bad-action.yaml": (f"id: MINCOM-BAD-001\nissuer: {ISSUER}\nissued_at: {before['issued_at']}\n"
                            f"legal_basis: \"Order No. 9\"\n# the action below is misspelt\n"
                            f"scope: all\naction: blockade\ntargets:\n  apps: [telegram]\n"
                            f"not_before: {before['not_before']}\n"),
        # Inside the protected range: approval waits for two engineers' overrides.
        "protected.yaml": (f"id: {PROTECTED_ID}\nissuer: {ISSUER}\nissued_at: {before['issued_at']}\n"
                           f"legal_basis: \"Order No. 77 (protected range test)\"\naction: block\n"
                           f"response: notice\ntargets:\n  prefixes: [{PROTECTED_TARGET}]\nscope: all\n"
                           f"not_before: {before['not_before']}\n"),
        "reject.yaml": (f"id: {REJECT_ID}\nissuer: {ISSUER}\nissued_at: {before['issued_at']}\n"
                        f"legal_basis: \"Order No. 78 (to be rejected)\"\naction: block\n"
                        f"response: notice\ntargets:\n  domains: [reject-probe.example]\nscope: all\n"
                        f"not_before: {before['not_before']}\n"),
        # A payload in a target, which the check refuses and (likely) quotes back.
        "bad-domain.yaml": (f"id: MINCOM-BAD-002\nissuer: {ISSUER}\nissued_at: {before['issued_at']}\n"
                            f"legal_basis: \"Order No. 10\"\naction: block\n"
                            f"targets:\n  domains: ['{IMG}']\nscope: all\n"
                            f"not_before: {before['not_before']}\n"),
    }
    ok = all(c.write_signed(name, text) for name, text in docs.items())
    check(ok, f"{len(docs)} documents signed with the ministry's key (sluicectl sign): {', '.join(docs)}")
    # Signed, then changed: the signature no longer matches.
    with open(os.path.join(c.root, "block.yaml")) as f:
        tampered = f.read().replace("Order No. 123", "Order No. 124")
    with open(os.path.join(c.root, "tampered.yaml"), "w") as f:
        f.write(tampered)
    shutil.copy(os.path.join(c.root, "block.yaml.minisig"), os.path.join(c.root, "tampered.yaml.minisig"))
    return {"dir": c.root, "issuer": ISSUER, "block": BLOCK_ID, "unblock": UNBLOCK_ID, "xss": XSS_ID,
            "bad_action": {"file": "bad-action.yaml", "line": 7, "column": 9},
            "bad_domain": "bad-domain.yaml", "tampered": "tampered.yaml",
            "protected": PROTECTED_ID, "reject": REJECT_ID,
            "protected_range": {"name": PROTECTED_NAME, "range": PROTECTED_RANGE, "target": PROTECTED_TARGET},
            "payloads": [SCRIPT, IMG]}


class ImpactReporter(threading.Thread):
    """Stands in for a node's impact reports (sluice-dataplane --impact-interval): once a
    directive below awaits approval, posts one report for it as sim-0001 (retried every 2 s
    until taken). One per directive only, so the page's figures are exactly these.
    - the block: behind 149.154.160.0/20, 20 flows: 12 named telegram.org (the block's own),
      5 drive.example.com, 3 unnamed;
    - the protected-range block: behind 198.51.100.0/25, 10 flows: 4 portal.gov.example, 6
      unnamed (the page marks the row as overlapping a protected range)."""

    def __init__(self, c):
        super().__init__(daemon=True)
        self.c = c
        self.ctx = c.node_context("sim-0001")
        self.stop = threading.Event()
        self.posted = {BLOCK_ID: [], PROTECTED_ID: []}  # HTTP statuses per directive

    @staticmethod
    def rules(directive_id):
        key = f"{ISSUER}/{directive_id}"
        if directive_id == BLOCK_ID:
            names = [{"name": "telegram.org", "flows": 12, "error": 0},
                     {"name": "drive.example.com", "flows": 5, "error": 0}]
            return [{"rule": f"{key}@149.154.160.0/20", "directive": key, "flows": 20, "unnamed": 3,
                     "names": names, "other": 0},
                    {"rule": f"{key}@names", "directive": key, "flows": 12, "unnamed": 0,
                     "names": names[:1], "other": 0}]
        return [{"rule": f"{key}@{PROTECTED_TARGET}", "directive": key, "flows": 10, "unnamed": 6,
                 "names": [{"name": "portal.gov.example", "flows": 4, "error": 0}], "other": 0}]

    def body(self, directive_id, rev):
        now = int(time.time())
        return json.dumps({"window_start": now - 30, "window_end": now - 1, "revision": rev,
                           "rules": self.rules(directive_id)})

    def run(self):
        last = {k: 0.0 for k in self.posted}
        while not self.stop.wait(0.5):
            todo = [k for k, st in self.posted.items() if 204 not in st]
            if not todo:
                return
            for directive_id in todo:
                d = self.c.get(f"/v1/directives/{ISSUER}/{directive_id}", "engineer")
                if not d or d.get("state") != "awaiting_approval" or time.time() - last[directive_id] < 2:
                    continue
                self.post(directive_id)
                last[directive_id] = time.time()

    def post(self, directive_id):
        rev = self.c.rollout().get("target", 0)
        conn = http.client.HTTPSConnection("127.0.0.1", self.c.port, context=self.ctx, timeout=10)
        try:
            conn.request("POST", "/v1/nodes/sim-0001/impact", body=self.body(directive_id, rev),
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            self.posted[directive_id].append(r.status)
            if r.status != 204:
                print(f"  impact report for {directive_id} as sim-0001: HTTP {r.status}", flush=True)
        except (OSError, http.client.HTTPException) as e:
            print(f"  impact report for {directive_id} as sim-0001: {e}", flush=True)
        finally:
            conn.close()


def run_story(c, docs, shots):
    env = dict(os.environ,
               SLUICE_CONSOLE_URL=c.url,
               SLUICE_CONSOLE_CA=c.ca,
               # The controller's own certificate: the browser pins its key (a throwaway CA
               # is no system CA, and nothing is trusted wholesale).
               SLUICE_CONSOLE_CERT=os.path.join(c.root, "ctl.crt"),
               SLUICE_CONSOLE_KEY=os.path.join(c.root, "ctl.key"),
               SLUICE_CHROMIUM=CHROMIUM,
               SLUICE_TOKEN_MINISTRY=TOKENS["ministry"],
               SLUICE_TOKEN_ENGINEER=TOKENS["engineer"],
               SLUICE_TOKEN_ENGINEER2=ENGINEER2[1],
               SLUICE_ENGINEER2_NAME=ENGINEER2[0],
               SLUICE_TOKEN_VIEWER=TOKENS["viewer"],
               SLUICE_TOKEN_NODE=TOKENS["node"],
               SLUICE_CONSOLE_NODES=str(NODES),
               SLUICE_CONSOLE_DOCS=json.dumps(docs),
               SLUICE_CONSOLE_SHOTS=shots)
    p = popen(["node", os.path.join(HERE, "story.mjs")], cwd=HERE, env=env)
    try:
        return p.wait(timeout=STORY_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        check(False, f"story.mjs finished within {STORY_TIMEOUT} s")
        return 1


def main():
    if len(sys.argv) != 3:
        print(__doc__.split("\n\n")[1])
        return 2
    build, source = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    why = browser_missing()
    if why:
        if os.environ.get("SLUICE_REQUIRE_BROWSER"):
            print(f"console_browser: FAIL: {why} (SLUICE_REQUIRE_BROWSER is set)")
            return 1
        print(f"console_browser: SKIP: {why}")
        return 77
    why = tls_prerequisites(build) or (None if os.access(os.path.join(build, "sluice-fleet-sim"), os.X_OK)
                                       else f"{build}/sluice-fleet-sim not built")
    if why:
        print(f"console_browser: FAIL: {why}")
        return 1
    if not os.path.isfile(os.path.join(ASSETS or os.path.join(build, "console"), "index.html")):
        print(f"console_browser: FAIL: {ASSETS or build + '/console'}/index.html missing (the build "
              "copies control/console to BUILD/console)")
        return 1
    shots = os.path.join(build, "console-screenshots")
    shutil.rmtree(shots, ignore_errors=True)
    os.makedirs(shots)

    root = tempfile.mkdtemp(prefix="sluice-console-")
    t0 = time.time()
    reporter = None
    c = None
    try:
        c = Console(root, build, source)
        if not c.start():
            print(c.log_tail())
            return 1
        c.start_sim()
        check(wait_for(lambda: c.converged(1), 30), f"{NODES} agents ({CANARY} canary) registered "
              "and converged on revision 1")
        docs = documents(c, source)
        reporter = ImpactReporter(c)
        reporter.start()
        print(f"console_browser: node story.mjs against {c.url}/ui/ (work dir {root})", flush=True)
        rc = run_story(c, docs, shots)
        check(rc == 0, f"story.mjs passed (exit {rc})")
        for directive_id, statuses in reporter.posted.items():
            check(204 in statuses, f"the stand-in node's impact report for {directive_id} was taken (HTTP {statuses})")
        # What the browser did, seen from outside: the store agrees.
        block = c.get(f"/v1/directives/{ISSUER}/{BLOCK_ID}") or {}
        check(block.get("state") == "ended" and block.get("end_reason") == "lifted",
              f"API: the block ended, lifted ({block.get('state')}/{block.get('end_reason')})")
        xss = c.get(f"/v1/directives/{ISSUER}/{XSS_ID}") or {}
        check(xss.get("state") == "ended" and xss.get("end_reason") == "rejected",
              f"API: the payload directive ended, rejected ({xss.get('state')}/{xss.get('end_reason')})")
        prot = c.get(f"/v1/directives/{ISSUER}/{PROTECTED_ID}") or {}
        actors = sorted(o.get("actor", "") for o in prot.get("overrides", []))
        check(prot.get("state") == "ended" and prot.get("end_reason") == "revoked"
              and actors == sorted(["engineer-user", ENGINEER2[0]]),
              f"API: the protected-range block ended, revoked ({prot.get('state')}/{prot.get('end_reason')}), "
              f"overridden by {actors}")
        rej = c.get(f"/v1/directives/{ISSUER}/{REJECT_ID}") or {}
        check(rej.get("state") == "ended" and rej.get("end_reason") == "rejected",
              f"API: the keyboard-rejected directive ended, rejected ({rej.get('state')}/{rej.get('end_reason')})")
        ro = c.rollout()
        check(ro.get("paused") is not True, "API: the rollout was never paused by a forged request")
        p = c.ctl(["audit", "verify"], role="viewer")
        check(p.returncode == 0, "sluicectl audit verify: " + p.stdout.strip().replace("\n", "; "))
        check(c.alive(), "the controller is still up")
        en = sorted(f[3:] for f in os.listdir(shots) if f.startswith("en-") and f.endswith(".png"))
        ar = sorted(f[3:] for f in os.listdir(shots) if f.startswith("ar-") and f.endswith(".png"))
        check(len(en) >= 12 and en == ar, f"{len(en)} pages shot in English and Arabic in {shots}: "
              + ", ".join(n[3:-4] for n in en))
    finally:
        if reporter:
            reporter.stop.set()
        if c and c.sim and c.sim.poll() is None:
            c.sim.send_signal(signal.SIGTERM)
            try:
                c.sim.wait(timeout=10)
            except subprocess.TimeoutExpired:
                c.sim.kill()
        if c:
            if failures:
                print("--- controld.log (last lines)\n" + c.log_tail(3000))
            c.kill(signal.SIGTERM)
        if os.environ.get("SLUICE_CONSOLE_KEEP"):
            print(f"kept {root} (SLUICE_CONSOLE_KEEP)")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"console_browser: {'FAIL' if failures else 'PASS'} ({time.time() - t0:.1f} s)")
    if failures:
        for f in failures:
            print("  - " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
