#!/usr/bin/python3
"""The control plane end to end on loopback, with the real binaries: sluice-controld, sluicectl
and sluice-fleet-sim (the real agent code, two nodes).

  control_e2e.py BIN_DIR SOURCE_DIR [--store sqlite|etcd]

With --store etcd the controller's store is a 3-member etcd cluster on loopback (started here,
/usr/bin/etcd), each scenario under its own key prefix; the audit edit is then an `etcdctl put`
of one record's key, and `sluicectl audit verify` over the API must name it.

1. story: a signed block is submitted and approved; both agents converge and report; a forged,
   a tampered, a replayed and an expired directive are each refused and audited; a signed
   unblock lifts the block and both agents converge on the new revision; `sluicectl audit
   verify` passes, then fails (naming the record) after one byte of the audit table (SQLite)
   or of one audit record's value (etcd) changes.
2. crash: kill -9 of the controller in the middle of a staged rollout; after a restart the
   rollout completes and nothing acknowledged is lost.
3. agent: with the controller gone, a restarted agent enforces its persisted snapshot.
Exit 0 pass, 1 fail."""

import json
import os
import signal
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone

from control_harness import Controller, EtcdCluster, read_jsonl, check, failures, popen, store_arg, wait_for

BIN, SRC = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
STORE = store_arg(sys.argv[3:])
cluster = None  # the EtcdCluster with --store etcd
CONTROLD = os.path.join(BIN, "sluice-controld")
CTL = os.path.join(BIN, "sluicectl")
SIM = os.path.join(BIN, "sluice-fleet-sim")


def rfc(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class Env(Controller):
    def __init__(self, root, canary=False):
        super().__init__(root, BIN, SRC, keys=("ministry", "other", "controller"),
                         stale_after=20, canary_soak=2 if canary else 0, etcd=cluster)
        self.sim = None
        self.sim_out = os.path.join(root, "sim.jsonl")

    def start(self):
        return super().start(timeout=10)

    def start_sim(self, nodes=2, canary=0, state="state", enroll=True):
        if enroll:  # issue 14: only enrolled nodes are served
            self.enroll_sim(nodes, canary=canary)
        args = [SIM, "--controller", self.url, "--nodes", str(nodes), "--labels", "site=sim",
                "--controller-key", "controller.pub", *self.sim_auth(),
                "--state-root", os.path.join(self.root, state), "--wait", "5",
                "--status-interval", "1"]
        if canary:
            args += ["--canary", str(canary)]
        self.sim_log = open(os.path.join(self.root, "sim.log"), "a")
        self.sim = popen(args, cwd=self.root, stdout=open(self.sim_out, "a"), stderr=self.sim_log)

    def stop_sim(self):
        if self.sim and self.sim.poll() is None:
            self.sim.send_signal(signal.SIGTERM)
            self.sim.wait(timeout=20)

    def sim_events(self):
        return read_jsonl(self.sim_out)

    def nodes(self):
        return self.node_list()

    def converged_on(self, rev, count=2):
        ns = self.nodes()
        return len([n for n in ns if n["applied_revision"] >= rev and n["state"] == "converged"]) >= count

    def directive_doc(self, name, body):
        path = os.path.join(self.root, name)
        with open(path, "w") as f:
            f.write(body)
        return name


def doc(id_, action_part, not_before, not_after=None, issued=None):
    now = datetime.now(timezone.utc)
    d = (f"id: {id_}\nissuer: ministry-of-communications\nissued_at: {rfc(issued or now - timedelta(minutes=5))}\n"
         f"legal_basis: \"Order No. 123 of 2026-11-20\"\n{action_part}scope: all\nnot_before: {rfc(not_before)}\n")
    if not_after:
        d += f"not_after: {rfc(not_after)}\n"
    return d


BLOCK = "action: block\nresponse: notice\ntargets:\n  apps: [telegram]\n"


def story(root):
    print("== story: block, converge, refusals, lift, audit")
    e = Env(root)
    if not e.start():
        return
    e.start_sim(2)
    now = datetime.now(timezone.utc)
    check(wait_for(lambda: e.converged_on(1), 15), "two agents register and converge on revision 1")

    e.directive_doc("block.yaml", doc("MINCOM-2026-001", BLOCK, now - timedelta(minutes=1)))
    check(e.ctl(["sign", "--secret", "ministry.key", "block.yaml"]).returncode == 0, "sluicectl sign")
    p = e.ctl(["--json", "submit", "block.yaml"], role="ministry")
    check(p.returncode == 0 and json.loads(p.stdout)["state"] == "awaiting_approval",
          "signed block submitted, awaiting approval")
    check(e.ctl(["approve", "ministry-of-communications/MINCOM-2026-001"], role="ministry",
                expect=1).returncode == 1, "a ministry token may not approve (403, exit 1)")
    check(e.ctl(["approve", "ministry-of-communications/MINCOM-2026-001"], role="engineer").returncode == 0,
          "engineer approves")
    block_rev = e.get("/v1/rollout")["target"]
    check(block_rev >= 2, f"approval made revision {block_rev}")
    check(wait_for(lambda: e.converged_on(block_rev), 20), "both agents converge on the block")
    show = json.loads(e.ctl(["--json", "show", "ministry-of-communications/MINCOM-2026-001"],
                            role="viewer").stdout or "{}")
    enf = show.get("enforcement") or {}
    check(show.get("state") == "active" and enf.get("in_scope") == 2 and enf.get("enforcing") == 2
          and enf.get("pending") == 0 and enf.get("failing") == 0 and enf.get("stale") == 0,
          f"directive active and enforced by 2 of 2 nodes: {show.get('state')} {show.get('enforcement')}")
    shas = {n["ruleset_sha256"] for n in e.nodes()}
    check(len(shas) == 1 and "" not in shas, "both nodes report the same ruleset SHA-256")
    applied = [ev for ev in e.sim_events() if ev.get("event") == "applied" and ev["revision"] == block_rev]
    check(len(applied) == 2, "the agents applied the block's revision (fleet-sim log)")

    # Refusals: each exits 1, names its code, and is audited; none changes the revision.
    refusals = []
    e.directive_doc("forged.yaml", doc("MINCOM-2026-009", BLOCK, now))
    e.ctl(["sign", "--secret", "other.key", "forged.yaml"])
    refusals.append(("forged (untrusted key)", "forged.yaml", "unknown_issuer_key"))
    e.directive_doc("tampered.yaml", doc("MINCOM-2026-010", BLOCK, now))
    e.ctl(["sign", "--secret", "ministry.key", "tampered.yaml"])
    with open(os.path.join(root, "tampered.yaml"), "a") as f:
        f.write("# one more line\n")
    refusals.append(("tampered after signing", "tampered.yaml", "bad_signature"))
    refusals.append(("replayed", "block.yaml", "replayed_id"))
    e.directive_doc("expired.yaml", doc("MINCOM-2026-011", BLOCK, now - timedelta(days=2),
                                        now - timedelta(days=1), now - timedelta(days=3)))
    e.ctl(["sign", "--secret", "ministry.key", "expired.yaml"])
    refusals.append(("expired", "expired.yaml", "expired"))
    for what, name, code in refusals:
        p = e.ctl(["submit", name], role="ministry", expect=1)
        check(p.returncode == 1 and code in (p.stdout + p.stderr), f"{what} directive refused: {code}")
    records = e.get("/v1/audit?limit=10000")["records"]
    refused = [r["detail"].get("code") for r in records if r["event"] == "request.refused"]
    for what, _, code in refusals:
        check(code in refused, f"refusal audited: {code}")
    check(e.get("/v1/rollout")["target"] == block_rev, "refusals changed no revision")

    # The lift.
    e.directive_doc("unblock.yaml", doc("MINCOM-2026-002", "action: unblock\nlifts: [MINCOM-2026-001]\n",
                                        now - timedelta(seconds=30)))
    e.ctl(["sign", "--secret", "ministry.key", "unblock.yaml"])
    check(e.ctl(["lift", "unblock.yaml"], role="ministry").returncode == 0, "signed unblock submitted")
    check(e.ctl(["approve", "ministry-of-communications/MINCOM-2026-002"], role="engineer").returncode == 0,
          "unblock approved")
    lift_rev = wait_for(lambda: (lambda r: r if r > block_rev else 0)(e.get("/v1/rollout")["target"]), 5)
    check(lift_rev > block_rev, f"lift made revision {lift_rev}")
    check(wait_for(lambda: e.converged_on(lift_rev), 20), "both agents converge on the lift")
    st = e.get("/v1/directives/ministry-of-communications/MINCOM-2026-001")
    check(st["state"] == "ended" and st["end_reason"] == "lifted", f"block ended by the lift: {st['state']}/{st['end_reason']}")

    # Node gauges are recounted at most once a second, so give them a moment.
    m = wait_for(lambda: (lambda t: t if isinstance(t, str) and
                          'sluice_control_nodes{state="converged"} 2' in t else None)(
                              e.get("/metrics", None)), 5)
    check(m is not None, "metrics: 2 converged nodes")
    check(isinstance(m, str) and "sluice_control_signature_failures_total 2" in m,
          "metrics: 2 signature failures")

    p = e.ctl(["audit", "verify"], role="viewer")
    check(p.returncode == 0, "sluicectl audit verify passes over the API")
    e.stop_sim()
    if STORE == "etcd":
        # The record's key rewritten behind the controller's back; it keeps running and reads
        # the chain from etcd.
        seq = e.tamper_audit("directive.approved")
        check(seq is not None, f"etcdctl put rewrote audit record {seq} under {e.prefix}/audit/")
        p = e.ctl(["audit", "verify"], role="viewer", expect=1)
        check(seq is not None and p.returncode == 1 and f"record {seq}" in (p.stdout + p.stderr),
              f"audit verify over the API fails after record {seq}'s value changed, and names it")
        e.kill(signal.SIGTERM)
        return
    e.kill(signal.SIGTERM)
    check(e.ctl(["audit", "verify", "--db", "controld.db"]).returncode == 0, "audit verify --db passes")
    seq = e.tamper_audit("directive.approved")
    p = e.ctl(["audit", "verify", "--db", "controld.db"], expect=1)
    check(seq is not None and p.returncode == 1 and f"record {seq}" in (p.stdout + p.stderr),
          f"audit verify fails after one byte of record {seq} changed, and names it")


def crash(root):
    print("== crash: kill -9 mid-rollout, restart, rollout completes")
    e = Env(root, canary=True)
    if not e.start():
        return
    e.start_sim(2, canary=1)
    check(wait_for(lambda: e.converged_on(1), 15), "canary and main node converge on revision 1")
    now = datetime.now(timezone.utc)
    e.directive_doc("block.yaml", doc("MINCOM-2026-101", BLOCK, now - timedelta(minutes=1)))
    e.ctl(["sign", "--secret", "ministry.key", "block.yaml"])
    e.ctl(["submit", "block.yaml"], role="ministry")
    e.ctl(["approve", "ministry-of-communications/MINCOM-2026-101"], role="engineer")
    ro = e.get("/v1/rollout")
    target = ro["target"]
    check(ro["stage"] == "canary", f"rollout of revision {target} starts with the canary")
    check(wait_for(lambda: e.converged_on(target, 1), 10), "canary applied it")
    e.kill()  # kill -9 while the canary soaks
    check(e.proc.returncode == -signal.SIGKILL, "controller killed with SIGKILL mid-rollout")
    e.start()
    st = e.get("/v1/directives/ministry-of-communications/MINCOM-2026-101")
    check(st and st["state"] == "active" and len(st["approvals"]) == 1,
          "after restart: the directive and its approval are there")
    check(wait_for(lambda: e.get("/v1/rollout")["stage"] == "done", 30), "the rollout completes after restart")
    check(wait_for(lambda: e.converged_on(target, 2), 10), "both nodes converged on the block's revision")
    check(e.ctl(["audit", "verify"], role="viewer").returncode == 0, "audit chain intact after the crash")

    print("== agent: controller down, agent restarted, persisted snapshot enforced")
    e.kill()
    e.stop_sim()
    before = len(e.sim_events())
    e.start_sim(2, canary=1, enroll=False)  # the controller is down; they are enrolled
    def restored():
        evs = e.sim_events()[before:]
        return len([ev for ev in evs if ev.get("event") == "applied" and ev["revision"] == target]) == 2
    check(wait_for(restored, 15), f"both restarted agents apply persisted revision {target} with no controller")
    e.stop_sim()


def main():
    global cluster
    for f in (CONTROLD, CTL, SIM):
        if not os.access(f, os.X_OK):
            print(f"missing {f}")
            return 1
    print(f"store: {STORE}")
    with tempfile.TemporaryDirectory(prefix="sluice-control-") as root:
        try:
            if STORE == "etcd":
                try:
                    cluster = EtcdCluster(root).start()
                except RuntimeError as ex:
                    check(False, str(ex))
                    return 1
            os.mkdir(os.path.join(root, "story"))
            story(os.path.join(root, "story"))
            os.mkdir(os.path.join(root, "crash"))
            crash(os.path.join(root, "crash"))
        finally:
            if cluster:
                cluster.stop()
            for p in subprocess.run(["pgrep", "-f", root], capture_output=True, text=True).stdout.split():
                os.kill(int(p), signal.SIGKILL)
    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
