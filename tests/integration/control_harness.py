"""What the control-plane integration tests share: pass/fail bookkeeping, polling, and a real
sluice-controld in a work directory (fresh keys, hashed tokens, its config) driven over HTTP and
through sluicectl. Imported by control_e2e.py and fleet_faults.py (same directory)."""

import hashlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

TOKENS = {"ministry": "tok-ministry-1", "engineer": "tok-engineer-alice",
          "viewer": "tok-viewer", "node": "tok-node-fleet"}
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, step=0.1):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


class Controller:
    """sluice-controld with its config in `root`: keys `keys` (NAME.pub/NAME.key, made by
    sluicectl keygen; "ministry" is the trusted issuer, "controller" signs snapshots), the four
    TOKENS hashed, node.token for the agents. `spawn` starts processes (tests that track them
    pass their own)."""

    def __init__(self, root, bin_dir, src_dir, keys=("ministry", "controller"),
                 stale_after=20, canary_soak=0, http_threads=None, spawn=subprocess.Popen):
        self.root = root
        self.bin = bin_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.spawn = spawn
        for name in keys:
            self.ctl(["keygen", "--public", f"{name}.pub", "--secret", f"{name}.key"])
        with open(os.path.join(root, "node.token"), "w") as f:
            f.write(TOKENS["node"])
        tokens = "\n".join(
            f"  - {{ name: {role}-user, role: {role}, sha256: {hashlib.sha256(t.encode()).hexdigest()} }}"
            for role, t in TOKENS.items())
        canary = (f"canary: {{ labels: {{ group: canary }}, soak_seconds: {canary_soak} }}\n"
                  if canary_soak else "")
        threads = f"http_threads: {http_threads}\n" if http_threads else ""
        with open(os.path.join(root, "controld.yaml"), "w") as f:
            f.write(f"""listen: 127.0.0.1:{self.port}
database: controld.db
apps_dir: {src_dir}/config/apps
signing_key: controller.key
issuers:
  - {{ name: ministry-of-communications, public_key: ministry.pub }}
approvals_required: 1
stale_after_seconds: {stale_after}
max_wait_seconds: 5
{threads}{canary}inventory: {{ sites: [sim], labels: {{ group: [canary, main] }} }}
tokens:
{tokens}
""")

    def ctl(self, args, role=None, expect=0):
        cmd = [os.path.join(self.bin, "sluicectl"), "--controller", self.url] + args
        env = dict(os.environ)
        env.pop("SLUICE_TOKEN", None)
        if role:
            env["SLUICE_TOKEN"] = TOKENS[role]
        p = subprocess.run(cmd, cwd=self.root, env=env, capture_output=True, text=True, timeout=60)
        if expect is not None and p.returncode != expect:
            print(f"  sluicectl {' '.join(args)} -> {p.returncode}\n  stdout: {p.stdout}\n  stderr: {p.stderr}")
        return p

    def start(self, timeout=15):
        with open(os.path.join(self.root, "controld.log"), "a") as log:
            self.proc = self.spawn([os.path.join(self.bin, "sluice-controld"), "--config",
                                    "controld.yaml"], cwd=self.root, stdout=log, stderr=log)
        return check(wait_for(lambda: self.get("/v1/health", None) is not None, timeout),
                     "controller answers on /v1/health")

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)

    def get(self, path, role="viewer"):
        req = urllib.request.Request(self.url + path)
        if role:
            req.add_header("Authorization", "Bearer " + TOKENS[role])
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                body = r.read()
                return json.loads(body) if body[:1] in (b"{", b"[") else body.decode()
        except (urllib.error.URLError, ConnectionError, OSError):
            return None

    def node_list(self):
        return (self.get("/v1/nodes") or {}).get("nodes", [])

    def rollout(self):
        return self.get("/v1/rollout") or {}
